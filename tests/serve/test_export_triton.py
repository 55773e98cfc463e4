"""`mspn export-triton`: every config.pbtxt parses with tritonclient's ModelConfig schema and
matches the ONNX graphs; implicit state and initial state match the folder. (Triton's native ONNX
Runtime / TensorRT backends are not in the pytriton wheel, so the repository is not served here;
benchmarks/gpu_check.sh serves it on a GPU machine.)"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from mspn.cli import main
from mspn.errors import MSPNError
from mspn.options import ExportTritonOptions
from mspn.runtime.manifest import Manifest
from mspn.serve.export_triton import check_repository, export_triton


def _parse(path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.fixture(scope="module")
def repo(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("triton") / "repo"
    names = export_triton(ExportTritonOptions(model=str(tiny["model"]), out=str(out), name="tiny", instances=2))
    return out, names


def test_repository_layout_and_configs(repo, tiny):
    out, names = repo
    assert names == ["tiny_rollout", "tiny_stream"]
    manifest = Manifest.load(tiny["model"])
    rollout = _parse(out / "tiny_rollout" / "config.pbtxt")
    assert rollout.backend == "onnxruntime" and rollout.max_batch_size == manifest.batch_max
    assert [(t.name, list(t.dims)) for t in rollout.input] == [("frames", [5, 1, 32, 32])]
    assert [(t.name, list(t.dims)) for t in rollout.output] == [("future", [5, 1, 32, 32])]
    assert rollout.HasField("dynamic_batching") and rollout.instance_group[0].count == 2
    stream = _parse(out / "tiny_stream" / "config.pbtxt")
    assert [t.name for t in stream.input] == ["frame", "open_loop"]
    assert [s.input_name for s in stream.sequence_batching.state] == list(manifest.state_names)
    assert stream.sequence_batching.HasField("oldest")
    for kind, name in (("rollout", "tiny_rollout"), ("step", "tiny_stream")):
        copied = (out / name / "1" / "model.onnx").read_bytes()
        assert hashlib.sha256(copied).hexdigest() == manifest.files[manifest.graph(kind, "fp32").file]


def test_initial_state_files_hold_the_folder_state(repo, tiny):
    out, _ = repo
    stream = _parse(out / "tiny_stream" / "config.pbtxt")
    with np.load(tiny["model"] / "initial_state.npz") as npz:
        for state in stream.sequence_batching.state:
            initial = state.initial_state[0]
            raw = np.fromfile(out / "tiny_stream" / "initial_state" / initial.data_file, np.float32)
            np.testing.assert_array_equal(raw.reshape(list(initial.dims)), npz[state.input_name][0])


def test_check_catches_a_config_that_disagrees_with_the_graph(repo, tiny, tmp_path):
    import shutil
    out, _ = repo
    broken = shutil.copytree(out, tmp_path / "repo")
    path = broken / "tiny_stream" / "config.pbtxt"
    config = _parse(path)
    config.sequence_batching.state[1].dims[0] = 8
    path.write_text(text_format.MessageToString(config))
    with pytest.raises(MSPNError, match="state input 'c_0' is TYPE_FP32 \\[8, 32, 32\\] but the graph has"):
        check_repository(broken, Manifest.load(tiny["model"]), "fp32")
    path.write_text("name: 'x' max_batch_size: [")
    with pytest.raises(MSPNError, match="not a valid Triton model configuration"):
        check_repository(broken, Manifest.load(tiny["model"]), "fp32")


def test_cli_errors(repo, tiny, tmp_path, capsys):
    out, _ = repo
    assert main(["export-triton", "--model", str(tiny["model"]), "--out", str(out)]) == 1
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["export-triton", "--model", str(tiny["model"]), "--out", str(tmp_path / "r"),
                 "--backend", "tensorrt"]) == 1
    assert "no TensorRT engine for the fp32 rollout graph" in capsys.readouterr().err
    assert not (tmp_path / "r").exists() and not (tmp_path / ".r.partial").exists()
