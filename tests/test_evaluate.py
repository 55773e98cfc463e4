"""mspn.evaluate: report, pictures and every baseline on a micro checkpoint (untrained)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from mspn.checkpoint import save_checkpoint
from mspn.cli import main
from mspn.config import load_config
from mspn.errors import MSPNError
from mspn.evaluate import evaluate
from mspn.models.mspn import MSPN
from mspn.options import EvalOptions


def _videos(root, count=3, frames=11, channels=1, size=16, seed=0):
    """Smooth random uint8 videos (T, C, H, W) in root/test/: a drifting blob plus noise."""
    rng = np.random.default_rng(seed)
    (root / "test").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    videos = []
    for v in range(count):
        cy, cx = rng.uniform(4, size - 4, 2)
        out = np.empty((frames, channels, size, size), np.uint8)
        for t in range(frames):
            blob = np.exp(-((yy - cy - 0.5 * t) ** 2 + (xx - cx + 0.3 * t) ** 2) / 8.0)
            frame = 0.8 * blob + 0.1 * rng.random((channels, size, size))
            out[t] = np.clip(frame * 255, 0, 255).astype(np.uint8)
        np.save(root / "test" / f"{v:03d}.npy", out)
        videos.append(out)
    return videos


@pytest.fixture(scope="module")
def micro_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    config = load_config("micro")  # 16x16, context 3, pred_steps 2
    path = tmp_path_factory.mktemp("ckpt") / "micro.pt"
    model = MSPN(config.model)
    save_checkpoint(path, config, model.state_dict())
    return path, model.eval()


def test_report_structure_files_and_baselines(tmp_path, micro_ckpt, capsys):
    ckpt, model = micro_ckpt
    videos = _videos(tmp_path / "data")
    report_path = tmp_path / "out" / "report.json"
    record = evaluate(EvalOptions(ckpt, tmp_path / "data", report=report_path, batch=4, untrained=True))
    report = json.loads(report_path.read_text())
    assert report == json.loads(json.dumps(record))
    # 3 videos of 11 frames, clips of 3 + 2 = 5 non-overlapping frames -> 2 clips per video
    assert report["clips"] == 6 and report["context"] == 3 and report["horizon"] == 2
    assert report["config"] == "micro" and report["split"] == "test"
    assert report["checkpoint"] == str(ckpt) and report["clipped"] is False
    assert report["lpips"]["status"] == "skipped" and report["lpips"]["reason"]
    assert set(report["baselines"]) == {"copy_last", "blank", "context_mean", "untrained"}
    for who in [report["model"], *report["baselines"].values()]:
        assert set(who["per_step"]) == {"psnr", "ssim", "mse", "mse_sum"}
        for metric, values in who["per_step"].items():
            assert len(values) == 2 and all(np.isfinite(values))
            assert who["mean"][metric] == pytest.approx(np.mean(values))

    # every baseline measured against a direct computation on the same clips
    clips = np.stack([v[s:s + 5] for v in videos for s in (0, 5)]).astype(np.float32) / 255
    direct = {"copy_last": lambda c: c[2], "blank": lambda c: np.zeros_like(c[2]),
              "context_mean": lambda c: c[:3].mean(axis=0)}
    for name, guess in direct.items():
        psnr = [np.mean([peak_signal_noise_ratio(c[3 + t], guess(c), data_range=1) for c in clips])
                for t in range(2)]
        mse_sum = [np.mean([((c[3 + t] - guess(c)) ** 2).sum() for c in clips]) for t in range(2)]
        np.testing.assert_allclose(report["baselines"][name]["per_step"]["psnr"], psnr, rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(report["baselines"][name]["per_step"]["mse_sum"], mse_sum, rtol=1e-5)
    with torch.no_grad():
        prediction = model.rollout(torch.from_numpy(clips[:, :3]), 2).numpy()
    model_mse = ((prediction - clips[:, 3:]) ** 2).mean(axis=(0, 2, 3, 4))
    np.testing.assert_allclose(report["model"]["per_step"]["mse"], model_mse, rtol=1e-4)
    # the micro checkpoint is itself the seed-0 initialisation: "untrained" must reproduce it
    np.testing.assert_allclose(report["baselines"]["untrained"]["per_step"]["mse"], model_mse, rtol=1e-4)
    for name, metrics in report["beats"].items():
        model_psnr, other = report["model"]["mean"]["psnr"], report["baselines"][name]["mean"]["psnr"]
        assert metrics["psnr"]["mean"] == (model_psnr > other)
        assert metrics["mse"]["mean"] == (report["model"]["mean"]["mse"] < report["baselines"][name]["mean"]["mse"])
    assert report["beats"]["untrained"]["psnr"] == {"mean": False, "steps_beaten": []}

    for key, name, kind in (("plot", "report_metrics.png", "PNG"), ("strip", "report_strip.png", "PNG"),
                            ("gif", "report_rollout.gif", "GIF")):
        path = tmp_path / "out" / name
        assert report["files"][key] == str(path) and path.is_file()
        with Image.open(path) as image:
            assert image.format == kind
            if kind == "GIF":
                assert image.n_frames == 5  # context + horizon
    assert not list((tmp_path / "out").glob(".*tmp"))  # atomic writes leave no temporaries
    table = capsys.readouterr().out
    assert "copy-last" in table and "context-mean" in table and "LPIPS skipped" in table
    assert "psnr: beats" in table and "does not beat" in table and "untrained" in table


def test_max_clips_horizon_and_lpips_code_path(tmp_path, monkeypatch):
    # no ImageNet AlexNet here: a random backbone stands in to exercise the LPIPS code path
    from mspn import evaluate as evaluate_module
    from mspn.metrics import LPIPSScorer

    scorer = LPIPSScorer(None, random_backbone=True)
    status = {"status": "random-backbone", "reportable": False, "reason": "random AlexNet stand-in"}
    monkeypatch.setattr(evaluate_module, "load_lpips", lambda *args, **kwargs: (scorer, status))
    torch.manual_seed(1)
    config = load_config("micro")
    ckpt = tmp_path / "micro32.pt"
    save_checkpoint(ckpt, config, MSPN(config.model).state_dict(), frame_size=(32, 32))
    _videos(tmp_path / "data", count=2, frames=12, size=32)
    record = evaluate(EvalOptions(ckpt, tmp_path / "data", context=2, horizon=4, max_clips=3, batch=2,
                                  report=tmp_path / "r.json", clip=True, quiet=True))
    assert record["clips"] == 3 and record["clipped"] is True
    assert record["lpips"]["status"] == "random-backbone" and record["lpips"]["reportable"] is False
    assert len(record["model"]["per_step"]["lpips"]) == 4
    assert all(np.isfinite(record["baselines"]["copy_last"]["per_step"]["lpips"]))
    assert "untrained" not in record["baselines"]


def test_clips_longer_than_the_videos_are_refused(tmp_path, micro_ckpt):
    _videos(tmp_path / "data", frames=6)
    with pytest.raises(MSPNError, match="longer than every video.*longest has 6 frames"):
        evaluate(EvalOptions(micro_ckpt[0], tmp_path / "data", context=3, horizon=4, report=tmp_path / "r.json"))
    assert not (tmp_path / "r.json").exists()


def test_channels_and_size_must_match_the_checkpoint(tmp_path, micro_ckpt):
    _videos(tmp_path / "rgb", channels=3)
    with pytest.raises(MSPNError, match="videos have 3 channel.*predicts 1"):
        evaluate(EvalOptions(micro_ckpt[0], tmp_path / "rgb", report=tmp_path / "r.json"))
    _videos(tmp_path / "big", size=32)
    with pytest.raises(MSPNError, match="frames are 32x32 .*trained on 16x16"):
        evaluate(EvalOptions(micro_ckpt[0], tmp_path / "big", report=tmp_path / "r.json"))


def test_cli_eval_errors_exit_1_with_one_line(tmp_path, micro_ckpt, capsys):
    _videos(tmp_path / "data", frames=6)
    code = main(["eval", "--ckpt", str(micro_ckpt[0]), "--data", str(tmp_path / "data"),
                 "--horizon", "9", "--report", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("mspn eval: error: ") and err.count("\n") == 1 and "Traceback" not in err
    code = main(["eval", "--ckpt", str(tmp_path / "missing.pt"), "--data", str(tmp_path / "data")])
    assert code == 1 and "checkpoint not found" in capsys.readouterr().err


def test_format_beats_names_won_and_lost_baselines():
    from mspn.baselines import compare
    from mspn.evaluate import format_beats

    model = {"per_step": {"psnr": [20.0, 14.0], "mse": [0.01, 0.03]}, "mean": {"psnr": 17.0, "mse": 0.02}}
    blank = {"per_step": {"psnr": [15.0, 15.0], "mse": [0.02, 0.02]}, "mean": {"psnr": 15.0, "mse": 0.02}}
    copy = {"per_step": {"psnr": [25.0, 10.0], "mse": [0.001, 0.1]}, "mean": {"psnr": 17.5, "mse": 0.0505}}
    beats = compare(model, {"blank": blank, "copy_last": copy})
    assert beats["blank"]["psnr"] == {"mean": True, "steps_beaten": [1]}
    assert beats["blank"]["mse"] == {"mean": False, "steps_beaten": [1]}  # a tie is not a win
    assert beats["copy_last"]["mse"] == {"mean": True, "steps_beaten": [2]}
    assert format_beats(beats).splitlines() == ["psnr: beats blank; does not beat copy-last",
                                                "mse: beats copy-last; does not beat blank"]
