"""fp16 and int8 model folders load and predict through Predictor on both CPU backends."""
from __future__ import annotations

import numpy as np
import pytest

from mspn.runtime import Predictor


@pytest.fixture(scope="module")
def variant_folder(tmp_path_factory):
    """A micro model folder with fp32, fp16 and int8 graphs (TorchScript exporter: the fast one)."""
    from mspn.export.pipeline import ExportOptions, export_model
    from tests.runtime.runtime_ckpt import make_checkpoint

    root = tmp_path_factory.mktemp("variants")
    ckpt = make_checkpoint(root / "micro.pt", "micro")
    export_model(ExportOptions(ckpt=str(ckpt), out=str(root / "model"), exporter="torchscript",
                               variants=("fp32", "fp16", "int8"), max_batch=2, progress=False))
    return root / "model"


@pytest.fixture(scope="module")
def micro_clips() -> np.ndarray:
    rng = np.random.default_rng(3)
    x = rng.random((2, 3, 1, 16, 16), dtype=np.float32) * 0.2
    for t in range(3):
        x[:, t, 0, 4:10, 2 + 2 * t:8 + 2 * t] = 0.9
    return x


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("variant", ["fp16", "int8"])
def test_variant_predicts_close_to_fp32(variant_folder, micro_clips, backend, variant):
    with Predictor.load(variant_folder, backend=backend, variant="fp32", threads=1) as fp32:
        reference = fp32.predict(micro_clips)
    with Predictor.load(variant_folder, backend=backend, variant=variant, threads=1) as predictor:
        assert predictor.variant == variant
        future = predictor.predict(micro_clips)
        session = predictor.stream()
        for t in range(micro_clips.shape[1]):
            session.push(micro_clips[:, t])
        streamed = session.rollout(predictor.horizon)
    assert future.shape == reference.shape and future.dtype == np.float32 and np.isfinite(future).all()
    mse = float(((future - reference) ** 2).mean())
    psnr = 10 * np.log10(1.0 / max(mse, 1e-20))
    # fp16 rounds at ~1e-3; int8 at 1/255 of each activation's range (a random-weight micro model)
    assert psnr > (50.0 if variant == "fp16" else 25.0), psnr
    assert not np.array_equal(future, reference)  # the variant's own arithmetic ran, not fp32's
    # int8: the rollout is the int8 step graph unrolled, but backends fuse the two graphs differently
    np.testing.assert_allclose(streamed, future, atol=5e-2 if variant == "int8" else 1e-3)


def test_openvino_runs_the_nncf_model_only_when_the_export_wrote_one(variant_folder):
    """--openvino-int8 auto tried NNCF (installed here); whether its model met the budget on this
    random-weight micro model (synthetic clips) or not, the folder, the record and the runner
    agree. (The miss path on its own: tests/export/test_openvino_int8.py.)"""
    import json

    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    manifest = json.loads((variant_folder / "manifest.json").read_text())
    record = manifest["verification"]["variants"]["int8"]["openvino"]
    assert record["requested"] == "auto" and record["nncf"]["tries"] >= 1
    assert (variant_folder / "openvino").exists() == (record["method"] == "nncf")
    if record["method"] == "qdq":
        missed = [g for g, r in record["nncf"]["budget"].items() if not r["meets"]]
        if missed:
            assert record["reason"].startswith("NNCF's int8 misses the accuracy budget run by OpenVINO: ")
            assert all(f"{g} " in record["reason"] for g in missed)
        else:  # within the budget, but OpenVINO runs the QDQ graph more accurately
            worst = {m: min(r["min_psnr"] for r in figures.values())
                     for m, figures in (("nncf", record["nncf"]["budget"]), ("qdq", record["qdq_budget"]))}
            assert worst["nncf"] < worst["qdq"]
            assert record["reason"].startswith("NNCF's int8 meets the budget but OpenVINO runs the QDQ graph "
                                               f"more accurately ({worst['nncf']:.2f} vs {worst['qdq']:.2f} dB")
        assert not any(name.startswith("openvino/") for name in manifest["files"])
        assert not any("openvino" in manifest["graphs"][g]["int8"] for g in ("step", "rollout"))
    with Predictor.load(variant_folder, backend="openvino", variant="int8", threads=1) as predictor:
        assert predictor.rollout_runner.int8_method == predictor.step_runner.int8_method == record["method"]
