"""`mspn bench` on a micro model folder: report structure, finite parity within tolerance, the
one-line errors. Short runs; no timing is asserted (benchmarks are programs, not tests)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mspn.bench.flops import ceiling_flops, ceiling_model, count_flops
from mspn.bench.stats import paired_ratios, parity, summarize
from mspn.cli import main
from mspn.errors import MSPNError
from mspn.options import BenchOptions
from mspn.runtime.parity import PSNR_CAP

FAST = dict(runs=2, warmup=0, stream_runs=1, max_seconds=0.5, clips=2)


@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> dict:
    """A micro checkpoint (random weights whose predictions move) and its folder from the real
    exporter (TorchScript, fp32 only, dynamic batch 1..2)."""
    from mspn.export.pipeline import ExportOptions, export_model
    from tests.runtime.runtime_ckpt import make_checkpoint

    root = tmp_path_factory.mktemp("bench")
    ckpt = make_checkpoint(root / "micro.pt", "micro")
    export_model(ExportOptions(ckpt=str(ckpt), out=str(root / "model"), exporter="torchscript",
                               max_batch=2, progress=False))
    return {"ckpt": ckpt, "model": root / "model", "root": root}


@pytest.fixture(scope="module")
def report(micro) -> dict:
    from mspn.bench.run import run_bench

    path = micro["root"] / "out" / "bench.json"
    returned = run_bench(BenchOptions(str(micro["model"]), backends="torch,onnxruntime,openvino",
                                      variants="fp32,int8,bf16", ckpt=str(micro["ckpt"]), report=str(path),
                                      profile=True, **FAST), log=lambda *a: None)
    written = json.loads(path.read_text())
    assert written["results"] == json.loads(json.dumps(returned["results"]))
    return written


def _entry(report, backend, variant):
    return next(e for e in report["results"] if (e["backend"], e["variant"]) == (backend, variant))


def test_report_structure(report):
    assert report["format"] == "mspn-bench" and report["version"] == 1
    assert report["model"]["context"] == 3 and report["model"]["horizon"] == 2
    assert report["reference"]["name"].startswith("torch/fp32")
    assert report["settings"]["threads"] >= 1
    for backend in ("torch", "onnxruntime", "openvino"):
        e = _entry(report, backend, "fp32")
        assert e["status"] == "ok", e.get("reason")
        for key in ("p50", "p90", "p99", "mean", "min", "max"):
            assert e["rollout"][key] > 0
        assert e["rollout"]["min"] <= e["rollout"]["p50"] <= e["rollout"]["p99"] <= e["rollout"]["max"]
        assert e["throughput_fps"] > 0 and e["cold_start_s"] > 0 and e["peak_rss_mb"] > 0
        assert e["stream"]["push"]["n"] == 3 and e["stream"]["closed_step"]["n"] == 2
        # one paired rollout per streaming session; the overhead is their median
        pairs = e["stream"]["overhead_pairs"]
        assert len(pairs) == e["stream"]["repetitions"] and e["stream"]["overhead_vs_rollout"] == np.median(pairs)
        # the ceiling is measured before and after the model, the faster kept
        assert e["ceiling"]["status"] == "ok" and e["ceiling"]["gflops"] == max(e["ceiling"]["gflops_measured"])
        assert len(e["ceiling"]["gflops_measured"]) == 2
        assert 0 < e["efficiency"]["fraction_of_ceiling"]
    # the rollout graph runs context + horizon - 1 steps of the step graph's convolutions
    flops = report["flops"]
    assert flops["rollout"]["uncounted"] == 0
    assert flops["rollout"]["flops"] == flops["step"]["flops"] * (3 + 2 - 1)


def test_ratios_are_paired_against_torch(report):
    for backend in ("onnxruntime", "openvino"):
        ab = _entry(report, backend, "fp32")["vs_torch"]
        assert ab["n"] == FAST["runs"] and ab["reference"]["n"] == ab["candidate"]["n"] == ab["n"]
        assert ab["median_of_pairs"] > 0
    assert "vs_torch" not in _entry(report, "torch", "fp32")


def test_parity_is_finite_and_within_tolerance(report):
    for backend in ("onnxruntime", "openvino"):
        e = _entry(report, backend, "fp32")
        par = e["parity"]
        assert par["finite"]
        assert len(par["per_step"]["max_abs"]) == 2 and len(par["per_step"]["psnr"]) == 2
        assert par["max_abs"] < 1e-4
        assert par["min_psnr"] > 60
        assert e["stream"]["vs_rollout_max_abs"] < 1e-4  # push x3 + rollout(2) == rollout graph
        acc = e["accuracy"]
        assert acc["status"] == "ok" and len(acc["ssim_per_step"]) == 2
        assert all(np.isfinite(acc["ssim_per_step"]))


def test_every_combination_has_a_line(report):
    seen = {(e["backend"], e["variant"]) for e in report["results"]}
    assert seen == {(b, v) for b in ("torch", "onnxruntime", "openvino") for v in ("fp32", "int8", "bf16")}
    for e in report["results"]:
        if e["status"] != "ok":
            assert e["status"] == "skipped" and e["reason"]
    assert "no int8 graphs" in _entry(report, "onnxruntime", "int8")["reason"]
    bf16 = _entry(report, "openvino", "bf16")
    assert bf16["status"] == "ok" or "no bf16 units" in bf16["reason"]
    assert "fp32 only" in _entry(report, "torch", "int8")["reason"]


def test_profile_names_the_ops(report):
    prof = _entry(report, "onnxruntime", "fp32")["profile"]
    assert prof["status"] == "ok" and prof["by_op"][0]["seconds"] > 0
    assert any("Conv" in op for op in prof["optimized_op_counts"])
    assert _entry(report, "openvino", "fp32")["profile"]["status"] == "ok"


def test_charts_and_table(report, micro):
    for chart in report["charts"]:
        assert Path(chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from mspn.bench.report import markdown_table
    table = markdown_table(report)
    assert "| onnxruntime | fp32 |" in table and "onnxruntime/int8: skipped" in table


def test_cli_runs_and_refuses_bad_input(micro, tmp_path, capsys):
    out = tmp_path / "b.json"
    code = main(["bench", "--model", str(micro["model"]), "--backends", "onnxruntime",
                 "--variants", "fp32", "--runs", "1", "--warmup", "0", "--stream-runs", "1",
                 "--clips", "1", "--max-seconds", "0.1", "--no-charts", "--report", str(out)])
    assert code == 0 and json.loads(out.read_text())["results"][0]["status"] == "ok"
    # no checkpoint: the fp32 ONNX Runtime output becomes the reference, and torch says why not
    data = json.loads(out.read_text())
    assert data["reference"]["name"].startswith("onnxruntime/fp32")
    capsys.readouterr()
    assert main(["bench", "--model", str(micro["model"]), "--backends", "onnx", "--report", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--backends: unknown onnx" in err
    assert main(["bench", "--model", str(tmp_path / "nothing"), "--report", str(out)]) == 1  # during the run
    assert "model folder not found" in capsys.readouterr().err


def test_bad_batch_and_foreign_checkpoint(micro, tmp_path):
    from mspn.bench.run import run_bench
    from tests.runtime.runtime_ckpt import make_checkpoint

    with pytest.raises(MSPNError, match="outside the model folder's batch range 1..2"):
        run_bench(BenchOptions(str(micro["model"]), backends="onnxruntime", batch=3, report=str(tmp_path / "r.json")))
    tiny = make_checkpoint(tmp_path / "tiny.pt", "tiny")
    with pytest.raises(MSPNError, match="is not the model folder's"):
        run_bench(BenchOptions(str(micro["model"]), ckpt=str(tiny), report=str(tmp_path / "r.json")))


# --- pieces --------------------------------------------------------------------------------------

def test_summarize_and_ratios():
    s = summarize([0.001 * v for v in range(1, 101)])
    assert s["n"] == 100 and s["min"] == pytest.approx(1) and s["max"] == pytest.approx(100)
    assert s["p50"] == pytest.approx(50.5) and s["p90"] == pytest.approx(90.1)
    r = paired_ratios([2.0, 4.0, 6.0], [1.0, 1.0, 2.0])
    assert r["median_of_pairs"] == pytest.approx(3.0) and r["of_medians"] == pytest.approx(4.0)
    assert paired_ratios([1.0], [])["n"] == 0


def test_parity_per_step():
    ref = np.zeros((2, 3, 1, 4, 4), np.float32)
    out = ref.copy()
    out[:, 1] += 0.1
    out[0, 2, 0, 0, 0] = 1.0
    p = parity(out, ref)
    assert p["per_step"]["max_abs"] == pytest.approx([0.0, 0.1, 1.0])
    # the one PSNR rule of export, runtime and bench: identical frames read PSNR_CAP
    assert p["per_step"]["psnr"][0] == PSNR_CAP and p["per_step"]["psnr"][1] == pytest.approx(20.0, abs=1e-4)
    assert p["min_psnr"] < p["per_step"]["psnr"][1]
    out[1, 0, 0, 0, 0] = np.nan
    assert parity(out, ref)["finite"] is False


def test_flops_of_step_graph_match_the_torch_modules(micro):
    """Counted from the ONNX step graph == the MACs of every Conv2d PyTorch runs in one step."""
    import torch

    from mspn.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(micro["ckpt"])
    model = checkpoint.build_model()
    macs = []

    def hook(module, inputs, output):
        macs.append(output.numel() * module.in_channels * module.kernel_size[0] * module.kernel_size[1])
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(hook)
    with torch.no_grad():
        model.predict_levels(model.init_state(1, 16, 16, torch.zeros(())))
    assert count_flops(micro["model"] / "step.onnx")["flops"] == 2 * sum(macs)


@pytest.mark.parametrize("variant", ["fp32", "fp16", "int8"])
def test_ceiling_models_run(tmp_path, variant):
    import onnxruntime as ort

    path = ceiling_model(tmp_path / f"c-{variant}.onnx", variant)
    assert count_flops(path)["flops"] == ceiling_flops()
    x = np.random.default_rng(0).random((1, 256, 32, 32), np.float32)
    y = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert y.shape == x.shape and np.isfinite(y).all()


def test_report_ends_with_a_recommendation_and_the_cpu_capabilities(report):
    rec = report["recommendation"]
    assert rec["budget"] == {"psnr_db": 40.0, "ssim_drop": 0.005}
    ok = [e for e in report["results"] if e["status"] == "ok" and e["backend"] != "torch"
          and e["parity"]["min_psnr"] >= 40.0]
    if rec["status"] == "ok" and rec["ranked_by"] == "rollout p50":
        assert rec["rollout_p50_ms"] == min(e["rollout"]["p50"] for e in ok)
    elif rec["status"] == "ok":
        assert rec["vs_torch"] == max(e["vs_torch"]["median_of_pairs"] for e in ok)
    from mspn.bench.report import markdown_table
    table = markdown_table(report)
    assert "Recommendation:" in table and "capabilities:" in table
    assert set(report["machine"]["isa"]) <= {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16",
                                             "amx_int8", "avx_vnni"}


def _fake_entry(backend, variant, p50, min_psnr, ssim):
    return {"status": "ok", "backend": backend, "variant": variant, "rollout": {"p50": p50},
            "parity": {"finite": True, "min_psnr": min_psnr},
            "accuracy": {"status": "ok", "ssim_per_step": ssim}, "vs_torch": {"median_of_pairs": 10.0 / p50}}


def test_recommend_picks_the_fastest_within_budget():
    from mspn.bench.run import recommend

    budget = {"psnr_db": 40.0, "ssim_drop": 0.005}
    reference = {"ssim_per_step": [0.8, 0.7]}
    entries = [_fake_entry("torch", "fp32", 10.0, 200.0, [0.8, 0.7]),
               _fake_entry("onnxruntime", "int8", 1.0, 35.0, [0.8, 0.7]),     # fastest, PSNR too low
               _fake_entry("openvino", "int8", 2.0, 45.0, [0.8, 0.69]),       # SSIM drops 0.01
               _fake_entry("openvino", "fp32", 4.0, 120.0, [0.8, 0.7]),
               _fake_entry("onnxruntime", "fp32", 5.0, 120.0, [0.8, 0.7])]
    rec = recommend(entries, reference, budget)
    assert (rec["status"], rec["backend"], rec["variant"]) == ("ok", "openvino", "fp32")
    assert rec["vs_torch"] == 2.5 and rec["ranked_by"] == "A/B ratio to PyTorch eager"
    del entries[3]["vs_torch"]  # without every ratio: by p50
    assert recommend(entries, reference, budget)["ranked_by"] == "rollout p50"
    assert any("onnxruntime/int8: min per-step PSNR 35.0" in r for r in rec["outside_budget"])
    assert any("openvino/int8: SSIM -0.0100" in r for r in rec["outside_budget"])
    none = recommend(entries[:3], reference, budget)
    assert none["status"] == "none" and "no measured" in none["reason"]


def test_openvino_int8_rows_name_the_model_they_ran():
    """The worker records the openvino runner's int8_method (nncf: the folder's OpenVINO model,
    qdq: the ONNX graph); the table's variant cell shows it."""
    from mspn.bench.report import variant_label

    assert variant_label({"variant": "int8", "int8_method": "nncf"}) == "int8 (nncf)"
    assert variant_label({"variant": "int8", "int8_method": "qdq"}) == "int8 (qdq)"
    assert variant_label({"variant": "fp32", "int8_method": None}) == "fp32"
