"""The decode pool's work: one image source -> fetched, decoded, preprocessed pixels (and OCR text).

Runs in worker threads (PIL and onnxruntime release the GIL for the heavy parts).  Any failure
of one image is that image's problem: it comes back as an :class:`ImageResult` with an
``error``, never as an exception, so the product can be kept without it or rejected
(``--image-errors``).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from .documents import short_source
from .fetch import FetchError, ImageFetcher
from .records import ImageResult
from .report import StageTimes

__all__ = ["ImageJob"]


class ImageJob:
    """Callable on a source; ``prepare_image`` turns a decoded image into encoder input (None: a
    dry run, decode only); ``notes`` gets at most ``max_notes`` OCR failures, then a count."""

    def __init__(self, fetcher: ImageFetcher, prepare_image: Callable[[Any], Any] | None, ocr_reader: Any,
                 times: StageTimes, notes: list[str], stopped: Callable[[], bool], max_notes: int = 20) -> None:
        self.fetcher = fetcher
        self.prepare_image = prepare_image
        self.ocr = ocr_reader
        self.times = times
        self.notes = notes
        self.stopped = stopped
        self.max_notes = max_notes
        self._lock = threading.Lock()
        self._dropped = 0

    def __call__(self, source: str) -> ImageResult:
        from models.images import ImageDecodeError, load_image

        if self.stopped():
            return ImageResult(source, error="load stopped")
        t = time.perf_counter()
        try:
            data = self.fetcher.fetch(source)
        except FetchError as exc:
            self.times.add("fetch", time.perf_counter() - t)
            return ImageResult(source, error=exc.reason)
        t1 = time.perf_counter()
        self.times.add("fetch", t1 - t)
        try:
            img = load_image(data, name=short_source(source))
            pixels = self.prepare_image(img) if self.prepare_image is not None else None
        except ImageDecodeError as exc:
            self.times.add("decode", time.perf_counter() - t1)
            return ImageResult(source, error=exc.reason)
        except Exception as exc:  # noqa: BLE001 - any failure of one image is that image's problem
            self.times.add("decode", time.perf_counter() - t1)
            return ImageResult(source, error=f"{type(exc).__name__}: {exc}")
        self.times.add("decode", time.perf_counter() - t1)
        text = ""
        if self.ocr is not None:
            t2 = time.perf_counter()
            try:
                text = self.ocr.read(img)
            except Exception as exc:  # noqa: BLE001 - OCR failing must not lose the product
                self._note(f"OCR failed on {short_source(source)}: {type(exc).__name__}: {exc}")
            self.times.add("ocr", time.perf_counter() - t2)
        return ImageResult(source, pixels=pixels, ocr_text=text)

    def _note(self, msg: str) -> None:
        """A note for the summary; past ``max_notes`` only counted, so a long load's memory stays flat."""
        with self._lock:
            if len(self.notes) < self.max_notes:
                self.notes.append(msg)
                return
            self._dropped += 1
            more = f"... and {self._dropped} more notes like these"
            if self.notes[-1].startswith("... and "):
                self.notes[-1] = more
            else:
                self.notes.append(more)
