"""Property-based: random manifests and random arrays give a result or an MSPNError, nothing else."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mspn.errors import MSPNError
from mspn.runtime import Manifest, Predictor

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


def _paths(node, prefix=()):
    """Every (key path) of a JSON tree, parents before children."""
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield from _paths(child, (*prefix, key))


@pytest.fixture(scope="module")
def folder(tiny, tmp_path_factory):
    """A copy of the tiny model folder whose manifest each example rewrites."""
    return shutil.copytree(tiny["model"], tmp_path_factory.mktemp("prop") / "model")


def _mutate(raw, path, value, delete: bool):
    if not path:
        return value
    node = raw
    for key in path[:-1]:
        node = node[key]
    if delete and isinstance(node, dict):
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return raw


def _load_everything(folder):
    manifest = Manifest.load(folder)
    for kind in ("rollout", "step"):
        for variant in manifest.variants:
            graph = manifest.graph(kind, variant)
            manifest.verified_path(graph.file)
    return manifest


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_manifests_load_or_are_refused(tiny, folder, data):
    raw = json.loads((tiny["model"] / "manifest.json").read_text())  # the pristine one
    paths = list(_paths(raw))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        raw = _mutate(raw, path, data.draw(JSON), data.draw(st.booleans()))
        paths = list(_paths(raw))
    (folder / "manifest.json").write_text(json.dumps(raw))  # NaN / Infinity written as such
    try:
        _load_everything(folder)
    except MSPNError as exc:
        assert "\n" not in str(exc)


@pytest.fixture(scope="module")
def predictor(tiny):
    with Predictor.load(tiny["model"]) as loaded:
        yield loaded


DTYPES = st.sampled_from([np.uint8, np.float32, np.float64, np.float16, np.int32, np.bool_])
SHAPES = st.one_of(hnp.array_shapes(min_dims=0, max_dims=6, min_side=0, max_side=4),
                   st.tuples(st.integers(0, 10), st.sampled_from([4, 5, 6]), st.sampled_from([1, 3]),
                             st.sampled_from([32, 31]), st.just(32)))


@settings(max_examples=100, deadline=None)
@given(frames=hnp.arrays(DTYPES, SHAPES))
def test_random_arrays_predict_or_are_refused(predictor, frames):
    try:
        future = predictor.predict(frames)
    except MSPNError as exc:
        assert "\n" not in str(exc)
    else:
        assert future.shape == (frames.shape[0], predictor.horizon, 1, 32, 32)
        assert np.isfinite(future).all()
