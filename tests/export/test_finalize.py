"""export/finalize.py on small hand-built graphs: one copy of each weight in the shared file,
graphs that ONNX Runtime runs as before, and the model facts in metadata_props."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from mspn.export.finalize import finalize_variant, graph_metadata, weights_file
from mspn.runtime.manifest import external_data_files


def _matmul_graph(weights: dict[str, np.ndarray], bias: np.ndarray) -> onnx.ModelProto:
    """x (1, 64) -> x @ W1 @ W2 + b: two large initializers and a small one."""
    names = list(weights)
    nodes = [helper.make_node("MatMul", ["x", names[0]], ["h"]),
             helper.make_node("MatMul", ["h", names[1]], ["m"]),
             helper.make_node("Add", ["m", "b"], ["y"])]
    init = [numpy_helper.from_array(w, n) for n, w in weights.items()] + [numpy_helper.from_array(bias, "b")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _run(path) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": np.linspace(0, 1, 64, dtype=np.float32)[None]})[0]


def test_equal_weights_are_stored_once_and_the_graphs_still_run(tmp_path):
    rng = np.random.default_rng(0)
    shared, own_a, own_b = (rng.standard_normal((64, 64)).astype(np.float32) for _ in range(3))
    bias = np.arange(64, dtype=np.float32)  # 256 bytes: stays in the graphs
    paths = {"rollout": tmp_path / "rollout.onnx", "step": tmp_path / "step.onnx"}
    onnx.save_model(_matmul_graph({"w_shared": shared, "w_a": own_a}, bias), str(paths["rollout"]))
    onnx.save_model(_matmul_graph({"step.w": shared, "w_b": own_b}, bias), str(paths["step"]))
    before = {kind: _run(path) for kind, path in paths.items()}
    facts = {kind: {"config": "toy", "context": 5} for kind in paths}

    assert finalize_variant(paths, "fp16", facts) == ["weights.fp16.bin"]

    weights = tmp_path / weights_file("fp16")
    assert weights.name == "weights.fp16.bin"
    assert weights.stat().st_size < 3 * shared.nbytes + 2 * 4096  # three distinct matrices, not four
    for kind, path in paths.items():
        assert external_data_files(path) == ["weights.fp16.bin"]
        np.testing.assert_array_equal(_run(path), before[kind])
        assert path.stat().st_size < shared.nbytes / 4
        meta = graph_metadata(onnx.load(str(path), load_external_data=False))
        assert meta == {"config": "toy", "context": "5", "graph": kind, "variant": "fp16",
                        "weights": "weights.fp16.bin"}


def test_graphs_without_large_weights_keep_them_inline(tmp_path):
    small = {"a": np.eye(4, dtype=np.float32), "c": np.ones((4, 4), np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "a"], ["h"]), helper.make_node("MatMul", ["h", "c"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [numpy_helper.from_array(v, k) for k, v in small.items()])
    path = tmp_path / "step.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    assert finalize_variant({"step": path}, "fp32", {"step": {}}) == []
    assert not (tmp_path / "weights.bin").exists()
    assert graph_metadata(onnx.load(str(path)))["weights"] == "embedded"
