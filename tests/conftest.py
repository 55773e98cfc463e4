"""Suite-wide settings.

One intra-op thread per test process: the tiny models used here gain nothing from more, and with
several tools (torch, ONNX Runtime, OpenVINO) in one process, oversubscribing two cores makes
runs many times slower.
"""
import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

try:
    import torch
except ImportError:  # a runtime-only environment
    torch = None

if torch is not None:
    torch.set_num_threads(1)


@pytest.fixture
def subprocess_env() -> dict:
    """Environment for subprocesses of the tests: one thread each."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    return env
