"""Packaging: the wheel carries the top-level export/ and runtime/ as mspn.export and mspn.runtime
with their data, and a regular (non-editable) install imports both from any folder, the repository
root included (where the source folder mspn/ shadows the installed package)."""
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# What pyproject.toml builds from; the wheel is built from a copy of these so that the checkout
# gets no build/ or *.egg-info folders (a stale build/ would also leak old files into wheels).
SOURCES = ("pyproject.toml", "README.md", "mspn", "export", "runtime")
WHEEL_FILES = ("mspn/data/assets/mnist_5k.csv.gz", "mspn/runtime/predictor.py", "mspn/export/pipeline.py",
               "mspn/export/data/trt_supported_ops.txt", "mspn/bench/run.py")
IMPORT_BOTH = ("import mspn.export, mspn.runtime, mspn.export.preflight as p; "
               "assert p.OPS_FILE.is_file(), p.OPS_FILE; print(mspn.runtime.__file__)")


def _run(cmd: list, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", OMP_NUM_THREADS="1")
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel pip builds (offline, with this environment's setuptools) from a copy of the sources."""
    for backend in ("setuptools", "wheel"):
        if importlib.util.find_spec(backend) is None:
            pytest.skip(f"building the wheel offline needs {backend} in this environment")
    tmp = tmp_path_factory.mktemp("wheel")
    for name in SOURCES:
        src, dst = REPO / name, tmp / "src" / name
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    out = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                "--wheel-dir", tmp / "dist", tmp / "src"])
    assert out.returncode == 0, out.stdout + out.stderr
    (built,) = (tmp / "dist").glob("mspn-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_env(wheel, tmp_path_factory) -> Path:
    """A new virtual environment holding the wheel (no dependencies) and numpy, which
    mspn.runtime imports; skipped when the environment cannot be made or pip reaches no index."""
    env = tmp_path_factory.mktemp("venv") / "env"
    made = _run([sys.executable, "-m", "venv", env])
    if made.returncode != 0:
        pytest.skip(f"cannot create a virtual environment: {made.stderr.strip()[-300:]}")
    python = env / "bin" / "python"
    out = _run([python, "-m", "pip", "install", "--no-deps", wheel])
    assert out.returncode == 0, out.stdout + out.stderr
    # The running numpy's version: a wheel surely exists for this Python, and pip's cache may hold it.
    got = _run([python, "-m", "pip", "install", "--timeout", "15", "--retries", "1", f"numpy=={np.__version__}"],
               timeout=180)
    if got.returncode != 0:
        pytest.skip(f"pip could not install numpy from an index: {got.stderr.strip()[-300:]}")
    return env


def test_wheel_carries_export_runtime_and_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in WHEEL_FILES if name not in names]
    assert not missing, f"{wheel.name} lacks {missing}"
    assert not any(name.startswith(("export/", "runtime/", "tests/")) for name in names)
    entry_points = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
    assert "mspn = mspn.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_regular_install_imports_runtime_and_export_from_repository_root(fresh_env):
    # The source folder mspn/ shadows the installed package here: mspn.export and mspn.runtime
    # must come from the checkout's top-level folders, not fail with ModuleNotFoundError.
    out = _run([fresh_env / "bin" / "python", "-c", IMPORT_BOTH], cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == REPO / "runtime" / "__init__.py"


def test_regular_install_imports_runtime_and_export_elsewhere(fresh_env, tmp_path):
    out = _run([fresh_env / "bin" / "python", "-c", IMPORT_BOTH], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    installed = Path(out.stdout.strip())
    assert installed.parent.parent.name == "mspn" and fresh_env in installed.parents, installed


def test_this_environment_imports_runtime_and_export_elsewhere(tmp_path):
    # The development environment's editable install (or whatever install runs the tests).
    try:
        importlib.metadata.distribution("mspn")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("mspn is not installed in this environment")
    out = _run([sys.executable, "-c", IMPORT_BOTH], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
