"""int8 QDQ graphs: what the export quantizes (mspn.export.precision), that ONNX Runtime fuses it,
and that mspn.runtime.qdq turns it into what TensorRT parses (float biases, symmetric int8
activations) without changing what it computes beyond the coarser grid."""
from __future__ import annotations

import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from mspn.errors import MSPNError
from mspn.export.precision import conv_network_nodes, to_int8
from mspn.export.preflight import preflight
from mspn.runtime.qdq import (
    fold_int32_dequantize,
    int32_dequantize_nodes,
    symmetric_int8_activations,
    tensorrt_ready,
    tensorrt_ready_bytes,
    uint8_qdq_nodes,
)


def _feature_graph() -> onnx.ModelProto:
    """A ResBlock-like convolution network next to an LSTM-like elementwise path.

    x -> conv1 -> LeakyRelu -> conv2 -> Add(., proj(x)) -> Relu -> conv3 -> y (output)
    c -> Mul(c, c) -> Add(., c) -> cell (output): must stay float.
    """
    rng = np.random.default_rng(0)
    weights = {"w1": (8, 3, 3, 3), "w2": (8, 8, 3, 3), "wp": (8, 3, 1, 1), "w3": (4, 8, 3, 3)}
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, shape).astype(np.float32), name)
             for name, shape in weights.items()]
    inits += [numpy_helper.from_array(rng.normal(0, 0.1, weights[w][0]).astype(np.float32), "b" + w[1:])
              for w in weights]
    same = {"pads": [1, 1, 1, 1]}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["y1"], name="conv1", **same),
             helper.make_node("LeakyRelu", ["y1"], ["r1"], name="lrelu1", alpha=0.01),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["y2"], name="conv2", **same),
             helper.make_node("Conv", ["x", "wp", "bp"], ["p"], name="proj"),
             helper.make_node("Add", ["y2", "p"], ["s"], name="res_add"),
             helper.make_node("Relu", ["s"], ["r2"], name="relu2"),
             helper.make_node("Conv", ["r2", "w3", "b3"], ["y"], name="conv3", **same),
             helper.make_node("Mul", ["c", "c"], ["m"], name="cell_mul"),
             helper.make_node("Add", ["m", "c"], ["cell"], name="cell_add")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8]),
                                           helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8]),
                               helper.make_tensor_value_info("cell", TensorProto.FLOAT, [1, 3, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.fixture(scope="module")
def int8_path(tmp_path_factory):
    """The feature graph quantized by the export's own to_int8."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("qdq")
    onnx.save(_feature_graph(), root / "fp32.onnx")
    feeds = [{"x": rng.normal(0, 1, (1, 3, 8, 8)).astype(np.float32),
              "c": rng.normal(0, 1, (1, 3, 8, 8)).astype(np.float32)} for _ in range(4)]
    to_int8(root / "fp32.onnx", root / "int8.onnx", feeds)
    return root / "int8.onnx"


def _run(path, x, c=None, fused=True):
    """fused=False runs every Q/DQ as its own op around float kernels: the graph's exact QDQ
    arithmetic, whatever integer kernels this CPU has (ORT's s8s8 convolutions lose accuracy on
    x86 CPUs without VNNI, where TensorRT's int8 would not)."""
    feeds = {"x": x, "c": x if c is None else c}
    options = ort.SessionOptions()
    if not fused:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, feeds)


def _optimized_ops(path, tmp_path) -> list[str]:
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(tmp_path / "optimized.onnx").graph.node]


def test_int8_covers_the_convolution_network_only():
    assert conv_network_nodes(_feature_graph().graph) == ["conv1", "lrelu1", "conv2", "proj", "res_add",
                                                          "relu2", "conv3"]


def test_int8_is_uint8_activations_int32_biases_and_onnxruntime_fuses_it(int8_path, tmp_path):
    model = onnx.load(int8_path)
    assert len(int32_dequantize_nodes(model)) == 4
    assert uint8_qdq_nodes(model), "activations should be uint8 with a zero point"
    # The ReLU before a Q is kept (TensorRT's symmetric int8 would not clamp at zero for it).
    assert "Relu" in [n.op_type for n in model.graph.node]
    ops = _optimized_ops(int8_path, tmp_path)
    assert ops.count("QLinearConv") == 4 and "Conv" not in ops, ops
    assert "QLinearAdd" in ops and "QLinearLeakyRelu" in ops, ops
    # The elementwise path is untouched: its output is exactly the float one.
    x = np.random.default_rng(1).normal(0, 1, (1, 3, 8, 8)).astype(np.float32)
    c = np.random.default_rng(2).normal(0, 1, (1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(_run(int8_path, x, c)[1], c * c + c)


def test_tensorrt_ready_graph_has_float_biases_and_symmetric_int8(int8_path, tmp_path):
    model = onnx.load(int8_path)
    counts = tensorrt_ready(model)
    assert counts["int32_bias_dequantize_folded"] == 4 and counts["uint8_qdq_made_symmetric_int8"] > 0
    assert int32_dequantize_nodes(model) == [] and uint8_qdq_nodes(model) == []
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zero = inits[node.input[2]]
            assert zero.dtype == np.int8 and not zero.any(), node.name
    converted = tmp_path / "trt.onnx"
    converted.write_bytes(tensorrt_ready_bytes(int8_path))
    x = np.random.default_rng(1).normal(0, 1, (1, 3, 8, 8)).astype(np.float32)
    y_float = _run(int8_path.parent / "fp32.onnx", x)[0]
    y_u8, y_s8 = _run(int8_path, x, fused=False)[0], _run(converted, x, fused=False)[0]
    # Same range on a coarser grid: close to the uint8 graph, and as close to float as 7 bits allow.
    spread = float(y_float.max() - y_float.min())
    assert np.abs(y_s8 - y_u8).max() < 0.05 * spread
    assert np.abs(y_s8 - y_float).max() < 0.05 * spread
    report = preflight(converted, dynamic_batch=False)
    assert report["ok"] and report["int32_bias_dequantize_folded_at_build"] == 0
    assert report["uint8_qdq_made_symmetric_int8_at_build"] == 0


def test_fold_alone_keeps_the_outputs_exactly(int8_path):
    model = onnx.load(int8_path)
    assert fold_int32_dequantize(model) == 4
    assert all(i.data_type != TensorProto.INT32 for i in model.graph.initializer)
    x = np.random.default_rng(2).normal(0, 1, (1, 3, 8, 8)).astype(np.float32)
    folded = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(folded.run(None, {"x": x, "c": x})[0], _run(int8_path, x)[0], atol=1e-6)


def test_preflight_counts_the_build_rewrites_and_passes(int8_path):
    report = preflight(int8_path, dynamic_batch=False)
    assert report["ok"], report
    assert report["int32_bias_dequantize_folded_at_build"] == 4
    assert report["uint8_qdq_made_symmetric_int8_at_build"] > 0
    assert report["qdq_issues"]["count"] == 0


def test_uint8_weights_are_refused_by_name():
    weights = numpy_helper.from_array(np.arange(4, dtype=np.uint8), "w_q")
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "w_s")
    zero = numpy_helper.from_array(np.array(3, np.uint8), "w_z")
    graph = helper.make_graph([helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w"], name="dq_w")],
                              "g", [], [helper.make_tensor_value_info("w", TensorProto.FLOAT, [4])],
                              [weights, scale, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(MSPNError, match="dq_w: a uint8 initializer is dequantized"):
        symmetric_int8_activations(model)


def test_fold_without_onnx_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` fail, as when not installed
    with pytest.raises(MSPNError, match=r"preparing an int8 graph for TensorRT needs the 'gpu' extra "
                                        r"\(onnx is not installed\): pip install 'mspn\[gpu\]'"):
        tensorrt_ready_bytes("any.onnx")
