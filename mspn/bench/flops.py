"""FLOPs of an ONNX graph from its convolutions and matrix products, and the machine's ceiling.

Counting: ONNX shape inference (batch fixed to 1) gives every Conv / ConvTranspose / MatMul /
Gemm (and their quantized forms) its input and output shapes; a multiply-accumulate counts as 2
FLOPs. Element-wise ops, resizes and activations are left out: they are memory-bound and small
next to the convolutions, and leaving them out keeps the count comparable with a convolution
ceiling. Torch-free (onnx + numpy).

The ceiling is the measured throughput of a chain of large 3x3 convolutions (a shape typical of
the model; a chain, so per-call costs such as layout reorders are spread as in the model) on the
same backend, precision and thread count: what "fast" means on this machine.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mspn.errors import MSPNError

CONV_OPS = {"Conv", "ConvInteger", "QLinearConv", "ConvTranspose"}
MATMUL_OPS = {"MatMul", "MatMulInteger", "QLinearMatMul", "Gemm"}


def _fix_batch(model, batch: int = 1) -> None:
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        for dim in dims:
            if dim.dim_param:
                dim.ClearField("dim_param")
                dim.dim_value = batch


def _infer_shapes(model):
    """Shapes of every tensor. The rollout graph expands its stored t = 0 state to the batch
    through Shape -> Expand, which ONNX's own inference cannot follow; ONNX Runtime's symbolic
    inference can (it evaluates small shape computations), so it is tried first."""
    from onnx import shape_inference

    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
        inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
        if inferred is not None:
            return inferred
    except Exception:  # noqa: BLE001 - fall back to ONNX's inference (a lower bound then)
        pass
    return shape_inference.infer_shapes(model)


def count_flops(path: str | Path) -> dict:
    """{"flops", "conv_flops", "matmul_flops", "convs", "matmuls", "uncounted"} for batch 1.

    ``uncounted``: conv/matmul nodes whose shapes inference could not resolve (then the total
    is a lower bound).
    """
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises several types for a bad file
        raise MSPNError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None
    _fix_batch(model)
    model = _infer_shapes(model)
    shapes: dict[str, list[int]] = {}
    for value in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in dims]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    # Q/DQ (and Cast) pass shapes through: a weight behind DequantizeLinear keeps its dims.
    for node in model.graph.node:
        if node.op_type in ("DequantizeLinear", "QuantizeLinear", "Cast") and node.input[0] in shapes:
            shapes.setdefault(node.output[0], shapes[node.input[0]])

    conv = matmul = 0
    convs = matmuls = uncounted = 0
    for node in model.graph.node:
        op = node.op_type
        if op in CONV_OPS:
            # QLinearConv: (x, x_scale, x_zp, w, ...); the others: (x, w, ...)
            w_name = node.input[3] if op == "QLinearConv" else node.input[1]
            w, y = shapes.get(w_name), shapes.get(node.output[0])
            if not w or not y or min(w) < 1 or min(y) < 1:
                uncounted += 1
                continue
            if op == "ConvTranspose":
                x = shapes.get(node.input[0])
                if not x or min(x) < 1:
                    uncounted += 1
                    continue
                macs = int(np.prod(x)) * int(np.prod(w[1:]))
            else:
                # every output element takes (C_in / groups) * kernel MACs = prod(w[1:])
                macs = int(np.prod(y)) * int(np.prod(w[1:]))
            conv += 2 * macs
            convs += 1
        elif op in MATMUL_OPS:
            a_name = node.input[0]
            b_name = node.input[3] if op == "QLinearMatMul" else node.input[1]
            a, b, y = shapes.get(a_name), shapes.get(b_name), shapes.get(node.output[0])
            if not a or not b or not y or min(a + b + y) < 1:
                uncounted += 1
                continue
            transposed_a = any(att.name == "transA" and att.i for att in node.attribute)
            inner = a[-2] if (op == "Gemm" and transposed_a) else a[-1]
            matmul += 2 * int(np.prod(y)) * int(inner)
            matmuls += 1
    return {"flops": conv + matmul, "conv_flops": conv, "matmul_flops": matmul, "convs": convs,
            "matmuls": matmuls, "uncounted": uncounted}


# --- the ceiling: a chain of large convolutions ---------------------------------------------------

CEILING_SHAPE = {"channels": 256, "height": 32, "width": 32, "kernel": 3, "depth": 4}


def ceiling_flops() -> int:
    s = CEILING_SHAPE
    return 2 * s["channels"] ** 2 * s["kernel"] ** 2 * s["height"] * s["width"] * s["depth"]


def _int8_conv_chain(weight: np.ndarray, bias: np.ndarray, depth: int, pads: list) -> tuple[list, list]:
    """Nodes and initializers of ``depth`` convolutions in the int8 exports' QDQ pattern
    (uint8 per-tensor activations, int8 per-channel weights, int32 biases): x -> y."""
    from onnx import helper, numpy_helper

    c = weight.shape[0]
    w_scale = (np.abs(weight).reshape(c, -1).max(axis=1) / 127).astype(np.float32)
    w_q = np.clip(np.round(weight / w_scale[:, None, None, None]), -127, 127).astype(np.int8)
    inits = [numpy_helper.from_array(w_q, "w_q"), numpy_helper.from_array(w_scale, "w_s"),
             numpy_helper.from_array(np.zeros(c, np.int8), "w_zp"),
             numpy_helper.from_array(np.array(0.05, np.float32), "a_s"),
             numpy_helper.from_array(np.array(128, np.uint8), "a_zp"),
             numpy_helper.from_array((bias / (w_scale * 0.05)).astype(np.int32), "b_q"),
             numpy_helper.from_array((w_scale * 0.05).astype(np.float32), "b_s"),
             numpy_helper.from_array(np.zeros(c, np.int32), "b_zp")]
    nodes = [helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_zp"], ["wd"], axis=0),
             helper.make_node("DequantizeLinear", ["b_q", "b_s", "b_zp"], ["bd"], axis=0)]
    value = "x"
    for i in range(depth):
        nodes += [helper.make_node("QuantizeLinear", [value, "a_s", "a_zp"], [f"q{i}"]),
                  helper.make_node("DequantizeLinear", [f"q{i}", "a_s", "a_zp"], [f"d{i}"]),
                  helper.make_node("Conv", [f"d{i}", "wd", "bd"], [f"c{i}"], pads=pads)]
        value = f"c{i}"
    nodes += [helper.make_node("QuantizeLinear", [value, "a_s", "a_zp"], ["yq"]),
              helper.make_node("DequantizeLinear", ["yq", "a_s", "a_zp"], ["y"])]
    return nodes, inits


def ceiling_model(path: str | Path, variant: str = "fp32") -> Path:
    """Write a chain of ``depth`` convolutions as an ONNX model (x (1, C, H, W) -> y) for a variant.

    fp32 and bf16 (OpenVINO compiles the fp32 graph in bf16): float Convs; fp16: the same in
    float16 with Casts at the ends, as the fp16 exports have; int8: the QDQ pattern of the int8
    exports (uint8 per-tensor activations, int8 per-channel weights, int32 biases).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    s = CEILING_SHAPE
    c, k = s["channels"], s["kernel"]
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((c, c, k, k)) * 0.02).astype(np.float32)
    bias = np.zeros(c, np.float32)
    pads = [k // 2] * 4
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, s["height"], s["width"]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, s["height"], s["width"]])
    nodes, inits = [], []
    depth = s["depth"]
    if variant in ("fp32", "bf16"):
        inits += [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")]
        names = ["x"] + [f"y{i}" for i in range(1, depth)] + ["y"]
        nodes += [helper.make_node("Conv", [names[i], "w", "b"], [names[i + 1]], pads=pads) for i in range(depth)]
    elif variant == "fp16":
        inits += [numpy_helper.from_array(weight.astype(np.float16), "w"),
                  numpy_helper.from_array(bias.astype(np.float16), "b")]
        names = ["x16"] + [f"y{i}" for i in range(1, depth)] + ["y16"]
        nodes += [helper.make_node("Cast", ["x"], ["x16"], to=TensorProto.FLOAT16)]
        nodes += [helper.make_node("Conv", [names[i], "w", "b"], [names[i + 1]], pads=pads) for i in range(depth)]
        nodes += [helper.make_node("Cast", ["y16"], ["y"], to=TensorProto.FLOAT)]
    elif variant == "int8":
        nodes, inits = _int8_conv_chain(weight, bias, depth, pads)
    else:
        raise MSPNError(f"no ceiling model for variant {variant!r}")
    graph = helper.make_graph(nodes, f"ceiling_{variant}", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
