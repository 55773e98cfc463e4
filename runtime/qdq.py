"""Int8 QDQ graphs as each backend wants them.

The exported int8 graphs quantize convolution biases to int32 (DequantizeLinear(int32 bias) ->
Conv): ONNX Runtime fuses DQ -> Conv -> Q into QLinearConv only when the bias comes quantized, and
a float bias leaves the convolution in float, dequantizing its weights on every call. TensorRT's
parser takes DequantizeLinear with int8 inputs only, so before a TensorRT build those bias
DequantizeLinear nodes are replaced by the float tensors they compute (scale * int32 value: the
same numbers, so the engine computes what the verified graph computes).

Needs the ``onnx`` package (engine-building machines have it; edge devices running a built
engine do not need this module).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mspn.errors import MSPNError


def _onnx():
    try:
        import onnx
    except ImportError:
        raise MSPNError("preparing an int8 graph for TensorRT needs the onnx package "
                        "(pip install onnx, or pip install mspn[gpu])") from None
    return onnx


def int32_dequantize_nodes(model) -> list:
    """DequantizeLinear nodes whose quantized input is an int32 initializer (the biases)."""
    onnx = _onnx()
    inits = {i.name: i for i in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
            and inits[n.input[0]].data_type == onnx.TensorProto.INT32]


def fold_int32_dequantize(model) -> int:
    """Replace every int32 DequantizeLinear of an initializer by its float32 result, in place.

    Returns how many were folded. Follows the DequantizeLinear definition: (x - zero_point) *
    scale, per tensor or per ``axis``.
    """
    onnx = _onnx()
    from onnx import numpy_helper
    inits = {i.name: i for i in model.graph.initializer}
    folded = []
    for node in int32_dequantize_nodes(model):
        x = numpy_helper.to_array(inits[node.input[0]]).astype(np.float64)
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        zero = (numpy_helper.to_array(inits[node.input[2]]).astype(np.float64)
                if len(node.input) > 2 and node.input[2] else np.zeros_like(scale))
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if scale.ndim == 1 and x.ndim > 0:  # per-axis: broadcast along ``axis``
            shape = [1] * x.ndim
            shape[axis] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        value = ((x - zero) * scale).astype(np.float32)
        model.graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
        folded.append(node)
    for node in folded:
        model.graph.node.remove(node)
    # Drop the int32 tensors and scales nothing reads any more.
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    onnx.checker.check_model(model)
    return len(folded)


def tensorrt_ready_bytes(path: str | Path) -> bytes:
    """The serialized graph at ``path`` with int32 DequantizeLinear folded (unchanged if none)."""
    onnx = _onnx()
    model = onnx.load(str(path))
    fold_int32_dequantize(model)
    return model.SerializeToString()
