"""The wheel as an edge user installs it: built from this checkout and installed with the runtime
extra only into its own virtual environment (no torch there, and importing it blocked as well, as
tests/runtime/test_torch_free.py does), then the commands the README shows for that install:
`mspn predict` on .npy clips and on a video, the stream API and `mspn bench --backends
onnxruntime`; and commands whose extra is missing stop with one line naming it (exit 1).

The environment with the runtime extra's dependencies is made once per set of requirements and
Python, from the package index, and cached in ~/.cache/mspn-test-venvs (MSPN_TEST_VENV_CACHE);
each run installs the new wheel into it and checks, offline, that it satisfies `mspn[runtime]`.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mspn.runtime import Predictor
from tests.test_packaging import _run, wheel  # noqa: F401  (the module-scoped wheel fixture)

CACHE = Path(os.environ.get("MSPN_TEST_VENV_CACHE", Path.home() / ".cache" / "mspn-test-venvs"))
# Only torch is missing on an edge device; everything torch-free in mspn must work without it.
BLOCKER = """
import sys

class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            # what Python raises for a module that is not installed
            raise ModuleNotFoundError(f"No module named {name!r} (blocked in this test)", name=name)
        return None

sys.meta_path.insert(0, _NoTorch())
"""
STREAM = """
import sys
import numpy as np
from mspn.runtime import Predictor

x = np.load(sys.argv[2])
with Predictor.load(sys.argv[1], backend="onnxruntime") as p:
    future = p.predict(x)
    s = p.stream()
    for t in range(x.shape[1]):
        s.push(x[:, t])
    assert np.abs(s.rollout(future.shape[1]) - future).max() < 1e-4
assert not [m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision")]
print("STREAM-OK")
"""


def _runtime_requirements(wheel_path: Path) -> list[str]:
    with zipfile.ZipFile(wheel_path) as z:
        metadata = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    return sorted(line.split(":", 1)[1].split(";")[0].strip() for line in metadata.splitlines()
                  if line.startswith("Requires-Dist:") and re.search(r"extra\s*==\s*['\"]runtime['\"]", line))


def _cached_env(wheel_path: Path) -> Path:
    """The cached environment holding mspn[runtime]'s dependencies (made from the index once)."""
    requirements = _runtime_requirements(wheel_path)
    assert requirements, f"{wheel_path.name} declares no runtime extra"
    key = hashlib.sha256("\n".join([sys.version, platform.platform(), *requirements]).encode()).hexdigest()[:16]
    env = CACHE / f"runtime-{key}"
    CACHE.mkdir(parents=True, exist_ok=True)
    # Built where it stays (a venv's scripts name its folder), under a lock against parallel sessions;
    # .complete marks a finished one.
    with open(CACHE / f"runtime-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (env / ".complete").is_file():
            return env
        shutil.rmtree(env, ignore_errors=True)
        made = _run([sys.executable, "-m", "venv", env])
        if made.returncode != 0:
            pytest.skip(f"cannot create a virtual environment: {made.stderr.strip()[-300:]}")
        got = _run([env / "bin" / "python", "-m", "pip", "install", "--timeout", "30", f"{wheel_path}[runtime]"],
                   timeout=900)
        if got.returncode != 0:
            shutil.rmtree(env, ignore_errors=True)
            pytest.skip(f"pip could not install mspn[runtime] from an index: {got.stderr.strip()[-300:]}")
        (env / ".complete").write_text("\n".join(requirements) + "\n")
    return env


@pytest.fixture(scope="module")
def edge(wheel, tmp_path_factory) -> dict:  # noqa: F811  (the imported fixture)
    """{"python", "mspn", "env"}: this wheel installed with mspn[runtime] only, torch blocked."""
    env_dir = _cached_env(wheel)
    python = env_dir / "bin" / "python"
    out = _run([python, "-m", "pip", "install", "--no-deps", "--force-reinstall", wheel])
    assert out.returncode == 0, out.stdout + out.stderr
    # offline: the cached environment must already satisfy everything mspn[runtime] asks for
    out = _run([python, "-m", "pip", "install", "--no-index", f"{wheel}[runtime]"])
    assert out.returncode == 0, out.stdout + out.stderr
    probe = _run([python, "-c", "import importlib.util as u; print(u.find_spec('torch'), u.find_spec('tqdm'))"])
    assert probe.stdout.split() == ["None", "None"], "the runtime environment has torch or tqdm"
    blocker = tmp_path_factory.mktemp("blocker")
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    run_env = {"PATH": f"{env_dir / 'bin'}:/usr/bin:/bin", "PYTHONPATH": str(blocker), "OMP_NUM_THREADS": "1",
               "HOME": os.environ.get("HOME", "/tmp"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return {"python": python, "mspn": env_dir / "bin" / "mspn", "env": run_env}


def _mspn(edge, *args, cwd: Path, timeout: float = 300):
    import subprocess
    return subprocess.run([str(edge["mspn"]), *map(str, args)], cwd=cwd, env=edge["env"], capture_output=True,
                          text=True, timeout=timeout)


def test_predict_npy_and_video(edge, tiny, video, clips, tmp_path):
    np.save(tmp_path / "x.npy", clips)
    done = _mspn(edge, "predict", "--model", tiny["model"], "--input", "x.npy", "--out", "y.npy", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    with Predictor.load(tiny["model"]) as predictor:  # the same folder in this (development) environment
        expected = predictor.predict(clips)
    assert np.abs(np.load(tmp_path / "y.npy") - expected).max() < 1e-5
    for extra in ([], ["--stream", "--gif", "o.gif"]):
        done = _mspn(edge, "predict", "--model", tiny["model"], "--video", video, "--out", "o.mp4", *extra,
                     cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        assert (tmp_path / "o.mp4").stat().st_size > 0 and done.stdout.startswith("wrote o.mp4")
    assert (tmp_path / "o.gif").stat().st_size > 0


def test_stream_api(edge, tiny, clips, tmp_path):
    import subprocess

    np.save(tmp_path / "x.npy", clips)
    (tmp_path / "stream.py").write_text(textwrap.dedent(STREAM))
    done = subprocess.run([str(edge["python"]), "stream.py", str(tiny["model"]), "x.npy"], cwd=tmp_path,
                          env=edge["env"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "STREAM-OK" in done.stdout, done.stderr[-2000:]


def test_bench_on_onnxruntime(edge, tiny, tmp_path):
    done = _mspn(edge, "bench", "--model", tiny["model"], "--backends", "onnxruntime,openvino", "--variants", "fp32",
                 "--runs", "2", "--warmup", "0", "--stream-runs", "1", "--clips", "1", "--max-seconds", "0.2",
                 "--report", "r.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    entry, openvino = (next(e for e in report["results"] if e["backend"] == b) for b in ("onnxruntime", "openvino"))
    assert openvino["status"] == "skipped" and "needs the 'openvino' extra" in openvino["reason"]
    assert "| onnxruntime | fp32 |" in done.stdout and done.stdout.strip().endswith("wrote r.json")
    assert entry["status"] == "ok" and entry["rollout"]["n"] == 2
    assert entry["stream"]["vs_rollout_max_abs"] < 1e-4
    # the parts the bench extra adds are skipped with the extra named, not failed
    need_bench = "needs the 'bench' extra"
    assert need_bench in report["flops"]["reason"] and need_bench in report["charts_skipped"]
    assert need_bench in entry["accuracy"]["reason"] and need_bench in entry["ceiling"]["reason"]


@pytest.mark.parametrize("args, extra", [
    (["train", "--data", "d", "--out", "r"], "train"),
    (["eval", "--ckpt", "c.pt", "--data", "d"], "train"),
    (["export", "--ckpt", "c.pt", "--out", "m"], "export"),
    (["data", "synth", "--out", "d"], "train"),
])
def test_a_command_whose_extra_is_missing(edge, args, extra, tmp_path):
    done = _mspn(edge, *args, cwd=tmp_path)
    assert done.returncode == 1, done.stderr[-2000:]
    assert re.fullmatch(rf"mspn {args[0]}: error: this command needs the '{extra}' extra \(\w+ is not installed\): "
                        rf"pip install 'mspn\[{extra}\]'\n", done.stderr), done.stderr[-2000:]


def test_a_backend_whose_extra_is_missing(edge, tiny, clips, tmp_path):
    np.save(tmp_path / "x.npy", clips)
    done = _mspn(edge, "predict", "--model", tiny["model"], "--backend", "openvino", "--input", "x.npy",
                 "--out", "y.npy", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr == ("mspn predict: error: the openvino backend needs the 'openvino' extra "
                           "(openvino is not installed): pip install 'mspn[openvino]'\n")
