"""Run-time image encoder: photos -> backbone feature vectors with onnxruntime (no torch).

The model directory's manifest (see :mod:`models.manifest`) declares everything this needs:
which ONNX file each variant uses, the names of its outputs, and the preprocessing block, so
the code that built the model and the code that runs it cannot drift apart. Preprocessing is
numpy + PIL and reproduces torchvision's ``Resize(256) + CenterCrop(224) + ToTensor +
Normalize`` exactly (same PIL resampling, same size and crop rounding; tested against
torchvision).

Example::

    enc = ImageEncoder.from_dir(default_models_dir(), threads=2)
    feats = enc.encode(["a.jpg", open("b.png", "rb").read()])      # [2, 1280], unit length
    res = enc.encode_many(paths)                                      # bad photos reported, rest kept
    for err in res.errors:
        print(err.item, err.reason)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np
from PIL import Image

from .images import ImageDecodeError, ImageSource, describe_source, load_image
from .manifest import entry_variants, sha256_file
from .runtime import onnx_session

__all__ = ["ImageEncoder", "EncodeResult", "preprocess", "ImageEncoderError", "FITS"]

# How a photo is fitted to the tower's square input: "center_crop" (torchvision's resize + centre
# crop, the export default) or "letterbox" (the whole photo scaled into the square, padded with
# white, so a long product or a product at the edge of a shelf photo is not cut off). The space
# declares one for products and queries alike (see :mod:`models.space`).
FITS = ("center_crop", "letterbox")
_WHITE = (255, 255, 255)

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
             "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}


class ImageEncoderError(RuntimeError):
    """The model directory or manifest entry cannot drive an image encoder."""


class EncodeResult(NamedTuple):
    """Outcome of :meth:`ImageEncoder.encode_many`; unpacks as ``feats, logits, ok, errors``.

    ``features[i]`` and ``logits[i]`` belong to input number ``ok[i]``; every input not in
    ``ok`` has exactly one :class:`ImageDecodeError` in ``errors`` (its ``index`` attribute is
    the input position).
    """

    features: np.ndarray          # [n_ok, d] float32
    logits: np.ndarray | None     # [n_ok, classes] float32, None when the model has no classifier
    ok: np.ndarray                # [n_ok] int64 input positions
    errors: list[ImageDecodeError]


def preprocess(img: Image.Image, spec: Mapping[str, Any]) -> np.ndarray:
    """One RGB image -> float32 [3, crop, crop] following a manifest ``preprocess`` block.

    Mirrors torchvision: shorter side to ``resize`` (or exactly [height, width] when ``resize``
    is a list; longer side truncated, as
    ``_compute_resized_output_size`` does), PIL resampling (antialiased), centre crop with
    Python ``round`` offsets (zero padding if the image is smaller than the crop), scale to
    [0, 1], then ``(x - mean) / std`` per channel.

    With ``"fit": "letterbox"`` the longer side is scaled to the crop size instead and the
    image is centred on a white square of that size (nothing is cut off).
    """
    if img.mode != "RGB":
        img = img.convert("RGB")
    fit = spec.get("fit") or "center_crop"
    if fit not in FITS:
        raise ImageEncoderError(f"unknown image fit {fit!r} (known: {', '.join(FITS)})")
    if fit == "letterbox":
        size = int(spec.get("center_crop") or spec["resize"])
        boxed = _letterbox(img, size, _RESAMPLE[spec.get("interpolation", "bilinear")])
        return _normalize(np.asarray(boxed), spec)
    resize = spec.get("resize")
    if isinstance(resize, (list, tuple)):  # exact [height, width] (e.g. Chinese-CLIP)
        if (img.size[1], img.size[0]) != (int(resize[0]), int(resize[1])):
            img = img.resize((int(resize[1]), int(resize[0])), _RESAMPLE[spec.get("interpolation", "bilinear")])
    elif resize:
        w, h = img.size
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = int(resize), int(int(resize) * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
        if (new_w, new_h) != (w, h):
            img = img.resize((new_w, new_h), _RESAMPLE[spec.get("interpolation", "bilinear")])
    arr = np.asarray(img)
    crop = spec.get("center_crop")
    if crop:
        arr = _center_crop(arr, int(crop))
    return _normalize(arr, spec)


def _letterbox(img: Image.Image, size: int, resample) -> Image.Image:
    w, h = img.size
    scale = size / max(w, h)
    nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), resample)
    canvas = Image.new("RGB", (size, size), _WHITE)
    canvas.paste(img, ((size - nw) // 2, (size - nh) // 2))
    return canvas


def _normalize(arr: np.ndarray, spec: Mapping[str, Any]) -> np.ndarray:
    """uint8 [H, W, 3] -> float32 [3, H, W], ``(x * rescale - mean) / std`` per channel.

    Channels go first while the pixels are still bytes, and only the cropped pixels are
    converted: a third of the float work of converting the whole resized photo (the same
    values, bit for bit)."""
    x = arr.transpose(2, 0, 1).astype(np.float32)
    x *= np.float32(spec.get("rescale", 1.0 / 255.0))
    x -= np.asarray(spec["mean"], dtype=np.float32)[:, None, None]
    x /= np.asarray(spec["std"], dtype=np.float32)[:, None, None]
    return x


def _center_crop(arr: np.ndarray, size: int) -> np.ndarray:
    h, w = arr.shape[:2]
    if size > w or size > h:
        pw, ph = max(size - w, 0), max(size - h, 0)
        arr = np.pad(arr, ((ph // 2, (ph + 1) // 2), (pw // 2, (pw + 1) // 2), (0, 0)))
        h, w = arr.shape[:2]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return arr[top:top + size, left:left + size]




class ImageEncoder:
    """One ONNX image tower plus its declared preprocessing; sessions are created once.

    ``manifest_entry`` is the manifest's ``"image"`` block; ``variant`` picks one of its
    ``variants`` (default: the entry's ``default_variant``); ``threads`` sets onnxruntime's
    intra-op threads (None: onnxruntime's default, one per physical core). With
    ``verify=True`` the ONNX file's sha256 must match the manifest, so a half-copied or
    mixed-up directory fails on load instead of producing vectors from the wrong model.
    """

    def __init__(self, model_dir: str | Path, manifest_entry: Mapping[str, Any] | None = None,
                 variant: str | None = None, threads: int | None = None, verify: bool = True):
        self.model_dir = Path(model_dir)
        if manifest_entry is None:
            from .manifest import load_manifest
            manifest_entry = load_manifest(self.model_dir)["image"]
        self.entry = dict(manifest_entry)
        variants = entry_variants(self.entry)
        self.variant = variant or self.entry.get("default_variant") or "fp32"
        if self.variant not in variants:
            raise ImageEncoderError(f"image model has no variant {self.variant!r} "
                                    f"(available: {', '.join(sorted(variants)) or 'none'})")
        vinfo = variants[self.variant]
        self.path = self.model_dir / vinfo["file"]
        if not self.path.is_file():
            raise ImageEncoderError(f"image model file {self.path} is missing; run `cmsearch models build`")
        if verify and vinfo.get("sha256") and sha256_file(self.path) != vinfo["sha256"]:
            raise ImageEncoderError(f"{self.path} does not match the sha256 in the manifest; "
                                    "rebuild with `cmsearch models build --force`")
        self.preprocess_spec = dict(self.entry["preprocess"])
        self.outputs = dict(self.entry.get("outputs") or {"feature": "feature"})
        self.dim = int(self.entry["dim"])
        self.input_name = self.entry.get("input", "pixel_values")

        self.threads = threads
        self.session = onnx_session(self.path, threads)
        have = {o.name for o in self.session.get_outputs()}
        missing = {n for n in self.outputs.values() if n} - have
        if missing:
            raise ImageEncoderError(f"{self.path} lacks outputs {sorted(missing)} named in the manifest")
        self._labels: list[str] | None = None

    @classmethod
    def from_dir(cls, model_dir: str | Path | None = None, **kw) -> "ImageEncoder":
        """The encoder described by ``<model_dir>/manifest.json`` (default: the user's models dir)."""
        from .manifest import default_models_dir, load_manifest

        model_dir = Path(model_dir) if model_dir else default_models_dir()
        return cls(model_dir, load_manifest(model_dir)["image"], **kw)

    # ------------------------------------------------------------------ public API
    @property
    def labels(self) -> list[str]:
        """Class names for the logits (e.g. ImageNet's 1000), empty when the model has none."""
        if self._labels is None:
            fname = (self.entry.get("labels") or {}).get("file")
            self._labels = (json.loads((self.model_dir / fname).read_text(encoding="utf-8"))
                            if fname and (self.model_dir / fname).is_file() else [])
        return self._labels

    def preprocess(self, img: Image.Image) -> np.ndarray:
        """RGB image -> float32 [3, H, W] network input, per the manifest."""
        return preprocess(img, self.preprocess_spec)

    def encode(self, images: Sequence[ImageSource] | ImageSource, batch_size: int = 32, *,
               output: str = "feature", normalize: bool = True) -> np.ndarray:
        """float32 [n, dim] vectors, unit length unless ``normalize=False``.

        Raises :class:`ImageDecodeError` for the first input that cannot be decoded; use
        :meth:`encode_many` to keep going past bad inputs.
        """
        res = self.encode_many(images, batch_size, output=output, normalize=normalize, _raise=True)
        return res.features

    def encode_many(self, images: Sequence[ImageSource] | ImageSource, batch_size: int = 32, *,
                    output: str = "feature", normalize: bool = True,
                    names: Sequence[str] | None = None, _raise: bool = False) -> EncodeResult:
        """Encode what decodes, report what does not (one error per bad input, with its index)."""
        items = _as_list(images)
        if names is not None and len(names) != len(items):
            raise ValueError(f"{len(names)} names for {len(items)} images")
        out_name = self.outputs.get(output)
        if not out_name:
            raise ImageEncoderError(f"image model has no {output!r} output (has {sorted(self.outputs)})")
        logit_name = self.outputs.get("logits")
        feats, logits, ok, errors = encode_in_batches(
            items, lambda src, name: self.preprocess(load_image(src, name=name)),
            lambda x: self._run(x, out_name, logit_name), batch_size, names=names, raise_first=_raise)

        f = np.concatenate(feats) if feats else np.zeros((0, self._out_dim(output)), np.float32)
        if normalize:
            f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
        lg = None
        if logit_name:
            lg = np.concatenate(logits) if logits else np.zeros((0, int(self.entry.get("num_classes", 0))),
                                                               np.float32)
        return EncodeResult(f.astype(np.float32, copy=False), lg, np.asarray(ok, dtype=np.int64), errors)

    def encode_arrays(self, pixels: np.ndarray, *, output: str = "feature") -> tuple[np.ndarray, np.ndarray | None]:
        """Run already preprocessed float32 [n, 3, H, W] input; returns raw (feature, logits)."""
        return self._run(np.ascontiguousarray(pixels, dtype=np.float32), self.outputs[output],
                         self.outputs.get("logits"))

    # ------------------------------------------------------------------ internals
    def _run(self, x: np.ndarray, out_name: str, logit_name: str | None):
        names = [out_name] + ([logit_name] if logit_name else [])
        res = self.session.run(names, {self.input_name: x})
        return res[0].astype(np.float32, copy=False), (res[1] if logit_name else None)

    def _out_dim(self, output: str) -> int:
        dims = self.entry.get("output_dims") or {}
        return int(dims.get(output, self.dim))

    def __repr__(self) -> str:
        return (f"ImageEncoder({self.entry.get('name')!r}, variant={self.variant!r}, dim={self.dim}, "
                f"threads={self.threads})")


def encode_in_batches(sources: Sequence[Any], prepare, run, batch_size: int = 32, *,
                      names: Sequence[str] | None = None, raise_first: bool = False
                      ) -> tuple[list[np.ndarray], list[np.ndarray], list[int], list[ImageDecodeError]]:
    """The one decode-and-batch loop: ``prepare(source, name)`` -> network input, ``run(stacked)`` ->
    (features, logits or None) per batch of ``batch_size``.  A source that cannot be prepared is
    its own :class:`ImageDecodeError` (with ``index``) and the rest are encoded; ``raise_first``
    raises the first one instead.  Returns the per-batch features and logits, the positions that
    encoded, and the errors."""
    feats: list[np.ndarray] = []
    logits: list[np.ndarray] = []
    ok: list[int] = []
    errors: list[ImageDecodeError] = []
    batch: list[np.ndarray] = []
    batch_idx: list[int] = []

    def flush() -> None:
        if not batch:
            return
        f, lg = run(np.stack(batch))
        feats.append(f)
        if lg is not None:
            logits.append(lg)
        ok.extend(batch_idx)
        batch.clear()
        batch_idx.clear()

    for i, src in enumerate(sources):
        name = names[i] if names is not None else None
        try:
            x = prepare(src, name)
        except ImageDecodeError as err:
            if raise_first:
                raise
            err.index = i
            errors.append(err)
            continue
        except Exception as exc:  # noqa: BLE001 - any per-item failure is that item's error
            err = ImageDecodeError(name or describe_source(src), f"{type(exc).__name__}: {exc}")
            if raise_first:
                raise err from exc
            err.index = i
            errors.append(err)
            continue
        batch.append(x)
        batch_idx.append(i)
        if len(batch) >= batch_size:
            flush()
    flush()
    return feats, logits, ok, errors


def _as_list(images: Iterable[ImageSource] | ImageSource) -> list:
    if isinstance(images, (str, bytes, bytearray, memoryview, Image.Image)) or hasattr(images, "__fspath__"):
        return [images]
    return list(images)
