"""Build-time conversion of pretrained weights to ONNX. Only this package may import torch/transformers."""
