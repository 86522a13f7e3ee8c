"""Text and image encoders: build-time export to ONNX (models.export, needs torch) and run-time encoders (onnxruntime only)."""
