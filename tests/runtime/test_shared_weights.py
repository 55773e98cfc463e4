"""A variant's rollout and step graphs read their weights from one shared external file: both
backends load it and compute what the self-contained graphs compute, and the file is verified."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from mspn.errors import MSPNError
from mspn.runtime import Predictor
from mspn.runtime.manifest import Manifest, external_data_files, write_manifest


def _self_contained_copy(folder: Path, out: Path) -> Path:
    """The folder with every graph's weights embedded again, as exports wrote them before."""
    out.mkdir()
    raw = json.loads((folder / "manifest.json").read_text())
    for variants in raw["graphs"].values():
        for entry in variants.values():
            onnx.save_model(onnx.load(str(folder / entry["file"])), str(out / entry["file"]))
            entry["external"] = []
    (out / raw["state"]["file"]).write_bytes((folder / raw["state"]["file"]).read_bytes())
    write_manifest(out, raw)
    return out


def _rewrite_manifest(folder: Path, edit) -> None:
    raw = json.loads((folder / "manifest.json").read_text())
    edit(raw)
    write_manifest(folder, raw)


def test_both_graphs_read_one_weights_file(tiny):
    manifest = Manifest.load(tiny["model"])
    rollout, step = manifest.graph("rollout", "fp32"), manifest.graph("step", "fp32")
    assert rollout.external == step.external == ("weights.bin",)
    for graph in (rollout, step):
        assert external_data_files(tiny["model"] / graph.file) == ["weights.bin"]
    weights = (tiny["model"] / "weights.bin").stat().st_size
    # the graph files hold the structure only: far less than the weights they read
    assert (tiny["model"] / "step.onnx").stat().st_size < weights / 4


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_shared_weights_compute_what_embedded_weights_compute(tiny, clips, tmp_path, backend):
    embedded = _self_contained_copy(tiny["model"], tmp_path / "embedded")
    outputs = {}
    for name, folder in (("shared", tiny["model"]), ("embedded", embedded)):
        with Predictor.load(folder, backend=backend, threads=1, cache=False) as predictor:
            session = predictor.stream()
            pushed = [session.push(clips[:, t]) for t in range(clips.shape[1])]
            outputs[name] = (predictor.predict(clips), np.stack(pushed), session.rollout(3))
    for shared, alone in zip(outputs["shared"], outputs["embedded"], strict=True):
        np.testing.assert_array_equal(shared, alone)
    size = lambda f: sum(p.stat().st_size for p in f.iterdir())  # noqa: E731
    assert size(tiny["model"]) < 0.75 * size(embedded)


def test_a_changed_weights_file_is_refused_by_name(model_copy):
    path = model_copy / "weights.bin"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(MSPNError, match=r"weights.bin: SHA-256 mismatch"):
        Predictor.load(model_copy)


def test_a_weights_file_the_manifest_does_not_list_is_refused(model_copy):
    _rewrite_manifest(model_copy, lambda raw: raw["graphs"]["rollout"]["fp32"].update(external=[]))
    with pytest.raises(MSPNError, match=r"rollout.onnx reads external data weights.bin that manifest.json "
                                        r"does not list for it"):
        Predictor.load(model_copy)


def test_a_weights_file_missing_from_the_files_list_is_refused(model_copy):
    raw = json.loads((model_copy / "manifest.json").read_text())
    del raw["files"]["weights.bin"]
    (model_copy / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(MSPNError, match=r"weights.bin is not listed in manifest.json files"):
        Predictor.load(model_copy)


def test_a_weights_file_outside_the_folder_is_refused(model_copy, tmp_path):
    (tmp_path / "outside.bin").write_bytes(b"\0" * 16)
    _rewrite_manifest(model_copy, lambda raw: raw["graphs"]["step"]["fp32"].update(external=["../outside.bin"]))
    # refused by the manifest schema, before any graph is looked at
    with pytest.raises(MSPNError, match=r"graphs.step.fp32.external\[0\]: '../outside.bin' is not a plain "
                                        r"relative path inside the model folder"):
        Predictor.load(model_copy)
