"""torch -> ONNX for the wrapper modules: the dynamo exporter first, TorchScript as the fallback.

Every file is written as one self-contained .onnx (weights embedded), and its graph inputs and
outputs are stamped with the names and shapes of the ExportSpec, so both exporters produce the
same signature (TorchScript otherwise leaves invented names on some output dimensions).
"""
from __future__ import annotations

import contextlib
import inspect
import io
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import nn

from mspn.errors import MSPNError
from mspn.export.spec import BATCH, ExportSpec, TensorSpec

EXPORTERS = ("dynamo", "torchscript")


@dataclass
class ExportedGraph:
    path: Path
    exporter: str
    seconds: float


@contextlib.contextmanager
def _quiet():
    """The exporters log and warn for interactive use; keep tqdm readable. Only their own loggers are
    touched (torch.onnx's progress prints are off through verbose=False), never stdout."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def stamp_signature(model: onnx.ModelProto, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> None:
    """Set graph input/output dims to the spec's (``"batch"`` -> dim_param "batch").

    Refuses a graph whose inputs/outputs are not the spec's names in the spec's order.
    """
    for kind, values, specs in (("inputs", model.graph.input, inputs), ("outputs", model.graph.output, outputs)):
        names = [v.name for v in values]
        if names != [s.name for s in specs]:
            raise MSPNError(f"exported graph {kind} {names} differ from the spec's {[s.name for s in specs]}")
        for value, spec in zip(values, specs, strict=True):
            shape = value.type.tensor_type.shape
            if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
                raise MSPNError(f"exported graph tensor {value.name} is not float32")
            shape.ClearField("dim")
            for d in spec.shape:
                dim = shape.dim.add()
                if d == BATCH:
                    dim.dim_param = BATCH
                else:
                    dim.dim_value = int(d)


def export_graph(module: nn.Module, example: tuple[torch.Tensor, ...], path: str | Path,
                 spec: ExportSpec, graph: str, exporter: str) -> ExportedGraph:
    """Export one wrapper module to ``path`` (a single .onnx file) with the given exporter.

    example: the tracing inputs, in the order of ``spec.signature(graph)[0]``.
    Raises whatever the exporter raises; the caller decides about fallback.
    """
    path = Path(path)
    start = time.perf_counter()
    model = export_proto(module, example, spec, graph, exporter)
    # Single file, weights embedded: the runtime and TensorRT get one path per graph.
    onnx.save_model(model, str(path), save_as_external_data=False)
    return ExportedGraph(path, exporter, time.perf_counter() - start)


def export_proto(module: nn.Module, example: tuple[torch.Tensor, ...], spec: ExportSpec, graph: str,
                 exporter: str) -> onnx.ModelProto:
    """The ModelProto of one wrapper module, its inputs/outputs stamped with the spec's signature."""
    if exporter not in EXPORTERS:
        raise MSPNError(f"unknown exporter {exporter!r}; choose from {', '.join(EXPORTERS)}")
    inputs, outputs = spec.signature(graph)
    in_names, out_names = [t.name for t in inputs], [t.name for t in outputs]
    module.eval()
    with _quiet(), torch.no_grad():
        if exporter == "dynamo":
            program = torch.onnx.export(
                module, example, input_names=in_names, output_names=out_names,
                dynamic_shapes=_dynamo_shapes(module, example, spec), opset_version=spec.opset,
                dynamo=True, external_data=False, optimize=True, verify=False, report=False, verbose=False)
            model = program.model_proto
        else:
            buffer = io.BytesIO()
            torch.onnx.export(
                module, example, buffer, input_names=in_names, output_names=out_names,
                dynamic_axes=spec.dynamic_axes(graph) or None, opset_version=spec.opset,
                dynamo=False, do_constant_folding=True)
            model = onnx.load_from_string(buffer.getvalue())
    stamp_signature(model, inputs, outputs)
    for node in model.graph.node:
        # The dynamo exporter stores a Python stack trace per node: bulky, and it leaks local paths.
        del node.metadata_props[:]
    model.producer_name = f"mspn-export ({exporter})"
    return model


def _dynamo_shapes(module: nn.Module, example: tuple, spec: ExportSpec):
    """dynamic_shapes for torch.export: axis 0 of every input is the batch, or nothing is dynamic.

    Follows the forward's signature: one entry per named parameter, and one tuple for ``*state``.
    """
    if not spec.dynamic_batch:
        return None
    batch = torch.export.Dim(BATCH, min=spec.batch_min, max=max(spec.batch_max, 2))
    params = list(inspect.signature(module.forward).parameters.values())
    named = [p for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    shapes: list = [{0: batch} for _ in named]
    if len(named) < len(params):
        shapes.append(tuple({0: batch} for _ in example[len(named):]))
    return tuple(shapes)
