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
                    "ssim": ("blank", "copy_last", "context_mean", "untrained")},
}
# Test videos per model, from the held-out digit pool. mnist-small beats the blank frame's mean SSIM
# by 0.003 (0.7724 against 0.7696 on 1000 test clips), less than the spread between small samples
# (24 clips measured 0.7713 against 0.7717), so it is checked on the demo's 200 videos.
CLIPS = {"tiny": 24, "mnist-small": 200}


@pytest.mark.parametrize("name", sorted(CLAIMS))
def test_shipped_model_beats_its_claimed_baselines(name, tmp_path):
    ckpt = MODELS / name / "best.pt"
    checkpoint = load_checkpoint(ckpt)  # the recorded weights digest is verified here
    assert checkpoint.config.name == name
    generate_mmnist(BUNDLED_DIGITS, tmp_path / "data", videos=(1, 1, CLIPS[name]), size=checkpoint.frame_size[0])
    report = evaluate(EvalOptions(str(ckpt), str(tmp_path / "data"), report=str(tmp_path / "r.json"),
                                  untrained=True, quiet=True))
    for metric, baselines in CLAIMS[name].items():
        for baseline in baselines:
            model, other = report["model"]["mean"][metric], report["baselines"][baseline]["mean"][metric]
            assert report["beats"][baseline][metric]["mean"], f"{name} {metric} {model:.4f} vs {baseline} {other:.4f}"
