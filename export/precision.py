"""Reduced-precision variants of the fp32 graphs: fp16 (converted) and int8 (static QDQ).

Both keep float32 graph inputs and outputs so every variant has the fp32 signature; they are the
inputs of TensorRT's strongly typed build.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

# fp16 nodes kept in float32 when a plain conversion misses the PSNR floor: the bilinear Resize
# (coordinate arithmetic) and the LSTM's gate non-linearities, whose errors compound over steps.
FP16_SENSITIVE_OPS = ("Resize", "Sigmoid", "Tanh")


def to_fp16(src: str | Path, dst: str | Path, block_ops: Iterable[str] = ()) -> None:
    """fp32 .onnx -> fp16 .onnx with float32 inputs/outputs (onnxconverter-common)."""
    import onnx
    from onnxconverter_common import float16

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


# Only the convolutions (their input activations and weights) are quantized; the elementwise LSTM
# update (c = sig(f) * c + sig(i) * tanh(g), h = sig(o) * tanh(c)), the error maps and the
# predictions stay float32. Quantizing those too (ONNX Runtime's default op list) rounds the cell
# state to int8 at every step, an error that compounds over the rollout, and leaves Q/DQ pairs
# around cheap elementwise ops that cost more than the ops themselves.
INT8_OP_TYPES = ("Conv",)


def to_int8(src: str | Path, dst: str | Path, feeds: list[Mapping[str, np.ndarray]],
            op_types: Iterable[str] = INT8_OP_TYPES) -> dict:
    """Static int8 quantization in QDQ format, calibrated on ``feeds``.

    Per-channel symmetric int8 weights; int8 activations with zero point 0 (symmetric), because
    TensorRT's explicit quantization only accepts signed int8 with a zero point of 0.
    op_types: the node types quantized (None: ONNX Runtime's default, every quantizable op).
    Returns the settings, for the manifest.
    """
    op_types = None if op_types is None else list(op_types)
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    settings = {"format": "QDQ", "per_channel": True, "weight_type": "QInt8",
                "activation_type": "QInt8", "symmetric": True,
                "bias": "int32 (folded to float for TensorRT at engine build)", "calibrate_method": "MinMax",
                "samples": len(feeds), "op_types": op_types or "onnxruntime default"}
    quant_logger = logging.getLogger("onnxruntime.quantization")
    root_level = logging.getLogger().level
    previous = quant_logger.level
    quant_logger.setLevel(logging.ERROR)
    # quantize_static logs its "please run pre-processing" advice on the root logger.
    logging.getLogger().setLevel(logging.ERROR)
    try:
        quantize_static(
            str(src), str(dst), FeedReader(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
            weight_type=QuantType.QInt8, activation_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=op_types,
            # int32 biases: ONNX Runtime fuses DQ -> Conv -> Q into QLinearConv only with a quantized
            # bias; with a float one the conv stays float and dequantizes its weights every call.
            # TensorRT takes int8 DequantizeLinear only: build-engine folds these (mspn.runtime.qdq).
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": True})
    finally:
        quant_logger.setLevel(previous)
        logging.getLogger().setLevel(root_level)
    return settings
