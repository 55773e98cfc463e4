"""Adversarial stage: a short run, resume equivalence, NaN guard, bad input, kill -9 and resume."""
import signal
import subprocess
import sys
import time

import pytest
import torch

from mspn.checkpoint import load_checkpoint, load_raw, save_checkpoint
from mspn.config import load_config
from mspn.errors import MSPNError
from mspn.models.mspn import MSPN
from mspn.train import adversarial as adv_module
from mspn.train.run import train
from mspn.train.runlog import read_csv


def adv(micro, *overrides):
    return micro("adv.enabled=true", "adv.selection=psnr", *overrides)


def test_short_run_alternates_and_checkpoints_everything(tmp_path, micro_data, micro, pixel_run):
    out = tmp_path / "adv"
    result = train(adv(micro, "train.max_steps=6", "adv.d_lr=0.01"), micro_data, out,
                   init=pixel_run / "best.pt")
    assert result["step"] == 6
    rows = read_csv(out / "steps.csv")
    assert [r["phase"] for r in rows][0] == "D"          # the alternation starts with D
    assert {r["phase"] for r in rows} <= {"D", "G"}
    for r in rows:   # a G row has the generator's losses; every row has D's scores
        assert (r["g_loss"] != "") == (r["phase"] == "G")
        assert float(r["d_real"]) == float(r["d_real"]) and r["d_loss"] != ""
    ckpt = load_checkpoint(out / "last.pt", expect=load_config("micro"))
    assert ckpt.extra["stage"] == "adversarial"
    assert set(ckpt.extra["optimizers"]) == {"generator", "discriminator"}
    alt = ckpt.extra["train_state"]["stage"]["alternation"]
    assert len(alt["fake"]) == 3 and alt["phase"] in ("D", "G")
    assert "discriminator" in load_raw(out / "best.pt")
    # the generator started from the pixel checkpoint: the start evaluation equals the pixel run's
    start = read_csv(out / "log.csv")[0]
    pixel_end = [r for r in read_csv(pixel_run / "log.csv") if r["best"] == "1"][-1]
    assert int(start["step"]) == 0 and start["val_psnr"] == pixel_end["val_psnr"]
    assert start["best"] == ""                             # logged, never selected


def test_resumed_adversarial_run_equals_an_uninterrupted_one(tmp_path, micro_data, micro, pixel_run):
    cfg = lambda steps: adv(micro, f"train.max_steps={steps}", "adv.d_lr=0.01", "adv.epochs=2")
    full, split = tmp_path / "full", tmp_path / "split"
    train(cfg(7), micro_data, full, init=pixel_run / "best.pt")
    train(cfg(3), micro_data, split, init=pixel_run / "best.pt")
    train(cfg(7), micro_data, split, resume=True)
    a, b = load_raw(full / "last.pt"), load_raw(split / "last.pt")
    for part in ("model", "discriminator"):
        for key in a[part]:
            torch.testing.assert_close(a[part][key], b[part][key], rtol=0, atol=0, msg=f"{part}.{key}")
    assert a["train_state"]["stage"] == b["train_state"]["stage"]
    assert [r["phase"] for r in read_csv(full / "steps.csv")] == [r["phase"] for r in read_csv(split / "steps.csv")]


def test_non_finite_generator_or_discriminator_loss_stops(tmp_path, micro_data, micro, pixel_run, monkeypatch):
    real = adv_module.lsgan_d_loss
    monkeypatch.setattr(adv_module, "lsgan_d_loss", lambda r, f: real(r, f) * float("inf"))
    with pytest.raises(MSPNError, match=r"non-finite discriminator loss \(inf\) at step 1 .*no checkpoint"):
        train(adv(micro, "train.max_steps=3"), micro_data, tmp_path / "a", init=pixel_run / "best.pt")


def test_bad_input_gets_one_line_errors(tmp_path, micro_data, micro, pixel_run):
    with pytest.raises(MSPNError, match="pass --init RUN/best.pt"):
        train(adv(micro), micro_data, tmp_path / "a")
    other = load_config("micro", ["model.hidden=6"])
    save_checkpoint(tmp_path / "other.pt", other, MSPN(other.model).state_dict())
    with pytest.raises(MSPNError, match="checkpoint of another config"):
        train(adv(micro), micro_data, tmp_path / "b", init=tmp_path / "other.pt")
    with pytest.raises(MSPNError, match=r"pools 5 times, which a 16x16 \(HxW\) frame cannot take"):
        train(adv(micro, "adv.disc_channels=[4,4,4,4,4,4]"), micro_data, tmp_path / "c",
              init=pixel_run / "best.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(MSPNError, match="not a readable checkpoint"):
        train(adv(micro), micro_data, tmp_path / "d", init=tmp_path / "junk.pt")
    with pytest.raises(MSPNError, match="is a pixel stage checkpoint, this run is the adversarial stage"):
        import shutil
        shutil.copytree(pixel_run, tmp_path / "e")
        train(adv(micro), micro_data, tmp_path / "e", resume=True)


def test_kill_minus_9_then_resume(tmp_path, micro_data, pixel_run, subprocess_env):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "mspn", "train", "--adv", "--init", str(pixel_run / "best.pt"),
           "--config", "micro", "--data", str(micro_data), "--out", str(out),
           "--set", "train.device=cpu", "--set", "train.checkpoint_every=2", "--set", "adv.epochs=1000"]
    proc = subprocess.Popen(cmd, env=subprocess_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not (out / "last.pt").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    saved = load_raw(out / "last.pt")["train_state"]["progress"]["step"]   # never truncated
    assert saved >= 2 and saved % 2 == 0
    target = saved + 3
    done = subprocess.run(cmd[:-2] + ["--set", f"train.max_steps={target}", "--resume"],
                          env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt.extra["train_state"]["progress"]["step"] == target
    assert ckpt.build_model() is not None
    steps = [int(r["step"]) for r in read_csv(out / "steps.csv")]
    assert steps == list(range(1, target + 1))           # continues, each step once
