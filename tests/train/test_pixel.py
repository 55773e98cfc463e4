"""Pixel stage: a short run, its files, resume equivalence, the NaN guard and bad input."""
import numpy as np
import pytest
import torch

from mspn.checkpoint import load_checkpoint, load_raw
from mspn.config import AdvConfig
from mspn.errors import MSPNError
from mspn.train import pixel as pixel_module
from mspn.train.loop import Progress, select, select_checkpoint, selection_score
from mspn.train.run import train
from mspn.train.runlog import read_csv


def test_short_run_writes_loadable_checkpoints_and_logs(tmp_path, micro_data, micro):
    out = tmp_path / "run"
    result = train(micro("train.max_steps=3", "train.checkpoint_every=2"), micro_data, out)
    assert result["step"] == 3
    ckpt = load_checkpoint(out / "last.pt")            # weights_only=True inside
    assert ckpt.frame_size == (16, 16) and ckpt.config.name == "micro"
    assert ckpt.extra["stage"] == "pixel"
    assert ckpt.extra["train_state"]["progress"]["step"] == 3
    assert set(ckpt.extra["optimizers"]) == {"generator"}
    best = load_checkpoint(out / "best.pt")
    assert best.extra["stage"] == "pixel" and set(best.extra["val"]) >= {"psnr", "ssim", "score", "beats_blank"}
    steps = read_csv(out / "steps.csv")
    assert [int(r["step"]) for r in steps] == [1, 2, 3]
    assert all(np.isfinite(float(r["loss"])) and float(r["loss"]) > 0 for r in steps)
    evals = read_csv(out / "log.csv")
    assert [int(r["step"]) for r in evals] == [0, 3]   # the start and the end (mid-epoch stop)
    assert all(float(r["val_psnr"]) > 0 for r in evals)
    # every validation carries both baselines, and the curve is drawn next to the run
    assert all(float(r["blank_psnr"]) > 0 and 0 < float(r["blank_ssim"]) <= 1 for r in evals)
    assert evals[0]["blank_psnr"] == evals[1]["blank_psnr"] and evals[0]["best"] == ""
    assert all(r["beats_blank"] in ("0", "1") for r in evals)
    assert (out / "val_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_best_checkpoint_holds_the_best_scoring_validation(tmp_path, micro_data, micro):
    out = tmp_path / "run"
    train(micro("train.max_steps=12", "train.epochs=3", "train.steps_per_epoch=4", "train.lr=0.01"),
          micro_data, out)
    evals = [r for r in read_csv(out / "log.csv") if r["best"] != ""]
    assert len(evals) == 3
    # the rule, replayed on the log: blank-beating evaluations first, then the score
    chosen = max(evals, key=lambda r: (r["beats_blank"] == "1", float(r["score"])))
    best = load_checkpoint(out / "best.pt")
    assert best.extra["train_state"]["progress"]["step"] == int(chosen["step"])
    assert best.extra["val"]["score"] == pytest.approx(float(chosen["score"]), rel=1e-5)


def test_resumed_run_equals_an_uninterrupted_one(tmp_path, micro_data, micro):
    # one epoch is 8 batches of 2: stop at 3, resume to 10 (crossing an epoch boundary)
    full, split = tmp_path / "full", tmp_path / "split"
    train(micro("train.max_steps=10", "train.epochs=3"), micro_data, full)
    train(micro("train.max_steps=3", "train.epochs=3"), micro_data, split)
    result = train(micro("train.max_steps=10", "train.epochs=3"), micro_data, split, resume=True)
    assert result["step"] == 10
    a = load_checkpoint(full / "last.pt").model
    b = load_checkpoint(split / "last.pt").model
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    assert [int(r["step"]) for r in read_csv(split / "steps.csv")] == list(range(1, 11))


def test_resume_runs_at_the_configured_learning_rate(tmp_path, micro_data, micro, capsys):
    # the saved optimizer state holds the old lr; a resume that sets a new one must use it
    out = tmp_path / "run"
    train(micro("train.max_steps=2", "train.lr=1e-3"), micro_data, out)
    train(micro("train.max_steps=3", "train.lr=3e-4"), micro_data, out, resume=True)
    assert "generator optimizer lr 0.001 -> 0.0003" in capsys.readouterr().out
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt.extra["optimizers"]["generator"]["param_groups"][0]["lr"] == pytest.approx(3e-4)
    assert ckpt.extra["optimizers"]["generator"]["state"]           # Adam's moments were kept
    assert ckpt.config.train.lr == pytest.approx(3e-4)


def _nan_at(monkeypatch, bad_call):
    calls = {"n": 0}
    real = pixel_module.pixel_loss

    def loss(predictions, clip):
        calls["n"] += 1
        value = real(predictions, clip)
        return value * float("nan") if calls["n"] == bad_call else value
    monkeypatch.setattr(pixel_module, "pixel_loss", loss)


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(
        tmp_path, micro_data, micro, monkeypatch):
    _nan_at(monkeypatch, 5)
    out = tmp_path / "run"
    with pytest.raises(MSPNError, match=r"non-finite pixel loss \(nan\) at step 5 .*last.pt \(step 4\) is kept"):
        train(micro("train.max_steps=8", "train.checkpoint_every=2"), micro_data, out)
    raw = load_raw(out / "last.pt")
    assert raw["train_state"]["progress"]["step"] == 4
    assert all(torch.isfinite(t).all() for t in raw["model"].values())


def test_nan_policy_skip_skips_and_counts(tmp_path, micro_data, micro, monkeypatch):
    _nan_at(monkeypatch, 2)
    out = tmp_path / "run"
    result = train(micro("train.max_steps=4", "train.nan_policy=skip"), micro_data, out)
    assert result["step"] == 4 and result["nan_skipped"] == 1
    assert [int(r["step"]) for r in read_csv(out / "steps.csv")] == [1, 3, 4]
    assert all(torch.isfinite(t).all() for t in load_checkpoint(out / "last.pt").model.values())


def test_bad_input_gets_one_line_errors(tmp_path, micro_data, micro):
    with pytest.raises(MSPNError, match=r"--resume: no checkpoint to resume from at .*last.pt"):
        train(micro(), micro_data, tmp_path / "nothing", resume=True)
    with pytest.raises(MSPNError, match=r"are 1x16x16 \(C x H x W\) but config 'micro' expects 3x16x16"):
        train(micro("model.frame_channels=3"), micro_data, tmp_path / "rgb")
    with pytest.raises(MSPNError, match="--init is for the adversarial stage"):
        train(micro(), micro_data, tmp_path / "init", init=tmp_path / "x.pt")
    out = tmp_path / "once"
    train(micro("train.max_steps=1"), micro_data, out)
    with pytest.raises(MSPNError, match="last.pt exists: pass --resume"):
        train(micro("train.max_steps=1"), micro_data, out)
    with pytest.raises(MSPNError, match="trained with another model config"):
        train(micro("train.max_steps=2", "model.hidden=5"), micro_data, out, resume=True)


def test_cli_prints_one_line_and_exits_1(tmp_path, micro_data, capsys):
    from mspn.cli import main
    code = main(["train", "--config", "micro", "--data", str(micro_data), "--out", str(tmp_path / "r"),
                 "--resume"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "no checkpoint to resume from" in err


def test_selection_score_and_slack():
    assert selection_score({"psnr": 20.0, "ssim": 0.5}, "paper") == (0.7, "val SSIM + PSNR/100 (LPIPS unavailable)")
    assert selection_score({"psnr": 20.0, "ssim": 0.5, "lpips": 0.1}, "paper")[0] == pytest.approx(0.6)
    assert selection_score({"psnr": 20.0, "ssim": 0.5}, "psnr")[0] == 20.0
    assert select(1.0, None, 0.0) == (True, 1.0)
    assert select(0.99, 1.0, 0.0) == (False, 1.0)
    assert select(1.0, 1.0, 0.0) == (False, 1.0)       # a tie keeps the earlier checkpoint (authors' >)
    assert select(0.99, 1.0, 0.02) == (True, 1.0)      # above best / 1.02: taken
    assert select(0.98, 1.0, 0.02) == (False, 1.0)     # 0.98 < 1 / 1.02 = 0.9804
    assert select(1.1, 1.0, 0.02) == (True, 1.1)
    # negative scores (LPIPS can outweigh SSIM + PSNR/100): best / 1.02 is above best, as the authors'
    assert select(-0.99, -1.0, 0.02) == (False, -0.99) and select(-0.98, -1.0, 0.02)[0]
    assert AdvConfig().selection_slack == 0.02


def test_selection_ranks_blank_beating_evaluations_first():
    progress = Progress()
    assert select_checkpoint(0.9, False, progress, 0.0)              # nothing better yet: kept
    assert not select_checkpoint(0.8, False, progress, 0.0)
    assert select_checkpoint(0.5, True, progress, 0.0)               # first to beat blank: taken
    assert progress.best_beats_blank and progress.best_score == 0.5
    assert not select_checkpoint(0.95, False, progress, 0.0)         # higher score, near-blank: refused
    assert not select_checkpoint(0.4, True, progress, 0.0)
    assert select_checkpoint(0.6, True, progress, 0.0) and progress.best_score == 0.6


def test_mixed_precision_option(tmp_path, micro_data, micro):
    with pytest.raises(MSPNError, match="train.amp=fp16 needs a CUDA device"):
        train(micro("train.amp=fp16"), micro_data, tmp_path / "fp16")
    result = train(micro("train.amp=bf16", "train.max_steps=2"), micro_data, tmp_path / "bf16")
    assert result["step"] == 2
    model = load_checkpoint(tmp_path / "bf16" / "last.pt").model
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in model.values())
