"""TensorRT pre-flight without TensorRT: what its ONNX parser would refuse or narrow.

Checks per graph: every op type is in export/data/trt_supported_ops.txt (onnx-tensorrt's support
matrix), no dynamic dimension other than the batch on any graph input/output, int64 tensors
(reported: values outside int32 range would be clamped where TensorRT narrows them), and Q/DQ
nodes TensorRT rejects (zero point not 0, or not int8). The checks run on the graph as
`mspn build-engine` hands it to TensorRT (mspn.runtime.qdq.tensorrt_ready: int32 bias
dequantization folded to float, uint8 activations made symmetric int8); those rewrites are counted.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from mspn.export.spec import BATCH

OPS_FILE = Path(__file__).parent / "data" / "trt_supported_ops.txt"
_LISTED = 20  # names listed per finding; the count says how many there are


@cache
def supported_ops(path: str | Path = OPS_FILE) -> tuple[str, frozenset[str]]:
    """(tensorrt_version from the header, set of op types)."""
    version, ops = "unknown", set()
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line.startswith("#"):
            if line[1:].strip().startswith("tensorrt_version:"):
                version = line.split(":", 1)[1].strip()
            continue
        if line:
            ops.add(line)
    return version, frozenset(ops)


def preflight(path: str | Path, dynamic_batch: bool) -> dict:
    """{ok, unsupported_ops, dynamic_dims, int64_tensors, qdq_issues, op_types, trt_version}.

    ok is False when an op is unsupported, a non-batch dimension is dynamic or a Q/DQ node has a
    form TensorRT refuses; int64 tensors alone are reported, not failed.
    """
    import onnx

    from mspn.runtime.qdq import tensorrt_ready

    model = onnx.load(str(path))
    rewrites = tensorrt_ready(model)
    graph = model.graph
    version, ops = supported_ops()
    op_types = sorted({n.op_type for n in graph.node if n.domain in ("", "ai.onnx")})
    foreign = sorted({f"{n.domain}::{n.op_type}" for n in graph.node if n.domain not in ("", "ai.onnx")})
    unsupported = sorted(set(op_types) - ops) + foreign

    dynamic = _dynamic_dims(graph, dynamic_batch)
    int64_names, outside, int64_io = _int64_tensors(graph)
    qdq = _qdq_issues(graph)

    return {
        "ok": not unsupported and not dynamic and not qdq and not int64_io,
        "trt_version": version,
        "op_types": op_types,
        "unsupported_ops": unsupported,
        "dynamic_dims": dynamic,
        "int64_tensors": {"count": len(int64_names), "names": int64_names[:_LISTED],
                          "outside_int32": outside[:_LISTED], "graph_io": int64_io},
        "qdq_issues": {"count": len(qdq), "examples": qdq[:_LISTED]},
        "int32_bias_dequantize_folded_at_build": rewrites["int32_bias_dequantize_folded"],
        "uint8_qdq_made_symmetric_int8_at_build": rewrites["uint8_qdq_made_symmetric_int8"],
    }


def _dynamic_dims(graph, dynamic_batch: bool) -> list[str]:
    """Graph input/output dims TensorRT's single profile cannot take (anything dynamic but batch)."""
    dynamic = []
    for value in list(graph.input) + list(graph.output):
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            allowed = axis == 0 and dynamic_batch and dim.dim_param == BATCH
            if dim.dim_param and not allowed or not dim.dim_param and not dim.HasField("dim_value"):
                dynamic.append(f"{value.name}[{axis}]={dim.dim_param or '?'}")
    return dynamic


def _int64_tensors(graph) -> tuple[list[str], list[str], list[str]]:
    """(int64 constants, those outside int32's range, int64 graph inputs/outputs). TensorRT casts
    int64 constants to int32; only values outside that range (or int64 graph I/O) matter."""
    import onnx
    from onnx import numpy_helper

    int64 = onnx.TensorProto.INT64
    constants = [n for n in graph.node if n.op_type == "Constant" and n.attribute
                 and n.attribute[0].t.data_type == int64]
    names = [i.name for i in graph.initializer if i.data_type == int64] + [n.output[0] for n in constants]
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer if i.data_type == int64}
    values.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in constants})
    info = np.iinfo(np.int32)
    # Typical case: Slice ends of INT64_MAX ("to the end"), which clamping to INT32_MAX keeps right.
    outside = [name for name, v in values.items() if v.size and (v.max() > info.max or v.min() < info.min)]
    io = [v.name for v in list(graph.input) + list(graph.output) if v.type.tensor_type.elem_type == int64]
    return names, outside, io


def _qdq_issues(graph) -> list[str]:
    """Q/DQ nodes whose zero point is not a zero int8 (TensorRT takes symmetric int8 only)."""
    from onnx import numpy_helper

    inits = {i.name: i for i in graph.initializer}
    issues = []
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            zp = inits.get(node.input[2])
            if zp is None:
                continue
            zero = numpy_helper.to_array(zp)
            if zero.dtype != np.int8 or np.any(zero != 0):
                issues.append(f"{node.name or node.output[0]}: zero point {zero.dtype} "
                              f"{'nonzero' if np.any(zero != 0) else ''}".strip())
    return issues
