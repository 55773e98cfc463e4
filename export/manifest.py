"""manifest.json of a model folder (docs/model-folder.md): hashes, versions, atomic writing.

Torch-free apart from reading torch's version when it is installed.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
from pathlib import Path

from mspn.errors import MSPNError
from mspn.fileio import atomic_write_json

FORMAT = "mspn-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_PACKAGES = ("mspn", "torch", "onnx", "onnxscript", "onnxruntime", "onnxconverter-common", "numpy")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_hashes(folder: str | Path) -> dict[str, str]:
    """{relative path: sha256} for every file in the folder except manifest.json."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): sha256_file(p)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_manifest(folder: str | Path, manifest: dict) -> dict:
    """Fill in "files" (hashes of what is in the folder now) and write manifest.json atomically."""
    manifest = dict(manifest)
    manifest["files"] = file_hashes(folder)
    path = Path(folder) / MANIFEST
    atomic_write_json(path, manifest)
    path.chmod(0o644)  # the atomic writer's temporary file is private; a model folder is not
    return manifest


def read_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise MSPNError(f"{folder}: no {MANIFEST} (not a model folder written by `mspn export`)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise MSPNError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise MSPNError(f"{path}: not an mspn model manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise MSPNError(f"{path}: manifest format version {manifest.get('format_version')} is not "
                        f"supported (this mspn reads {FORMAT_VERSION})")
    return manifest


def check_hashes(folder: str | Path, manifest: dict) -> list[str]:
    """Files whose sha256 differs from the manifest's, or that are missing: [] when all match."""
    folder = Path(folder)
    bad = []
    for name, digest in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file() or sha256_file(path) != digest:
            bad.append(name)
    return bad
