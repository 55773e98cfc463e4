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


TRAINED_TINY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models", "tiny", "best.pt")


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory) -> dict:
    """The committed trained tiny model (32x32, 5 -> 5) exported once per session with fp16 and
    int8 through the default exporter and accuracy budget, asking for the NNCF OpenVINO int8 model
    (`auto` ships it only where it is as accurate as the QDQ graph, which differs between CPUs by a
    tenth of a dB): {"model": folder, "data": dataset,
    "ckpt": checkpoint}. The dataset is real-digit Moving MNIST generated here (seed 0): int8
    calibrates on its val split, the budget is measured on its test split (held out).
    Treat the folder as read-only."""
    from mspn.data.mmnist import generate_mmnist
    from mspn.export.pipeline import ExportOptions, export_model

    root = tmp_path_factory.mktemp("trained_tiny")
    data = root / "mm32"
    generate_mmnist(out=data, videos=(1, 8, 16), frames=10, size=32)
    export_model(ExportOptions(ckpt=TRAINED_TINY, out=str(root / "model"), variants=("fp32", "fp16", "int8"),
                               data=str(data), calib=str(data), calib_split="val", budget_clips=16,
                               openvino_int8="nncf", progress=False))
    return {"model": root / "model", "data": data, "ckpt": TRAINED_TINY}
