"""Export OSNet-x0.25 and YOLOv8 models to ONNX / TensorRT, and build Triton repositories."""
