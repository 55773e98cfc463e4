"""The OpenVINO-native int8 of a model folder: NNCF post-training quantization of the fp32 graphs,
quantizing exactly what the ONNX int8 plan quantizes.

OpenVINO runs the exporter's ONNX QDQ graph as it is, but NNCF's own placement of FakeQuantize
ops suits OpenVINO's low-precision transformations better (measured on the trained tiny model:
61 ms vs 81 ms per rollout, benchmarks/results/2026-12-01-issue13-budget.md). A plain
``nncf.quantize`` of the whole graph also quantizes the LSTM's gate non-linearities and cell
update, which the exporter keeps float32 by design (18.8 dB vs fp32); so every operation that
does not come from a node the ONNX int8 plan quantizes (mspn.export.precision.quant_blocks minus
the float32 blocks the budget search chose) goes into NNCF's ``ignored_scope``. Calibration: the
int8 variant's own feeds. When that misses the budget on OpenVINO, more blocks are put back to
float32 (``search``, the ONNX plan's greedy search; each try bypasses FakeQuantize ops with
``keep_float``: an evaluation, not a new quantization). Seconds to a minute or two, not accuracy
control's minutes. The rollout model is the fp32 step graph unrolled with the step model's
FakeQuantize ops copied into every step copy (``rollout_from_step``): like the QDQ rollout, it
shares the step model's ranges and computes what the step loop computes.

How OpenVINO ops are traced to ONNX nodes: OpenVINO's ONNX frontend gives each op the friendly
name of the node it came from, suffixed with ``/...`` for the extra ops of a decomposition (a
Conv with bias becomes ``<node>/WithoutBiases`` + ``<node>``); ops it invents itself (shape
arithmetic) match no node and stay float.

Written to ``openvino/<graph>.int8.xml`` + ``.bin`` (quantized weights int8, the others float32,
not compressed to float16: the float parts must compute what the fp32 graph computes).
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from mspn.errors import MSPNError
from mspn.extras import require

IR_FOLDER = "openvino"
METHODS = ("auto", "nncf", "qdq")
_SKIPPED_TYPES = frozenset({"Parameter", "Constant", "Result"})


def ir_files(graph: str) -> tuple[str, str]:
    """("openvino/step.int8.xml", "openvino/step.int8.bin"): folder-relative, POSIX."""
    stem = f"{IR_FOLDER}/{graph}.int8"
    return f"{stem}.xml", f"{stem}.bin"


def resolve_method(requested: str, log=None) -> str:
    """"nncf" or "qdq" for --openvino-int8 ``requested``. auto: nncf when nncf and openvino are
    importable, else qdq (with an info line through ``log``); nncf without them: MissingExtra."""
    if requested not in METHODS:
        raise MSPNError(f"--openvino-int8: unknown {requested!r}; choose from {', '.join(METHODS)}")
    if requested == "qdq":
        return "qdq"
    if requested == "nncf":
        for module in ("nncf", "openvino"):
            require(module, "export", purpose="--openvino-int8 nncf")
        return "nncf"
    import importlib.util
    missing = [m for m in ("nncf", "openvino") if importlib.util.find_spec(m) is None]
    if missing:
        if log is not None:
            log(f"info: OpenVINO will run the ONNX QDQ int8 graph ({' and '.join(missing)} not installed; "
                f"pip install 'mspn[export]' for the NNCF OpenVINO int8 model)")
        return "qdq"
    return "nncf"


def quantized_nodes(model, float_blocks: Iterable[str]) -> set[str]:
    """Names of the ONNX nodes the int8 plan quantizes: quant_blocks minus ``float_blocks``.
    ``model``: an onnx.ModelProto whose nodes all have names."""
    kept = set(float_blocks)
    return {n for block, names in node_blocks(model).items() if block not in kept for n in names}


def node_blocks(model) -> dict[str, list[str]]:
    """{block: names of the ONNX nodes the int8 plan quantizes in it} (precision.quant_blocks)."""
    from mspn.export.precision import quant_blocks

    return quant_blocks(model.graph)


def origin(name: str, nodes) -> str | None:
    """The ONNX node an OpenVINO op comes from: its friendly name, or the longest '/'-prefix of it
    that names a node in ``nodes``; None for ops OpenVINO made up."""
    while name not in nodes and "/" in name:
        name = name.rsplit("/", 1)[0]
    return name if name in nodes else None


def ignored_ops(ov_model, onnx_nodes: set[str], quantized: set[str]) -> list[str]:
    """Friendly names of the OpenVINO ops NNCF must leave float: every op that does not come from
    a node in ``quantized`` (see ``origin``)."""
    return [op.get_friendly_name() for op in ov_model.get_ordered_ops()
            if op.get_type_name() not in _SKIPPED_TYPES and origin(op.get_friendly_name(), onnx_nodes) not in quantized]


def keep_float(model, block_of: Mapping[str, str], blocks: Iterable[str]):
    """A copy of an NNCF-quantized model (weights not yet compressed) with ``blocks`` back in
    float32: every FakeQuantize edge into an op of those blocks is bypassed, so the op reads the
    FakeQuantize's input (float weights, float activations). ``block_of``: {ONNX node: block}.
    The same as adding the blocks to NNCF's ignored scope, up to NNCF sharing one scale between
    quantizers (its ranges come from the float model and bias correction is off), at the cost of
    no new quantization."""
    blocks = set(blocks)
    copy = model.clone()
    for op in copy.get_ordered_ops():
        if op.get_type_name() != "FakeQuantize" or not blocks:
            continue
        for target in list(op.output(0).get_target_inputs()):
            if block_of.get(origin(target.get_node().get_friendly_name(), block_of)) in blocks:
                target.replace_source_output(op.input_value(0))
    return copy


def compress_weights(model) -> None:
    """Store the quantized weights as int8 (OpenVINO's own pass, the one nncf.quantize ends with
    by default), in place."""
    from openvino._offline_transformations import compress_quantize_weights_transformation

    compress_quantize_weights_transformation(model)


def _named_onnx(src: Path, work: Path):
    """(onnx model with every node named, the path OpenVINO converts): ``src`` itself when the
    exporter named every node (it does), else a named copy in ``work``."""
    import onnx

    from mspn.export.precision import _name_nodes

    model = onnx.load(str(src))
    if all(node.name for node in model.graph.node):
        return model, src
    _name_nodes(model)
    named = work / f".{src.stem}.named.onnx"
    onnx.save_model(model, str(named))
    return model, named


def nncf_int8(src: Path, feeds: list[Mapping[str, np.ndarray]], float_blocks: Iterable[str]):
    """(quantized openvino.Model, {ONNX node: block}, settings for the manifest) of the fp32 ONNX
    graph ``src``, calibrated on ``feeds`` ({input name: array}), quantizing only the int8 plan's
    nodes outside ``float_blocks``. Weights are left float under their FakeQuantize (so
    ``keep_float`` can restore blocks); ``compress_weights`` stores them as int8.

    NNCF's defaults (performance preset: per-channel symmetric int8 weights, symmetric activations,
    min/max ranges) except bias correction, which is off: on the trained tiny step graph it cost
    3 dB against the fp32 rollout (33.5 vs 36.5 dB with the plan's float32 blocks) and a third of
    the time."""
    import nncf
    import openvino as ov
    from nncf.openvino.quantization.backend_parameters import BackendParameters
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    with tempfile.TemporaryDirectory(dir=src.parent, prefix=".nncf-") as tmp:
        onnx_model, path = _named_onnx(src, Path(tmp))
        ov_model = ov.convert_model(str(path))
    block_of = {node: block for block, nodes in node_blocks(onnx_model).items() for node in nodes}
    quantized = {node for node, block in block_of.items() if block not in set(float_blocks)}
    if not quantized:
        raise MSPNError("nncf int8: every block is kept in float32, nothing left to quantize")
    ignored = ignored_ops(ov_model, {n.name for n in onnx_model.graph.node}, quantized)
    advanced = AdvancedQuantizationParameters(disable_bias_correction=True,
                                              backend_params={BackendParameters.COMPRESS_WEIGHTS: False})
    with _nncf_quiet():
        model = nncf.quantize(ov_model, nncf.Dataset(list(feeds)), subset_size=len(feeds),
                              ignored_scope=nncf.IgnoredScope(names=ignored, validate=False),
                              advanced_parameters=advanced)
    settings = {"api": "nncf.quantize", "nncf_version": nncf.__version__,
                "preset": "performance (nncf default)", "bias_correction": False, "samples": len(feeds),
                "float_blocks": sorted(set(float_blocks)), "onnx_nodes_quantizable": len(quantized),
                "openvino_ops_ignored": len(ignored)}
    return model, block_of, settings


def fake_quantize_count(model) -> int:
    return sum(1 for op in model.get_ordered_ops() if op.get_type_name() == "FakeQuantize")


@contextlib.contextmanager
def _nncf_quiet():
    """While NNCF quantizes: its log at ERROR, and its progress bars (rich, on the global console,
    i.e. stdout) muted through that console's own ``quiet`` switch; both restored after."""
    import rich

    nncf_logger = logging.getLogger("nncf")
    console = rich.get_console()
    level, quiet = nncf_logger.level, console.quiet
    nncf_logger.setLevel(logging.ERROR)
    console.quiet = True
    try:
        yield
    finally:
        nncf_logger.setLevel(level)
        console.quiet = quiet


def save_ir(model, folder: Path, graph: str) -> tuple[str, str]:
    """Write ``model`` as openvino/<graph>.int8.xml + .bin under ``folder`` (float32 weights),
    each file renamed into place only once both are written. Returns the folder-relative names."""
    import openvino as ov

    xml, weights = ir_files(graph)
    (folder / IR_FOLDER).mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder / IR_FOLDER, prefix=".ir-") as tmp:
        staged = Path(tmp) / Path(xml).name
        ov.save_model(model, str(staged), compress_to_fp16=False)
        os.replace(staged.with_suffix(".bin"), folder / weights)
        os.replace(staged, folder / xml)
    return xml, weights


def compiled_runs(path, threads: int = 0):
    """(step(feed) -> outputs, rollout(frames) -> future) of a graph file (or openvino.Model)
    compiled by OpenVINO the way the runtime compiles it (openvino_backend.compile_model: f32).
    feed/outputs: {name: array}; frames (B, T_ctx, C, H, W) -> future (B, T_pred, C, H, W)."""
    from mspn.runtime.openvino_backend import compile_model

    compiled = compile_model(path, threads=threads)
    request = compiled.create_infer_request()
    ports = {port.get_any_name(): port for port in compiled.outputs}
    names = {port.get_any_name(): sorted(port.get_names()) for port in compiled.outputs}

    def step(feed):
        result = request.infer(feed)
        out = {}
        for name, port in ports.items():
            value = np.array(result[port], copy=True)
            for alias in names[name]:  # a port may carry several tensor names
                out[alias] = value
        return out

    def rollout(frames):
        return np.array(request.infer({"frames": frames})[ports["future"]], copy=True)
    return step, rollout


def search(keep_float, evaluate, blocks: list[str], log) -> dict:
    """The NNCF model's float32 blocks beyond the ONNX plan's: budget.search_int8_plan with one
    "method" (nncf) over the blocks the plan quantizes. ``keep_float(extra float blocks)`` -> model,
    ``evaluate(model)`` -> budget figures. The plan's own scope is tried first (1 round); only when
    it misses are sensitivities measured and blocks kept float greedily (2 * len(blocks) rounds
    at most, each an evaluation only)."""
    from mspn.export.budget import search_int8_plan

    # No prune pass: NNCF's model is kept only when OpenVINO runs it at least as accurately as the
    # QDQ graph (pipeline._openvino_int8), so pruning it down to the bare budget would forfeit that
    # comparison to the QDQ graph's margin every time.
    return search_int8_plan(lambda _method, extra: keep_float(extra), evaluate, blocks, ("nncf",), log,
                            prune=False)


# export/unroll.py names the nodes of each step copy "t<k>/<step node>" (open loop) or "h<k>/..." (closed)
COPY_PREFIX = re.compile(r"^[th]\d+/")


def rollout_from_step(step_model, rollout_model) -> dict:
    """Quantize ``rollout_model`` (OpenVINO, fp32, unrolled from the fp32 step graph: its ops are
    named "t<k>/<step op>", "h<k>/<step op>") in place with the quantized step model's FakeQuantize ops: each one
    is copied before the same input of every copy of its consumer. The rollout then shares every
    calibrated range with the step model and computes what the step loop computes (as the QDQ
    rollout, unrolled from the int8 step graph, does). Returns {"fake_quantize_inserted",
    "step_edges", "step_edges_unmatched"} (edges whose consumer no copy has, e.g. folded away)."""
    import openvino.opset13 as ops

    edges = {}
    for fq in step_model.get_ordered_ops():
        if fq.get_type_name() == "FakeQuantize":
            for target in fq.output(0).get_target_inputs():
                edges[target.get_node().get_friendly_name(), target.get_index()] = fq
    matched, inserted = set(), 0
    for op in rollout_model.get_ordered_ops():
        name = COPY_PREFIX.sub("", op.get_friendly_name())
        for port in range(op.get_input_size()):
            fq = edges.get((name, port))
            if fq is None:
                continue
            ranges = [ops.constant(fq.input_value(i).get_node().get_data()) for i in range(1, 5)]
            copy = ops.fake_quantize(op.input_value(port), *ranges, fq.get_attributes()["levels"],
                                     fq.get_attributes()["auto_broadcast"])
            op.input(port).replace_source_output(copy.output(0))
            matched.add((name, port))
            inserted += 1
    rollout_model.validate_nodes_and_infer_types()
    return {"fake_quantize_inserted": inserted, "step_edges": len(edges),
            "step_edges_unmatched": len(set(edges) - matched)}
