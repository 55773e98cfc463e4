"""mspn.metrics: per-step SSIM / PSNR / MSE / LPIPS as the paper computes them."""
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from mspn.errors import MSPNError
from mspn.metrics import ALEXNET_FILE, LPIPS_MIN_SIDE, LPIPSScorer, StepMetrics, load_lpips


def _pair(channels=1, batch=3, steps=4, size=16, seed=0):
    """Targets in [0, 1] and predictions whose noise grows with the step: per-step errors differ."""
    rng = np.random.default_rng(seed)
    target = rng.random((batch, steps, channels, size, size))
    noise = rng.normal(size=target.shape) * (0.02 + 0.05 * np.arange(steps))[None, :, None, None, None]
    return np.clip(target + noise, 0, 1), target


@pytest.mark.parametrize("channels", [1, 3])
def test_psnr_ssim_per_step_match_skimage(channels):
    pred, target = _pair(channels)
    acc = StepMetrics(horizon=4)
    acc.update(pred[:2], target[:2])  # two batches: the average is over clips, not batches
    acc.update(torch.from_numpy(pred[2:]), torch.from_numpy(target[2:]))
    steps = acc.per_step()
    for t in range(4):
        psnr = np.mean([peak_signal_noise_ratio(target[b, t], pred[b, t], data_range=1)
                        for b in range(3)])
        if channels == 1:
            ssim = np.mean([structural_similarity(target[b, t, 0], pred[b, t, 0], win_size=7,
                                                  data_range=1) for b in range(3)])
        else:
            ssim = np.mean([structural_similarity(target[b, t].transpose(1, 2, 0),
                                                  pred[b, t].transpose(1, 2, 0), win_size=7,
                                                  data_range=1, channel_axis=-1) for b in range(3)])
        assert steps["psnr"][t] == pytest.approx(psnr, rel=1e-9)
        assert steps["ssim"][t] == pytest.approx(ssim, rel=1e-9)
    assert np.all(np.diff(steps["psnr"]) < 0) and np.all(np.diff(steps["ssim"]) < 0)
    assert acc.means()["psnr"] == pytest.approx(steps["psnr"].mean())
    assert acc.clips == 3


def test_psnr_of_a_constant_error_is_analytic_and_unclipped_values_count():
    target = np.full((2, 3, 1, 16, 16), 0.92)
    errors = np.array([0.05, 0.1, 0.2])
    pred = target + errors[None, :, None, None, None]  # goes above 1: not clipped by default
    acc = StepMetrics(horizon=3)
    acc.update(pred, target)
    np.testing.assert_allclose(acc.per_step()["psnr"], -10 * np.log10(errors ** 2), rtol=1e-9)
    summary = acc.summary()
    assert summary["clipped"] is False
    assert summary["out_of_range_fraction"] == pytest.approx(2 / 3)

    clipped = StepMetrics(horizon=3, clip=True)
    clipped.update(pred, target)
    np.testing.assert_allclose(clipped.per_step()["mse"], np.minimum(errors, 0.08) ** 2, rtol=1e-9)
    assert clipped.summary()["clipped"] is True


@pytest.mark.parametrize("channels", [1, 3])
def test_mse_conventions_relate_by_pixels_per_frame(channels):
    pred, target = _pair(channels, size=16)
    acc = StepMetrics(horizon=4)
    acc.update(pred, target)
    steps = acc.per_step()
    np.testing.assert_allclose(steps["mse"], ((pred - target) ** 2).mean(axis=(0, 2, 3, 4)))
    np.testing.assert_allclose(steps["mse_sum"], steps["mse"] * channels * 16 * 16)


def test_bad_shapes_are_refused():
    acc = StepMetrics(horizon=2)
    with pytest.raises(MSPNError, match=r"must both be \(B, 2, C, H, W\)"):
        acc.update(np.zeros((1, 3, 1, 16, 16)), np.zeros((1, 3, 1, 16, 16)))
    with pytest.raises(MSPNError, match="no clip was measured"):
        acc.per_step()
    with pytest.raises(MSPNError, match="SSIM needs frames of at least 7x7"):
        acc.update(np.zeros((1, 2, 1, 6, 6)), np.zeros((1, 2, 1, 6, 6)))


def test_lpips_skipped_with_reason_when_weights_absent(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    scorer, status = load_lpips()
    assert scorer is None
    assert status["status"] == "skipped" and status["reportable"] is False
    assert str(tmp_path / "hub" / "checkpoints" / ALEXNET_FILE) in status["reason"]
    assert "x100" in status["scale"]

    acc = StepMetrics(horizon=2, lpips=scorer, lpips_status=status)
    acc.update(*_pair(steps=2)[::-1])
    assert "lpips" not in acc.per_step()
    assert acc.summary()["lpips"]["status"] == "skipped"

    with pytest.raises(MSPNError, match="--lpips-weights: file not found"):
        load_lpips(tmp_path / "nowhere.pth")


def test_lpips_skipped_for_frames_too_small_for_alexnet():
    scorer, status = load_lpips(frame_size=(16, 16))
    assert scorer is None and status["status"] == "skipped"
    assert f"{LPIPS_MIN_SIDE}x{LPIPS_MIN_SIDE}" in status["reason"]


def test_lpips_random_backbone_path_is_finite_and_not_reportable():
    scorer = LPIPSScorer(None, random_backbone=True)
    status = StepMetrics(horizon=2, lpips=scorer).lpips_status
    assert status["status"] == "random-backbone" and status["reportable"] is False
    pred, target = _pair(channels=1, batch=2, steps=2, size=32)
    acc = StepMetrics(horizon=2, lpips=scorer, lpips_status=status)
    acc.update(pred, target)
    values = acc.per_step()["lpips"]
    assert values.shape == (2,) and np.all(np.isfinite(values)) and np.all(values > 0)
    assert acc.summary()["lpips"]["reportable"] is False
    # identical frames are at distance zero
    assert np.allclose(scorer(target[:, 0], target[:, 0]), 0.0, atol=1e-6)
    rgb_pred, rgb_target = _pair(channels=3, batch=1, steps=1, size=32)
    assert np.isfinite(scorer(rgb_pred[:, 0], rgb_target[:, 0])).all()


def test_lpips_loads_torchvision_alexnet_weights_into_the_backbone(tmp_path):
    import torchvision

    features = torchvision.models.alexnet(weights=None).features.state_dict()
    path = tmp_path / "alex.pth"
    # only the convolutions are used by LPIPS; the classifier would make the file 230 MB
    torch.save({f"features.{k}": v for k, v in features.items()}, path)
    scorer, status = load_lpips(path)
    assert status["status"] == "ok" and status["reportable"] and status["weights"] == str(path)
    torch.testing.assert_close(getattr(scorer.net.net.slice1, "0").weight, features["0.weight"])
    torch.testing.assert_close(getattr(scorer.net.net.slice5, "10").bias, features["10.bias"])

    bad = tmp_path / "bad.pth"
    torch.save({"something": torch.zeros(1)}, bad)
    with pytest.raises(MSPNError, match="not torchvision AlexNet weights"):
        load_lpips(bad)
