"""Torch-free runtime: runners over ONNX Runtime / OpenVINO / TensorRT, predictor, streams."""
