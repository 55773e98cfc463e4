"""The extras: mspn.extras mirrors pyproject.toml, the GPU extra never lands beside the CPU
onnxruntime in any documented install, and a missing optional dependency is one line naming the
extra that installs it."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from mspn import extras
from mspn.errors import MSPNError

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11+")
REPO = Path(__file__).resolve().parents[1]
# Distribution name (pyproject.toml) -> the module it is imported as.
IMPORT_NAMES = {"numpy": "numpy", "torch": "torch", "torchvision": "torchvision", "scikit-image": "skimage",
                "lpips": "lpips", "tqdm": "tqdm", "matplotlib": "matplotlib", "PyYAML": "yaml",
                "opencv-python-headless": "cv2", "imageio": "imageio", "onnx": "onnx", "onnxscript": "onnxscript",
                "onnxconverter-common": "onnxconverter_common", "onnxruntime": "onnxruntime",
                "onnxruntime-gpu": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt",
                "cuda-python": "cuda", "nncf": "nncf"}
# Where installs are documented or scripted.
INSTALL_DOCS = ("README.md", "docs/runtime.md", "benchmarks/README.md", "benchmarks/gpu_check.sh", ".ci/setup-env.sh")


def _declared() -> dict[str, list[str]]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _distributions(extra_names: str, declared: dict) -> set[str]:
    """Every distribution `mspn[extra_names]` installs, self-references expanded."""
    out: set[str] = set()
    for extra in (e.strip() for e in extra_names.split(",") if e.strip()):
        for requirement in declared[extra]:
            name = re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0)
            nested = re.match(r"mspn\[(.+)\]", requirement)
            out |= _distributions(nested.group(1), declared) if nested else {name}
    return out


def test_the_table_mirrors_pyproject():
    declared = _declared()
    for extra, modules in extras.EXTRAS.items():
        assert {IMPORT_NAMES[d] for d in _distributions(extra, declared)} == modules, extra
    for command, extra in extras.COMMAND_EXTRAS.items():
        assert extra in declared, (command, extra)


def test_the_gpu_extra_never_lands_beside_the_cpu_onnxruntime():
    declared = _declared()
    assert "onnxruntime" not in _distributions("gpu", declared)
    for extra in declared:  # no single extra brings both
        assert not {"onnxruntime", "onnxruntime-gpu"} <= _distributions(extra, declared), extra
    installs = []
    for doc in INSTALL_DOCS:
        text = (REPO / doc).read_text()
        installs += [(doc, m) for m in re.findall(r"(?:mspn|\.)\[([a-z\-,]+)\]", text)]
        installs += [(doc, m) for m in re.findall(r'extras="([a-z\-,]+)"', text)]
    assert any("gpu" in names.split(",") for _, names in installs), "no documented GPU install found"
    for doc, names in installs:
        if "gpu" in names.split(","):
            assert "onnxruntime" not in _distributions(names, declared), f"{doc}: mspn[{names}]"


def test_extra_for_prefers_the_commands_own_extra():
    assert extras.extra_for("torch") == "train"
    assert extras.extra_for("onnx") == "bench"
    assert extras.extra_for("onnx", "build-engine") == "gpu"
    assert extras.extra_for("onnx.helper", "export") == "export"
    assert extras.extra_for("cv2", "predict") == "runtime"
    assert extras.extra_for("no_such_module") is None


def test_require_names_the_extra_in_one_line(monkeypatch):
    for name in ("matplotlib", "matplotlib.pyplot"):  # as when not installed (even if imported before)
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(extras.MissingExtra) as raised:
        extras.require("matplotlib.pyplot", purpose="charts")
    assert str(raised.value) == ("charts needs the 'bench' extra (matplotlib is not installed): "
                                 "pip install 'mspn[bench]'")
    assert isinstance(raised.value, MSPNError)
    with pytest.raises(ModuleNotFoundError):  # not an optional dependency: the real error stands
        extras.require("mspn_no_such_module")


def test_both_onnxruntimes_are_refused_with_the_fix(monkeypatch):
    import importlib.metadata as md

    real = md.distribution
    monkeypatch.setattr(md, "distribution", lambda name: real("onnxruntime") if name == "onnxruntime-gpu"
                        else real(name))
    assert extras.both_onnxruntimes()
    assert "pip uninstall -y onnxruntime onnxruntime-gpu" in extras.ONNXRUNTIME_FIX
