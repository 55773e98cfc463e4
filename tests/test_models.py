"""The trained models shipped in models/: they load (weights digest checked) and, on held-out real-digit
Moving MNIST clips made here, still beat the baselines their model cards claim."""
from __future__ import annotations

from pathlib import Path

import pytest

from mspn.checkpoint import load_checkpoint
from mspn.data.mmnist import BUNDLED_DIGITS, generate_mmnist
from mspn.evaluate import evaluate
from mspn.options import EvalOptions

MODELS = Path(__file__).resolve().parent.parent / "models"
# What each model card claims on the test split: the baselines beaten on the mean over the horizon.
CLAIMS = {
    "tiny": {"psnr": ("blank", "copy_last", "context_mean", "untrained"),
             "ssim": ("blank", "copy_last", "context_mean", "untrained")},
    "mnist-small": {"psnr": ("blank", "copy_last", "context_mean", "untrained"),
                    "ssim": ("copy_last", "context_mean", "untrained")},
}


@pytest.mark.parametrize("name", sorted(CLAIMS))
def test_shipped_model_beats_its_claimed_baselines(name, tmp_path):
    ckpt = MODELS / name / "best.pt"
    checkpoint = load_checkpoint(ckpt)  # the recorded weights digest is verified here
    assert checkpoint.config.name == name
    # test videos from the held-out digit pool; 24 videos keep this fast on two cores
    generate_mmnist(BUNDLED_DIGITS, tmp_path / "data", videos=(1, 1, 24), size=checkpoint.frame_size[0])
    report = evaluate(EvalOptions(str(ckpt), str(tmp_path / "data"), report=str(tmp_path / "r.json"),
                                  untrained=True, quiet=True))
    for metric, baselines in CLAIMS[name].items():
        for baseline in baselines:
            model, other = report["model"]["mean"][metric], report["baselines"][baseline]["mean"][metric]
            assert report["beats"][baseline][metric]["mean"], f"{name} {metric} {model:.4f} vs {baseline} {other:.4f}"
