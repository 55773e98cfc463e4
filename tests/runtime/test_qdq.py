"""mspn.runtime.qdq: int32-bias QDQ graphs fuse in ONNX Runtime, and folding their bias
DequantizeLinear for TensorRT leaves the computation unchanged."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from mspn.export.precision import FeedReader, to_int8
from mspn.export.preflight import preflight
from mspn.runtime.qdq import fold_int32_dequantize, int32_dequantize_nodes, tensorrt_ready_bytes

@pytest.fixture(scope="module")
def int8_path(tmp_path_factory):
    """Two 3x3 convs with biases and a ReLU, quantized by the export's own to_int8."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.normal(0, 0.3, (4, 8, 3, 3)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "b2")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["y1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["y1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    root = tmp_path_factory.mktemp("qdq")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), root / "fp32.onnx")
    feeds = [{"x": rng.random((1, 3, 8, 8), dtype=np.float32)} for _ in range(4)]
    to_int8(root / "fp32.onnx", root / "int8.onnx", feeds)
    return root / "int8.onnx"

def _optimized_ops(path, tmp_path) -> list[str]:
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(tmp_path / "optimized.onnx").graph.node]

def test_int8_biases_are_int32_and_onnxruntime_fuses_every_conv(int8_path, tmp_path):
    model = onnx.load(int8_path)
    assert len(int32_dequantize_nodes(model)) == 2
    ops = _optimized_ops(int8_path, tmp_path)
    assert ops.count("QLinearConv") == 2 and "Conv" not in ops, ops

def test_folding_for_tensorrt_keeps_the_outputs(int8_path, tmp_path):
    model = onnx.load(int8_path)
    assert fold_int32_dequantize(model) == 2
    assert int32_dequantize_nodes(model) == []
    assert all(i.data_type != TensorProto.INT32 for i in model.graph.initializer)
    folded = tmp_path / "folded.onnx"
    folded.write_bytes(tensorrt_ready_bytes(int8_path))
    x = np.random.default_rng(1).random((1, 3, 8, 8), dtype=np.float32)
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]  # noqa: E731
    np.testing.assert_allclose(run(folded), run(int8_path), atol=1e-6)
    # What TensorRT parses has int8 Q/DQ only.
    report = preflight(folded, dynamic_batch=False)
    assert report["ok"] and report["int32_bias_dequantize_folded_at_build"] == 0

def test_preflight_counts_int32_biases_apart(int8_path):
    report = preflight(int8_path, dynamic_batch=False)
    assert report["ok"], report
    assert report["int32_bias_dequantize_folded_at_build"] == 2
    assert report["qdq_issues"]["count"] == 0

def test_fold_without_onnx_says_what_to_install(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx":
            raise ImportError("simulated: onnx not installed")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    from mspn.errors import MSPNError
    with pytest.raises(MSPNError, match=r"needs the onnx package \(pip install onnx"):
        tensorrt_ready_bytes("any.onnx")
