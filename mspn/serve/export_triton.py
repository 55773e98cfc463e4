"""`mspn export-triton`: a model folder -> a standard Triton model repository for Triton's native
ONNX Runtime or TensorRT backends (GPU servers), checked against the ONNX graphs as it is written.

    REPO/NAME_rollout/config.pbtxt, 1/model.onnx | 1/model.plan
        frames (B, T_ctx, C, H, W) -> future (B, T_pred, C, H, W); dynamic batching, the folder's
        batch range
    REPO/NAME_stream/config.pbtxt, 1/model.onnx | 1/model.plan, initial_state/<state name>
        frame (B, C, H, W), open_loop (B,) -> next_frame (B, C, H, W); sequence batcher ("oldest")
        with implicit state: every recurrent tensor is a ``state { }`` entry, so Triton carries
        it between the requests of a sequence (on the GPU) and resets it to the folder's
        initial_state.npz at sequence_start; clients send only frames (open_loop 1; 0 rolls out
        closed loop on the model's own prediction)

The sequence batcher needs no control inputs here: with implicit state Triton itself restarts
the state on START. These backends do not exist in the nvidia-pytriton wheel (Python backend only),
so the repository is served by a full Triton install (e.g. the NGC container), as
benchmarks/gpu_check.sh does.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from mspn.errors import MSPNError
from mspn.fileio import atomic_write_bytes
from mspn.options import ExportTritonOptions
from mspn.runtime.base import require
from mspn.runtime.manifest import Manifest

from .repository import (
    model_name,
    pb,
    read_config,
    rollout_config,
    sequence_batching,
    set_parameters,
    tensor,
    write_config,
)

TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64", "int32": "TYPE_INT32"}
ONNX_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16", 7: "TYPE_INT64", 6: "TYPE_INT32"}  # TensorProto codes
PLATFORMS = {"onnxruntime": ("onnxruntime", "model.onnx"), "tensorrt": ("tensorrt", "model.plan")}


def _dims(spec) -> list[int]:
    """A manifest tensor's dims without the batch axis."""
    return [int(d) for d in spec.shape[1:]]


def stream_config(name: str, manifest: Manifest, graph, backend: str, options: ExportTritonOptions):
    """The step graph as ``NAME_stream``: frame and open_loop in, next_frame out, state implicit."""
    m = pb()
    config = m.ModelConfig(name=f"{name}_stream", backend=backend, max_batch_size=manifest.batch_max)
    states = set(manifest.state_names)
    for spec in graph.inputs:
        if spec.name in states:
            continue
        item = tensor("input", spec.name, _dims(spec) or [1], TRITON_TYPES[spec.dtype])
        if not _dims(spec):  # (B,) in the graph: Triton wants dims [1], reshaped away
            item.reshape.SetInParent()
        config.input.append(item)
    for spec in graph.outputs:
        if not spec.name.endswith("_out"):
            config.output.append(tensor("output", spec.name, _dims(spec), TRITON_TYPES[spec.dtype]))
    sequence_batching(config, manifest.batch_max, options.max_queue_delay_us, options.max_sequences,
                      options.idle_timeout_s, controls=False)
    by_name = {spec.name: spec for spec in graph.inputs}
    for state_name in manifest.state_names:
        spec = by_name[state_name]
        dtype = m.DataType.Value(TRITON_TYPES[spec.dtype])
        initial = m.ModelSequenceBatching.InitialState(data_type=dtype, dims=_dims(spec), name=state_name,
                                                       data_file=state_name)
        config.sequence_batching.state.append(m.ModelSequenceBatching.State(
            input_name=state_name, output_name=f"{state_name}_out", data_type=dtype, dims=_dims(spec),
            initial_state=[initial]))
    return config


def _graph_file(manifest: Manifest, kind: str, variant: str, backend: str) -> Path:
    if backend == "tensorrt":
        engine, _ = manifest.engine_for(kind, variant)
        return manifest.verified_path(engine)
    return manifest.verified_path(manifest.graph(kind, variant).file)


def _write_initial_state(folder: Path, manifest: Manifest, graph) -> None:
    """initial_state/<name>: one batch element, row-major, in the graph's dtype (Triton's format)."""
    with np.load(manifest.verified_path(manifest.state_file), allow_pickle=False) as npz:
        dtypes = {spec.name: spec.dtype for spec in graph.inputs}
        for name in manifest.state_names:
            value = np.ascontiguousarray(npz[name][0], dtype=dtypes[name])
            atomic_write_bytes(folder / "initial_state" / name, value.tobytes())


def export_triton(options: ExportTritonOptions) -> list[str]:
    """Write and check the repository; returns the model names."""
    manifest = Manifest.load(options.model)
    out = Path(options.out)
    if out.exists() and not options.force:
        raise MSPNError(f"{out} exists; pass --force to replace it")
    backend, filename = PLATFORMS[options.backend]
    name = model_name(manifest, options.name)
    step_graph = manifest.graph("step", options.variant)
    rollout = rollout_config(name, manifest, manifest.batch_max, options.max_queue_delay_us, backend,
                             options.instances, kind="KIND_GPU")
    stream = stream_config(name, manifest, step_graph, backend, options)
    stream.instance_group.append(pb().ModelInstanceGroup(kind=pb().ModelInstanceGroup.Kind.Value("KIND_GPU"),
                                                         count=options.instances))
    for config in (rollout, stream):
        set_parameters(config, mspn_model=manifest.folder.resolve().name, mspn_variant=options.variant)
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for config, kind in ((rollout, "rollout"), (stream, "step")):
            folder = staging / config.name
            write_config(folder, config)
            (folder / "1").mkdir(parents=True)
            shutil.copyfile(_graph_file(manifest, kind, options.variant, options.backend), folder / "1" / filename)
        _write_initial_state(staging / stream.name, manifest, step_graph)
        check_repository(staging, manifest, options.variant)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)  # the repository appears whole or not at all
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [rollout.name, stream.name]


def _onnx_signature(path: Path) -> tuple[dict, dict]:
    """{name: (Triton type, dims without batch)} for a graph's inputs and outputs."""
    onnx = require("onnx", "export", "onnx (to check the repository against the graphs)")
    graph = onnx.load(str(path), load_external_data=False).graph

    def describe(values):
        return {v.name: (ONNX_TYPES.get(v.type.tensor_type.elem_type, str(v.type.tensor_type.elem_type)),
                         [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim][1:])
                for v in values}
    return describe(graph.input), describe(graph.output)


def check_repository(repo: str | Path, manifest: Manifest, variant: str) -> None:
    """Parse every config.pbtxt with the ModelConfig schema and match its tensors (names, types,
    dims without batch) and states against the ONNX graph each model was made from."""
    repo = Path(repo)
    configs = sorted(repo.glob("*/config.pbtxt"))
    if len(configs) != 2:
        raise MSPNError(f"{repo}: expected the rollout and stream models, found {len(configs)} config.pbtxt")
    for path in configs:
        config = read_config(path)
        kind = "rollout" if config.name.endswith("_rollout") else "step"
        inputs, outputs = _onnx_signature(manifest.folder / manifest.graph(kind, variant).file)
        _match(path, "input", config.input, inputs)
        _match(path, "output", config.output, outputs)
        for state in config.sequence_batching.state:
            _match(path, "state input", [state], inputs, name=state.input_name)
            _match(path, "state output", [state], outputs, name=state.output_name)
            for initial in state.initial_state:
                size = (path.parent / "initial_state" / initial.data_file).stat().st_size
                want = int(np.prod(initial.dims)) * (2 if initial.data_type == pb().DataType.Value("TYPE_FP16")
                                                     else 4)
                if size != want:
                    raise MSPNError(f"{path}: initial state {initial.data_file} holds {size} bytes, {want} expected")
        covered_in = {t.name for t in config.input} | {s.input_name for s in config.sequence_batching.state}
        covered_out = {t.name for t in config.output} | {s.output_name for s in config.sequence_batching.state}
        if covered_in != set(inputs) or covered_out != set(outputs):
            raise MSPNError(f"{path}: tensors do not cover the graph's (config inputs {sorted(covered_in)}, graph "
                            f"{sorted(inputs)}; config outputs {sorted(covered_out)}, graph {sorted(outputs)})")


def _match(path: Path, what: str, items, graph: dict, name: str | None = None) -> None:
    for item in items:
        key = name or item.name
        if key not in graph:
            raise MSPNError(f"{path}: {what} {key!r} is not in the ONNX graph ({', '.join(graph)})")
        dtype, dims = graph[key]
        reshaped = "reshape" in item.DESCRIPTOR.fields_by_name and item.HasField("reshape")
        declared = list(item.reshape.shape) if reshaped else list(item.dims)
        if pb().DataType.Name(item.data_type) != dtype or declared != dims:
            raise MSPNError(f"{path}: {what} {key!r} is {pb().DataType.Name(item.data_type)} {declared} but the "
                            f"graph has {dtype} {dims}")
