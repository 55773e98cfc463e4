"""Load caches: OpenVINO compiles a graph once per machine, ONNX Runtime keeps its optimised graph;
a changed graph never reuses a stale entry, a damaged entry is never loaded."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from mspn.runtime import Predictor, cache
from mspn.runtime.manifest import CACHE_FOLDER, Manifest, write_manifest


@pytest.fixture(autouse=True)
def private_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV, str(tmp_path / "user-cache"))


def _predict(folder: Path, backend: str, clips: np.ndarray, **options) -> tuple[np.ndarray, bool]:
    with Predictor.load(folder, backend=backend, threads=1, **options) as predictor:
        out = predictor.predict(clips)
        return out, predictor.rollout_runner.loaded_from_cache


def _change_rollout_weights(folder: Path) -> None:
    """Scale the rollout graph's first external convolution weight and re-record the folder."""
    path = folder / "rollout.onnx"
    model = onnx.load(str(path))  # external weights read in, saved back embedded
    tensor = next(t for t in model.graph.initializer if t.dims and np.prod(t.dims) > 64)
    tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * 1.5, tensor.name))
    onnx.save_model(model, str(path))
    raw = json.loads((folder / "manifest.json").read_text())
    raw["graphs"]["rollout"]["fp32"]["external"] = []
    write_manifest(folder, raw)


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_second_load_comes_from_the_cache_with_the_same_outputs(model_copy, clips, backend):
    first, hit_first = _predict(model_copy, backend, clips)
    second, hit_second = _predict(model_copy, backend, clips)
    assert not hit_first and hit_second
    np.testing.assert_array_equal(first, second)
    assert any((model_copy / CACHE_FOLDER / backend).iterdir())  # next to the model, not the user cache


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_a_changed_graph_never_reuses_the_cache(model_copy, clips, backend):
    before, _ = _predict(model_copy, backend, clips)
    _predict(model_copy, backend, clips)  # the cache now holds the old graph
    _change_rollout_weights(model_copy)
    after, hit = _predict(model_copy, backend, clips)
    uncached, _ = _predict(model_copy, backend, clips, cache=False)
    assert not hit
    assert np.abs(after - before).max() > 1e-4  # the new weights are what runs
    np.testing.assert_array_equal(after, uncached)


def test_a_damaged_optimised_graph_is_not_loaded(model_copy, clips):
    reference, _ = _predict(model_copy, "onnxruntime", clips)
    [entry] = (model_copy / CACHE_FOLDER / "onnxruntime").iterdir()
    record = json.loads((entry / "optimized.json").read_text())
    assert record["optimization"] == "all"
    assert record["graph_sha256"] == Manifest.load(model_copy).files["rollout.onnx"]
    data = bytearray((entry / "optimized.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (entry / "optimized.onnx").write_bytes(bytes(data))
    out, hit = _predict(model_copy, "onnxruntime", clips)
    assert not hit
    np.testing.assert_array_equal(out, reference)
    _, hit = _predict(model_copy, "onnxruntime", clips)  # rebuilt by the load above
    assert hit


def test_unwritable_model_folder_uses_the_user_cache(model_copy, clips, tmp_path, monkeypatch):
    inside = model_copy / CACHE_FOLDER

    def writable(folder: Path) -> bool:  # the tests run as root, who may write anywhere
        if Path(folder).is_relative_to(inside):
            return False
        Path(folder).mkdir(parents=True, exist_ok=True)
        return True
    monkeypatch.setattr(cache, "_writable", writable)
    _predict(model_copy, "openvino", clips)
    _, hit = _predict(model_copy, "openvino", clips)
    assert hit and not inside.exists()
    assert any((tmp_path / "user-cache" / "openvino").iterdir())


def test_cache_keys_follow_graph_version_options_and_machine(monkeypatch):
    base = {"graph_sha256": {"rollout.onnx": "a" * 64}, "version": "1", "options": {"device": "CPU"}}
    key = cache.cache_key(base)
    assert key == cache.cache_key(json.loads(json.dumps(base)))
    assert key != cache.cache_key({**base, "graph_sha256": {"rollout.onnx": "b" * 64}})
    assert key != cache.cache_key({**base, "version": "2"})
    assert key != cache.cache_key({**base, "options": {"device": "GPU"}})
    monkeypatch.setattr(cache, "machine_tag", lambda: "another-cpu")
    assert key != cache.cache_key(base)


def test_the_manifest_never_lists_the_cache(model_copy, clips):
    _predict(model_copy, "onnxruntime", clips)
    raw = write_manifest(model_copy, json.loads((model_copy / "manifest.json").read_text()))
    assert (model_copy / CACHE_FOLDER).is_dir()
    assert not [name for name in raw["files"] if name.startswith(CACHE_FOLDER)]
