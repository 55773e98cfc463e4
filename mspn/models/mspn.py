"""The MSPN hierarchy: coarse-to-fine EDLSTM levels exchanging errors, predictions and features.

Layouts: frames (B, C, H, W) or clips (B, T, C, H, W), float32 in [0, 1]. Level l works at
(H / 2^l, W / 2^l). The model only steps and rolls out; losses and schedules live in mspn.train.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from mspn.config import ModelConfig
from mspn.models.blocks import upsample2
from mspn.models.cell import CellState, EDLSTMCell


class MSPNState(NamedTuple):
    """Recurrent state after a step.

    cells[l]: CellState (h, c), each (B, hidden, H_l, W_l)
    errors[l]: (B, 2C, H_l, W_l), concat(relu(target_l - P_l), relu(P_l - target_l))
    """

    cells: tuple[CellState, ...]
    errors: tuple[torch.Tensor, ...]


def downsample_nearest(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Nearest-neighbour downsampling by an integer factor (B, C, H, W) -> (B, C, H/f, W/f).

    PyTorch's nearest interpolation to H/f picks source index f*i, which is exactly this strided
    slice; the slice is cheaper and exports to ONNX as a plain Slice instead of a Resize.
    """
    return x if factor == 1 else x[:, :, ::factor, ::factor]


def level_errors(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """E = concat(relu(target - P), relu(P - target)) along channels: (B, 2C, H_l, W_l)."""
    return torch.cat([F.relu(target - prediction), F.relu(prediction - target)], dim=1)


class MSPN(nn.Module):
    """Multi-scale predictive network (arXiv 2212.11642).

    ``levels[l]`` is level l's EDLSTM cell; level 0 is full resolution.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        channels, top, c = config.channels, config.levels - 1, config.frame_channels
        cells = []
        for level in range(config.levels):
            # Inputs: own error (2C), the finer level's error (2C) and the coarser prediction (C).
            in_channels = 2 * c + (2 * c if level > 0 else 0) + (c if level < top else 0)
            higher = channels[len(channels) - level - 2] if level < top else 0
            cells.append(EDLSTMCell(in_channels, config.hidden, config.level_channels(level), higher, c))
        self.levels = nn.ModuleList(cells)

    def init_state(self, batch: int, height: int, width: int, like: torch.Tensor) -> MSPNState:
        """The t = 0 state: zeros everywhere. Refuses frame sizes the hierarchy cannot take."""
        self.config.check_size(height, width)
        c = self.config.frame_channels
        cells, errors = [], []
        for level, cell in enumerate(self.levels):
            h, w = height >> level, width >> level
            cells.append(cell.init_state(batch, h, w, like))
            errors.append(like.new_zeros(batch, 2 * c, h, w))
        return MSPNState(tuple(cells), tuple(errors))

    def predict_levels(self, state: MSPNState) -> tuple[list[torch.Tensor], list[CellState]]:
        """Run the cells top-down from the previous step's state.

        Returns predictions[l]: (B, C, H_l, W_l) and the cells' new (h, c).
        Level l sees its own and the finer level's previous errors, and this step's coarser
        prediction and shared feature.
        """
        levels = len(self.levels)
        predictions: list[torch.Tensor] = [None] * levels  # type: ignore[list-item]
        cell_states: list[CellState] = [None] * levels  # type: ignore[list-item]
        higher_feature = None
        for level in reversed(range(levels)):
            parts = [state.errors[level]]
            if level > 0:
                parts.append(downsample_nearest(state.errors[level - 1], 2))
            if level < levels - 1:
                parts.append(upsample2(predictions[level + 1]))
            predictions[level], cell_states[level], higher_feature = self.levels[level](
                torch.cat(parts, dim=1), state.cells[level], higher_feature)
        return predictions, cell_states

    @staticmethod
    def errors(predictions: list[torch.Tensor], target: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Every level's error against target (B, C, H, W), nearest-resized to the level."""
        return tuple(level_errors(p, downsample_nearest(target, 2 ** level))
                     for level, p in enumerate(predictions))

    def step(self, frame: torch.Tensor | None, state: MSPNState, closed_loop: bool = False):
        """One time step.

        frame: (B, C, H, W), the real frame of this step (ignored when closed_loop).
        Returns (predictions per level, each (B, C, H_l, W_l), new state). predictions[0] is the
        model's prediction of this step's frame, made before seeing it. Closed loop takes the
        model's own level-0 prediction as the target, so level-0 errors become zero.
        """
        predictions, cell_states = self.predict_levels(state)
        target = predictions[0] if closed_loop else frame
        return predictions, MSPNState(tuple(cell_states), self.errors(predictions, target))

    def rollout(self, context: torch.Tensor, horizon: int) -> torch.Tensor:
        """context: (B, T_ctx, C, H, W) in [0, 1] -> future: (B, horizon, C, H, W), not clamped."""
        if context.dim() != 5 or context.shape[2] != self.config.frame_channels:
            raise ValueError(f"context must be (B, T, {self.config.frame_channels}, H, W), "
                             f"got {tuple(context.shape)}")
        batch, steps, _, height, width = context.shape
        state = self.init_state(batch, height, width, context)
        for t in range(steps):
            _, state = self.step(context[:, t], state)
        future = []
        for _ in range(horizon):
            predictions, state = self.step(None, state, closed_loop=True)
            future.append(predictions[0])
        return torch.stack(future, dim=1)
