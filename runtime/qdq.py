"""Int8 QDQ graphs as each backend wants them.

The exported int8 graphs are made for the CPU runtimes: activations are uint8 with a zero point
(asymmetric; ONNX Runtime's and OpenVINO's x86 int8 kernels are built around u8 activations x s8
weights, and OpenVINO loses accuracy on symmetric s8 activations), weights int8 per channel, and
convolution biases int32 (ONNX Runtime fuses DQ -> Conv -> Q into QLinearConv only when the bias
comes quantized). TensorRT's explicit quantization takes int8 Q/DQ with a zero point of 0 only, so
before a TensorRT build:
- bias DequantizeLinear(int32) nodes are replaced by the float tensors they compute (scale * int32
  value: the same numbers);
- every uint8 activation Q/DQ becomes symmetric int8 covering the same calibrated range:
  [scale * (0 - zp), scale * (255 - zp)] -> scale' = max(|low|, |high|) / 127, zero point 0. The
  range is kept; the grid is coarser by at most 2x on the side that held fewer levels.

Needs the ``onnx`` package (engine-building machines have it; edge devices running a built
engine do not need this module).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mspn.errors import MSPNError
from mspn.extras import require


def _onnx():
    return require("onnx", "gpu", purpose="preparing an int8 graph for TensorRT")


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
        if scale.ndim == 1 and scale.size > 1 and x.ndim > 0:  # per-axis: broadcast along ``axis``
            shape = [1] * x.ndim
            shape[axis] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        value = ((x - zero) * scale).astype(np.float32)
        model.graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
        folded.append(node)
    for node in folded:
        model.graph.node.remove(node)
    if folded:  # drop the int32 tensors and scales nothing reads any more
        _drop_unused_initializers(model)
        onnx.checker.check_model(model)
    return len(folded)


def uint8_qdq_nodes(model) -> list:
    """QuantizeLinear / DequantizeLinear nodes whose zero point is a uint8 initializer."""
    onnx = _onnx()
    inits = {i.name: i for i in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
            and len(n.input) > 2 and n.input[2] in inits
            and inits[n.input[2]].data_type == onnx.TensorProto.UINT8]


def symmetric_int8_activations(model) -> int:
    """Rewrite every uint8 Q/DQ pair as symmetric int8 over the same range, in place.

    Quantized uint8 initializers (none in the exported graphs: weights are int8) are refused rather
    than re-encoded. Returns how many scale/zero-point pairs were rewritten.
    """
    onnx = _onnx()
    from onnx import numpy_helper
    inits = {i.name: i for i in model.graph.initializer}
    rewritten: dict[tuple[str, str], tuple[str, str]] = {}
    for node in uint8_qdq_nodes(model):
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            raise MSPNError(f"{node.name or node.output[0]}: a uint8 initializer is dequantized; "
                            "only uint8 activations can be converted to TensorRT's symmetric int8")
        key = (node.input[1], node.input[2])
        if key not in rewritten:
            scale = numpy_helper.to_array(inits[key[0]]).astype(np.float64)
            zero = numpy_helper.to_array(inits[key[1]]).astype(np.float64)
            bound = np.maximum(np.abs(scale * (0 - zero)), np.abs(scale * (255 - zero)))
            new_scale = (np.maximum(bound, np.finfo(np.float32).tiny) / 127).astype(np.float32)
            names = (f"{key[0]}__int8_{len(rewritten)}", f"{key[1]}__int8_{len(rewritten)}")
            model.graph.initializer.extend([
                numpy_helper.from_array(new_scale.reshape(scale.shape), names[0]),
                numpy_helper.from_array(np.zeros(zero.shape, np.int8), names[1])])
            rewritten[key] = names
        node.input[1], node.input[2] = rewritten[key]
    if rewritten:  # fp32/fp16 graphs (hundreds of MB) are left as they are, not copied
        _drop_unused_initializers(model)
        onnx.checker.check_model(model)
    return len(rewritten)


def _drop_unused_initializers(model) -> None:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def tensorrt_ready(model) -> dict:
    """Make an exported int8 graph parseable by TensorRT's explicit quantization, in place.

    Returns {"int32_bias_dequantize_folded": n, "uint8_qdq_made_symmetric_int8": m} (0, 0 for
    graphs without them: fp32 and fp16 graphs come back unchanged).
    """
    return {"int32_bias_dequantize_folded": fold_int32_dequantize(model),
            "uint8_qdq_made_symmetric_int8": symmetric_int8_activations(model)}


def tensorrt_ready_bytes(path: str | Path) -> bytes:
    """The serialized graph at ``path`` as TensorRT gets it (see tensorrt_ready)."""
    onnx = _onnx()
    model = onnx.load(str(path))
    tensorrt_ready(model)
    return model.SerializeToString()
