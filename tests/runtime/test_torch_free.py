"""The runtime works in a process where importing torch fails: predict, stream and the video CLI."""
from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKER = """
import sys

class _NoTorch:
    # Blocks torch and the torch-only parts of mspn, as on an edge device without them.
    BLOCKED = ("torch", "torchvision", "mspn.models", "mspn.train", "mspn.data", "mspn.torch_backend",
               "mspn.predict", "mspn.export.wrappers")

    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in self.BLOCKED):
            raise ImportError(f"blocked in this test: {name}")
        return None

sys.meta_path.insert(0, _NoTorch())
"""

SCRIPT = """
import sys
import numpy as np
try:
    import torch
except ImportError:
    pass
else:
    raise SystemExit("the blocker did not block torch")

from mspn.runtime import Predictor
from mspn.cli import main

model, video, out = sys.argv[1:4]
x = np.random.default_rng(0).random((2, 5, 1, 32, 32), dtype=np.float32)
for backend in ("onnxruntime", "openvino"):
    with Predictor.load(model, backend=backend) as p:
        future = p.predict(x)
        s = p.stream()
        for t in range(5):
            s.push(x[:, t])
        assert np.abs(s.rollout(5) - future).max() < 1e-4
assert main(["predict", "--model", model, "--video", video, "--out", out, "--stream"]) == 0
assert main(["predict", "--model", model, "--video", video, "--out", out]) == 0
bad = [m for m in sys.modules if m == "torch" or m.startswith(("torch.", "mspn.models", "mspn.train"))]
assert not bad, bad
print("TORCH-FREE-OK")
"""


def test_runtime_without_torch(tiny, video, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(script), str(tiny["model"]), str(video), str(tmp_path / "o.mp4")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "TORCH-FREE-OK" in result.stdout
    assert (tmp_path / "o.mp4").stat().st_size > 0
