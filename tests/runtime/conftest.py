"""Fixtures: one tiny model folder (and its checkpoint) per test session, and a small video."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict:
    """{"ckpt": Path, "model": Path}: a tiny-config checkpoint and its folder from `mspn export`.

    The real exporter (TorchScript, the faster of its two; fp32 only, dynamic batch 1..8).
    Treat the folder as read-only; tests that alter files copy it first (``model_copy``).
    """
    from mspn.export.pipeline import ExportOptions, export_model
    from tests.runtime.runtime_ckpt import make_checkpoint

    root = tmp_path_factory.mktemp("tiny")
    ckpt = make_checkpoint(root / "tiny.pt", "tiny")
    export_model(ExportOptions(ckpt=str(ckpt), out=str(root / "model"), exporter="torchscript",
                               max_batch=8, progress=False))
    return {"ckpt": ckpt, "model": root / "model"}


@pytest.fixture
def model_copy(tiny, tmp_path) -> Path:
    return Path(shutil.copytree(tiny["model"], tmp_path / "model"))


@pytest.fixture(scope="session")
def clips() -> np.ndarray:
    """(3, 5, 1, 32, 32) float32 in [0, 1]: a bright square moving right, plus noise."""
    rng = np.random.default_rng(0)
    x = rng.random((3, 5, 1, 32, 32), dtype=np.float32) * 0.2
    for t in range(5):
        x[:, t, 0, 10:18, 4 + 3 * t: 12 + 3 * t] = 0.9
    return x


@pytest.fixture(scope="session")
def video(tmp_path_factory) -> Path:
    """A 24-frame 48x64 colour .avi (MJPG): a red square moving right on grey."""
    import cv2

    path = tmp_path_factory.mktemp("video") / "in.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for t in range(24):
        image = np.full((48, 64, 3), 90, np.uint8)
        image[16:32, 2 + 2 * t: 18 + 2 * t] = (0, 0, 230)
        writer.write(image)
    writer.release()
    return path
