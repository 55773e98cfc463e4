"""The last rewrite of a variant's two graphs before the manifest: model facts stamped into each
graph's ``metadata_props``, and the weights stored once in a file both graphs share.

``rollout.onnx`` and ``step.onnx`` read the same trained weights (the unrolled rollout copies the
step pieces), so embedding them in each file stored them twice. Here every initializer of at least
``EXTERNAL_MIN_BYTES`` moves to ``weights[.<variant>].bin`` as ONNX external data, one copy per
distinct content (dtype, shape and bytes): both graphs point at the same offsets of one file.
Small tensors (scales, zero points, shapes) stay in the graphs.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.external_data_helper import set_external_data

EXTERNAL_MIN_BYTES = 1024
PAGE = 4096        # large tensors start on a page, so ONNX Runtime can map them instead of copying
SMALL_ALIGN = 64
METADATA_PREFIX = "mspn."


def weights_file(variant: str) -> str:
    """weights.bin for fp32 (as rollout.onnx), weights.fp16.bin, weights.int8.bin."""
    return "weights.bin" if variant == "fp32" else f"weights.{variant}.bin"


def stamp_metadata(model: onnx.ModelProto, facts: dict) -> None:
    """Set ``mspn.<key>`` metadata_props from ``facts`` (values as strings; lists comma-joined),
    replacing earlier mspn entries and keeping anyone else's."""
    keep = [p for p in model.metadata_props if not p.key.startswith(METADATA_PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in facts.items():
        text = ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)
        model.metadata_props.add(key=METADATA_PREFIX + key, value=text)


def graph_metadata(model: onnx.ModelProto) -> dict[str, str]:
    """The ``mspn.*`` metadata_props of a graph, without the prefix."""
    return {p.key[len(METADATA_PREFIX):]: p.value for p in model.metadata_props
            if p.key.startswith(METADATA_PREFIX)}


def share_weights(models: dict[str, onnx.ModelProto], location: str, out: Path) -> int:
    """Move the large initializers of ``models`` into one external-data file ``out`` (referenced as
    ``location`` relative to the graphs), one copy per distinct content, in place.

    Returns the bytes written. Initializers must be dense tensors (the exporters' output).
    """
    offsets: dict[tuple, tuple[int, int]] = {}
    written = 0
    with open(out, "wb") as handle:
        for model in models.values():
            for tensor in model.graph.initializer:
                data = numpy_helper.to_array(tensor)
                raw = np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
                if len(raw) < EXTERNAL_MIN_BYTES:
                    continue
                key = (tensor.data_type, tuple(tensor.dims), hashlib.sha256(raw).hexdigest())
                if key not in offsets:
                    align = PAGE if len(raw) >= 16 * PAGE else SMALL_ALIGN
                    start = -(-written // align) * align
                    handle.write(b"\0" * (start - written))
                    handle.write(raw)
                    offsets[key] = (start, len(raw))
                    written = start + len(raw)
                for field in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
                    tensor.ClearField(field)
                tensor.raw_data = b"\0"  # set_external_data insists on a raw_data field
                set_external_data(tensor, location, *offsets[key])
                tensor.ClearField("raw_data")
                tensor.data_location = onnx.TensorProto.EXTERNAL
    return written


def finalize_variant(paths: dict[str, Path], variant: str, facts: dict[str, dict]) -> list[str]:
    """Rewrite a variant's graphs ({kind: path}, all in one folder): shared external weights, and
    metadata (``facts[kind]`` plus the graph kind, variant and weights file). Returns the external
    files the graphs now read (relative to their folder); each graph is checked by onnx.checker."""
    from mspn.export.verify import check_model

    folder = next(iter(paths.values())).parent
    location = weights_file(variant)
    models = {kind: onnx.load(str(path)) for kind, path in paths.items()}
    written = share_weights(models, location, folder / location)
    if not written:  # nothing large enough to move: the graphs keep their weights
        (folder / location).unlink()
    for kind, model in models.items():
        stamp_metadata(model, {**facts[kind], "graph": kind, "variant": variant,
                               "weights": location if written else "embedded"})
        onnx.save_model(model, str(paths[kind]), save_as_external_data=False)
        check_model(paths[kind])
    return [location] if written else []
