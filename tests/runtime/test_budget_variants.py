"""The trained tiny model's fp16 and int8 folders, loaded through Predictor on ONNX Runtime and
OpenVINO, stay within the accuracy budget on held-out clips (the exporter's promise, checked
where users run it). OpenVINO's int8 is the folder's NNCF model (--openvino-int8 auto).
Folder: the session fixture trained_tiny (tests/conftest.py)."""
from __future__ import annotations

import numpy as np
import pytest

from mspn.data.clips import ClipDataset
from mspn.export.budget import DEFAULT_PSNR_DB, DEFAULT_SSIM_DROP, per_step_ssim
from mspn.runtime import Predictor
from mspn.runtime.parity import psnr_from_mse


@pytest.fixture(scope="module")
def heldout(trained_tiny) -> tuple[np.ndarray, np.ndarray]:
    """(context (N, 5, 1, 32, 32), truth (N, 5, 1, 32, 32)) from the test split: never calibrated on."""
    data = ClipDataset(str(trained_tiny["data"]), "test", 10)
    clips = np.stack([np.asarray(data[i], np.float32) for i in range(len(data))])
    return clips[:, :5], clips[:, 5:10]


def _predict(folder, backend: str, variant: str, context: np.ndarray) -> np.ndarray:
    with Predictor.load(folder, backend=backend, variant=variant) as predictor:
        if backend == "openvino" and variant == "int8":  # the folder's NNCF model (export/openvino_int8.py)
            assert predictor.rollout_runner.int8_method == "nncf"
        return np.concatenate([predictor.predict(context[i:i + 8]) for i in range(0, len(context), 8)])


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("variant", ["fp16", "int8"])
def test_variant_meets_the_budget_through_predictor(trained_tiny, heldout, backend, variant):
    if backend == "openvino":
        pytest.importorskip("openvino")
    context, truth = heldout
    fp32 = _predict(trained_tiny["model"], backend, "fp32", context)
    pred = _predict(trained_tiny["model"], backend, variant, context)
    mse = ((pred.astype(np.float64) - fp32) ** 2).mean(axis=(0, 2, 3, 4))
    psnr = [psnr_from_mse(m) for m in mse]
    assert len(psnr) == 5
    assert min(psnr) >= DEFAULT_PSNR_DB, f"{backend}/{variant} per-step PSNR vs fp32 {psnr}"
    ssim_delta = per_step_ssim(pred, truth) - per_step_ssim(fp32, truth)
    assert ssim_delta.min() >= -DEFAULT_SSIM_DROP, f"{backend}/{variant} SSIM vs fp32 {ssim_delta}"
    assert np.abs(pred - fp32).max() > 0  # a reduced-precision graph really ran


def test_openvino_int8_step_loop_meets_the_budget_through_stream_sessions(trained_tiny, heldout):
    """The NNCF step model, looped closed through StreamSession, against the fp32 step loop."""
    pytest.importorskip("openvino")
    context, truth = heldout
    out = {}
    for variant in ("fp32", "int8"):
        with Predictor.load(trained_tiny["model"], backend="openvino", variant=variant) as predictor:
            assert predictor.step_runner.int8_method == (None if variant == "fp32" else "nncf")
            parts = []
            for start in range(0, len(context), 8):
                with predictor.stream() as session:
                    for t in range(context.shape[1]):
                        session.push(context[start:start + 8, t])
                    parts.append(session.rollout(5))
            out[variant] = np.concatenate(parts)
    mse = ((out["int8"].astype(np.float64) - out["fp32"]) ** 2).mean(axis=(0, 2, 3, 4))
    psnr = [psnr_from_mse(m) for m in mse]
    assert min(psnr) >= DEFAULT_PSNR_DB, f"openvino/int8 step loop per-step PSNR vs fp32 {psnr}"
    ssim_delta = per_step_ssim(out["int8"], truth) - per_step_ssim(out["fp32"], truth)
    assert ssim_delta.min() >= -DEFAULT_SSIM_DROP, f"openvino/int8 step loop SSIM vs fp32 {ssim_delta}"
