"""How close two predictions are: the one PSNR rule shared by export, runtime and benchmark.

Torch-free (numpy only). Layouts: predictions (B, T, C, H, W) float, values in [0, 1].
"""
from __future__ import annotations

import math

PSNR_CAP = 200.0  # dB written for identical frames: JSON has no infinity, and min() needs numbers


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB with data range 1, capped at PSNR_CAP (an exact match, or float32 rounding of one)."""
    mse = float(mse)
    if mse <= 10 ** (-PSNR_CAP / 10):
        return PSNR_CAP
    return 10.0 * math.log10(1.0 / mse)
