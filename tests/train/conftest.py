"""Shared fixtures of the training tests: a tiny synthetic dataset and the micro config.

The machine is shared and small: one torch thread per process keeps the tests fast and stable.
"""
from __future__ import annotations

import pytest
import torch

from mspn.config import load_config

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def micro_data(tmp_path_factory):
    """16x16 gray bouncing shapes: 8 train, 2 val, 2 test videos of 10 frames (micro clips: 5)."""
    from mspn.data.synth import write_synthetic

    root = tmp_path_factory.mktemp("micro-data")
    write_synthetic(root, size=(16, 16), channels=1, videos=(8, 2, 2), frames=10, seed=0)
    return root


@pytest.fixture
def micro():
    def make(*overrides):
        return load_config("micro", ["train.device=cpu", "train.selection=psnr", *overrides])
    return make


@pytest.fixture(scope="session")
def pixel_run(tmp_path_factory, micro_data):
    """A finished micro pixel run (4 steps): the starting point of the adversarial tests."""
    from mspn.train.run import train

    out = tmp_path_factory.mktemp("pixel-run")
    config = load_config("micro", ["train.device=cpu", "train.max_steps=4"])
    train(config, micro_data, out)
    return out

