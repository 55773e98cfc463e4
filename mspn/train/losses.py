"""The paper's training schedule and losses.

Layouts: clips (B, T, C, H, W) float32 in [0, 1]; T = context + pred_steps.
``ClipUnroller`` runs every step of a clip with the closed loop of the paper (the last pred_steps
steps take the model's own level-0 prediction as their target); it is the module DDP wraps, since
DDP synchronises gradients only through ``forward``.
"""
from __future__ import annotations

import torch
from torch import nn

from mspn.models.mspn import MSPN, downsample_nearest

# predictions[t][l]: level l's prediction (B, C, H / 2^l, W / 2^l) made at step t
Unrolled = list[list[torch.Tensor]]


class ClipUnroller(nn.Module):
    """forward(clip) -> predictions[t][l] for every step t of the clip.

    Steps t < T - pred_steps see the real frame x_t (open loop); steps t >= T - pred_steps are
    closed loop, exactly as at test time.
    """

    def __init__(self, model: MSPN, pred_steps: int):
        super().__init__()
        self.model = model
        self.pred_steps = pred_steps

    def forward(self, clip: torch.Tensor) -> Unrolled:
        batch, steps, _, height, width = clip.shape
        state = self.model.init_state(batch, height, width, clip)
        outputs = []
        for t in range(steps):
            closed = t >= steps - self.pred_steps
            predictions, state = self.model.step(None if closed else clip[:, t], state, closed_loop=closed)
            outputs.append(predictions)
        return outputs


def pixel_loss(predictions: Unrolled, clip: torch.Tensor) -> torch.Tensor:
    """Sum over steps t >= 1 and levels l of sum((P_l(t) - nearest(x_t, level l))^2).

    Sums (not means) over batch and pixels, all levels weighing 1; no loss at t = 0, where the
    model has seen nothing yet.
    """
    total = clip.new_zeros(())
    for t in range(1, clip.shape[1]):
        for level, prediction in enumerate(predictions[t]):
            target = downsample_nearest(clip[:, t], 2 ** level)
            total = total + (prediction.float() - target).pow(2).sum()
    return total


def frames_for_discriminator(predictions: Unrolled, clip: torch.Tensor, context: int):
    """(real, fake): frames x_t and level-0 predictions P_0(t) for t = context // 2 .. T - 1,
    each flattened to (B * T', C, H, W) in the same (clip, step) order."""
    start = context // 2
    real = clip[:, start:]
    fake = torch.stack([predictions[t][0] for t in range(start, clip.shape[1])], dim=1)
    return real.reshape(-1, *real.shape[2:]), fake.reshape(-1, *fake.shape[2:]).to(real.dtype)


def lsgan_d_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Least squares with targets +1 (real) and -1 (fake)."""
    return (real_scores - 1).pow(2).mean() + (fake_scores + 1).pow(2).mean()


def lsgan_g_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """The generator wants its frames scored as real (+1)."""
    return (fake_scores - 1).pow(2).mean()
