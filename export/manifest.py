"""What an export adds to a model folder's manifest besides its graphs: the package versions.

The manifest's format, reader and writer live in mspn.runtime.manifest (torch-free).
"""
from __future__ import annotations

import importlib.metadata
import platform

from mspn.runtime.manifest import FORMAT, FORMAT_VERSION, write_manifest  # noqa: F401  (re-exported)

_PACKAGES = ("mspn", "torch", "onnx", "onnxscript", "onnxruntime", "onnxconverter-common", "numpy")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out
