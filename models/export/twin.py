"""Export MobileNetV2 and EfficientNet-Lite0 as ONE image tower whose feature joins both, fp32 and int8.

The backbone choice ``mobilenet_v2+efficientnet_lite0`` (``cmsearch models build --image-backbone``).
Heads trained on the two backbones' features side by side find products better than on either
alone (BENCHMARKS.md, "Concatenated backbones"), but a space has one image tower: one ONNX file, one
preprocessing block, one sha256 in its identity. So the two towers go into one graph rather than
two encoders run side by side: one onnxruntime session per photo query, one decode and resize per
photo, one file whose hash says which features an index holds (an index can never mix vectors of
one tower with another's), and every part of the run time (:mod:`models.image_encoder`,
:mod:`models.space`, train-time int8) works on it unchanged.

The graph has one input ``pixel_values`` [batch, 3, 224, 224] (dynamic batch), preprocessed as
MobileNetV2's block declares (Resize(256) bilinear, CenterCrop(224), ImageNet mean/std). Inside the
graph the Lite0 branch gets its own normalisation back: ``(x * std + mean) * 255`` recovers the
0..255 pixels, then ``(p - 127) / 128`` is what the TensorFlow Lite checkpoint was trained on (with
ImageNet mean/std instead Lite0 loses clearly, see :mod:`.efficientnet`). What the shared
preprocessing does change for Lite0 is the resize: bilinear, where its own block uses bicubic
(TensorFlow's eval crop). Both are antialiased resizes of the same crop; the difference is in the
finest detail, and the bench measures the tower as built (not two towers, each with its own).

Outputs: ``feature`` [batch, 2560] = concat(l2n(f_mobilenet), l2n(f_lite0)) / sqrt(2), unit length,
its cosine the mean of the two towers' cosines (the same join as ``bench_backbones.concat_features``:
normalising each block first keeps one tower's feature scale from outweighing the other's); and
``logits`` [batch, 1000], MobileNetV2's ImageNet classes.

Both weight sources are pinned and recorded (``source.towers``); export parity with torch and int8
(kept only where it clears the same cosine rule) are :func:`.mobilenet.export_backbone`'s.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

from . import efficientnet, mobilenet
from .mobilenet import export_backbone

NAME = "mobilenet_v2+efficientnet_lite0"
# The build checks the image entry's source against PACKAGE/VERSION (MobileNetV2's, the tower the
# logits come from) and every tower's against TOWERS.
PACKAGE, VERSION = mobilenet.PACKAGE, mobilenet.VERSION
TOWERS = {mobilenet.NAME: (mobilenet.PACKAGE, mobilenet.VERSION),
          efficientnet.NAME: (efficientnet.PACKAGE, efficientnet.VERSION)}
FEATURE_DIM = mobilenet.FEATURE_DIM + efficientnet.FEATURE_DIM
NUM_CLASSES = mobilenet.NUM_CLASSES

PREPROCESS = {**mobilenet.PREPROCESS,
              "note": "MobileNetV2's preprocessing for both towers; the graph re-normalises its input for "
                      "the EfficientNet-Lite0 branch: (x * std + mean) * 255, then (p - 127) / 128"}


def _per_channel(values):
    import torch

    return torch.tensor(values, dtype=torch.float32).view(1, 3, 1, 1)


def twin_module(mnv2, lite0):
    """The two towers (torch (feature, logits) modules) as one module from MobileNetV2-preprocessed
    pixels to (joined 2560-d feature, MobileNetV2 logits)."""
    import torch

    m, e = mobilenet.PREPROCESS, efficientnet.PREPROCESS

    class Twin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mnv2, self.lite0 = mnv2, lite0
            self.register_buffer("m_mean", _per_channel(m["mean"]))
            self.register_buffer("m_std", _per_channel(m["std"]))
            self.register_buffer("e_mean", _per_channel(e["mean"]))
            self.register_buffer("e_std", _per_channel(e["std"]))

        def forward(self, pixel_values):
            f_m, logits = self.mnv2(pixel_values)
            pixels = (pixel_values * self.m_std + self.m_mean) / m["rescale"]      # back to 0..255
            f_e, _ = self.lite0((pixels * e["rescale"] - self.e_mean) / self.e_std)
            unit = torch.nn.functional.normalize
            feature = torch.cat([unit(f_m, dim=1, eps=1e-12), unit(f_e, dim=1, eps=1e-12)], dim=1)
            return feature / math.sqrt(2.0), logits

    return Twin().eval()


def torch_tower(work_dir: Path, progress: Callable[[str], None] = print):
    """(the joined tower as a torch module, its manifest ``source`` block naming both weight sources)."""
    mnv2, mnv2_source = mobilenet.torch_tower(work_dir, progress)
    lite0, lite0_source = efficientnet.torch_tower(work_dir, progress)
    source = {"package": PACKAGE, "version": VERSION,
              "towers": {mobilenet.NAME: mnv2_source, efficientnet.NAME: lite0_source}}
    return twin_module(mnv2, lite0), source


def export_image_encoder(out_dir: Path, work_dir: Path, *, calibration_images: Path | None = None,
                         progress: Callable[[str], None] = print) -> dict:
    """Write image.onnx, image.int8.onnx and imagenet_classes.json; return the manifest entry."""
    return export_backbone(
        torch_tower, out_dir, work_dir, name=NAME, title="MobileNetV2 + EfficientNet-Lite0",
        architecture="torchvision MobileNetV2 (IMAGENET1K_V1) and EfficientNet-Lite0 (TensorFlow Lite checkpoint "
                     "converted to PyTorch) in one graph; feature = concat of the two unit features / sqrt(2)",
        preprocess=PREPROCESS, calibration_images=calibration_images, progress=progress,
        feature_dim=FEATURE_DIM, num_classes=NUM_CLASSES)
