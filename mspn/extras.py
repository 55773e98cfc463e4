"""Optional dependencies: which extra of the `mspn` package installs each, and the one-line error
a command gives when one is missing (never a traceback).

Torch-free and import-free: the CLI and the runtime share it on a runtime-only install.
tests/test_extras.py checks these tables against pyproject.toml.
"""
from __future__ import annotations

import importlib
import importlib.metadata

from mspn.errors import MSPNError

# What each extra of pyproject.toml installs, as import names, self-references expanded
# (tests/test_extras.py checks this against pyproject.toml). `gpu` is the GPU counterpart of
# `runtime`, never installed beside it: the CPU onnxruntime would hide onnxruntime-gpu's CUDA
# provider. `bench` adds to either of them what the full benchmark report needs.
_RUNTIME = {"numpy", "onnxruntime", "cv2", "imageio"}
_TRAIN = {"numpy", "torch", "torchvision", "skimage", "lpips", "tqdm", "matplotlib", "yaml", "cv2", "imageio"}
_EXPORT_CORE = _TRAIN | {"onnx", "onnxscript", "onnxconverter_common"}
EXTRAS = {
    "runtime": _RUNTIME,
    "openvino": {"numpy", "openvino"},
    "bench": {"onnx", "matplotlib", "skimage"},
    "train": _TRAIN,
    "export": _EXPORT_CORE | {"onnxruntime", "openvino", "nncf"},
    "gpu": _RUNTIME | {"tensorrt", "cuda", "onnx"},  # its onnxruntime is the onnxruntime-gpu package
    "export-core": _EXPORT_CORE,
}
# The extra each command needs; with it installed the command runs (README, "Install for deployment").
COMMAND_EXTRAS = {
    "predict": "runtime",  # with --model; with --ckpt alone (PyTorch) it needs train
    "bench": "runtime",    # FLOPs, charts and SSIM against the truth need bench too
    "build-engine": "gpu",
    "export": "export",
    "train": "train", "eval": "train", "import-reference": "train", "data": "train",
}


class MissingExtra(MSPNError):
    """An optional dependency is not installed; the message names the extra that installs it."""


def _top(module: str) -> str:
    return module.split(".")[0]


def extra_for(module: str, command: str | None = None) -> str | None:
    """The extra to install for ``module``: the command's own extra when it brings the module in,
    else the first of EXTRAS that does; None for a module no extra installs."""
    top = _top(module)
    wanted = COMMAND_EXTRAS.get(command or "")
    if wanted and top in EXTRAS[wanted]:
        return wanted
    return next((extra for extra, modules in EXTRAS.items() if top in modules), None)


def missing_message(module: str, extra: str, purpose: str | None = None) -> str:
    """One line: what needs which extra, and the pip command that installs it.

    purpose names what needs it ('charts', 'the openvino backend'); default: the command."""
    who = purpose or "this command"
    return (f"{who} needs the '{extra}' extra ({_top(module)} is not installed): "
            f"pip install 'mspn[{extra}]'")


def require(module: str, extra: str | None = None, purpose: str | None = None, command: str | None = None):
    """Import ``module`` or raise MissingExtra naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or module
        if extra_for(missing) is None:
            raise  # a broken install of something no extra provides: keep the real error
        raise MissingExtra(missing_message(missing, extra or extra_for(missing, command), purpose)) from None


def as_missing_extra(exc: ImportError, command: str | None) -> MissingExtra | None:
    """The one-line error for an ImportError that escaped a command, or None when the missing
    module is not an optional dependency (a bug, which should keep its traceback)."""
    name = getattr(exc, "name", None)
    if not name:
        return None
    extra = extra_for(name, command)
    if extra is None:
        return None
    return MissingExtra(missing_message(name, extra))


def both_onnxruntimes() -> bool:
    """Whether onnxruntime and onnxruntime-gpu are both installed: they share one import folder,
    and the CPU package's files then hide the CUDA and TensorRT execution providers."""
    def installed(name: str) -> bool:
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            return False
        return True
    return installed("onnxruntime") and installed("onnxruntime-gpu")


ONNXRUNTIME_FIX = ("pip uninstall -y onnxruntime onnxruntime-gpu, then pip install 'mspn[gpu]' "
                   "(not beside mspn[runtime] or mspn[export], which bring the CPU onnxruntime)")
