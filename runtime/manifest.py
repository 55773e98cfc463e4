"""A model folder's manifest.json (docs/model-folder.md, format_version 1): the one reader and
the one writer (export and engine build both write through ``write_manifest``). Torch-free.

Every file the runtime uses is checked against the manifest's SHA-256 before it is opened, so a
tampered, truncated or swapped file is refused by name instead of producing wrong predictions.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mspn.errors import MSPNError
from mspn.fileio import atomic_write_json, sha256_file

FORMAT = "mspn-model"
FORMAT_VERSION = 1
VARIANTS = ("fp32", "fp16", "int8")
GRAPHS = ("rollout", "step")
_REQUIRED = ("config", "context", "horizon", "frame_size", "channels", "batch", "graphs", "state",
             "files")


MANIFEST = "manifest.json"
CACHE_FOLDER = ".cache"  # per-machine load caches (mspn.runtime.cache); never part of the folder's files
BATCH = "batch"  # the symbol of the dynamic batch axis in tensor shapes


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output. shape: ints, or a symbol ("batch") for a dynamic axis."""

    name: str
    shape: tuple
    dtype: str = "float32"

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    def concrete(self, batch: int) -> tuple[int, ...]:
        return tuple(batch if d == BATCH else int(d) for d in self.shape)


def state_names(levels: int) -> list[str]:
    """Names of the step graph's state inputs, level by level; each output adds ``_out``."""
    names = []
    for level in range(levels):
        names += [f"h_{level}", f"c_{level}", f"pred_{level}"]
    return names


def write_manifest(folder: str | Path, raw: dict) -> dict:
    """Record the SHA-256 of every file in the folder (but the manifest) in ``raw["files"]`` and
    write manifest.json atomically; returns what was written."""
    folder = Path(folder)
    raw = {**raw, "files": {p.relative_to(folder).as_posix(): sha256_file(p)
                            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST
                            and p.relative_to(folder).parts[0] != CACHE_FOLDER}}
    path = folder / MANIFEST
    atomic_write_json(path, raw)
    path.chmod(0o644)  # the atomic writer's temporary file is private; a model folder is not
    return raw


@dataclass(frozen=True)
class GraphSpec:
    """A graph of the folder: kind "rollout" or "step", variant "fp32" | "fp16" | "int8"."""

    kind: str
    variant: str
    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    external: tuple[str, ...] = ()  # external-data (weights) files the graph reads, folder-relative


def _tensors(raw, where: str) -> tuple[TensorSpec, ...]:
    try:
        return tuple(TensorSpec(t["name"], tuple(t["shape"]), t.get("dtype", "float32")) for t in raw)
    except (KeyError, TypeError):
        raise MSPNError(f"{where}: malformed tensor list in the manifest") from None


class Manifest:
    """A parsed, version-checked manifest. ``folder`` is the model folder it describes."""

    def __init__(self, folder: Path, raw: dict):
        self.folder = folder
        self.raw = raw
        self.context = int(raw["context"])
        self.horizon = int(raw["horizon"])
        self.frame_size = tuple(int(v) for v in raw["frame_size"])
        self.channels = int(raw["channels"])
        self.channel_order = raw.get("channel_order", "gray" if self.channels == 1 else "bgr")
        batch = raw["batch"]
        self.batch_min, self.batch_opt, self.batch_max = int(batch["min"]), int(batch["opt"]), int(batch["max"])
        self.state_file = raw["state"]["file"]
        self.state_names = tuple(raw["state"]["names"])
        self.files: dict = raw["files"]
        self.engines: dict = raw.get("engines") or {}

    @classmethod
    def load(cls, folder: str | Path) -> Manifest:
        folder = Path(folder)
        path = folder / MANIFEST
        if not folder.is_dir():
            raise MSPNError(f"model folder not found: {folder}")
        if not path.is_file():
            raise MSPNError(f"{folder}: no manifest.json; is this a model folder written by `mspn export`?")
        try:
            raw = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MSPNError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            found = raw.get("format") if isinstance(raw, dict) else None
            raise MSPNError(f"{path}: not an mspn model manifest (format is {found!r}, "
                            f"expected {FORMAT!r})")
        if raw.get("format_version") != FORMAT_VERSION:
            raise MSPNError(f"{path}: manifest format_version {raw.get('format_version')!r} is not supported "
                            f"(this runtime reads version {FORMAT_VERSION}); re-export the model or upgrade mspn")
        missing = [k for k in _REQUIRED if k not in raw]
        if missing:
            raise MSPNError(f"{path}: manifest lacks {', '.join(missing)}")
        try:
            return cls(folder, raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise MSPNError(f"{path}: malformed manifest ({type(exc).__name__}: {exc})") from None

    @property
    def variants(self) -> list[str]:
        """Variants with both graphs exported."""
        graphs = self.raw["graphs"]
        return [v for v in VARIANTS if all(v in graphs.get(kind, {}) for kind in GRAPHS)]

    def graph(self, kind: str, variant: str) -> GraphSpec:
        if variant not in VARIANTS:
            raise MSPNError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        entry = self.raw["graphs"].get(kind, {}).get(variant)
        if entry is None:
            raise MSPNError(f"{self.folder}: no {variant} {kind} graph in this folder (exported variants: "
                            f"{', '.join(self.variants) or 'none'}); re-export with --variants {variant}")
        where = f"{self.folder}: graphs.{kind}.{variant}"
        return GraphSpec(kind, variant, entry["file"], _tensors(entry["inputs"], where),
                         _tensors(entry["outputs"], where), tuple(entry.get("external") or ()))

    def verified_path(self, name: str) -> Path:
        """The path of a folder file after checking it exists and matches its recorded SHA-256."""
        path = self.folder / name
        expected = self.files.get(name)
        if expected is None:
            raise MSPNError(f"{self.folder}: {name} is not listed in manifest.json files; refusing an "
                            f"unverifiable file")
        if not path.is_file():
            raise MSPNError(f"{self.folder}: {name} is missing from the model folder")
        actual = sha256_file(path)
        if actual != expected:
            raise MSPNError(f"{path}: SHA-256 mismatch (file tampered with, truncated or replaced; "
                            f"expected {expected[:12]}..., got {actual[:12]}...); re-export the model folder")
        return path

    def verified_graph(self, graph: GraphSpec) -> Path:
        """The graph file's path after checking it and every external weights file it reads: each
        listed in the manifest (``graphs.<kind>.<variant>.external`` and ``files``), inside the
        folder and matching its SHA-256. When the onnx package is importable, the graph's own
        references are compared with that list, so an unlisted weights file is refused by name."""
        path = self.verified_path(graph.file)
        root = self.folder.resolve()
        for name in graph.external:
            if not (self.folder / name).resolve().is_relative_to(root):
                raise MSPNError(f"{self.folder}: {graph.file} lists external data {name} outside the model "
                                f"folder; refusing it")
            checked = self.__dict__.setdefault("_checked_external", set())
            if name not in checked:  # rollout and step share their weights file: hash it once
                self.verified_path(name)
                checked.add(name)
        unlisted = sorted(set(external_data_files(path)) - set(graph.external))
        if unlisted:
            raise MSPNError(f"{self.folder}: {graph.file} reads external data {', '.join(unlisted)} that "
                            f"manifest.json does not list for it; refusing an unverifiable file")
        return path

    def engine_for(self, kind: str, variant: str) -> tuple[str, dict]:
        """The TensorRT engine file built from a graph variant, and its record."""
        for name, record in self.engines.items():
            if record.get("graph") == kind and record.get("variant") == variant:
                return name, record
        raise MSPNError(f"{self.folder}: no TensorRT engine for the {variant} {kind} graph; build one "
                        f"with `mspn build-engine --model {self.folder} --variant {variant}`")


def external_data_files(path: str | Path) -> list[str]:
    """The external-data files an ONNX graph's initializers point to (relative to its folder), read
    without loading the weights; empty when onnx is not installed (the runtime extra lacks it)."""
    try:
        import onnx
    except ImportError:
        return []
    model = onnx.load(str(path), load_external_data=False)
    locations = set()
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            locations.update(e.value for e in tensor.external_data if e.key == "location")
    return sorted(locations)
