"""PSNR and SSIM of one frame pair, as the paper computes them (skimage, data range 1).

Torch-free, so `mspn bench` on a runtime install (plus the bench extra) measures accuracy
against the ground truth; mspn.metrics builds its per-step metrics on it.
"""
from __future__ import annotations

import numpy as np

from mspn.errors import MSPNError
from mspn.extras import require

SSIM_WINDOW = 7


def frame_psnr_ssim(prediction: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """One frame pair (C, H, W) -> (PSNR, SSIM) with data_range 1, as the paper computes them."""
    if min(target.shape[-2:]) < SSIM_WINDOW:
        raise MSPNError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} "
                        f"(its window), got {target.shape[-2]}x{target.shape[-1]}")
    skimage_metrics = require("skimage.metrics", purpose="SSIM and PSNR against the truth")
    peak_signal_noise_ratio = skimage_metrics.peak_signal_noise_ratio
    structural_similarity = skimage_metrics.structural_similarity
    with np.errstate(divide="ignore"):  # an exact prediction gives PSNR +inf, skimage's answer
        psnr = peak_signal_noise_ratio(target, prediction, data_range=1.0)
    if target.shape[0] == 1:
        ssim = structural_similarity(target[0], prediction[0], win_size=SSIM_WINDOW, data_range=1.0)
    else:
        ssim = structural_similarity(np.moveaxis(target, 0, -1), np.moveaxis(prediction, 0, -1),
                                     win_size=SSIM_WINDOW, data_range=1.0, channel_axis=-1)
    return float(psnr), float(ssim)
