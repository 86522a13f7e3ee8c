"""Turn whatever a catalog or a shopper hands us into one plain RGB ``PIL.Image``.

Ingest (catalog photos) and the query builder (a shopper's photo) both go through
:func:`load_image`, so a product photo and a query photo of the same object reach the
encoder identically. Real-world files are messy: phone photos carry an EXIF rotation,
product cut-outs are RGBA or palette PNGs with transparency, print assets are CMYK JPEGs,
scans are 16-bit grayscale, thumbnails are a few pixels wide and some uploads are huge or
truncated. Every failure becomes an :class:`ImageDecodeError` that names the item, so a
batch can report its one bad photo and still encode the rest.

Decoding is by content, never by file name: a PNG called ``x.jpg`` is fine.
Fetching URLs is ingest's job; pass the downloaded bytes here.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps

__all__ = ["ImageDecodeError", "ImageSource", "load_image", "describe_source",
           "DEFAULT_MAX_BYTES", "DEFAULT_MAX_PIXELS", "DEFAULT_REDUCE_TO"]

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024   # a bigger upload is almost certainly not a product photo
DEFAULT_MAX_PIXELS = 64_000_000        # decoded pixels (after JPEG draft reduction): ~190 MB as RGB
DEFAULT_REDUCE_TO = 1024               # the encoders look at 224 px; keep some margin for OCR/crops

_WHITE = (255, 255, 255)


class ImageDecodeError(ValueError):
    """An item that cannot be turned into an image; ``item`` names it, ``reason`` says why."""

    def __init__(self, item: str, reason: str):
        self.item = item
        self.reason = reason
        super().__init__(f"cannot decode image {item}: {reason}")

    def __reduce__(self):  # keep the two fields across pickling (multiprocessing ingest)
        return (type(self), (self.item, self.reason))


def describe_source(source: object) -> str:
    """A short human name for an image source, used in error messages."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    if isinstance(source, Image.Image):
        return f"<PIL image {source.mode} {source.size[0]}x{source.size[1]}>"
    return f"<{type(source).__name__}>"


def load_image(source: ImageSource, *, name: str | None = None,
               max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS,
               reduce_to: int | None = DEFAULT_REDUCE_TO) -> Image.Image:
    """Decode ``source`` (a path, encoded bytes or a PIL image) into a loaded RGB image.

    - EXIF orientation is applied, so a phone photo stands the way it was taken.
    - Transparency (RGBA, LA, palette with a transparent index) is composited on white, the
      background product shots use; CMYK goes through its ICC profile when it has one.
    - 16-bit and 32-bit integer / float images are rescaled to 8 bits instead of clipped.
    - Images whose shorter side exceeds ``reduce_to`` are reduced to about that size; JPEGs
      are reduced while decoding (``Image.draft``), so a 50-megapixel photo never lands in
      memory at full size. ``None`` keeps the full resolution.
    - More than ``max_pixels`` pixels to decode, or more than ``max_bytes`` of input, is refused
      (decompression-bomb guard), as are truncated or unrecognised files.

    Raises :class:`ImageDecodeError` naming ``name`` (default: the path, or a size for bytes).
    """
    item = name or describe_source(source)
    with warnings.catch_warnings():
        # PIL warns about corrupt EXIF blocks and large images; we handle both ourselves
        # (EXIF is best effort, the pixel limit is ours), so the warnings are only noise.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return _load(source, item, max_bytes, max_pixels, reduce_to)


def _load(source: ImageSource, item: str, max_bytes: int, max_pixels: int,
          reduce_to: int | None) -> Image.Image:
    try:
        if isinstance(source, Image.Image):
            img = source
            _check_pixels(item, img.size, max_pixels)
            img.load()
        else:
            img = _open(source, item, max_bytes)
            _check_pixels(item, img.size, max_pixels, before_draft=True)
            if reduce_to and img.format == "JPEG":
                _draft(img, reduce_to)
            _check_pixels(item, img.size, max_pixels)
            img.load()  # full decode: truncated data fails here
        img = _exif_upright(img)
        rgb = _to_rgb(img, item)
        if reduce_to and min(rgb.size) > reduce_to:
            rgb = _shrink(rgb, reduce_to)
        if rgb is source:  # never hand the caller's own object back: they may mutate it
            rgb = rgb.copy()
        return rgb
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(item, f"refused as a decompression bomb ({exc})") from None
    except MemoryError:
        raise ImageDecodeError(item, "not enough memory to decode") from None
    except (OSError, SyntaxError, ValueError, EOFError, TypeError, IndexError, KeyError) as exc:
        raise ImageDecodeError(item, _reason(exc)) from None


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "truncated" in text.lower() or isinstance(exc, EOFError):
        return f"truncated or incomplete image data ({text})"
    return f"corrupt image data ({type(exc).__name__}: {text})"


def _open(source: ImageSource, item: str, max_bytes: int) -> Image.Image:
    """Open lazily (header only); the caller decides on draft and size before decoding."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise ImageDecodeError(item, "file not found") from None
        except OSError as exc:
            raise ImageDecodeError(item, f"cannot read file ({exc.strerror or exc})") from None
        if path.is_dir():
            raise ImageDecodeError(item, "is a directory, not an image file")
        if size > max_bytes:
            raise ImageDecodeError(item, f"file is {size} bytes, more than the {max_bytes} allowed")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageDecodeError(item, f"cannot read file ({exc.strerror or exc})") from None
    else:
        raise ImageDecodeError(item, f"unsupported image source type {type(source).__name__} "
                                     "(expected a path, bytes or a PIL image)")
    if not data:
        raise ImageDecodeError(item, "empty input (0 bytes)")
    if len(data) > max_bytes:
        raise ImageDecodeError(item, f"input is {len(data)} bytes, more than the {max_bytes} allowed")
    try:
        return Image.open(io.BytesIO(data))
    except Image.UnidentifiedImageError:
        raise ImageDecodeError(item, "not a recognised image format") from None


def _check_pixels(item: str, size: tuple[int, int], max_pixels: int, before_draft: bool = False) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise ImageDecodeError(item, f"image has no pixels ({w}x{h})")
    # Before a JPEG draft the decoder can still shrink 8x per side, so allow for that there.
    limit = max_pixels * (64 if before_draft else 1)
    if w * h > limit:
        raise ImageDecodeError(item, f"image is {w}x{h} = {w * h} pixels, more than the "
                                     f"{max_pixels} allowed (decompression-bomb guard)")


def _draft(img: Image.Image, reduce_to: int) -> None:
    """Ask libjpeg for a DCT-scaled decode whose shorter side stays >= reduce_to."""
    w, h = img.size
    short = min(w, h)
    if short <= reduce_to:
        return
    scale = reduce_to / short
    mode = "RGB" if img.mode in ("RGB", "YCbCr") else img.mode
    img.draft(mode, (max(1, int(w * scale + 0.999)), max(1, int(h * scale + 0.999))))


def _exif_upright(img: Image.Image) -> Image.Image:
    """Rotate/flip per the EXIF Orientation tag; a broken EXIF block is ignored, not fatal."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - malformed EXIF must not lose an otherwise fine photo
        return img


def _shrink(img: Image.Image, reduce_to: int) -> Image.Image:
    w, h = img.size
    scale = reduce_to / min(w, h)
    return img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR,
                      reducing_gap=3.0)


def _to_rgb(img: Image.Image, item: str) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
        if mode == "RGB":
            return img
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, _WHITE + (255,))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    if mode == "L" and "transparency" in img.info:
        return _to_rgb(img.convert("LA"), item)
    if mode == "CMYK":
        return _cmyk_to_rgb(img)
    if mode.startswith("I") or mode == "F":
        return _high_depth_to_rgb(img)
    if mode in ("1", "L", "YCbCr", "HSV", "RGBX"):
        return img.convert("RGB")
    if mode == "LAB":
        from PIL import ImageCms
        return ImageCms.applyTransform(img, ImageCms.buildTransform(
            ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"))
    raise ImageDecodeError(item, f"unsupported image mode {mode!r}")


def _cmyk_to_rgb(img: Image.Image) -> Image.Image:
    """Use the embedded ICC profile if any (print files usually have one), else PIL's formula."""
    icc = img.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except Exception:  # noqa: BLE001 - a bad profile falls back to the plain conversion
            pass
    return img.convert("RGB")


def _high_depth_to_rgb(img: Image.Image) -> Image.Image:
    """16/32-bit integer or float pixels -> 8 bits by rescaling (PIL's convert would clip at 255)."""
    arr = np.asarray(img)
    if arr.ndim == 3:  # e.g. a 16-bit RGB array some plugins produce
        arr = arr[..., :3]
    arr = arr.astype(np.float64)
    finite = arr[np.isfinite(arr)]
    hi = float(finite.max()) if finite.size else 0.0
    lo = float(finite.min()) if finite.size else 0.0
    if img.mode == "F":
        if lo >= 0.0 and hi <= 1.0:
            scale, offset = 255.0, 0.0
        else:
            offset = lo
            scale = 255.0 / (hi - lo) if hi > lo else 0.0
    else:
        offset = 0.0 if lo >= 0 else lo
        span = hi - offset
        if span <= 255:
            scale = 1.0
        elif span <= 65535:
            scale = 255.0 / 65535.0  # the usual case: a 16-bit file
        else:
            scale = 255.0 / span
    out = np.clip(np.nan_to_num((arr - offset) * scale), 0, 255).round().astype(np.uint8)
    if out.ndim == 2:
        return Image.fromarray(out, "L").convert("RGB")
    return Image.fromarray(out, "RGB")
