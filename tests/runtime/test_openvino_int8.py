"""The int8 variant's OpenVINO model (graphs.<kind>.int8.openvino, NNCF) at load: the openvino
runner serves it instead of the QDQ graph, it is verified like every graph file (hash, path
confinement, I/O contract), its load cache is its own, and `mspn inspect` names it.
Folder: the session fixture trained_tiny (tests/conftest.py); tests that alter files copy it.
The accuracy of the model through Predictor (rollout graph and step loop):
tests/runtime/test_budget_variants.py."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mspn.errors import MSPNError
from mspn.runtime import Predictor
from mspn.runtime.cache import graph_cache_dir
from mspn.runtime.manifest import Manifest
from mspn.runtime.openvino_backend import build_runner

pytest.importorskip("openvino")


@pytest.fixture
def folder(trained_tiny, tmp_path) -> Path:
    """A copy of the trained tiny folder, without its load cache."""
    return Path(shutil.copytree(trained_tiny["model"], tmp_path / "model", ignore=shutil.ignore_patterns(".cache")))


def _edit_manifest(folder: Path, edit) -> None:
    path = folder / "manifest.json"
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw))


def test_the_openvino_runner_serves_the_nncf_model_for_int8(trained_tiny):
    manifest = Manifest.load(trained_tiny["model"])
    for kind in ("step", "rollout"):
        runner = build_runner(manifest, kind, "int8")
        assert runner.int8_method == "nncf"
        assert runner.graph.file == f"openvino/{kind}.int8.xml"
        assert runner.path == trained_tiny["model"] / "openvino" / f"{kind}.int8.xml"
        qdq = build_runner(manifest, kind, "int8", int8="qdq")
        assert qdq.int8_method == "qdq" and qdq.graph.file == f"{kind}.int8.onnx"
        assert build_runner(manifest, kind, "fp32").int8_method is None
        # the load cache is keyed by the file served: the NNCF model never gets the QDQ graph's blob
        assert graph_cache_dir(manifest, runner.graph, "openvino", "v") != graph_cache_dir(manifest, qdq.graph,
                                                                                            "openvino", "v")


def test_the_nncf_rollout_computes_what_its_step_loop_computes(trained_tiny):
    """The rollout model shares the step model's ranges (export/openvino_int8.rollout_from_step)."""
    frames = np.random.default_rng(2).random((2, 5, 1, 32, 32), dtype=np.float32)
    with Predictor.load(trained_tiny["model"], backend="openvino", variant="int8", threads=1) as predictor:
        future = predictor.predict(frames)
        with predictor.stream() as session:
            for t in range(5):
                session.push(frames[:, t])
            streamed = session.rollout(5)
    assert predictor.rollout_runner.int8_method == predictor.step_runner.int8_method == "nncf"
    np.testing.assert_allclose(streamed, future, atol=1e-4)


def test_a_tampered_openvino_weights_file_is_refused_by_name(folder):
    path = folder / "openvino" / "step.int8.bin"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(MSPNError, match=r"openvino/step.int8.bin: SHA-256 mismatch \(file tampered with, truncated "
                                        r"or replaced; expected [0-9a-f]{12}\.\.\., got [0-9a-f]{12}\.\.\.\); "
                                        r"re-export the model folder$"):
        Predictor.load(folder, backend="openvino", variant="int8")
    # the QDQ graph does not read it
    Predictor.load(folder, backend="openvino", variant="int8", int8="qdq").close()


def test_a_missing_openvino_model_is_refused_by_name(folder):
    (folder / "openvino" / "rollout.int8.xml").unlink()
    with pytest.raises(MSPNError, match=rf"^{folder}: openvino/rollout.int8.xml is missing from the model folder$"):
        Predictor.load(folder, backend="openvino", variant="int8")


def test_a_manifest_path_escaping_the_folder_is_refused(folder):
    def escape(raw):
        raw["graphs"]["step"]["int8"]["openvino"].update(file="../step.int8.xml", weights="../step.int8.bin")
    _edit_manifest(folder, escape)
    with pytest.raises(MSPNError) as info:
        Predictor.load(folder, backend="openvino", variant="int8")
    assert str(info.value) == (f"{folder / 'manifest.json'}: malformed manifest: graphs.step.int8.openvino.file: "
                               f"'../step.int8.xml' is not a plain relative path inside the model folder "
                               f"(absolute paths and '..' are refused)")


def test_a_link_leading_out_of_the_folder_is_refused(folder, tmp_path):
    outside = tmp_path / "elsewhere.bin"
    shutil.copy(folder / "openvino" / "step.int8.bin", outside)
    (folder / "openvino" / "step.int8.bin").unlink()
    (folder / "openvino" / "step.int8.bin").symlink_to(outside)
    with pytest.raises(MSPNError) as info:
        Predictor.load(folder, backend="openvino", variant="int8")
    assert str(info.value) == (f"{folder}: openvino/step.int8.bin leads outside the model folder (a symbolic "
                               f"link?); refusing to read it")


@pytest.mark.parametrize("field, value, message", [
    ("weights", "openvino/other.int8.bin",
     "graphs.step.int8.openvino.weights: 'openvino/other.int8.bin' is not the .bin beside "
     "'openvino/step.int8.xml' (OpenVINO reads that one)"),
    ("file", "rollout.int8.onnx", "graphs.step.int8.openvino.file: 'rollout.int8.onnx' is not an OpenVINO .xml model"),
    ("method", "magic", "graphs.step.int8.openvino.method must be one of nncf, got 'magic'"),
])
def test_a_malformed_openvino_entry_is_refused(folder, field, value, message):
    _edit_manifest(folder, lambda raw: raw["graphs"]["step"]["int8"]["openvino"].update({field: value}))
    with pytest.raises(MSPNError) as info:
        Manifest.load(folder)
    assert str(info.value) == f"{folder / 'manifest.json'}: malformed manifest: {message}"


def test_an_openvino_model_on_another_variant_is_refused(folder):
    def move(raw):
        raw["graphs"]["step"]["fp32"]["openvino"] = raw["graphs"]["step"]["int8"].pop("openvino")
    _edit_manifest(folder, move)
    with pytest.raises(MSPNError, match=r"graphs.step.fp32.openvino: only the int8 variant has an OpenVINO model$"):
        Manifest.load(folder)


def test_a_graph_that_is_not_the_manifest_s_is_refused_at_activation(folder):
    """The I/O contract applies to the OpenVINO model: the step model's xml swapped for the
    rollout's (hashes updated, so only the contract can catch it)."""
    from mspn.fileio import sha256_file

    for suffix in ("xml", "bin"):
        shutil.copy(folder / "openvino" / f"rollout.int8.{suffix}", folder / "openvino" / f"step.int8.{suffix}")

    def rehash(raw):
        for suffix in ("xml", "bin"):
            name = f"openvino/step.int8.{suffix}"
            raw["files"][name] = sha256_file(folder / name)
    _edit_manifest(folder, rehash)
    with Predictor.load(folder, backend="openvino", variant="int8", cache=False) as predictor:
        with pytest.raises(MSPNError, match=r"openvino/step.int8.xml: the graph's inputs \['frames'\] are not the "
                                            r"manifest's"):
            predictor.stream()


def test_nncf_asked_for_on_a_folder_without_it_is_refused(folder):
    def drop(raw):
        for kind in ("step", "rollout"):
            raw["graphs"][kind]["int8"].pop("openvino")
    _edit_manifest(folder, drop)
    with pytest.raises(MSPNError, match=r"no NNCF OpenVINO int8 model of the rollout graph in this folder; re-export "
                                        r"with --openvino-int8 nncf, or load with int8='qdq'$"):
        Predictor.load(folder, backend="openvino", variant="int8", int8="nncf")
    with Predictor.load(folder, backend="openvino", variant="int8") as predictor:  # auto: the QDQ graph
        assert predictor.rollout_runner.int8_method == "qdq"


def test_inspect_names_the_openvino_model(trained_tiny):
    from mspn.runtime.describe import describe_folder

    report, ok = describe_folder(trained_tiny["model"])
    assert ok
    assert "openvino int8: NNCF models" in report
    for kind in ("step", "rollout"):
        assert f"  {kind}: openvino/{kind}.int8.xml + openvino/{kind}.int8.bin; min per-step PSNR vs fp32" in report
        assert f"openvino/{kind}.int8.bin" in report.split("files (")[1]
