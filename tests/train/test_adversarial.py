"""Adversarial stage: separate real/fake discriminator calls, D in eval mode for G steps, the
per-video alternation, a short run, resume equivalence, NaN guard, bad input, kill -9 and resume."""
import contextlib
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

from mspn.checkpoint import load_checkpoint, load_raw, save_checkpoint
from mspn.config import load_config
from mspn.data.clips import ClipDataset
from mspn.errors import MSPNError
from mspn.models.discriminator import FrameDiscriminator, JudgeApart
from mspn.models.mspn import MSPN
from mspn.train import adversarial as adv_module
from mspn.train.alternation import G
from mspn.train.distributed import DistEnv
from mspn.train.loop import video_batches
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
    assert {r["phase"] for r in rows} == {"D", "G"}      # and both sides trained
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
    def cfg(steps):
        return adv(micro, f"train.max_steps={steps}", "adv.d_lr=0.01", "adv.epochs=2")
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
    with pytest.raises(MSPNError, match="not an mspn checkpoint"):
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
    hang_guard = threading.Timer(300, proc.kill)  # a hung run is killed, and the loop below fails
    hang_guard.start()
    try:
        while not (out / "last.pt").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        hang_guard.cancel()
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
    with torch.no_grad():
        future = ckpt.build_model().rollout(torch.rand(1, 3, 1, 16, 16), 2)
    assert future.shape == (1, 2, 1, 16, 16) and torch.isfinite(future).all()
    steps = [int(r["step"]) for r in read_csv(out / "steps.csv")]
    assert steps == list(range(1, target + 1))           # continues, each step once


# --- as the authors' adv_train.py ------------------------------------------------------------------

class StepContext:
    """The part of Trainer a stage's train_step uses: no autocast, no guard, plain steps."""

    def autocast(self):
        return contextlib.nullcontext()

    def guard(self, loss, what, module):
        return True

    def backward_step(self, loss, optimizer):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def make_stage(micro, generator_seed=0):
    config = micro("adv.enabled=true")
    torch.manual_seed(generator_seed)
    model = MSPN(config.model)
    torch.manual_seed(1)           # the same discriminator in every stage made here
    return adv_module.AdversarialStage(config, DistEnv(device=torch.device("cpu")), model, (16, 16))


def test_real_scores_do_not_depend_on_the_fakes_judged_in_the_same_step(micro):
    clip = torch.rand(2, 5, 1, 16, 16)
    logs = [make_stage(micro, seed).train_step(clip, StepContext()) for seed in (0, 1)]
    assert logs[0]["phase"] == logs[1]["phase"] == "D"
    assert logs[0]["d_fake"] != logs[1]["d_fake"]           # two generators, two sets of fakes
    assert logs[0]["d_real"] == logs[1]["d_real"]           # the real batch's scores are the same
    # a joint call (torch.cat([real, fake])) would not: standardisation and BatchNorm mix the sets
    disc = FrameDiscriminator((4, 8), 1, (16, 16))
    real, fakes = torch.rand(6, 1, 16, 16), (torch.rand(6, 1, 16, 16), 0.2 * torch.rand(6, 1, 16, 16))
    joint = [disc(torch.cat([real, fake]))[:6] for fake in fakes]
    apart = [JudgeApart(disc)(real, fake)[0] for fake in fakes]
    assert not torch.allclose(joint[0], joint[1])
    torch.testing.assert_close(apart[0], apart[1], rtol=0, atol=0)


def test_generator_steps_judge_with_running_statistics_and_leave_them(micro):
    stage = make_stage(micro)
    stage.alternation.phase = G
    buffers = {k: v.clone() for k, v in stage.disc.state_dict().items() if "running" in k}
    clip = torch.rand(2, 5, 1, 16, 16)
    logs = stage.train_step(clip, StepContext())
    assert logs["phase"] == G and stage.disc.training          # train mode is restored afterwards
    for key, before in buffers.items():
        torch.testing.assert_close(stage.disc.state_dict()[key], before, rtol=0, atol=0, msg=key)
    # the logged real score is D's eval-mode score of the real frames
    stage.disc.eval()
    real = clip[:, stage.config.data.context // 2:].reshape(-1, 1, 16, 16)
    assert logs["d_real"] == pytest.approx(stage.disc(real).mean().item(), rel=1e-6)


def test_video_batches_keep_each_video_together_and_flag_its_first_batch():
    index = [(0, 0), (0, 5), (0, 10), (1, 0), (1, 5), (2, 0)]
    plan = video_batches(index, batch_size=2, seed=0, epoch=0)
    assert [sorted(b) for b, _ in plan] in ([[0, 1], [2], [3, 4], [5]], [[0, 2], [1], [3, 4], [5]],
                                            [[1, 2], [0], [3, 4], [5]])
    assert [starts for _, starts in plan] == [True, False, True, True]
    orders = {tuple(b for batch, _ in video_batches(index, 1, 0, epoch) for b in batch) for epoch in range(8)}
    assert len(orders) > 1                                  # clips are shuffled within each video
    assert all(set(o[:3]) == {0, 1, 2} and set(o[3:5]) == {3, 4} for o in orders)
    # two ranks: step s takes global batches 2s and 2s + 1; a step starts a video if either does
    ranks = [video_batches(index, 2, 0, 0, world_size=2, rank=r) for r in (0, 1)]
    assert [b for b, _ in ranks[0]] == [plan[0][0], plan[2][0]]
    assert [b for b, _ in ranks[1]] == [plan[1][0], plan[3][0]]
    assert [s for _, s in ranks[0]] == [s for _, s in ranks[1]] == [True, True]


def test_per_video_alternation_starts_every_video_with_d(tmp_path, micro_data, micro, pixel_run):
    config = adv(micro, "adv.alternation=per-video", "adv.batch_size=1", "adv.d_lr=0.01",
                 "train.max_steps=10")
    train(config, micro_data, tmp_path / "a", init=pixel_run / "best.pt")
    phases = [r["phase"] for r in read_csv(tmp_path / "a" / "steps.csv")]
    dataset = ClipDataset(micro_data, "train", config.data.clip_length)
    starts = [s for _, s in video_batches(dataset.index, 1, config.train.seed, 0)][:10]
    assert len(phases) == 10 and starts == [True, False] * 5      # two clips per micro video
    assert all(phase == "D" for phase, start in zip(phases, starts, strict=True) if start)
    with pytest.raises(MSPNError, match=r"per-video: every batch of .* starts a new video .*"
                                        r"adv.alternation=continuous"):
        train(adv(micro, "adv.alternation=per-video"), micro_data, tmp_path / "b", init=pixel_run / "best.pt")
