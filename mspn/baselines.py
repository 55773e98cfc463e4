"""Trivial predictors a trained model must beat, and the comparison against them.

On black-background data with fast motion (Moving MNIST) copy-last is worse than predicting
nothing, so a model is only shown to predict when it beats every baseline here, not copy-last
alone. Each baseline maps the context (B, T_ctx, C, H, W) in [0, 1] to a prediction
(B, horizon, C, H, W).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

Baseline = Callable[[torch.Tensor, int], torch.Tensor]


def copy_last(context: torch.Tensor, horizon: int) -> torch.Tensor:
    """The last context frame, repeated."""
    return context[:, -1:].expand(-1, horizon, -1, -1, -1)


def blank(context: torch.Tensor, horizon: int) -> torch.Tensor:
    """All-zero frames: predicting nothing."""
    return context.new_zeros(context.shape[0], horizon, *context.shape[2:])


def context_mean(context: torch.Tensor, horizon: int) -> torch.Tensor:
    """The mean frame of the context, repeated."""
    return context.mean(dim=1, keepdim=True).expand(-1, horizon, -1, -1, -1)


BASELINES: dict[str, Baseline] = {"copy_last": copy_last, "blank": blank, "context_mean": context_mean}
# Which way is better for each metric.
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "mse": False, "mse_sum": False, "lpips": False}


def beats(model: float, baseline: float, metric: str) -> bool:
    """Whether the model's value is strictly better than the baseline's for this metric."""
    return model > baseline if HIGHER_IS_BETTER[metric] else model < baseline


def compare(model: dict, baselines: dict[str, dict]) -> dict:
    """Which baselines the model beats, per metric, on the mean and at each predicted step.

    model / baselines[name]: {"per_step": {metric: [values]}, "mean": {metric: value}}.
    Returns {baseline: {metric: {"mean": bool, "steps_beaten": [1-based steps]}}}.
    """
    out = {}
    for name, other in baselines.items():
        out[name] = {}
        for metric, value in model["mean"].items():
            if value is None or other["mean"].get(metric) is None:
                continue
            pairs = zip(model["per_step"][metric], other["per_step"][metric], strict=True)
            steps = [t + 1 for t, (a, b) in enumerate(pairs)
                     if a is not None and b is not None and beats(a, b, metric)]
            out[name][metric] = {"mean": beats(value, other["mean"][metric], metric), "steps_beaten": steps}
    return out
