"""Torch-free runtime: runners over ONNX Runtime / OpenVINO / TensorRT, predictor, streams.

Nothing here imports torch or mspn.models; backends are imported lazily when first used.
"""
from .base import REGISTRY, Runner, make_runner
from .manifest import Manifest
from .predictor import Predictor, StreamSession

__all__ = ["Predictor", "StreamSession", "Manifest", "Runner", "make_runner", "REGISTRY"]
