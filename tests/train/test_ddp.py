"""Two CPU processes under torchrun (gloo): sharded data, identical weights on both ranks."""
import subprocess
import sys
from pathlib import Path

import torch

from mspn.checkpoint import load_raw
from mspn.train.runlog import read_csv


def test_two_process_adversarial_run_ends_with_identical_weights(tmp_path, micro_data, pixel_run,
                                                                  subprocess_env):
    out, dump = tmp_path / "ddp", tmp_path / "dump"
    env = dict(subprocess_env)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).with_name("ddp_dump.py")), str(dump),
           "train", "--adv", "--init", str(pixel_run / "best.pt"), "--config", "micro",
           "--data", str(micro_data), "--out", str(out), "--set", "train.device=cpu",
           "--set", "train.max_steps=6", "--set", "adv.d_lr=0.01", "--set", "train.checkpoint_every=3",
           "--set", "adv.epochs=2"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(dump / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for part in ("model", "discriminator"):
        assert ranks[0][part].keys() == ranks[1][part].keys()
        for key in ranks[0][part]:
            torch.testing.assert_close(ranks[0][part][key], ranks[1][part][key], rtol=0, atol=0,
                                       msg=f"{part}.{key} differs between ranks")
    # the generator moved away from the pixel start when it trained
    start = load_raw(pixel_run / "best.pt")["model"]
    phases = [r["phase"] for r in read_csv(out / "steps.csv")]
    assert "G" in phases and "D" in phases, phases          # both sides trained across the ranks
    assert any(not torch.equal(start[k], ranks[0]["model"][k]) for k in start)
    # only rank 0 logs: each step once; 16 clips over 2 ranks, batch 2 -> 4 steps per epoch
    assert [int(r["step"]) for r in read_csv(out / "steps.csv")] == [1, 2, 3, 4, 5, 6]
    saved = load_raw(out / "last.pt")
    assert saved["train_state"]["progress"]["step"] == 6
    for key, value in saved["discriminator"].items():
        torch.testing.assert_close(value, ranks[0]["discriminator"][key], rtol=0, atol=0)
    assert '"world_size": 2' in (out / "run.json").read_text()
