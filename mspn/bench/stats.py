"""Summaries of timing samples and of prediction errors. Torch-free (numpy only)."""
from __future__ import annotations

import numpy as np

from mspn.runtime.parity import PSNR_CAP, psnr_from_mse  # noqa: F401  (PSNR_CAP re-exported)


def summarize(seconds) -> dict:
    """Samples in seconds -> {n, mean, min, max, p50, p90, p99} in milliseconds.

    Percentiles use numpy's linear interpolation; with few samples p99 is close to the max,
    so ``n`` is always reported next to them.
    """
    values = np.asarray(list(seconds), dtype=np.float64) * 1e3
    if values.size == 0:
        return {"n": 0}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"n": int(values.size), "mean": float(values.mean()), "min": float(values.min()),
            "max": float(values.max()), "p50": float(p50), "p90": float(p90), "p99": float(p99)}


def parity(output: np.ndarray, reference: np.ndarray) -> dict:
    """Per predicted step errors of output against reference, both (N, T, C, H, W).

    Returns per_step lists (length T) of max_abs, mean_abs and psnr (dB against the reference,
    data range 1, pooled over the N clips; PSNR_CAP = identical), plus their worst values.
    """
    if output.shape != reference.shape:
        raise ValueError(f"parity: shapes differ {output.shape} vs {reference.shape}")
    diff = np.abs(output.astype(np.float64) - reference.astype(np.float64))
    if not np.isfinite(diff).all():
        bad = int(np.count_nonzero(~np.isfinite(diff)))
        return {"finite": False, "nonfinite_values": bad}
    axes = (0, 2, 3, 4)
    max_abs = diff.max(axis=axes)
    mean_abs = diff.mean(axis=axes)
    psnr = [psnr_from_mse(float(m)) for m in (diff ** 2).mean(axis=axes)]
    return {"finite": True,
            "per_step": {"max_abs": max_abs.tolist(), "mean_abs": mean_abs.tolist(), "psnr": psnr},
            "max_abs": float(max_abs.max()), "mean_abs": float(diff.mean()),
            "min_psnr": min(psnr),
            "psnr": psnr_from_mse(float((diff ** 2).mean()))}


def paired_ratios(reference_s, candidate_s) -> dict:
    """Speed ratios from runs taken alternately (A B A B ...): reference time / candidate time.

    ``median_of_pairs`` divides each pair measured back to back, so a slow drift of the machine's
    speed cancels; ``of_medians`` is the ratio of the two medians, for comparison.
    """
    a = np.asarray(reference_s, dtype=np.float64)
    b = np.asarray(candidate_s, dtype=np.float64)
    if a.size == 0 or a.size != b.size:
        return {"n": 0}
    pairs = a / b
    return {"n": int(a.size), "median_of_pairs": float(np.median(pairs)),
            "p10_of_pairs": float(np.percentile(pairs, 10)),
            "p90_of_pairs": float(np.percentile(pairs, 90)),
            "of_medians": float(np.median(a) / np.median(b)),
            "reference_p50_ms": float(np.median(a) * 1e3), "candidate_p50_ms": float(np.median(b) * 1e3)}
