"""Reduced-precision variants of the fp32 graphs: fp16 (converted) and int8 (static QDQ).

Both keep float32 graph inputs and outputs so every variant has the fp32 signature; they are the
inputs of TensorRT's strongly typed build.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from mspn.errors import MSPNError

# fp16 nodes kept in float32 when a plain conversion misses the PSNR floor: the bilinear Resize
# (coordinate arithmetic) and the LSTM's gate non-linearities, whose errors compound over steps.
FP16_SENSITIVE_OPS = ("Resize", "Sigmoid", "Tanh")


def to_fp16(src: str | Path, dst: str | Path, block_ops: Iterable[str] = ()) -> None:
    """fp32 .onnx -> fp16 .onnx with float32 inputs/outputs (onnxconverter-common)."""
    import onnx
    from onnxconverter_common import float16

    if isinstance(src, onnx.ModelProto):
        model = onnx.ModelProto()
        model.CopyFrom(src)
    else:
        model = onnx.load(str(src))
    _isolate_outputs(model)
    block = list(float16.DEFAULT_OP_BLOCK_LIST) + [op for op in block_ops]
    with _quiet_converter():
        converted = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=block)
    onnx.save_model(converted, str(dst), save_as_external_data=False)


def _isolate_outputs(model) -> None:
    """Give every graph output its own Identity node.

    The step graph reads some of its outputs (e.g. h_l_out) inside the graph too. With
    keep_io_types the converter casts such an output back to float32 under the same name, so the
    internal readers would see float32 next to float16 weights; reading an internal copy avoids it.
    """
    from onnx import helper
    outputs = {o.name for o in model.graph.output}
    consumed = {i for n in model.graph.node for i in n.input} & outputs
    for name in consumed:
        inner = f"{name}__inner"
        for node in model.graph.node:
            for k, value in enumerate(node.output):
                if value == name:
                    node.output[k] = inner
            for k, value in enumerate(node.input):
                if value == name:
                    node.input[k] = inner
        model.graph.node.append(helper.make_node("Identity", [inner], [name], name=f"{name}__identity"))


@contextlib.contextmanager
def _quiet_converter():
    import warnings
    with warnings.catch_warnings():
        # Weights under fp16's smallest normal get truncated; the PSNR check judges the effect.
        warnings.simplefilter("ignore")
        yield


class FeedReader:
    """An onnxruntime CalibrationDataReader over a list of feeds ({input name: array})."""

    def __init__(self, feeds: list[Mapping[str, np.ndarray]]):
        self._feeds = list(feeds)
        self._iter = iter(self._feeds)

    def get_next(self):
        return next(self._iter, None)

    def rewind(self):
        self._iter = iter(self._feeds)

    def __len__(self):
        return len(self._feeds)


# What int8 covers: the convolution network of each encoder-decoder, end to end - every Conv (input
# activations, per-channel weights and, as ONNX Runtime does for every Conv, its output), and the
# ResBlock adds, LeakyReLU/ReLU activations and max-pools between convolutions, so ONNX Runtime
# fuses each into QLinearConv/QLinearAdd/QLinearLeakyRelu and activations stay uint8 from one conv
# to the next. What stays float32: the LSTM update after the gate convolution (sigmoid/tanh,
# c = sig(f) * c + sig(i) * tanh(g), h = sig(o) * tanh(c)), the error maps and the predictions -
# rounding the cell state to 8 bits at every step is an error that compounds over the rollout,
# and those elementwise ops are cheap. (Measured on the trained paper-mnist step graph, 2 threads:
# this selection 36 ms/step at 66.8 dB vs fp32; convolutions only 50 ms at 67.5 dB; ONNX Runtime's
# default op list, cell state included, 38 ms at 61.4 dB; fp32 127 ms.)
INT8_OP_TYPES = ("Conv", "Add", "LeakyRelu", "Relu", "MaxPool")
# Ops whose inputs may come from a quantized node without leaving the convolution network.
_FEATURE_CONSUMERS = frozenset({"Conv", "Add", "LeakyRelu", "Relu", "MaxPool", "Concat", "Resize"})


def conv_network_nodes(graph) -> list[str]:
    """Names of the nodes int8 quantizes (see INT8_OP_TYPES): every Conv, and each Add, LeakyRelu,
    Relu or MaxPool whose data inputs all come from selected nodes, whose output is no graph output
    and feeds only feature ops (so the prediction's LeakyReLU, the error ReLUs and the LSTM's cell
    update Add stay float32). ``graph.node`` is in topological order, as ONNX requires."""
    consumers: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, set()).add(node.op_type)
    graph_outputs = {o.name for o in graph.output}
    selected, produced = [], set()
    for node in graph.node:
        if node.op_type == "Conv":
            take = True
        elif node.op_type in INT8_OP_TYPES:
            take = (all(name in produced for name in node.input[:2] if name)
                    and not graph_outputs & set(node.output)
                    and all(consumers.get(o, set()) <= _FEATURE_CONSUMERS for o in node.output))
        else:
            take = False
        if take:
            selected.append(node.name)
            produced.update(node.output)
    return selected


CALIBRATION_METHODS = ("MinMax", "Entropy", "Percentile")  # onnxruntime.quantization.CalibrationMethod


def block_of_weight(name: str) -> str | None:
    """The block a convolution weight belongs to, from its parameter path, or None for other names.

    "model.levels.0.gates.encoders.1.res_in.conv1.weight" -> "levels.0.gates.encoders.1" (one
    encoder or decoder stage with its ResBlocks and merge conv); other convs of a level are blocks
    of their own: "levels.0.gates.in_conv", "levels.0.gates.merge_higher", "levels.0.predict".
    The same parameter names appear in the step graph and in both rollout pieces, so one plan
    names the same blocks in every graph.
    """
    parts = name.split(".")
    if parts[0] == "model":
        parts = parts[1:]
    if len(parts) < 3 or parts[0] != "levels" or parts[-1] != "weight":
        return None
    for i, part in enumerate(parts[:-2]):
        if part in ("encoders", "decoders"):
            return ".".join(parts[:i + 2])
    return ".".join(parts[:-1])


def quant_blocks(graph) -> dict[str, list[str]]:
    """{block name: names of the nodes int8 quantizes in it}, in graph order.

    A Conv belongs to the block of its weight (block_of_weight; its own node name when the weight
    has no parameter path, e.g. TorchScript's onnx::Conv_12); the Add, ReLU and MaxPool nodes
    quantized with it belong to the block of the node producing their first input.
    """
    selected = set(conv_network_nodes(graph))
    producer_block: dict[str, str] = {}
    blocks: dict[str, list[str]] = {}
    for node in graph.node:
        if node.name not in selected:
            continue
        if node.op_type == "Conv":
            block = block_of_weight(node.input[1]) or node.name
        else:
            block = producer_block.get(node.input[0], node.name)
        blocks.setdefault(block, []).append(node.name)
        for out in node.output:
            producer_block[out] = block
    return blocks


def graph_blocks(src: str | Path) -> dict[str, list[str]]:
    """quant_blocks of the graph at ``src``, with nodes named as to_int8 names them."""
    import onnx
    model = onnx.load(str(src))
    _name_nodes(model)
    return quant_blocks(model.graph)


def _name_nodes(model) -> None:
    for index, node in enumerate(model.graph.node):
        if not node.name:  # node selection is by name
            node.name = f"{node.op_type}__{index}"


def to_int8(src, dst: str | Path, feeds: list[Mapping[str, np.ndarray]], method: str = "MinMax",
            float_blocks: Iterable[str] = ()) -> dict:
    """Static int8 quantization in QDQ format, calibrated on ``feeds`` with ``method`` (one of
    CALIBRATION_METHODS); the nodes of ``float_blocks`` (quant_blocks names) stay float32.

    Weights: int8 per channel, symmetric. Activations: uint8 with a zero point (asymmetric), the
    u8 x s8 form ONNX Runtime's and OpenVINO's x86 kernels run fastest (VNNI) and OpenVINO keeps
    accurate (symmetric s8 activations measured 27.7 dB where u8 gave 67 dB on the trained
    paper-mnist step graph). TensorRT needs symmetric int8: `mspn build-engine` converts each
    activation Q/DQ to int8 over the same calibrated range (mspn.runtime.qdq). Biases: int32.
    Nodes quantized: conv_network_nodes. src: a path or an onnx.ModelProto (not modified).
    Returns the settings, for the manifest.
    """
    import onnx

    if method not in CALIBRATION_METHODS:
        raise MSPNError(f"unknown calibration method {method!r}; choose from {', '.join(CALIBRATION_METHODS)}")
    if isinstance(src, onnx.ModelProto):
        model = onnx.ModelProto()
        model.CopyFrom(src)
    else:
        model = onnx.load(str(src))
    _name_nodes(model)
    blocks = quant_blocks(model.graph)
    kept_float = set(float_blocks)
    nodes = [n for block, names in blocks.items() if block not in kept_float for n in names]
    chosen = set(nodes)
    counts = {op: sum(1 for n in model.graph.node if n.name in chosen and n.op_type == op)
              for op in INT8_OP_TYPES}
    settings = {"format": "QDQ", "per_channel": True, "weight_type": "QInt8 (symmetric)",
                "activation_type": "QUInt8 (asymmetric; symmetric int8 for TensorRT at engine build)",
                "bias": "int32 (folded to float for TensorRT at engine build)", "calibrate_method": method,
                "samples": len(feeds), "op_types": list(INT8_OP_TYPES), "nodes_quantized": counts,
                "float_blocks": sorted(kept_float & set(blocks))}
    if not nodes:  # onnxruntime reads an empty nodes_to_quantize as "every node"
        raise MSPNError("int8: every block is kept in float32, nothing left to quantize")
    _quantize_static(model, dst, feeds, method, nodes)
    return settings


def _quantize_static(model, dst: str | Path, feeds, method: str, nodes: list[str]) -> None:
    """onnxruntime's quantize_static with the project's settings (see to_int8), quietly."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with _quantizer_logs_quiet():
        quantize_static(
            model, str(dst), FeedReader(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
            calibrate_method=getattr(CalibrationMethod, method),
            op_types_to_quantize=list(INT8_OP_TYPES), nodes_to_quantize=nodes,
            # int32 biases: ONNX Runtime fuses DQ -> Conv -> Q into QLinearConv only with a
            # quantized bias; with a float one the conv stays float and dequantizes its
            # weights every call. Keep ReLUs before a Q: dropping them relies on the uint8
            # clamp at zero, which the symmetric int8 graph TensorRT gets would not have.
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True,
                           "QuantizeBias": True, "QDQKeepRemovableActivations": True})


class _ModuleLogging:
    """Stands in for the `logging` module inside onnxruntime.quantization's modules: their
    module-level calls (logging.warning(...), which log on the root logger and, when it has no
    handler yet, configure it for the whole process) go to one named logger instead."""

    def __init__(self, logger: logging.Logger):
        self._logger = logger

    def __getattr__(self, name):
        if name in ("debug", "info", "warning", "error", "critical", "exception", "log"):
            return getattr(self._logger, name)
        return getattr(logging, name)


@contextlib.contextmanager
def _quantizer_logs_quiet():
    """While quantizing: onnxruntime.quantization's messages (e.g. its advice to pre-process, which
    does not apply: nodes are chosen by name on the graph as exported) go to its own logger, held
    at ERROR, and the progress its histogram calibrators (Entropy, Percentile) print() goes to
    that logger's debug level. The root logger and stdout (never redirected: that would swallow
    the caller's own output) are left alone."""
    import sys

    quant_logger = logging.getLogger("onnxruntime.quantization")
    previous = quant_logger.level
    quant_logger.setLevel(logging.ERROR)
    stand_in = _ModuleLogging(quant_logger)
    modules = [module for name, module in list(sys.modules.items())
               if name.startswith("onnxruntime.quantization") and module is not None]
    swapped = [module for module in modules if getattr(module, "logging", None) is logging]
    printing = [module for module in modules if "print" not in vars(module)]

    def print_to_log(*values, **_):
        quant_logger.debug(" ".join(map(str, values)))
    for module in swapped:
        module.logging = stand_in
    for module in printing:  # a module-level name shadows the builtin for that module only
        module.print = print_to_log
    try:
        yield
    finally:
        for module in swapped:
            module.logging = logging
        for module in printing:
            del module.print
        quant_logger.setLevel(previous)
