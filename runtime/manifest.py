"""A model folder's manifest.json (docs/model-folder.md, format_version 1): the one reader and
the one writer (export and engine build both write through ``write_manifest``). Torch-free.

Every file the runtime uses is checked against the manifest's SHA-256 before it is opened, so a
tampered, truncated or swapped file is refused by name instead of producing wrong predictions.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mspn.errors import MSPNError
from mspn.fileio import atomic_write_json, sha256_file

from .manifest_schema import (
    MAX_MANIFEST_BYTES,
    REQUIRED,
    ManifestSchema,
    OpenVINOModel,
    TensorSpec,  # noqa: F401  (re-exported: runners and export use it from here)
    build,
    check_relative,
    parse_json,
    show,
)

FORMAT = "mspn-model"
FORMAT_VERSION = 1
VARIANTS = ("fp32", "fp16", "int8")
GRAPHS = ("rollout", "step")


MANIFEST = "manifest.json"
CACHE_FOLDER = ".cache"  # per-machine load caches (mspn.runtime.cache); never part of the folder's files
BATCH = "batch"  # the symbol of the dynamic batch axis in tensor shapes


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
    return raw


@dataclass(frozen=True)
class GraphSpec:
    """A graph of the folder: kind "rollout" or "step", variant "fp32" | "fp16" | "int8"."""

    kind: str
    variant: str
    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    external: tuple[str, ...] = ()  # ONNX external-data files the graph reads, folder-relative
    openvino: OpenVINOModel | None = None  # int8: the OpenVINO model the openvino backend runs instead


class Manifest:
    """A parsed, schema-checked manifest. ``folder`` is the model folder it describes."""

    def __init__(self, folder: Path, raw: dict, schema: ManifestSchema):
        self.folder = folder
        self.raw = raw
        self.schema = schema
        self.context = schema.context
        self.horizon = schema.horizon
        self.frame_size = schema.frame_size
        self.channels = schema.channels
        self.channel_order = schema.channel_order or ("gray" if self.channels == 1 else "bgr")
        self.batch_min, self.batch_opt, self.batch_max = schema.batch.min, schema.batch.opt, schema.batch.max
        self.state_file = schema.state.file
        self.state_names = schema.state.names
        self.files: dict = schema.files
        self.engines: dict = schema.engines or {}

    @classmethod
    def load(cls, folder: str | Path) -> Manifest:
        """Read and check manifest.json: size first, then JSON, format, version and the schema."""
        folder = Path(folder)
        if not folder.is_dir():
            raise MSPNError(f"model folder not found: {folder}")
        path = folder / MANIFEST
        raw = parse_json(_read_manifest(folder, path), str(path))
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            found = raw.get("format") if isinstance(raw, dict) else None
            raise MSPNError(f"{path}: not an mspn model manifest (format is {show(found)}, "
                            f"expected {FORMAT!r})")
        if raw.get("format_version") != FORMAT_VERSION:
            raise MSPNError(f"{path}: manifest format_version {show(raw.get('format_version'))} is not "
                            f"supported (this runtime reads version {FORMAT_VERSION}); re-export the model or "
                            f"upgrade mspn")
        missing = [k for k in REQUIRED if k not in raw]
        if missing:
            raise MSPNError(f"{path}: manifest lacks {', '.join(missing)}")
        try:
            schema = build(ManifestSchema, raw, "")
        except MSPNError as exc:
            raise MSPNError(f"{path}: malformed manifest: {exc}") from None
        return cls(folder, raw, schema)

    @property
    def variants(self) -> list[str]:
        """Variants with both graphs exported."""
        graphs = self.schema.graphs
        return [v for v in VARIANTS if all(v in graphs.get(kind, {}) for kind in GRAPHS)]

    def graph(self, kind: str, variant: str) -> GraphSpec:
        if variant not in VARIANTS:
            raise MSPNError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        entry = self.schema.graphs.get(kind, {}).get(variant)
        if entry is None:
            raise MSPNError(f"{self.folder}: no {variant} {kind} graph in this folder (exported variants: "
                            f"{', '.join(self.variants) or 'none'}); re-export with --variants {variant}")
        return GraphSpec(kind, variant, entry.file, entry.inputs, entry.outputs, entry.external, entry.openvino)

    def path_inside(self, name: str, what: str = "file") -> Path:
        """``folder / name`` after checking that it stays inside the folder once links are followed;
        a name that is absolute, uses '..' or leads out through a link is refused by name."""
        check_relative(name, f"{self.folder}: {what}")
        path = self.folder / name
        root = self.folder.resolve()
        if not path.resolve().is_relative_to(root):
            raise MSPNError(f"{self.folder}: {name} leads outside the model folder (a symbolic link?); "
                            f"refusing to read it")
        return path

    def verified_path(self, name: str) -> Path:
        """The path of a folder file after checking it lies inside the folder, is a regular file and
        matches its recorded SHA-256. No hash is ever computed for a file outside the folder."""
        path = self.path_inside(name)
        expected = self.files.get(name)
        if expected is None:
            raise MSPNError(f"{self.folder}: {name} is not listed in manifest.json files; refusing an "
                            f"unverifiable file")
        if not path.exists():
            raise MSPNError(f"{self.folder}: {name} is missing from the model folder")
        if not path.is_file():
            raise MSPNError(f"{self.folder}: {name} is not a regular file; refusing it")
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

    def verified_openvino(self, graph: GraphSpec) -> Path:
        """The .xml of a graph's OpenVINO model (``graph.openvino``) after checking it and the .bin
        OpenVINO reads beside it: each listed in ``files``, inside the folder, matching its SHA-256."""
        self.verified_path(graph.openvino.weights)
        return self.verified_path(graph.openvino.file)

    def engine_for(self, kind: str, variant: str) -> tuple[str, dict]:
        """The TensorRT engine file built from a graph variant, and its record."""
        for name, record in self.engines.items():
            if record.get("graph") == kind and record.get("variant") == variant:
                return name, record
        raise MSPNError(f"{self.folder}: no TensorRT engine for the {variant} {kind} graph; build one "
                        f"with `mspn build-engine --model {self.folder} --variant {variant}`")


def _read_manifest(folder: Path, path: Path) -> str:
    """The manifest's text, its size checked before anything is read; it must be a regular file
    inside the folder (not a link leading out, a FIFO or a device)."""
    if not path.exists() and not path.is_symlink():
        raise MSPNError(f"{folder}: no manifest.json; is this a model folder written by `mspn export`?")
    if not path.resolve().is_relative_to(folder.resolve()) or not path.is_file():
        raise MSPNError(f"{path}: not a regular file inside the model folder; refusing it")
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise MSPNError(f"{path}: {size} bytes, larger than any manifest (limit {MAX_MANIFEST_BYTES >> 20} MiB)")
    with open(path, "rb") as handle:
        data = handle.read(MAX_MANIFEST_BYTES + 1)  # the file may grow after the check
    if len(data) > MAX_MANIFEST_BYTES:
        raise MSPNError(f"{path}: larger than any manifest (limit {MAX_MANIFEST_BYTES >> 20} MiB)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MSPNError(f"{path}: not valid JSON (not UTF-8 text: {exc.reason} at byte {exc.start})") from None


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
