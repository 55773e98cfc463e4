"""The int8 variant's OpenVINO model (export/openvino_int8.py): NNCF quantizes exactly what the
ONNX int8 plan quantizes, the folder records it next to the QDQ graph's figures, and the option's
refusals. Folder: the session fixture trained_tiny (tests/conftest.py), exported with the default
--openvino-int8 auto (nncf is installed here)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from mspn.errors import MSPNError
from mspn.export import openvino_int8
from mspn.export.budget import DEFAULT_PSNR_DB, DEFAULT_SSIM_DROP
from mspn.export.pipeline import ExportOptions, export_model
from mspn.extras import MissingExtra

pytest.importorskip("openvino")
pytest.importorskip("nncf")


def _manifest(folder) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def test_the_int8_variant_ships_an_nncf_openvino_model_within_the_budget(trained_tiny):
    manifest = _manifest(trained_tiny["model"])
    record = manifest["verification"]["variants"]["int8"]["openvino"]
    assert record["method"] == "nncf" and record["reason"] is None
    for graph in ("step", "rollout"):
        entry = manifest["graphs"][graph]["int8"]["openvino"]
        assert entry == {"file": f"openvino/{graph}.int8.xml", "weights": f"openvino/{graph}.int8.bin",
                         "method": "nncf"}
        assert {entry["file"], entry["weights"]} <= set(manifest["files"])  # hashed like every file
        nncf, qdq = record["nncf"]["budget"][graph], record["qdq_budget"][graph]
        for figures in (nncf, qdq):  # both run by OpenVINO on the held-out clips, side by side
            assert len(figures["psnr_vs_fp32"]) == manifest["horizon"]
            assert figures["min_psnr"] >= DEFAULT_PSNR_DB and figures["worst_ssim_delta"] >= -DEFAULT_SSIM_DROP
            assert figures["meets"]
    plan = manifest["verification"]["variants"]["int8"]["budget"]["plan"]
    assert set(plan["float_blocks"]) <= set(record["nncf"]["float_blocks"])
    # more float32 blocks than the ONNX plan's only when the plan's scope missed the budget
    assert record["nncf"]["plan_scope"]["meets"] == (not record["nncf"]["float_blocks_beyond_plan"])
    assert record["nncf"]["settings"]["step"]["fake_quantize_ops"] > 0
    # the rollout: every FakeQuantize edge of the step model copied into each of its T_ctx + T_pred - 1 steps
    rollout = record["nncf"]["settings"]["rollout"]
    assert rollout["step_edges_unmatched"] == 0 and rollout["step_edges"] > 0
    assert rollout["fake_quantize_inserted"] == rollout["step_edges"] * (manifest["context"] + manifest["horizon"] - 1)


def test_nncf_quantizes_only_what_the_onnx_plan_quantizes(trained_tiny):
    """Every FakeQuantize of the shipped step model feeds an op traced to a node the ONNX plan
    quantizes outside its float32 blocks: the LSTM update (Sigmoid, Tanh, the cell's Mul/Add) and
    the float32 blocks stay float."""
    import onnx
    import openvino as ov

    folder = trained_tiny["model"]
    record = _manifest(folder)["verification"]["variants"]["int8"]["openvino"]["nncf"]
    graph = onnx.load(str(folder / "step.onnx"), load_external_data=False)
    names = {n.name for n in graph.graph.node}
    allowed = openvino_int8.quantized_nodes(graph, record["float_blocks"])
    model = ov.Core().read_model(str(folder / "openvino" / "step.int8.xml"))
    consumers = []
    for op in model.get_ordered_ops():
        if op.get_type_name() == "FakeQuantize":
            consumers += [t.get_node() for t in op.output(0).get_target_inputs()]
    assert consumers
    for node in consumers:
        origin = node.get_friendly_name()
        while origin not in names and "/" in origin:
            origin = origin.rsplit("/", 1)[0]
        assert origin in allowed, (node.get_type_name(), node.get_friendly_name())
    assert not {n.get_type_name() for n in consumers} & {"Sigmoid", "Tanh", "Multiply"}


def test_ignored_ops_leave_out_exactly_the_quantized_nodes(trained_tiny):
    import onnx
    import openvino as ov

    path = trained_tiny["model"] / "step.onnx"
    graph = onnx.load(str(path))
    names = {n.name for n in graph.graph.node}
    quantized = openvino_int8.quantized_nodes(graph, ())
    model = ov.convert_model(str(path))
    ignored = set(openvino_int8.ignored_ops(model, names, quantized))
    ops = {op.get_friendly_name(): op.get_type_name() for op in model.get_ordered_ops()}
    assert {"Sigmoid", "Tanh"} <= {ops[n] for n in ignored}
    kept = {n for n, kind in ops.items() if n not in ignored and kind not in ("Constant", "Parameter", "Result")}
    assert kept and all(n.split("/")[0] in quantized or n in quantized for n in kept)
    assert "Convolution" in {ops[n] for n in kept}


def test_predictions_of_the_nncf_model_differ_from_the_qdq_graph(trained_tiny):
    """The two int8 models are really different models (not one file served twice)."""
    from mspn.runtime import Predictor

    frames = np.random.default_rng(0).random((1, 2, 1, 32, 32), dtype=np.float32)
    outs = {}
    for method in ("nncf", "qdq"):  # the step graphs: faster to compile than the unrolled rollouts
        with Predictor.load(trained_tiny["model"], backend="openvino", variant="int8", int8=method) as predictor, \
                predictor.stream() as session:
            assert predictor.step_runner.int8_method == method
            session.push(frames[:, 0])
            outs[method] = session.push(frames[:, 1])
    assert np.abs(outs["nncf"] - outs["qdq"]).max() > 0


# --- the option -----------------------------------------------------------------------------------

def test_explicit_nncf_without_nncf_is_a_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "nncf", None)  # nncf is installed here: simulate its absence
    with pytest.raises(MissingExtra) as info:
        export_model(ExportOptions(ckpt=str(tmp_path / "x.pt"), out=str(tmp_path / "m"), variants=("fp32", "int8"),
                                   openvino_int8="nncf", progress=False))
    assert str(info.value) == ("--openvino-int8 nncf needs the 'export' extra (nncf is not installed): "
                               "pip install 'mspn[export]'")
    assert not (tmp_path / "m").exists()


def test_auto_without_nncf_falls_back_to_qdq_with_an_info_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "nncf", None)
    lines = []
    assert openvino_int8.resolve_method("auto", lines.append) == "qdq"
    assert lines == ["info: OpenVINO will run the ONNX QDQ int8 graph (nncf not installed; "
                     "pip install 'mspn[export]' for the NNCF OpenVINO int8 model)"]
    assert openvino_int8.resolve_method("qdq") == "qdq"


def test_nncf_without_an_int8_variant_is_a_usage_error():
    with pytest.raises(MSPNError, match="--openvino-int8 nncf: the folder has no int8 variant"):
        ExportOptions(ckpt="x.pt", out="o", variants=("fp32", "fp16"), openvino_int8="nncf")


def test_the_cli_says_it_in_one_line(monkeypatch, tmp_path, capsys):
    from mspn.cli import main

    monkeypatch.setitem(sys.modules, "nncf", None)
    status = main(["export", "--ckpt", str(tmp_path / "x.pt"), "--out", str(tmp_path / "m"),
                   "--variants", "fp32,int8", "--openvino-int8", "nncf"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status != 0
    assert err == ["mspn export: error: --openvino-int8 nncf needs the 'export' extra (nncf is not installed): "
                   "pip install 'mspn[export]'"]


def test_an_nncf_model_that_misses_the_budget_is_not_written(trained_tiny, tmp_path):
    """The miss path, run for real on the trained tiny step graph with a budget nothing meets
    (200 dB): no openvino/ files, no override in the graph entries, the reason recorded."""
    import shutil

    from mspn.export import verify
    from mspn.export.budget import Budget, HeldOut
    from mspn.export.pipeline import _openvino_int8, _Run
    from mspn.export.spec import ExportSpec

    work = Path(shutil.copytree(trained_tiny["model"], tmp_path / "work", ignore=shutil.ignore_patterns(".cache")))
    manifest = _manifest(work)
    spec = ExportSpec.from_manifest(manifest)
    init = dict(np.load(work / "initial_state.npz"))
    context = np.random.default_rng(0).random((2, spec.context, 1, 32, 32), dtype=np.float32)
    step = openvino_int8.compiled_runs(work / "step.onnx")[0]
    reference = verify.run_step_loop(step, init, context, spec.horizon, spec.state_names())
    options = ExportOptions(ckpt="x", out="o", variants=("fp32", "int8"), openvino_int8="nncf")
    run = _Run(bar=_Bar(), work=work, spec=spec, options=options, model=None, init=init, inputs={}, reference={},
               held=HeldOut(context, reference, None, {}), budget=Budget(psnr_db=200.0),
               int8_feeds={"step": verify.record_step_feeds(step, init, context[:1], spec.horizon,
                                                            spec.state_names())})
    record = {"budget": {"plan": manifest["verification"]["variants"]["int8"]["budget"]["plan"]}}
    graphs = {g: {"int8": {"file": f"{g}.int8.onnx"}} for g in ("step", "rollout")}
    shutil.rmtree(work / "openvino")
    _openvino_int8(run, record, graphs)
    out = record["openvino"]
    assert out["method"] == "qdq" and out["reason"].startswith("NNCF's int8 misses the accuracy budget run by "
                                                               "OpenVINO: step ")
    assert out["nncf"]["budget"]["step"]["min_psnr"] < 200.0 and not out["nncf"]["budget"]["step"]["meets"]
    assert graphs == {g: {"int8": {"file": f"{g}.int8.onnx"}} for g in ("step", "rollout")}
    assert not (work / "openvino").exists()
    assert not [p.name for p in work.iterdir() if p.name.startswith(".")]  # no trial folders left


class _Bar:
    def set_postfix_str(self, text):
        pass

    def update(self):
        pass


def test_nncf_is_kept_only_when_at_least_as_accurate_as_the_qdq_graph_on_openvino():
    from mspn.export.pipeline import _less_accurate

    def figures(step, rollout):
        return {"step": {"min_psnr": step}, "rollout": {"min_psnr": rollout}}

    assert _less_accurate(figures(45.2, 45.2), figures(44.4, 44.8)) is None
    assert _less_accurate(figures(41.0, 41.0), None) is None  # OpenVINO could not measure the QDQ graph
    reason = _less_accurate(figures(41.0, 41.3), figures(42.3, 41.6))
    assert reason == ("NNCF's int8 meets the budget but OpenVINO runs the QDQ graph more accurately "
                      "(41.00 vs 41.60 dB min per-step PSNR vs fp32); the more accurate is kept")


def test_auto_ships_nncf_only_when_as_accurate_and_an_explicit_nncf_is_honoured_with_a_note():
    from mspn.export.pipeline import _nncf_verdict

    def figures(step, rollout):
        return {"step": {"min_psnr": step}, "rollout": {"min_psnr": rollout}}

    nncf_behind = {"budget": figures(44.27, 44.5)}
    qdq = figures(44.43, 44.7)
    reason, note = _nncf_verdict("auto", nncf_behind, qdq)
    assert reason.endswith("(44.27 vs 44.43 dB min per-step PSNR vs fp32); the more accurate is kept")
    assert note is None
    reason, note = _nncf_verdict("nncf", nncf_behind, qdq)
    assert reason is None
    assert note == ("NNCF's int8 meets the budget but OpenVINO runs the QDQ graph more accurately "
                    "(44.27 vs 44.43 dB min per-step PSNR vs fp32); NNCF kept: --openvino-int8 nncf")
    assert _nncf_verdict("auto", {"budget": figures(45.0, 45.0)}, qdq) == (None, None)
    missed = {"reason": "NNCF's int8 misses the accuracy budget run by OpenVINO: step 30.0 dB"}
    assert _nncf_verdict("nncf", missed, qdq) == (missed["reason"], None)
