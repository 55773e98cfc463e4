"""The schema of manifest.json (format_version 1) as a tree of dataclasses, and its one checker.

A model folder may arrive over the network, so its manifest is hostile input: ``parse_json``
bounds what the JSON parser accepts (no NaN/Infinity, no 1e400, no 10,000-digit integers, no
nesting deep enough to exhaust the stack) and ``build(Schema, raw)`` checks every field the runtime
reads against the annotations below (types, numeric bounds, choices, path form) and names the
first field that is wrong. Fields the runtime does not read (config, verification, spec, ...) are
free-form JSON. Torch-free.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

from mspn.errors import MSPNError

MAX_MANIFEST_BYTES = 16 << 20  # a real manifest is ~15 KB; anything near this is not one
MAX_DIM = 1 << 16               # bound on any recorded size: frames, batch, context, horizon
MAX_ITEMS = 10_000              # bound on any list or object the runtime reads
MAX_TEXT = 1024                 # bound on any name or path
SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")  # a dynamic axis ("batch")
DTYPES = ("float32", "float16", "int64", "int32")
VARIANT_TAGS = ("fp32", "fp16", "int8")


def bounded(low: int, high: int = MAX_DIM, **kwargs):
    """A field whose integer value must lie in [low, high]."""
    return field(metadata={"range": (low, high)}, **kwargs)


def relpath(**kwargs):
    """A field naming a file inside the model folder (checked by ``check_relative``)."""
    return field(metadata={"path": True}, **kwargs)


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output. shape: ints, or a symbol ("batch") for a dynamic axis."""

    name: str
    shape: tuple[int | str, ...]
    dtype: Literal["float32", "float16", "int64", "int32"] = "float32"

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    def concrete(self, batch: int) -> tuple[int, ...]:
        return tuple(batch if isinstance(d, str) else int(d) for d in self.shape)

    def check(self, where: str) -> None:
        for d in self.shape:
            if isinstance(d, str) and not SYMBOL.match(d):
                raise MSPNError(f"{where}.shape: {d[:40]!r} is not a dimension (an int or a symbol like 'batch')")
            if isinstance(d, int) and not 0 <= d <= MAX_DIM:
                raise MSPNError(f"{where}.shape: dimension {d} is outside 0..{MAX_DIM}")


@dataclass(frozen=True)
class OpenVINOModel:
    """graphs.<kind>.int8.openvino: the OpenVINO IR that OpenVINO runs instead of the ONNX int8
    graph (NNCF's quantization of the same graph; export/openvino_int8.py). OpenVINO reads the
    weights from the .bin beside the .xml, so ``weights`` must be exactly that file."""

    file: str = relpath()
    weights: str = relpath()
    method: Literal["nncf"] = "nncf"

    def check(self, where: str) -> None:
        if not self.file.endswith(".xml"):
            raise MSPNError(f"{where}.file: {self.file[:80]!r} is not an OpenVINO .xml model")
        if self.weights != self.file[:-len(".xml")] + ".bin":
            raise MSPNError(f"{where}.weights: {self.weights[:80]!r} is not the .bin beside {self.file[:80]!r} "
                            f"(OpenVINO reads that one)")


@dataclass(frozen=True)
class GraphEntry:
    """graphs.<kind>.<variant>. external: weight files the graph reads (ONNX external data);
    openvino: int8 only, the OpenVINO model the openvino backend runs instead (when present)."""

    file: str = relpath()
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    external: tuple[str, ...] = relpath(default=())
    openvino: OpenVINOModel | None = None


@dataclass(frozen=True)
class BatchRange:
    min: int = bounded(1)
    opt: int = bounded(1)
    max: int = bounded(1)
    dynamic: bool = True

    def check(self, where: str) -> None:
        if not self.min <= self.opt <= self.max:
            raise MSPNError(f"{where}: needs min <= opt <= max, got {self.min}, {self.opt}, {self.max}")


@dataclass(frozen=True)
class StateEntry:
    file: str = relpath()
    names: tuple[str, ...] = ()

    def check(self, where: str) -> None:
        if not self.names:
            raise MSPNError(f"{where}.names: empty; the step graph needs its state names")


@dataclass(frozen=True)
class ManifestSchema:
    """The fields of manifest.json the runtime reads (docs/model-folder.md)."""

    format: str
    format_version: int
    config: dict
    context: int = bounded(1)
    horizon: int = bounded(1)
    frame_size: tuple[int, int] = bounded(1)
    channels: int = bounded(1, 64)
    batch: BatchRange
    graphs: dict[Literal["rollout", "step"], dict[Literal["fp32", "fp16", "int8"], GraphEntry]]
    state: StateEntry
    files: dict[str, str] = relpath()
    channel_order: Literal["gray", "bgr", "rgb"] | None = None
    engines: dict[str, dict] | None = relpath(default=None)
    checkpoint: str | None = relpath(default=None)

    def check(self, where: str) -> None:
        for name, digest in self.files.items():
            if not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise MSPNError(f"files.{name}: {digest[:70]!r} is not a hex SHA-256")
        used: dict[str, str] = {}
        for kind, variants in self.graphs.items():
            for variant, entry in variants.items():
                files = {f"graphs.{kind}.{variant}.file": entry.file}
                if entry.openvino is not None:
                    if variant != "int8":
                        raise MSPNError(f"graphs.{kind}.{variant}.openvino: only the int8 variant has an "
                                        f"OpenVINO model")
                    files.update({f"graphs.{kind}.{variant}.openvino.file": entry.openvino.file,
                                  f"graphs.{kind}.{variant}.openvino.weights": entry.openvino.weights})
                for here, name in files.items():
                    _check_graph_file(here, name, variant, used)


def _check_graph_file(here: str, name: str, variant: str, used: dict[str, str]) -> None:
    """A file a graph entry names: used by no other entry (one file cannot be two graphs: an int8
    file served as fp32), and not named as another variant's (export names variant files
    rollout.int8.onnx, ...: a tag naming another variant means the entry points at the wrong graph)."""
    if name in used:
        raise MSPNError(f"{here}: {name} is also {used[name]}")
    used[name] = here
    tags = {part for part in PurePosixPath(name).name.split(".") if part in VARIANT_TAGS}
    if tags - {variant}:
        raise MSPNError(f"{here}: {name} is named as a {', '.join(sorted(tags))} graph, not {variant}")


REQUIRED = tuple(f.name for f in dataclasses.fields(ManifestSchema)
                 if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)


# --- parsing --------------------------------------------------------------------------------------

def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is too large for a float")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 30:
        raise ValueError(f"integer of {len(text)} digits")
    return int(text)


def parse_json(text: str, where: str) -> Any:
    """JSON text -> Python objects, refusing NaN/Infinity, overflowing numbers and deep nesting."""
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float,
                          parse_int=_bounded_int)
    except RecursionError:
        raise MSPNError(f"{where}: nested too deeply to be a manifest") from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise MSPNError(f"{where}: not valid JSON ({str(exc)[:200]})") from None


def check_relative(name: str, where: str) -> None:
    """A file name a manifest may use: relative, POSIX separators, no '..', no empty parts."""
    parts = name.split("/")
    if (not name or name.startswith("/") or "\\" in name or "\0" in name or re.match(r"^[A-Za-z]:", name)
            or any(p in ("", ".", "..") for p in parts)):
        raise MSPNError(f"{where}: {name[:80]!r} is not a plain relative path inside the model folder "
                        f"(absolute paths and '..' are refused)")
    if PurePosixPath(name).is_absolute():  # pragma: no cover - caught above; belt and braces
        raise MSPNError(f"{where}: {name!r} is absolute")


def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


@functools.cache
def _hints(cls) -> dict:
    """The resolved annotations of a schema class (resolving them per call dominated load time)."""
    return typing.get_type_hints(cls)


def build(cls, value, where: str):
    """A ``cls`` dataclass from a JSON object, every field checked against its annotation."""
    if not isinstance(value, dict):
        raise MSPNError(f"{where or 'the manifest'} must be an object, got {_kind(value)}")
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        child = f"{where}.{f.name}" if where else f.name
        if f.name in value:
            kwargs[f.name] = _convert(hints[f.name], value[f.name], child, f.metadata)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise MSPNError(f"{where or 'the manifest'} lacks {f.name}")
    result = cls(**kwargs)
    if hasattr(result, "check"):
        result.check(where)
    return result


def _convert(hint, value, where: str, meta) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for alternative in (a for a in args if a is not type(None)):
            if _matches(alternative, value):
                return _convert(alternative, value, where, meta)
        wanted = " or ".join(_name(a) for a in args)
        raise MSPNError(f"{where} must be {wanted}, got {_kind(value)}")
    if origin is Literal:
        if not isinstance(value, str) or value not in args:
            raise MSPNError(f"{where} must be one of {', '.join(args)}, got {show(value)}")
        return value
    if origin in (tuple, list):
        return _sequence(hint, value, where, meta)
    if origin is dict or hint is dict:
        return _mapping(hint, value, where, meta)
    return _scalar(hint, value, where, meta)


def _sequence(hint, value, where: str, meta) -> tuple:
    args = typing.get_args(hint)
    if not isinstance(value, list):
        raise MSPNError(f"{where} must be a list, got {_kind(value)}")
    if len(value) > MAX_ITEMS:
        raise MSPNError(f"{where}: {len(value)} items, more than any manifest holds")
    if len(args) == 2 and args[1] is Ellipsis or typing.get_origin(hint) is list:
        item_hints = [args[0]] * len(value)
    else:
        if len(value) != len(args):
            raise MSPNError(f"{where} must hold {len(args)} values, got {len(value)}")
        item_hints = list(args)
    return tuple(_convert(h, v, f"{where}[{i}]", meta) for i, (h, v) in enumerate(zip(item_hints, value, strict=True)))


def _mapping(hint, value, where: str, meta) -> dict:
    if not isinstance(value, dict):
        raise MSPNError(f"{where} must be an object, got {_kind(value)}")
    args = typing.get_args(hint)
    if not args:
        return value  # free-form JSON the runtime does not interpret
    if len(value) > MAX_ITEMS:
        raise MSPNError(f"{where}: {len(value)} entries, more than any manifest holds")
    key_hint, value_hint = args
    result = {}
    for key, item in value.items():
        _convert(key_hint, key, f"{where} key", {})
        if meta.get("path"):
            check_relative(key, f"{where} key")
        result[key] = _convert(value_hint, item, f"{where}.{key}", {})
    return result


def _scalar(hint, value, where: str, meta) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise MSPNError(f"{where} must be true or false, got {_kind(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise MSPNError(f"{where} must be an integer, got {_kind(value)} {show(value)}")
        low, high = meta.get("range", (-MAX_DIM, MAX_DIM))
        if not low <= value <= high:
            raise MSPNError(f"{where} must lie in {low}..{high}, got {show(value)}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise MSPNError(f"{where} must be a string, got {_kind(value)}")
        if len(value) > MAX_TEXT:
            raise MSPNError(f"{where}: a string of {len(value)} characters, longer than any name")
        if meta.get("path"):
            check_relative(value, where)
        return value
    if hint is Any:
        return value
    raise TypeError(f"schema type {hint!r} not handled")  # a bug in the schema, not in the input


def _matches(hint, value) -> bool:
    """Whether a value has the JSON type of a union member (its content is checked after)."""
    base = typing.get_origin(hint) or hint
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, {str: str, bool: bool, dict: dict, tuple: list, list: list}.get(base, object))


def _name(hint) -> str:
    base = typing.get_origin(hint) or hint
    return {int: "an integer", str: "a string", dict: "an object", type(None): "null",
            tuple: "a list", list: "a list"}.get(base, str(hint))


def show(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
