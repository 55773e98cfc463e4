"""TensorRT and the GPU providers of ONNX Runtime.

The GPU tests run only where TensorRT / CUDA exist and skip with the reason elsewhere; they have
NOT run on the development machine (no GPU). benchmarks/gpu_check.sh runs the same checks as a
program on a GPU machine. The compatibility check and the missing-TensorRT message run anywhere.
"""
from __future__ import annotations

import importlib.util
import json
import re
import shutil

import numpy as np
import pytest

from mspn.errors import MSPNError
from mspn.runtime import Manifest, Predictor

HAS_CUDA_PYTHON = importlib.util.find_spec("cuda") is not None and importlib.util.find_spec("cuda.bindings") is not None


def _cuda_devices() -> int:
    if not HAS_CUDA_PYTHON:
        return 0
    from cuda.bindings import runtime as cudart
    err, count = cudart.cudaGetDeviceCount()
    return count if err == cudart.cudaError_t.cudaSuccess else 0


def _ort_cuda() -> bool:
    import onnxruntime
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


HAS_TRT = importlib.util.find_spec("tensorrt") is not None
GPUS = _cuda_devices()
DEVICE = ("an NVIDIA GPU (cuda-python cannot look for one without itself)" if not HAS_CUDA_PYTHON
          else "an NVIDIA GPU (cudaGetDeviceCount found none)")


def _missing(pieces: dict) -> str:
    """'missing: A, B' naming every absent piece, so a GPU machine's run says what to install."""
    return "missing: " + ", ".join(name for name, present in pieces.items() if not present)


_TRT_PIECES = {"TensorRT (tensorrt >= 10, pip install 'mspn[gpu]')": HAS_TRT,
               "cuda-python (pip install 'mspn[gpu]')": HAS_CUDA_PYTHON, DEVICE: GPUS > 0}
_ORT_PIECES = {"onnxruntime-gpu with CUDAExecutionProvider (pip install 'mspn[gpu]', without onnxruntime)": _ort_cuda(),
               "cuda-python (pip install 'mspn[gpu]')": HAS_CUDA_PYTHON, DEVICE: GPUS > 0}
needs_trt = lambda f: pytest.mark.tensorrt(pytest.mark.gpu(_trt_skip(f)))  # noqa: E731
_trt_skip = pytest.mark.skipif(not all(_TRT_PIECES.values()), reason=_missing(_TRT_PIECES))
needs_ort_cuda = lambda f: pytest.mark.gpu(_ort_skip(f))  # noqa: E731
_ort_skip = pytest.mark.skipif(not all(_ORT_PIECES.values()), reason=_missing(_ORT_PIECES))


def test_engine_for_another_compute_capability_or_tensorrt_is_refused(tiny):
    from mspn.runtime.tensorrt_backend import TensorRTRunner

    manifest = Manifest.load(tiny["model"])
    record = {"gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0", "tensorrt_version": "10.3.0"}
    runner = TensorRTRunner(manifest, manifest.graph("step", "fp32"), tiny["model"] / "step.fp32.engine", record)
    runner.check_compatible("10.3.0", {"gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"})
    runner.check_compatible("10.3.0", {"gpu": "NVIDIA H100 PCIe", "compute_capability": "9.0"})  # name differs
    with pytest.raises(MSPNError, match=r"built with TensorRT 10.3.0 but this is TensorRT 10.9.0; rebuild it"):
        runner.check_compatible("10.9.0", {"gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"})
    with pytest.raises(MSPNError, match=r"step.fp32.engine was built for compute capability 9.0 \(NVIDIA H100 80GB "
                                        r"HBM3\) but this GPU has 8.9; build with --hardware-compat .*; rebuild it "
                                        r"with `mspn build-engine`"):
        runner.check_compatible("10.3.0", {"gpu": "NVIDIA L4", "compute_capability": "8.9"})


def _engine(cc: str, level: str | None = None, version: str = "10.3.0") -> dict:
    record = {"gpu": "some GPU", "compute_capability": cc, "tensorrt_version": version}
    return record if level is None else {**record, "hardware_compatibility": level}


@pytest.mark.parametrize("record, version, here, accepted", [
    (_engine("8.6"), "10.3.0", "8.6", True),                       # same capability, any card name
    (_engine("8.6", "none"), "10.3.0", "8.6", True),
    (_engine("8.6"), "10.3.0", "8.9", False),                      # later GPU, plain engine
    (_engine("8.6"), "10.3.0", "8.0", False),
    (_engine("8.6", "ampere_plus"), "10.3.0", "8.9", True),        # later GPU, hardware-compatible
    (_engine("8.6", "ampere_plus"), "10.3.0", "9.0", True),
    (_engine("8.6", "ampere_plus"), "10.3.0", "12.0", True),       # 12.0 > 9.0, compared as numbers
    (_engine("8.6", "ampere_plus"), "10.3.0", "7.5", False),       # before Ampere: never
    (_engine("8.6", "ampere_plus"), "10.4.0", "8.6", False),       # another TensorRT: never
    (_engine("8.6", "same_compute_capability"), "10.3.0", "8.6", False),  # a level this runtime does not know
])
def test_engine_compatibility_decision(record, version, here, accepted):
    from mspn.runtime.tensorrt_backend import engine_incompatibility

    reason = engine_incompatibility(record, version, here)
    assert (reason is None) is accepted, reason
    if not accepted:
        assert here in reason or version in reason or "unknown" in reason


def test_build_engine_has_a_hardware_compat_flag(capsys):
    from mspn.cli import main
    from mspn.options import BuildEngineOptions

    assert BuildEngineOptions.__dataclass_fields__["hardware_compat"].default is False
    with pytest.raises(SystemExit):
        main(["build-engine", "--help"])
    assert re.search(r"--hardware-compat\s+engines that also run on later GPUs", capsys.readouterr().out)


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here: the missing-package message cannot show")
def test_build_engine_without_tensorrt_names_the_extra(tiny, capsys):
    from mspn.cli import main

    assert main(["build-engine", "--model", str(tiny["model"])]) == 1
    err = capsys.readouterr().err
    assert "the TensorRT backend needs the 'gpu' extra (tensorrt is not installed)" in err
    assert err.rstrip().endswith("pip install 'mspn[gpu]'") and len(err.strip().splitlines()) == 1


def test_build_engine_checks_the_profile_before_tensorrt(tiny):
    from mspn.runtime.tensorrt_build import build_engine

    with pytest.raises(MSPNError, match=r"batch profile 4/2/8 \(min/opt/max\) must satisfy min <= opt <= max"):
        build_engine(tiny["model"], batch=(4, 2, 8))
    with pytest.raises(MSPNError, match=r"no int8 rollout graph in this folder"):
        build_engine(tiny["model"], variant="int8")


@pytest.fixture(scope="module")
def engine_folder(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("engines") / "model"
    shutil.copytree(tiny["model"], folder)
    from mspn.runtime.tensorrt_build import build_engine

    build_engine(folder, "fp32", workspace_gib=1, timing_cache=folder.parent / "timing.cache", batch=(1, 2, 4))
    return folder


@needs_trt
def test_tensorrt_engine_recorded_and_matches_onnxruntime(engine_folder, clips):
    raw = json.loads((engine_folder / "manifest.json").read_text())
    for name in ("rollout.fp32.engine", "step.fp32.engine"):
        record = raw["engines"][name]
        assert record["variant"] == "fp32" and record["gpu"] and record["tensorrt_version"]
        assert name in raw["files"]
    with Predictor.load(engine_folder, backend="tensorrt") as trt, Predictor.load(engine_folder) as ort:
        np.testing.assert_allclose(trt.predict(clips), ort.predict(clips), atol=1e-3)
        sessions = [p.stream() for p in (trt, ort)]
        for t in range(5):
            pushed = [s.push(clips[:, t]) for s in sessions]
            np.testing.assert_allclose(pushed[0], pushed[1], atol=1e-3)
        np.testing.assert_allclose(sessions[0].rollout(8), sessions[1].rollout(8), atol=1e-3)
        sessions[0].reset()


@needs_trt
def test_tampered_engine_refused(engine_folder, tmp_path, clips):
    folder = shutil.copytree(engine_folder, tmp_path / "m")
    path = folder / "step.fp32.engine"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(MSPNError, match=r"step.fp32.engine: SHA-256 mismatch"):
        Predictor.load(folder, backend="tensorrt")


@needs_ort_cuda
def test_onnxruntime_cuda_iobinding_stream_matches_cpu(tiny, clips):
    with Predictor.load(tiny["model"], provider="cuda") as gpu, Predictor.load(tiny["model"]) as cpu:
        np.testing.assert_allclose(gpu.predict(clips), cpu.predict(clips), atol=1e-3)
        assert gpu.rollout_runner.session.get_providers()[0] == "CUDAExecutionProvider"
        sessions = [p.stream() for p in (gpu, cpu)]
        assert gpu.step_runner.session.get_providers()[0] == "CUDAExecutionProvider"
        for t in range(5):
            for s in sessions:
                s.push(clips[:, t])
        np.testing.assert_allclose(sessions[0].rollout(6), sessions[1].rollout(6), atol=1e-3)
