"""Text read off photos with rapidocr (PP-OCR, ONNX, bundled models), for ingest and query photos alike.

Loaded on first use (about a second); onnxruntime sessions are safe to call from several
threads. It lives beside the encoders so that ingest and the query builder both reach it
downwards, without one importing the other.
"""
from __future__ import annotations

import threading
from typing import Any

__all__ = ["OcrReader"]


class OcrReader:
    """``read(img)`` gives the photo's text lines joined by spaces; ``identity`` names the engine."""

    def __init__(self, threads: int = 1, min_score: float = 0.5) -> None:
        self.threads = threads
        self.min_score = min_score
        self._engine = None
        self._lock = threading.Lock()

    def _get(self):
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    import logging

                    from rapidocr import RapidOCR

                    self._engine = RapidOCR(params={
                        "Global.log_level": "error",
                        "EngineConfig.onnxruntime.intra_op_num_threads": self.threads,
                        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                    })
                    logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        return self._engine

    @property
    def identity(self) -> str:
        try:
            from importlib.metadata import version
            return f"rapidocr-{version('rapidocr')}"
        except Exception:  # noqa: BLE001 - a missing dist-info is not a reason to fail
            return "rapidocr"

    def read(self, img: Any) -> str:
        """The photo's text lines joined by spaces (lines below ``min_score`` dropped)."""
        res = self._get()(img)
        txts = getattr(res, "txts", None) or ()
        scores = getattr(res, "scores", None) or ()
        lines = [t for t, s in zip(txts, scores) if t and (s is None or s >= self.min_score)]
        return " ".join(lines)
