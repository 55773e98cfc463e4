"""The ONNX Runtime runner refuses a GPU provider that silently fell back to the CPU."""
from __future__ import annotations

import pytest

from mspn.errors import MSPNError
from mspn.runtime import onnxruntime_backend
from mspn.runtime.manifest import Manifest


class CPUOnlySession:
    """Stand-in for an InferenceSession whose CUDA provider could not be created (no GPU here):
    ONNX Runtime then silently keeps only the CPU provider."""

    def get_providers(self):
        return ["CPUExecutionProvider"]


def test_silent_cpu_fallback_of_a_gpu_provider_is_refused(tiny, monkeypatch):
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    asked = {}

    def load_session(source, providers, **kwargs):
        asked["providers"] = providers
        return CPUOnlySession()
    monkeypatch.setattr(onnxruntime_backend, "load_session", load_session)
    runner = onnxruntime_backend.build_runner(Manifest.load(tiny["model"]), "rollout", "fp32", provider="cuda")
    with pytest.raises(MSPNError, match="onnxruntime fell back to CPUExecutionProvider although "
                                        "CUDAExecutionProvider was asked for"):
        runner.activate()
    assert asked["providers"][0][0] == "CUDAExecutionProvider" and not runner.is_active


def test_missing_gpu_provider_names_the_extra(tiny):
    runner = onnxruntime_backend.build_runner(Manifest.load(tiny["model"]), "rollout", "fp32", provider="cuda")
    with pytest.raises(MSPNError, match=r"has no CUDAExecutionProvider .*pip install 'mspn\[gpu\]'"):
        runner.activate()
