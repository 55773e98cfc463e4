"""The accuracy budget of fp16/int8 variants: the greedy mixed-precision search on a graph with one
known-sensitive block, the trained tiny model's variants within budget, and refusals that say what
was achieved."""
from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mspn.data.synth import write_synthetic
from mspn.errors import MSPNError
from mspn.export import budget
from mspn.export.pipeline import ExportOptions, export_model
from mspn.export.precision import CALIBRATION_METHODS, block_of_weight, graph_blocks, to_int8
from mspn.export.verify import ort_session
from tests.export.micro import save_scaled_micro_checkpoint

SENSITIVE = "levels.0.predict"


def test_block_of_weight_groups_stages_and_single_convs():
    assert block_of_weight("model.levels.0.gates.encoders.1.res_in.conv1.weight") == "levels.0.gates.encoders.1"
    assert block_of_weight("model.levels.1.gates.decoders.0.merge.weight") == "levels.1.gates.decoders.0"
    assert block_of_weight("model.levels.0.predict.weight") == "levels.0.predict"
    assert block_of_weight("levels.2.gates.in_conv.weight") == "levels.2.gates.in_conv"
    assert block_of_weight("onnx::Conv_12") is None
    assert block_of_weight("model.levels.0.predict.bias") is None


def _conv(name: str, x: str, y: str, weight: np.ndarray) -> tuple:
    w = numpy_helper.from_array(weight.astype(np.float32), f"model.{name}.weight")
    b = numpy_helper.from_array(np.zeros(weight.shape[0], np.float32), f"model.{name}.bias")
    node = helper.make_node("Conv", [x, w.name, b.name], [y], name=f"{name}/conv", pads=[1, 1, 1, 1])
    return node, [w, b]


def _three_block_graph(path) -> None:
    """x (N, 4, 8, 8) -> in_conv -> merge_higher -> predict -> y (N, 1, 8, 8).

    predict is the sensitive block: its weights span a huge range - 100 on an input channel that
    is always zero (merge_higher's channel 0 has zero weights), about 0.3 on the ones that carry
    the signal - so per-channel int8 (scale 100 / 127) rounds the signal's weights to 0 or 0.79."""
    rng = np.random.default_rng(0)
    first = rng.normal(0, 0.3, (4, 4, 3, 3))
    middle = rng.normal(0, 0.3, (4, 4, 3, 3))
    middle[0] = 0.0
    last = rng.normal(0, 0.3, (1, 4, 3, 3))
    last[:, 0] = 100.0
    nodes, inits = [], []
    for name, x, y, w in (("levels.0.gates.in_conv", "x", "a", first),
                          ("levels.0.gates.merge_higher", "a", "b", middle),
                          (SENSITIVE, "b", "y", last)):
        node, params = _conv(name, x, y, w)
        nodes.append(node)
        inits += params
    graph = helper.make_graph(nodes, "three_blocks",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_search_keeps_the_sensitive_block_in_float(tmp_path):
    src = tmp_path / "fp32.onnx"
    _three_block_graph(src)
    rng = np.random.default_rng(1)
    feeds = [{"x": rng.random((1, 4, 8, 8), dtype=np.float32)} for _ in range(8)]
    held_x = rng.random((6, 4, 8, 8), dtype=np.float32)
    reference = ort_session(src).run(["y"], {"x": held_x})[0]
    # (N, T=1, C, H, W): one "step"; no ground truth, so only the PSNR part of the budget applies
    held = budget.HeldOut(held_x, reference[:, None], None, {"source": "test"})
    rule = budget.Budget(psnr_db=15.0)  # int8 everywhere: below 0 dB; predict float: ~20 dB
    blocks = graph_blocks(src)
    assert list(blocks) == ["levels.0.gates.in_conv", "levels.0.gates.merge_higher", SENSITIVE]

    def quantize(method, float_blocks):
        dst = tmp_path / f"{method}-{'-'.join(float_blocks) or 'all'}.onnx"
        to_int8(src, dst, feeds, method, float_blocks)
        return dst

    def evaluate(path):
        return budget.figures(ort_session(path).run(["y"], {"x": held_x})[0][:, None], held, rule)

    plan = budget.search_int8_plan(quantize, evaluate, list(blocks), ("MinMax",))
    assert plan["ok"]
    assert plan["float_blocks"] == [SENSITIVE]
    assert plan["calibration_methods"]["MinMax"]["min_psnr"] < rule.psnr_db  # int8 everywhere misses
    assert plan["figures"]["min_psnr"] >= rule.psnr_db
    gains = {b: s["gain_db"] for b, s in plan["sensitivity"].items()}
    assert max(gains, key=gains.get) == SENSITIVE
    # the kept-float block really is float: its convolution has no quantized weight
    model = onnx.load(str(quantize("MinMax", (SENSITIVE,))))
    dequantized = {n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    assert not any(name.startswith(f"model.{SENSITIVE}.weight") for name in dequantized)
    assert any(name.startswith("model.levels.0.gates.in_conv.weight") for name in dequantized)


def test_search_returns_blocks_the_greedy_pass_kept_for_nothing_to_int8():
    # A plan's worst-step PSNR as a known function of its float32 blocks: A matters alone, C only
    # together with A, B a little alone. Greedy (by gain alone: A, B, C) needs all three to reach
    # 40 dB; B is not needed once C is there, so the prune pass must give B back to int8.
    def psnr(float_blocks):
        kept = set(float_blocks)
        return 30 + 6 * ("A" in kept) + 1 * ("B" in kept) + 5 * ({"A", "C"} <= kept)

    tried = []

    def evaluate(float_blocks):
        tried.append(tuple(sorted(float_blocks)))
        value = psnr(float_blocks)
        return {"meets": value >= 40, "min_psnr": value, "worst_ssim_delta": 0.0}

    plan = budget.search_int8_plan(lambda _method, float_blocks: float_blocks, evaluate,
                                   ["A", "B", "C", "D"], ("MinMax",))
    assert plan["ok"] and sorted(plan["float_blocks"]) == ["A", "C"]
    assert plan["returned_to_int8"] == ["B"] and plan["figures"]["min_psnr"] == 41
    assert ("A", "B", "C") in tried and ("A", "C") in tried  # the greedy plan, then the pruned one
    assert plan["tries"] == len(set(tried))
    # without the prune pass (NNCF's search, which competes on accuracy) the greedy plan is kept
    greedy = budget.search_int8_plan(lambda _method, float_blocks: float_blocks, evaluate,
                                     ["A", "B", "C", "D"], ("MinMax",), prune=False)
    assert greedy["float_blocks"] == ["A", "B", "C"] and greedy["returned_to_int8"] == []
    assert greedy["figures"]["min_psnr"] == 42
    lines = budget.summary_lines({"verification": {
        "budget": {"psnr_db_vs_fp32_every_step": 40, "ssim_drop_vs_fp32_every_step": 0.005,
                   "clips": {"clips": 4, "source": "test"}},
        "variants": {"int8": {"budget": {"plan": plan}}}}})
    assert any("float32 blocks: " in line and "back to int8 after the greedy pass: B" in line for line in lines)


def test_search_reports_the_best_it_achieved_when_nothing_meets_the_budget(tmp_path):
    src = tmp_path / "fp32.onnx"
    _three_block_graph(src)
    x = np.random.default_rng(2).random((4, 4, 8, 8), dtype=np.float32)
    held = budget.HeldOut(x, ort_session(src).run(["y"], {"x": x})[0][:, None], None, {})

    def quantize(method, float_blocks):
        dst = tmp_path / "q.onnx"
        to_int8(src, dst, [{"x": x[:1]}], method, float_blocks)
        return dst

    def evaluate(path):
        out = ort_session(path).run(["y"], {"x": x})[0][:, None]
        return budget.figures(out, held, budget.Budget(psnr_db=199.0))

    blocks = ["levels.0.gates.in_conv", "levels.0.gates.merge_higher", SENSITIVE]
    plan = budget.search_int8_plan(quantize, evaluate, blocks, ("MinMax",))
    assert not plan["ok"]
    assert len(plan["float_blocks"]) <= 2  # at least one block stays int8
    assert 10 < plan["figures"]["min_psnr"] < 199


# --- the trained tiny model (session fixture trained_tiny, tests/conftest.py) ------------------------

def _manifest(folder) -> dict:
    return json.loads((folder / "manifest.json").read_text())


@pytest.mark.parametrize("variant", ["fp16", "int8"])
def test_trained_tiny_variants_meet_the_budget_at_every_step(trained_tiny, variant):
    verification = _manifest(trained_tiny["model"])["verification"]
    rule = verification["budget"]
    assert rule["psnr_db_vs_fp32_every_step"] == 40.0 and rule["ssim_drop_vs_fp32_every_step"] == 0.005
    assert rule["clips"]["clips"] == 16 and "test split" in rule["clips"]["source"]
    check = verification["variants"][variant]["budget"]
    for graph in ("step", "rollout"):
        figures = check[graph]
        assert len(figures["psnr_vs_fp32"]) == 5
        assert min(figures["psnr_vs_fp32"]) >= 40.0
        assert min(figures["ssim_delta"]) >= -0.005
        assert figures["ssim_fp32"] == rule["fp32_ssim"]
        assert figures["meets"]


def test_trained_tiny_int8_records_its_plan(trained_tiny):
    variant = _manifest(trained_tiny["model"])["verification"]["variants"]["int8"]
    plan = variant["budget"]["plan"]
    assert plan["ok"] and plan["calibration_method"] in CALIBRATION_METHODS
    assert set(plan["calibration_methods"]) == set(CALIBRATION_METHODS)
    assert set(plan["float_blocks"]) <= set(plan["blocks"]) and len(plan["float_blocks"]) < len(plan["blocks"])
    if plan["float_blocks"]:  # the search ran: every block measured, the kept ones the most sensitive
        assert set(plan["sensitivity"]) == set(plan["blocks"])
        # greedy order: blocks that meet the budget alone first, then by the PSNR they give
        ranked = sorted(plan["sensitivity"].items(),
                        key=lambda kv: (kv[1]["meets_alone"], kv[1]["min_psnr_with_block_float"]), reverse=True)
        assert {b for b, _ in ranked[:len(plan["float_blocks"])]} == set(plan["float_blocks"])
    assert variant["step"]["settings"]["calibrate_method"] == plan["calibration_method"]
    assert variant["step"]["settings"]["float_blocks"] == sorted(plan["float_blocks"])
    # calibrated on val, measured on test: never the same clips
    assert variant["calibration"]["split"] == "val" and not variant["calibration"]["synthetic"]


# --- refusals (the micro model with random weights: fast) ---------------------------------------------

@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("budget_micro")
    save_scaled_micro_checkpoint(root / "micro.pt")
    write_synthetic(root / "ds", size=(16, 16), channels=1, videos=(2, 2, 4), frames=6)
    return {"ckpt": root / "micro.pt", "data": root / "ds", "root": root}


@pytest.mark.parametrize("variant", ["fp16", "int8"])
def test_a_variant_that_cannot_meet_the_budget_is_refused_with_what_it_achieved(micro, variant):
    """The refused variant is not written; the rest of the folder is (nothing measured is lost), the
    manifest records why, and the command exits 1 with what the variant achieved."""
    out = micro["root"] / f"refused-{variant}"
    manifest = export_model(ExportOptions(
        ckpt=str(micro["ckpt"]), out=str(out), context=2, horizon=3, variants=("fp32", variant),
        data=str(micro["data"]), calib=str(micro["data"]), calib_clips=2, budget_clips=4, budget_db=200.0,
        calib_methods=("MinMax",), exporter="torchscript", progress=False))
    reason = manifest["verification"]["refused"][variant]
    assert reason.startswith(f"{variant} variant not written") and "held-out clips" in reason
    achieved = [float(v) for v in re.findall(r"(\d+\.\d) dB min per-step PSNR vs fp32", reason)]
    assert achieved and all(v < 200.0 for v in achieved)
    assert sorted(p.name for p in out.glob("*.onnx")) == ["rollout.onnx", "step.onnx"]
    assert manifest["spec"]["precisions"] == ["fp32"]
    assert all(set(entry) == {"fp32"} for entry in manifest["graphs"].values())
    assert variant not in manifest["verification"]["variants"]


def test_the_export_command_exits_1_when_a_variant_is_refused(micro, capsys):
    from mspn.cli import main

    out = micro["root"] / "refused-cli"
    code = main(["export", "--ckpt", str(micro["ckpt"]), "--out", str(out), "--context", "2", "--horizon", "3",
                 "--variants", "fp32,fp16", "--data", str(micro["data"]), "--budget-clips", "4",
                 "--budget-db", "200", "--exporter", "torchscript", "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert re.search(rf"error: fp16 variant not written: .* \(wrote {re.escape(str(out))} with fp32 only\)\n$", err)
    assert (out / "manifest.json").is_file() and not (out / "step.fp16.onnx").exists()


def test_unknown_calibration_method_is_one_line_error():
    with pytest.raises(MSPNError, match="--calib-methods: unknown Median"):
        ExportOptions(ckpt="x.pt", out="o", calib_methods="MinMax,Median")
