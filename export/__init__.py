"""ONNX export of MSPN: wrappers, exporter, verification, reduced precision."""
