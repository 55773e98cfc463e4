"""`mspn export` on the micro config: both exporters, parity, step-loop equivalence, manifest
hashes, fp16/int8 variants, TensorRT pre-flight and the error cases.

Two exports are shared by the module (TorchScript with every precision, dynamo fp32), so the
whole file runs in about a minute on two cores.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from mspn.checkpoint import load_checkpoint
from mspn.cli import main
from mspn.data.synth import write_synthetic
from mspn.errors import MSPNError
from mspn.export import onnx_export, verify
from mspn.export.pipeline import ExportOptions, export_model
from mspn.export.precision import INT8_OP_TYPES
from mspn.export.preflight import preflight
from mspn.export.spec import ExportSpec
from tests.export.micro import save_scaled_micro_checkpoint

CONTEXT, HORIZON = 2, 3


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def ckpt(workdir) -> Path:
    return save_scaled_micro_checkpoint(workdir / "micro.pt")


@pytest.fixture(scope="module")
def dataset(workdir) -> Path:
    root = workdir / "ds16"
    write_synthetic(root, size=(16, 16), channels=1, videos=(2, 2, 2), frames=CONTEXT + HORIZON + 1)
    return root


@pytest.fixture(scope="module")
def ts_folder(workdir, ckpt, dataset) -> Path:
    """TorchScript by fallback (dynamo made to fail), fp32 + fp16 + int8, real data and calibration."""
    out = workdir / "ts"
    real = onnx_export.export_proto

    def dynamo_breaks(module, example, spec, graph, exporter):
        if exporter == "dynamo":
            raise RuntimeError("simulated dynamo failure")
        return real(module, example, spec, graph, exporter)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(onnx_export, "export_proto", dynamo_breaks)
        export_model(ExportOptions(ckpt=str(ckpt), out=str(out), context=CONTEXT, horizon=HORIZON,
                                   variants=("fp32", "fp16", "int8"), data=str(dataset),
                                   calib=str(dataset), calib_clips=2, verify_clips=2, openvino_int8="qdq",
                                   progress=False))
    return out


@pytest.fixture(scope="module")
def dynamo_folder(workdir, ckpt) -> Path:
    out = workdir / "dyn"
    export_model(ExportOptions(ckpt=str(ckpt), out=str(out), context=CONTEXT, horizon=HORIZON,
                               exporter="dynamo", progress=False))
    return out


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _random_clips(batch: int, seed: int = 123) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, CONTEXT, 1, 16, 16), dtype=np.float32)


def _torch_future(ckpt: Path, frames: np.ndarray) -> np.ndarray:
    model = load_checkpoint(ckpt).build_model()
    with torch.no_grad():
        return model.rollout(torch.from_numpy(frames), HORIZON).numpy()


# --- exports ----------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["ts_folder", "dynamo_folder"])
def test_fp32_graphs_match_pytorch_and_each_other(which, request, ckpt):
    folder = request.getfixturevalue(which)
    manifest = _manifest(folder)
    assert manifest["exporter"] == ("torchscript" if which == "ts_folder" else "dynamo")
    frames = _random_clips(3)  # a batch size the tracing never saw
    expected = _torch_future(ckpt, frames)
    assert np.abs(expected).mean() > 0.02, "predictions too small for a meaningful parity check"

    rollout = verify.rollout_outputs(verify.ort_session(folder / "rollout.onnx"), frames)
    assert rollout.shape == (3, HORIZON, 1, 16, 16)
    assert np.abs(rollout - expected).max() < 1e-4

    initial = dict(np.load(folder / "initial_state.npz"))
    assert sorted(initial) == sorted(manifest["state"]["names"])
    step = verify.session_step(verify.ort_session(folder / "step.onnx"))
    looped = verify.run_step_loop(step, initial, frames, HORIZON, manifest["state"]["names"])
    assert np.abs(looped - rollout).max() < 1e-5

    fp32 = manifest["verification"]["fp32"]
    for graph in ("rollout", "step_loop"):
        stats = fp32[graph]["random"]
        assert len(stats["max_abs"]) == len(stats["psnr"]) == HORIZON
        assert 0 <= stats["worst_max_abs"] <= fp32["tolerance_max_abs"] == 1e-4
        assert stats["worst_max_abs"] == max(stats["max_abs"])


def test_recorded_parity_is_reproducible(ts_folder, ckpt):
    """The manifest's figures are what the graphs give on the recorded inputs, not placeholders."""
    manifest = _manifest(ts_folder)
    spec = ExportSpec.from_manifest(manifest)
    frames = np.random.default_rng(spec.verify_seed).random(
        (spec.check_batch(), CONTEXT, 1, 16, 16), dtype=np.float32)
    got = verify.compare(verify.rollout_outputs(verify.ort_session(ts_folder / "rollout.onnx"), frames),
                         _torch_future(ckpt, frames))
    recorded = manifest["verification"]["fp32"]["rollout"]["random"]
    np.testing.assert_allclose(got["max_abs"], recorded["max_abs"], rtol=0, atol=1e-7)
    assert manifest["verification"]["fp32"]["rollout"]["data"]["psnr"]  # real clips checked too
    # int8 calibrates on val, so parity and budget clips come from test (held out)
    assert manifest["verification"]["inputs"]["data"]["split"] == "test"


def test_fallback_is_recorded(ts_folder):
    export = _manifest(ts_folder)["export"]
    for graph in ("rollout", "step"):
        assert export[graph]["exporter"] == "torchscript"
        assert "simulated dynamo failure" in export[graph]["fallback_reason"]


def test_manifest_hashes_and_contract(ts_folder):
    manifest = _manifest(ts_folder)
    on_disk = {p.name for p in ts_folder.iterdir() if p.name != "manifest.json"}
    assert set(manifest["files"]) == on_disk == {
        "rollout.onnx", "step.onnx", "initial_state.npz", "rollout.fp16.onnx", "step.fp16.onnx",
        "rollout.int8.onnx", "step.int8.onnx", "weights.bin", "weights.fp16.bin", "weights.int8.bin"}
    # --openvino-int8 qdq: no OpenVINO model written; OpenVINO runs the QDQ graph
    openvino = manifest["verification"]["variants"]["int8"]["openvino"]
    assert openvino["method"] == "qdq" and "nncf" not in openvino
    assert openvino["reason"].startswith("--openvino-int8 qdq")
    assert not any("openvino" in manifest["graphs"][g]["int8"] for g in ("step", "rollout"))
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((ts_folder / name).read_bytes()).hexdigest() == digest
    assert manifest["format"] == "mspn-model" and manifest["format_version"] == 1
    assert manifest["context"] == CONTEXT and manifest["horizon"] == HORIZON
    assert manifest["frame_size"] == [16, 16] and manifest["channel_order"] == "gray"
    assert manifest["batch"] == {"dynamic": True, "min": 1, "opt": 1, "max": 8}
    assert manifest["opset"] == 18 and manifest["versions"]["onnxruntime"]
    # Every graph's recorded signature is the file's real one.
    for _graph, variants in manifest["graphs"].items():
        for variant, entry in variants.items():
            # both graphs of a variant read their weights from its one shared file
            assert entry["external"] == ["weights.bin" if variant == "fp32" else f"weights.{variant}.bin"]
            model = onnx.load(ts_folder / entry["file"])
            assert [i.name for i in model.graph.input] == [i["name"] for i in entry["inputs"]]
            assert [o.name for o in model.graph.output] == [o["name"] for o in entry["outputs"]]
            for value, spec in zip(model.graph.input, entry["inputs"], strict=True):
                dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
                assert dims == spec["shape"] and spec["dtype"] == "float32"
            opset = {o.domain: o.version for o in model.opset_import}[""]
            assert opset >= 18 if entry["file"].endswith("int8.onnx") else opset == 18


def test_variants_psnr_recorded_and_real(ts_folder, ckpt):
    manifest = _manifest(ts_folder)
    variants = manifest["verification"]["variants"]
    floor = manifest["verification"]["psnr_floor"]
    frames = np.random.default_rng(0).random((2, CONTEXT, 1, 16, 16), dtype=np.float32)
    expected = _torch_future(ckpt, frames)
    for variant in ("fp16", "int8"):
        record = variants[variant]
        for graph in ("rollout", "step"):
            psnr = record[graph]["parity"]["random"]["psnr"]
            assert len(psnr) == HORIZON and all(10 < p < 200 for p in psnr)
        assert record["below_floor"] == (record["min_psnr"] < floor)
        # The variant really is lossy and the recorded PSNR is what it gives.
        out = verify.rollout_outputs(verify.ort_session(ts_folder / f"rollout.{variant}.onnx"), frames)
        got = verify.compare(out, expected)
        assert got["worst_max_abs"] > 1e-6
        np.testing.assert_allclose(got["psnr"], record["rollout"]["parity"]["random"]["psnr"], atol=0.01)
    int8 = onnx.load(ts_folder / "step.int8.onnx")
    assert any(n.op_type == "QuantizeLinear" for n in int8.graph.node)
    # The convolution network is quantized; the LSTM's elementwise state update, the errors and
    # the predictions stay float32.
    assert variants["int8"]["step"]["settings"]["op_types"] == list(INT8_OP_TYPES)
    produced_by = {o: n.op_type for n in int8.graph.node for o in n.output}
    read_by = {}
    for node in int8.graph.node:
        for value in node.input:
            read_by.setdefault(value, set()).add(node.op_type)
    dq_of = {n.input[0]: n.output[0] for n in int8.graph.node if n.op_type == "DequantizeLinear"}
    quantized = [(n.input[0], dq_of.get(n.output[0])) for n in int8.graph.node if n.op_type == "QuantizeLinear"]
    assert quantized and all(produced_by.get(v) in INT8_OP_TYPES or read_by.get(dq, set()) & set(INT8_OP_TYPES)
                             for v, dq in quantized)
    dequantized = {n.output[0] for n in int8.graph.node if n.op_type == "DequantizeLinear"}
    assert not any(n.op_type in ("Mul", "Sigmoid", "Tanh", "Sub") and dequantized & set(n.input)
                   for n in int8.graph.node)
    assert not {o.name for o in int8.graph.output} & {v for v, _ in quantized}
    assert variants["int8"]["rollout"]["settings"]["build"].startswith("unrolled from the int8")
    checks = _manifest(ts_folder)["tensorrt_preflight"]["step.int8.onnx"]
    assert checks["int32_bias_dequantize_folded_at_build"] > 0 and checks["uint8_qdq_made_symmetric_int8_at_build"] > 0
    assert variants["int8"]["calibration"]["synthetic"] is False
    assert variants["int8"]["calibration"]["step_samples"] == 2 * (CONTEXT + HORIZON - 1)
    fp16 = onnx.load(ts_folder / "step.fp16.onnx")
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in fp16.graph.initializer)


def test_tensorrt_preflight(ts_folder, tmp_path):
    report = _manifest(ts_folder)["tensorrt_preflight"]
    for name in ("rollout.onnx", "step.onnx", "rollout.int8.onnx", "step.fp16.onnx"):
        assert report[name]["ok"], report[name]
        assert report[name]["trt_version"].startswith("10")
    assert report["step.int8.onnx"]["qdq_issues"]["count"] == 0
    # A graph TensorRT would refuse: an unsupported op and a dynamic spatial dimension.
    from onnx import TensorProto, helper
    graph = helper.make_graph(
        [helper.make_node("Unique", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "width"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])])
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph), path)
    bad = preflight(path, dynamic_batch=True)
    assert not bad["ok"] and bad["unsupported_ops"] == ["Unique"]
    assert bad["dynamic_dims"] == ["x[1]=width", "y[0]=n"]


def test_spec_round_trip_is_torch_free(ts_folder):
    manifest = _manifest(ts_folder)
    spec = ExportSpec.from_manifest(manifest)
    assert spec.to_dict() == manifest["spec"]
    entry = manifest["graphs"]["step"]["int8"]
    assert spec.graph_entry("step", "int8") == {k: v for k, v in entry.items() if k != "external"}
    code = ("import sys, json; from mspn.export.spec import ExportSpec; "
            f"s = ExportSpec.from_manifest(json.load(open({str(ts_folder / 'manifest.json')!r}))); "
            "assert 'torch' not in sys.modules and 'onnx' not in sys.modules; print(s.horizon)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(HORIZON)
    with pytest.raises(MSPNError, match="not an mspn model manifest"):
        ExportSpec.from_manifest({"format": "other"})


# --- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("extra, message, status", [
    (["--context", "0"], "context must be >= 1", 2),
    (["--horizon", "0"], "horizon must be >= 1", 2),
    (["--size", "18x18"], "frame size 18x18 .* multiples of 4", 1),  # refused by the checkpoint's config
    (["--variants", "fp32,int4"], "unknown variant 'int4'", 2),
    (["--precision", "fp32,int4"], "unknown variant 'int4'", 2),  # the old spelling still works
])
def test_bad_arguments(extra, message, status, ckpt, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["export", "--ckpt", str(ckpt), "--out", str(out), *extra]) == status
    err = capsys.readouterr().err.strip().splitlines()
    assert any(line.startswith("mspn export: error:") for line in err)
    import re
    assert re.search(message, "\n".join(err))
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_existing_folder_needs_force(ckpt, tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    with pytest.raises(MSPNError, match="already exists .*--force"):
        export_model(ExportOptions(ckpt=str(ckpt), out=str(out), progress=False))


def test_not_an_mspn_checkpoint(tmp_path):
    bogus = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, bogus)
    with pytest.raises(MSPNError, match="not an mspn checkpoint"):
        export_model(ExportOptions(ckpt=str(bogus), out=str(tmp_path / "m"), progress=False))


def test_export_leaves_the_root_logger_and_stdout_alone(ckpt, tmp_path, capfd, caplog, monkeypatch):
    """Through the Python API: the root logger keeps its level and handlers (also while quantizing),
    nothing is printed to stdout, and stdout is not captured while quantizing: a print of the
    caller's during calibration still reaches it."""
    import logging

    from mspn.export import precision

    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    during = []
    real = precision.FeedReader.get_next

    def get_next(self):
        during.append((root.level, list(root.handlers)))
        print("CALIBRATING")
        return real(self)

    monkeypatch.setattr(precision.FeedReader, "get_next", get_next)
    export_model(ExportOptions(ckpt=str(ckpt), out=str(tmp_path / "m"), context=CONTEXT, horizon=HORIZON,
                               variants=("fp32", "int8"), exporter="torchscript", calib_clips=1, progress=False))
    out, _ = capfd.readouterr()
    assert during and all(state == before for state in during)
    assert (root.level, list(root.handlers)) == before
    assert set(out.split()) == {"CALIBRATING"}, out[:500]
    # onnxruntime.quantization's advice to pre-process went to its own (quiet) logger, not the root's
    assert not [r for r in caplog.records if r.name == "root"], [r.getMessage() for r in caplog.records]


def test_calibration_data_of_another_size(ckpt, workdir, tmp_path):
    other = workdir / "ds32"
    write_synthetic(other, size=(32, 32), channels=1, videos=(1, 1, 1), frames=CONTEXT + HORIZON)
    with pytest.raises(MSPNError, match=r"--calib .*1 channel\(s\) at 32x32; the model takes 1 channel\(s\) at 16x16"):
        export_model(ExportOptions(ckpt=str(ckpt), out=str(tmp_path / "m"), variants=("fp32", "int8"),
                                   calib=str(other), progress=False))
    assert list(tmp_path.iterdir()) == []


def test_parity_failure_leaves_nothing(ckpt, tmp_path):
    out = tmp_path / "model"
    with pytest.raises(MSPNError, match=r"fp32 rollout.onnx failed its rollout check .*tolerance 1e-12"):
        export_model(ExportOptions(ckpt=str(ckpt), out=str(out), context=1, horizon=1, tolerance=1e-12,
                                   exporter="torchscript", progress=False))
    assert list(tmp_path.iterdir()) == []


def test_onnxruntime_tensorrt_provider_gets_the_tensorrt_ready_int8_graph(ts_folder):
    """The ORT TensorRT provider is handed the int8 graph as TensorRT takes it (no provider needed
    to check what would be loaded); every other provider and variant loads the file as exported."""
    from mspn.runtime.base import make_runner
    from mspn.runtime.manifest import Manifest
    from mspn.runtime.qdq import int32_dequantize_nodes, uint8_qdq_nodes

    manifest = Manifest.load(ts_folder)
    source = make_runner("onnxruntime", manifest, "step", "int8", provider="tensorrt").model_source()
    model = onnx.load_from_string(source)
    assert uint8_qdq_nodes(model) == [] and int32_dequantize_nodes(model) == []
    assert uint8_qdq_nodes(onnx.load(ts_folder / "step.int8.onnx"))
    for provider, variant in (("cpu", "int8"), ("tensorrt", "fp32")):
        runner = make_runner("onnxruntime", manifest, "step", variant, provider=provider)
        assert runner.model_source() == str(ts_folder / f"step{'' if variant == 'fp32' else '.int8'}.onnx")


# --- the command line, and --force ----------------------------------------------------------------

def test_cli_export_then_eval_run(ckpt, dataset, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["export", "--ckpt", str(ckpt), "--out", str(out), "--context", str(CONTEXT),
                 "--horizon", str(HORIZON), "--exporter", "torchscript", "--max-batch", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out} (torchscript exporter; fp32 worst max abs" in printed
    assert _manifest(out)["context"] == CONTEXT and (out / "rollout.onnx").is_file()
    report = tmp_path / "eval" / "report.json"
    assert main(["eval", "--ckpt", str(ckpt), "--data", str(dataset), "--context", str(CONTEXT),
                 "--horizon", str(HORIZON), "--report", str(report)]) == 0
    assert json.loads(report.read_text())["horizon"] == HORIZON
    assert "psnr: beats" in capsys.readouterr().out


# Run in a subprocess: export into OUT with --force, and die (os._exit, as a kill would) at the
# named moment of the replacement.
_KILLED_EXPORT = """
import os, sys
from mspn.export import pipeline
from mspn.export.pipeline import ExportOptions, export_model
ckpt, out, moment = sys.argv[1:]
exchange = pipeline._exchange
def die_before(a, b):
    os._exit(9)
def die_after(a, b):
    done = exchange(a, b)
    os._exit(9 if done else 8)
pipeline._exchange = {"before": die_before, "after": die_after}[moment]
export_model(ExportOptions(ckpt=ckpt, out=out, context=2, horizon=3, exporter="torchscript",
                           seed=7, force=True, progress=False))
"""


@pytest.mark.parametrize("moment, survivor", [("before", "old"), ("after", "new")])
def test_force_replacement_killed_leaves_old_or_new_folder(ckpt, tmp_path, subprocess_env, moment, survivor):
    from mspn.runtime.manifest import Manifest

    out = tmp_path / "model"
    export_model(ExportOptions(ckpt=str(ckpt), out=str(out), context=CONTEXT, horizon=HORIZON,
                               exporter="torchscript", seed=1, progress=False))
    old_seed = _manifest(out)["verification"]["inputs"]["random"]["seed"]
    done = subprocess.run([sys.executable, "-c", _KILLED_EXPORT, str(ckpt), str(out), moment],
                          env=subprocess_env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 9, done.stderr[-2000:]  # 8: this file system cannot swap folders
    seed = _manifest(out)["verification"]["inputs"]["random"]["seed"]
    assert seed == (old_seed if survivor == "old" else 7)
    manifest = Manifest.load(out)
    for name in manifest.files:  # every file present and matching its hash: one whole folder
        manifest.verified_path(name)
    assert sorted(p.name for p in out.iterdir()) == sorted([*manifest.files, "manifest.json"])
