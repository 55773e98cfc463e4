"""Load caches of a model folder, one per machine: OpenVINO's compiled blobs (its ``CACHE_DIR``)
and ONNX Runtime's optimised graphs. Torch-free.

Where: ``<model folder>/.cache/<backend>/<key>/`` when the folder is writable, else the user
cache (``$MSPN_CACHE_DIR``, else ``$XDG_CACHE_HOME/mspn``, else ``~/.cache/mspn``), same layout.
The manifest never lists the cache (``write_manifest`` skips it), so it needs no re-export.

The key is a SHA-256 over the graph's recorded SHA-256 (and its external weights'), the backend
and its version, the load options that change the compiled result, and this machine's CPU. A
changed graph, library or CPU therefore gets a new folder: a stale blob is never looked up, and
neither OpenVINO nor ONNX Runtime has to be trusted to notice the change.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
from pathlib import Path

from .manifest import CACHE_FOLDER

ENV = "MSPN_CACHE_DIR"


def user_cache_root() -> Path:
    """The per-user cache root: $MSPN_CACHE_DIR, else $XDG_CACHE_HOME/mspn, else ~/.cache/mspn."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mspn"


@functools.lru_cache(maxsize=1)
def machine_tag() -> str:
    """This machine's CPU as far as compiled kernels care: architecture, model name and ISA flags
    (an optimised ONNX Runtime graph may hold AVX-512-only kernels, an OpenVINO blob likewise)."""
    model, flags = "", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and not model:
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = " ".join(sorted(value.split()))
    except OSError:  # not Linux: the processor string is the best there is
        model = platform.processor()
    digest = hashlib.sha256(flags.encode()).hexdigest()[:12]
    return f"{platform.machine()}|{model}|{digest}"


def cache_key(parts: dict) -> str:
    """A short hex key for the given facts (JSON-serialisable), this machine's CPU included."""
    text = json.dumps({**parts, "machine": machine_tag()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK)


def cache_dir(model_folder: str | Path, backend: str, parts: dict) -> Path | None:
    """The cache folder for one graph on one backend (created), or None when neither the model
    folder nor the user cache is writable (then the backend compiles as if there were no cache)."""
    key = cache_key({"backend": backend, **parts})
    for root in (Path(model_folder) / CACHE_FOLDER, user_cache_root()):
        folder = root / backend / key
        if _writable(folder):
            return folder
    return None


def graph_cache_dir(manifest, graph, backend: str, version: str, **options) -> Path | None:
    """cache_dir for one graph of a (verified) manifest: keyed by the SHA-256 the manifest records
    for the graph and each of its external weights files, the backend's version and ``options``
    (the load settings that change what is compiled)."""
    files = [graph.file, *graph.external]
    parts = {"graph_sha256": {name: manifest.files.get(name) for name in files},
             "version": version, "options": options}
    return cache_dir(manifest.folder, backend, parts)
