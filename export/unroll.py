"""rollout.onnx built in ONNX from the two exported step pieces, instead of tracing the unrolled loop.

Tracing the whole rollout costs time that grows faster than its length: the dynamo exporter took
692 s for the tiny config at 10 -> 30 (5,289 nodes; 62% in onnxscript's rewriter, the rest in
torch.export's symbolic tracing), ~1,000 s for paper-mnist at 10 -> 10. A step exports in seconds,
and the rollout is nothing but steps wired state to state: T_ctx copies of the open-loop step
(OpenLoopStep, frame t in), then T_pred - 1 copies of the closed-loop step (ClosedLoopStep), every
copy reading the same weight initializers. The result is verified against PyTorch like any export.

Layouts: frames (B, T_ctx, C, H, W) -> future (B, T_pred, C, H, W); the step pieces follow
ExportSpec.signature("open_step" / "closed_step").
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from mspn.errors import MSPNError


class _Weights:
    """The union of the pieces' initializers, one tensor per distinct content.

    Both pieces come from the same weights, so most initializers coincide; the exporters also
    invent names (e.g. ``val_12``) that can mean different constants in the two pieces, so tensors
    are matched by content, not by name.
    """

    def __init__(self):
        self.tensors: list[onnx.TensorProto] = []
        self._by_content: dict[tuple, str] = {}
        self._names: set[str] = set()

    def add_graph(self, graph: onnx.GraphProto, tag: str) -> dict[str, str]:
        """Register a graph's initializers; returns {name in graph: name in the merged graph}."""
        mapping = {}
        for tensor in graph.initializer:
            array = numpy_helper.to_array(tensor)
            key = (tensor.data_type, tuple(tensor.dims), hashlib.sha1(array.tobytes()).hexdigest())
            if key not in self._by_content:
                name = tensor.name if tensor.name not in self._names else f"{tag}/{tensor.name}"
                copy = onnx.TensorProto()
                copy.CopyFrom(tensor)
                copy.name = name
                self.tensors.append(copy)
                self._names.add(name)
                self._by_content[key] = name
            mapping[tensor.name] = self._by_content[key]
        return mapping

    def constant(self, name: str, array: np.ndarray) -> str:
        if name in self._names:
            raise MSPNError(f"unroll: initializer name {name!r} is taken")
        self.tensors.append(numpy_helper.from_array(array, name))
        self._names.add(name)
        return name


def _check_piece(model: onnx.ModelProto, what: str) -> None:
    for node in model.graph.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise MSPNError(f"unroll: the {what} graph has control flow ({node.op_type}); "
                            f"export the rollout traced instead (--rollout traced)")


def _copy_step(graph: onnx.GraphProto, prefix: str, feeds: Mapping[str, str],
               weights: Mapping[str, str]) -> tuple[list[onnx.NodeProto], dict[str, str]]:
    """The graph's nodes with every internal value renamed ``prefix + name``.

    feeds: graph input name -> value in the merged graph; weights: initializer name -> merged name.
    Returns (nodes, {graph output name: merged value}).
    """
    def rename(value: str) -> str:
        if not value:  # an omitted optional input
            return value
        if value in feeds:
            return feeds[value]
        if value in weights:
            return weights[value]
        return prefix + value

    nodes = []
    for index, node in enumerate(graph.node):
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = prefix + (node.name or f"{node.op_type}#{index}")
        copy.input[:] = [rename(v) for v in node.input]
        copy.output[:] = [rename(v) for v in node.output]
        nodes.append(copy)
    outputs = {o.name: rename(o.name) for o in graph.output}
    return nodes, outputs


def _check_signatures(open_step, closed_step, state_names: list[str], frame_input: str, outputs: list[str]) -> None:
    for model, what, ins in ((open_step, "open-loop step", [frame_input] + state_names),
                             (closed_step, "closed-loop step", state_names)):
        _check_piece(model, what)
        got_in, got_out = [v.name for v in model.graph.input], [v.name for v in model.graph.output]
        if got_in != ins or got_out != outputs:
            raise MSPNError(f"unroll: the {what} graph has inputs {got_in} and outputs {got_out}, "
                            f"expected {ins} and {outputs}")


def _initial_state_nodes(weights, initial: Mapping[str, np.ndarray], state_names: list[str], frames: str):
    """Nodes expanding the t = 0 state to the batch of ``frames``, and {state name: tensor}.
    The state is weights-only: stored once at batch 1, expanded to the input's batch."""
    tile = weights.constant("unroll/tile", np.ones(3, np.int64))
    nodes = [helper.make_node("Shape", [frames], ["unroll/batch"], name="unroll/batch", start=0, end=1),
             helper.make_node("Concat", ["unroll/batch", tile], ["unroll/state_shape"],
                              name="unroll/state_shape", axis=0)]
    state = {}
    for name in state_names:
        value = weights.constant(f"initial/{name}", np.ascontiguousarray(initial[name], np.float32))
        state[name] = f"unroll/{name}"
        nodes.append(helper.make_node("Expand", [value, "unroll/state_shape"], [state[name]],
                                      name=f"unroll/expand_{name}"))
    return nodes, state


def _stack_nodes(weights, predicted: list[str], future: str) -> list:
    """The predicted frames (B, C, H, W) each, stacked along a new time axis 1 into ``future``."""
    axis = weights.constant("unroll/time_axis", np.array([1], np.int64))
    nodes = [helper.make_node("Unsqueeze", [value, axis], [f"future/{k}"], name=f"future/{k}")
             for k, value in enumerate(predicted)]
    nodes.append(helper.make_node("Concat", [f"future/{k}" for k in range(len(predicted))], [future],
                                  name="future", axis=1))
    return nodes


def unroll(open_step: onnx.ModelProto, closed_step: onnx.ModelProto, initial: Mapping[str, np.ndarray],
           context: int, horizon: int, state_names: list[str], frame_input: str = "frame",
           prediction: str = "pred_0", frames: str = "frames", future: str = "future") -> onnx.ModelProto:
    """The rollout graph: frames (B, T_ctx, C, H, W) -> future (B, T_pred, C, H, W).

    open_step: frame_input + state_names -> [n + "_out" for n in state_names];
    closed_step: state_names -> the same outputs; initial: the t = 0 state, each (1, ...),
    broadcast to the batch of ``frames``; prediction: the state entry that is the next frame.
    The frames/future shapes follow the open step's frame input, with the time axis inserted.
    """
    if context < 1 or horizon < 1:
        raise MSPNError(f"unroll needs context and horizon >= 1, got {context} and {horizon}")
    outputs = [f"{n}_out" for n in state_names]
    _check_signatures(open_step, closed_step, state_names, frame_input, outputs)
    weights = _Weights()
    open_weights = weights.add_graph(open_step.graph, "open")
    closed_weights = weights.add_graph(closed_step.graph, "closed")

    nodes, state = _initial_state_nodes(weights, initial, state_names, frames)

    predicted = []
    for t in range(context):
        index = weights.constant(f"unroll/t{t}", np.array(t, np.int64))
        frame = f"t{t}/{frame_input}"
        nodes.append(helper.make_node("Gather", [frames, index], [frame], name=f"t{t}/take_frame", axis=1))
        step_nodes, out = _copy_step(open_step.graph, f"t{t}/", {frame_input: frame, **state}, open_weights)
        nodes += step_nodes
        state = {name: out[o] for name, o in zip(state_names, outputs, strict=True)}
    predicted.append(state[prediction])  # the first predicted frame
    for k in range(1, horizon):
        step_nodes, out = _copy_step(closed_step.graph, f"h{k}/", state, closed_weights)
        nodes += step_nodes
        state = {name: out[o] for name, o in zip(state_names, outputs, strict=True)}
        predicted.append(state[prediction])

    nodes += _stack_nodes(weights, predicted, future)

    graph = helper.make_graph(nodes, "mspn_rollout",
                              [_with_time_axis(open_step.graph.input[0], frames, context)],
                              [_with_time_axis(open_step.graph.input[0], future, horizon)],
                              initializer=weights.tensors)
    model = helper.make_model(graph, opset_imports=_opsets(open_step, closed_step))
    model.ir_version = open_step.ir_version
    model.functions.extend(_functions(open_step, closed_step))
    return model


def _with_time_axis(frame: onnx.ValueInfoProto, name: str, steps: int) -> onnx.ValueInfoProto:
    """(B, C, H, W) of the step's frame input -> (B, steps, C, H, W), dims as they were."""
    dims = [d.dim_param or (d.dim_value if d.HasField("dim_value") else None)
            for d in frame.type.tensor_type.shape.dim] or ["batch", "channels", "height", "width"]
    return helper.make_tensor_value_info(name, frame.type.tensor_type.elem_type, dims[:1] + [steps] + dims[1:])


def _opsets(*models: onnx.ModelProto) -> list[onnx.OperatorSetIdProto]:
    versions: dict[str, int] = {}
    for model in models:
        for entry in model.opset_import:
            if versions.setdefault(entry.domain, entry.version) != entry.version:
                raise MSPNError(f"unroll: the step pieces import different versions of opset "
                                f"{entry.domain or 'ai.onnx'}")
    return [helper.make_opsetid(domain, version) for domain, version in versions.items()]


def _functions(*models: onnx.ModelProto) -> list[onnx.FunctionProto]:
    """Local functions both pieces may call, once each (same name means the same body)."""
    found: dict[tuple, onnx.FunctionProto] = {}
    for model in models:
        for function in model.functions:
            key = (function.domain, function.name, getattr(function, "overload", ""))
            if key in found and found[key].SerializeToString() != function.SerializeToString():
                raise MSPNError(f"unroll: the step pieces define function {function.name} differently")
            found.setdefault(key, function)
    return list(found.values())


def pieces_from_step(step: onnx.ModelProto, state_names: list[str], frame_input: str = "frame",
                     open_loop_input: str = "open_loop") -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """The rollout's (open_step, closed_step) pieces cut from a step graph.

    step: frame (B, C, H, W), open_loop (B,), state -> next_frame, [n + "_out" for n in state_names].
    open_step feeds open_loop = 1; closed_step also feeds frame = zeros (the step graph blends the
    target as open_loop * frame + (1 - open_loop) * pred_0, so the zeros never reach a value).
    A rollout unrolled from these pieces computes exactly what the step graph does step by step:
    for a quantized step graph it shares every calibrated scale with the streaming graph, where
    pieces quantized on their own would each get ranges from only their part of the feeds.
    """
    inputs = {v.name: v for v in step.graph.input}
    if frame_input not in inputs or open_loop_input not in inputs:
        raise MSPNError(f"unroll: the step graph has inputs {list(inputs)}, expected {frame_input!r} "
                        f"and {open_loop_input!r} among them")
    frame_dims = [d.dim_value for d in inputs[frame_input].type.tensor_type.shape.dim][1:]
    if len(frame_dims) != 3 or not all(frame_dims):
        raise MSPNError(f"unroll: the step graph's {frame_input!r} needs static C, H, W dims, got {frame_dims}")
    outputs = [f"{n}_out" for n in state_names]
    open_step = _step_piece(step, [frame_input] + state_names, outputs,
                            _filled(open_loop_input, frame_input, [], 1.0))
    zeros_frame = _filled(frame_input, state_names[0], frame_dims, 0.0)
    closed_step = _step_piece(step, state_names, outputs,
                              zeros_frame + _filled(open_loop_input, state_names[0], [], 0.0))
    return open_step, closed_step


def _filled(name: str, batch_of: str, dims: list[int], value: float) -> list[onnx.NodeProto]:
    """Nodes making ``name`` = (B, *dims) float32 filled with ``value``, B the batch of ``batch_of``."""
    shape = [helper.make_node("Shape", [batch_of], [f"{name}/batch"], name=f"{name}/batch", start=0, end=1)]
    if dims:
        shape.append(helper.make_node("Constant", [], [f"{name}/dims"], name=f"{name}/dims",
                                      value=numpy_helper.from_array(np.array(dims, np.int64))))
        shape.append(helper.make_node("Concat", [f"{name}/batch", f"{name}/dims"], [f"{name}/shape"],
                                      name=f"{name}/shape", axis=0))
    fill = helper.make_tensor(f"{name}/value", onnx.TensorProto.FLOAT, [1], [value])
    return shape + [helper.make_node("ConstantOfShape", [f"{name}/shape" if dims else f"{name}/batch"], [name],
                                     name=f"{name}/fill", value=fill)]


def _step_piece(step: onnx.ModelProto, inputs: list[str], outputs: list[str],
                prologue: list[onnx.NodeProto]) -> onnx.ModelProto:
    """A copy of ``step`` with only ``inputs`` as graph inputs (the others made by ``prologue``) and
    only ``outputs`` as graph outputs."""
    piece = onnx.ModelProto()
    piece.CopyFrom(step)
    graph = piece.graph
    _keep_only(graph.input, step.graph.input, inputs, "input")
    _keep_only(graph.output, step.graph.output, outputs, "output")
    nodes = list(prologue) + list(step.graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return piece


def _keep_only(field, originals, names: list[str], kind: str) -> None:
    """Make the repeated ValueInfo ``field`` hold exactly ``names``, in that order, taken from
    ``originals``; refuse names the step graph lacks."""
    by_name = {v.name: v for v in originals}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise MSPNError(f"unroll: the step graph has no {kind}(s) {missing}")
    del field[:]
    field.extend(by_name[n] for n in names)
