"""Hostile model folders: each cause is refused in one line naming what is wrong."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from mspn.errors import MSPNError
from mspn.runtime import Manifest, Predictor

from .conftest import edit_manifest, refuse, sha256, snapshot


def _point(kind: str, variant: str, name: str, digest: str | None = None):
    """A manifest change: graphs.KIND.VARIANT.file = name (listed in files with ``digest``)."""
    def change(raw):
        raw["graphs"][kind][variant]["file"] = name
        if digest is not None:
            raw["files"][name] = digest
    return change


# --- confinement ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["/etc/passwd", "../outside.onnx", "sub/../../outside.onnx", "C:/x.onnx",
                                  "a\\b.onnx", ""])
def test_paths_that_leave_the_folder_are_refused_by_name(model_copy, name):
    edit_manifest(model_copy, _point("rollout", "fp32", name, "0" * 64))
    with pytest.raises(MSPNError, match=r"is not a plain relative path inside the model folder"):
        Manifest.load(model_copy)


def test_symlink_leading_out_is_refused_and_no_outside_hash_is_printed(model_copy, tmp_path):
    outside = tmp_path / "secret.onnx"
    shutil.copy(model_copy / "rollout.onnx", outside)
    digest = sha256(outside)
    (model_copy / "rollout.onnx").unlink()
    os.symlink(outside, model_copy / "rollout.onnx")
    with pytest.raises(MSPNError, match=r"rollout.onnx leads outside the model folder") as info:
        Predictor.load(model_copy)
    # Even a changed outside file: its hash (or any prefix of it) never reaches the message.
    outside.write_bytes(b"not the graph")
    with pytest.raises(MSPNError) as changed:
        Predictor.load(model_copy)
    for message in (str(info.value), str(changed.value)):
        assert digest[:12] not in message and sha256(outside)[:12] not in message


def test_manifest_that_is_a_link_out_or_a_fifo_is_refused(model_copy, tmp_path):
    outside = tmp_path / "elsewhere.json"
    shutil.move(model_copy / "manifest.json", outside)
    os.symlink(outside, model_copy / "manifest.json")
    with pytest.raises(MSPNError, match=r"manifest.json: not a regular file inside the model folder"):
        Manifest.load(model_copy)
    (model_copy / "manifest.json").unlink()
    os.mkfifo(model_copy / "manifest.json")  # reading it would block forever
    with pytest.raises(MSPNError, match=r"not a regular file inside the model folder"):
        Manifest.load(model_copy)


def test_external_data_field_is_accepted_and_confined(model_copy):
    edit_manifest(model_copy, lambda raw: raw["graphs"]["rollout"]["fp32"].update(external=["weights.bin"]))
    assert Manifest.load(model_copy).graph("rollout", "fp32").external == ("weights.bin",)
    edit_manifest(model_copy, lambda raw: raw["graphs"]["rollout"]["fp32"].update(external=["../weights.bin"]))
    with pytest.raises(MSPNError, match=r"graphs.rollout.fp32.external\[0\]: '../weights.bin' is not a plain"):
        Manifest.load(model_copy)


# --- malformed manifests --------------------------------------------------------------------------

def _set(path: str, value):
    def change(raw):
        *parents, last = path.split(".")
        node = raw
        for key in parents:
            node = node[key]
        node[last] = value
    return change


MALFORMED = [
    ("files-list", _set("files", ["rollout.onnx"]), r"files must be an object, got a list"),
    ("graphs-list", _set("graphs", []), r"graphs must be an object, got a list"),
    ("entry-without-file", lambda r: r["graphs"]["rollout"]["fp32"].pop("file"),
     r"graphs.rollout.fp32 lacks file"),
    ("name-not-string", lambda r: r["graphs"]["step"]["fp32"]["inputs"][0].update(name=7),
     r"graphs.step.fp32.inputs\[0\].name must be a string, got an integer"),
    ("state-names-number", _set("state.names", 3), r"state.names must be a list, got an integer"),
    ("huge-context", _set("context", 10**12), r"context must lie in 1..65536, got 1000000000000"),
    ("batch-max-0", _set("batch.max", 0), r"batch.max must lie in 1..65536, got 0"),
    ("batch-order", _set("batch.opt", 9), r"batch: needs min <= opt <= max, got 1, 9, 8"),
    ("bool-as-int", _set("channels", True), r"channels must be an integer, got a boolean"),
    ("frame-size-3", _set("frame_size", [32, 32, 3]), r"frame_size must hold 2 values, got 3"),
    ("bad-dtype", lambda r: r["graphs"]["rollout"]["fp32"]["inputs"][0].update(dtype="float64"),
     r"graphs.rollout.fp32.inputs\[0\].dtype must be one of float32, float16, int64, int32, got .float64."),
    ("bad-digest", lambda r: r["files"].update({"step.onnx": "abc"}), r"files.step.onnx: 'abc' is not a hex SHA-256"),
    ("unknown-kind", lambda r: r["graphs"].update(preview={}), r"graphs key must be one of rollout, step"),
]


@pytest.mark.parametrize("change, match", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_manifest_is_refused_in_one_line(model_copy, change, match):
    edit_manifest(model_copy, change)
    with pytest.raises(MSPNError, match=r"manifest.json: malformed manifest: " + match) as info:
        Manifest.load(model_copy)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text, match", [
    ('{"format": "mspn-model", "context": Infinity}', r"Infinity is not a number JSON allows"),
    ('{"format": "mspn-model", "context": NaN}', r"NaN is not a number JSON allows"),
    ('{"format": "mspn-model", "context": 1e400}', r"too large for a float"),
    ('{"format": "mspn-model", "context": ' + "9" * 5000 + "}", r"integer of 5000 digits"),
    ("[" * 200_000 + "]" * 200_000, r"nested too deeply to be a manifest"),
], ids=["infinity", "nan", "overflow", "long-int", "deep"])
def test_non_finite_huge_and_deep_json_is_refused(model_copy, text, match):
    (model_copy / "manifest.json").write_text(text)
    with pytest.raises(MSPNError, match=match):
        Manifest.load(model_copy)


def test_oversized_manifest_is_refused_before_reading(model_copy):
    import tracemalloc

    with open(model_copy / "manifest.json", "r+b") as handle:
        handle.truncate(2 << 30)  # sparse: 2 GB on paper, nothing on disk
    tracemalloc.start()
    with pytest.raises(MSPNError, match=r"2147483648 bytes, larger than any manifest \(limit 16 MiB\)"):
        Manifest.load(model_copy)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20


# --- the graph is what the manifest says ----------------------------------------------------------

def _first_prediction(folder, backend: str = "onnxruntime"):
    """Load a folder and predict once: graphs are loaded (and checked) on first use."""
    with Predictor.load(folder, backend=backend) as predictor:
        return predictor.predict(np.zeros((1, 5, 1, 32, 32), np.float32))


def test_rollout_entry_pointing_at_the_step_graph_is_refused(model_copy, capsys, npy_input, tmp_path):
    shutil.copy(model_copy / "step.onnx", model_copy / "other.onnx")
    edit_manifest(model_copy, _point("rollout", "fp32", "other.onnx", sha256(model_copy / "other.onnx")))
    for backend in ("onnxruntime", "openvino"):
        with pytest.raises(MSPNError, match=r"other.onnx: the graph's inputs \[.*'frame'.*\] are not the manifest's "
                                            r"\['frames'\] for the fp32 rollout graph"):
            _first_prediction(model_copy, backend=backend)
    err = refuse(["predict", "--model", model_copy, "--input", npy_input, "--out", tmp_path / "o.npy"], capsys)
    assert "are not the manifest's" in err and not (tmp_path / "o.npy").exists()


def test_declared_shape_differing_from_the_graph_is_refused(model_copy):
    edit_manifest(model_copy, lambda raw: raw["graphs"]["rollout"]["fp32"]["outputs"][0].update(
        shape=["batch", 4, 1, 32, 32]))
    with pytest.raises(MSPNError, match=r"output future is float32 \['batch', 5, 1, 32, 32\] in the graph but "
                                        r"float32 \['batch', 4, 1, 32, 32\] in the manifest"):
        _first_prediction(model_copy)


def test_fp32_entry_pointing_at_an_int8_file_is_refused(model_copy):
    shutil.copy(model_copy / "rollout.onnx", model_copy / "rollout.int8.onnx")
    edit_manifest(model_copy, _point("rollout", "fp32", "rollout.int8.onnx", sha256(model_copy / "rollout.int8.onnx")))
    with pytest.raises(MSPNError, match=r"graphs.rollout.fp32.file: rollout.int8.onnx is named as a int8 graph, "
                                        r"not fp32"):
        Manifest.load(model_copy)
    edit_manifest(model_copy, _point("rollout", "fp32", "step.onnx"))
    with pytest.raises(MSPNError, match=r"graphs.step.fp32.file: step.onnx is also graphs.rollout.fp32.file"):
        Manifest.load(model_copy)


def test_graph_whose_metadata_names_another_variant_is_refused(model_copy):
    import onnx

    model = onnx.load(str(model_copy / "rollout.onnx"), load_external_data=False)  # weights stay in weights.bin
    stamped = {p.key: p.value for p in model.metadata_props}
    assert stamped.get("mspn.variant") == "fp32"  # export stamps every graph
    for prop in model.metadata_props:
        if prop.key == "mspn.variant":
            prop.value = "int8"
    onnx.save(model, str(model_copy / "quantized.onnx"))
    edit_manifest(model_copy, _point("rollout", "fp32", "quantized.onnx", sha256(model_copy / "quantized.onnx")))
    with pytest.raises(MSPNError, match=r"quantized.onnx: the graph says it is variant 'int8' but the manifest "
                                        r"serves it as the fp32 rollout graph"):
        _first_prediction(model_copy)


def _rogue_rollout(path, cut: bool, scale: float = 1.0) -> None:
    """A rollout graph frames -> future * scale whose output dims are dynamic, so only running it
    shows its shape; cut: keep only batch + 1 frames (2 at batch 1), computed from the input's shape."""
    import onnx
    from onnx import TensorProto, helper

    def ints(name, value):
        return helper.make_tensor(name, TensorProto.INT64, [1], [value])

    nodes = [helper.make_node("Mul", ["kept" if cut else "frames", "scale"], ["future"])]
    inits = [helper.make_tensor("scale", TensorProto.FLOAT, [], [scale])]
    if cut:
        inits += [ints("zero", 0), ints("one", 1)]
        nodes[:0] = [helper.make_node("Shape", ["frames"], ["shape"]),
                     helper.make_node("Slice", ["shape", "zero", "one"], ["batch"]),
                     helper.make_node("Add", ["batch", "one"], ["end"]),
                     helper.make_node("Slice", ["frames", "zero", "end", "one"], ["kept"])]
    graph = helper.make_graph(
        nodes, "rogue", [helper.make_tensor_value_info("frames", TensorProto.FLOAT, ["batch", 5, 1, 32, 32])],
        [helper.make_tensor_value_info("future", TensorProto.FLOAT, ["batch", "t", 1, 32, 32])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), path)


@pytest.mark.parametrize("cut, scale, match", [
    (True, 1.0, r"output future came back with shape \(1, 2, 1, 32, 32\), not the manifest's \[1, 5, 1, 32, 32\]"),
    (False, float("nan"), r"output future holds 5120 NaN or infinite value\(s\)"),
], ids=["two-frames", "nan"])
def test_graph_outputs_that_break_the_contract_are_errors(model_copy, clips, cut, scale, match):
    _rogue_rollout(model_copy / "rogue.onnx", cut, scale)
    edit_manifest(model_copy, _point("rollout", "fp32", "rogue.onnx", sha256(model_copy / "rogue.onnx")))
    with Predictor.load(model_copy) as predictor, pytest.raises(MSPNError, match=match):
        predictor.predict(clips[:1])


# --- initial state ----------------------------------------------------------------------------------

def _replace_state(folder, data: bytes) -> None:
    (folder / "initial_state.npz").write_bytes(data)
    edit_manifest(folder, lambda raw: raw["files"].update({"initial_state.npz": sha256(folder / "initial_state.npz")}))


def test_truncated_initial_state_with_matching_hash_is_refused(model_copy):
    _replace_state(model_copy, (model_copy / "initial_state.npz").read_bytes()[:5000])
    with pytest.raises(MSPNError, match=r"initial_state.npz: unreadable initial state \(BadZipFile"):
        Predictor.load(model_copy)


def test_initial_state_holding_nan_or_wrong_shapes_is_refused(model_copy, tmp_path):
    with np.load(model_copy / "initial_state.npz") as npz:
        state = dict(npz)
    state["c_1"] = state["c_1"].copy()
    state["c_1"].flat[3] = np.nan
    np.savez(tmp_path / "nan.npz", **state)
    _replace_state(model_copy, (tmp_path / "nan.npz").read_bytes())
    with pytest.raises(MSPNError, match=r"state c_1 holds NaN or infinite values"):
        Predictor.load(model_copy)
    state["c_1"] = np.zeros((1, 2, 3), np.float32)
    np.savez(tmp_path / "shape.npz", **state)
    _replace_state(model_copy, (tmp_path / "shape.npz").read_bytes())
    with pytest.raises(MSPNError, match=r"state c_1 has shape \(1, 2, 3\), the step graph takes"):
        Predictor.load(model_copy)


def test_refusals_change_nothing_in_the_folder(model_copy, capsys, npy_input, tmp_path):
    edit_manifest(model_copy, _set("batch.max", 0))
    before = snapshot(tmp_path)
    err = refuse(["predict", "--model", model_copy, "--input", npy_input, "--out", tmp_path / "o.npy"], capsys)
    assert "batch.max must lie in 1..65536" in err
    assert snapshot(tmp_path) == before


def test_manifest_json_is_written_with_the_umask(tmp_path):
    from mspn.runtime.manifest import write_manifest

    old = os.umask(0o027)
    try:
        write_manifest(tmp_path, {"format": "mspn-model"})
    finally:
        os.umask(old)
    assert (tmp_path / "manifest.json").stat().st_mode & 0o777 == 0o640
    assert json.loads((tmp_path / "manifest.json").read_text())["files"] == {}
