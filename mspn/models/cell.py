"""The EDLSTM cell: an LSTM whose gates come from an encoder-decoder instead of one convolution."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from mspn.models.blocks import EncDec, conv


class CellState(NamedTuple):
    """Recurrent state of one level: h and c, each (B, hidden, H_l, W_l)."""

    h: torch.Tensor
    c: torch.Tensor


class EDLSTMCell(nn.Module):
    """One MSPN level's recurrent cell, a pure step function.

    cell(x, state, higher_feature) -> (prediction, new state, shared feature)
      x: (B, in_channels, H_l, W_l) the level's input (errors and neighbouring predictions)
      state: CellState of (B, hidden, H_l, W_l) tensors
      higher_feature: (B, higher, H_l / 2^K, W_l / 2^K) or None for the top level
      prediction: (B, frame_channels, H_l, W_l), LeakyReLU output, deliberately not clamped
      shared: (B, channels[-1], H_l / 2^K, W_l / 2^K), handed to the level below
    """

    def __init__(self, in_channels: int, hidden: int, channels: tuple[int, ...], higher: int,
                 frame_channels: int):
        super().__init__()
        self.hidden = hidden
        self.gates = EncDec(channels, in_channels + hidden, 4 * hidden, higher)
        self.predict = conv(hidden, frame_channels, 5)

    def init_state(self, batch: int, height: int, width: int, like: torch.Tensor) -> CellState:
        """Zeros at t = 0, on ``like``'s device and dtype."""
        zeros = like.new_zeros(batch, self.hidden, height, width)
        return CellState(zeros, zeros)

    def forward(self, x: torch.Tensor, state: CellState, higher_feature: torch.Tensor | None):
        gates, shared = self.gates(torch.cat([x, state.h], dim=1), higher_feature)
        i, f, o, g = torch.split(gates, self.hidden, dim=1)
        c = torch.sigmoid(f) * state.c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        prediction = F.leaky_relu(self.predict(h))
        return prediction, CellState(h, c), shared
