"""Modules made for export. Each wraps an MSPN and exposes one fixed graph signature.

Both graphs use the "correct, then predict" form of a step: the recurrent state carried between
steps is, per level l, the cells' (h_l, c_l) and their pending predictions pred_l of the next frame.
A step takes the frame that arrived, computes every level's error against it, and runs the cells
top-down to predict the following frame. The state before the first frame is the cells' output
on the all-zeros t = 0 state: a constant that depends only on the weights, so it is computed once
at export time (``initial_state``) instead of being recomputed in every graph call.

rollout.onnx is built from two step pieces, OpenLoopStep (a context frame arrives) and
ClosedLoopStep (the model feeds itself), exported once each and unrolled in ONNX
(mspn.export.unroll); RolloutGraph is the same computation as one traced module.
"""
from __future__ import annotations

import torch
from torch import nn

from mspn.models.cell import CellState
from mspn.models.mspn import MSPN, MSPNState
from mspn.runtime.manifest import state_names  # noqa: F401  (re-exported for callers)


@torch.no_grad()
def initial_state(model: MSPN, height: int, width: int) -> dict[str, torch.Tensor]:
    """The state before the first frame, for batch 1: {name: (1, channels, H_l, W_l)}.

    Callers tile it along the batch axis.
    """
    param = next(model.parameters())
    zeros = model.init_state(1, height, width, param.new_zeros(()))
    predictions, cells = model.predict_levels(zeros)
    out = {}
    for level, (cell, pred) in enumerate(zip(cells, predictions, strict=True)):
        out[f"h_{level}"], out[f"c_{level}"], out[f"pred_{level}"] = cell.h, cell.c, pred
    return out


def _advance(model: MSPN, frame: torch.Tensor, open_loop: torch.Tensor,
             cells: list[CellState], predictions: list[torch.Tensor]):
    """Errors against the arrived frame, then the cells' next prediction.

    open_loop: (B,) float, 1 for a real frame, 0 for closed loop (the target becomes pred_0, so
    level-0 errors are exactly zero). Arithmetic blend instead of a branch: no control flow.
    """
    gate = open_loop.reshape(-1, 1, 1, 1)
    target = gate * frame + (1.0 - gate) * predictions[0]
    state = MSPNState(tuple(cells), model.errors(predictions, target))
    return model.predict_levels(state)


class StepGraph(nn.Module):
    """One streaming step.

    inputs:  frame (B, C, H, W) float32 in [0, 1] (any finite values when closed loop),
             open_loop (B,) float32 in {0, 1},
             then per level l: h_l, c_l (B, hidden, H_l, W_l), pred_l (B, C, H_l, W_l)
    outputs: next_frame (B, C, H, W) = the new pred_0, then h_l_out, c_l_out, pred_l_out.
    """

    def __init__(self, model: MSPN):
        super().__init__()
        self.model = model
        self.levels = len(model.levels)

    def forward(self, frame: torch.Tensor, open_loop: torch.Tensor, *state: torch.Tensor):
        cells, predictions = _unpack(state, self.levels)
        predictions, cells = _advance(self.model, frame, open_loop, cells, predictions)
        return (predictions[0],) + _pack(predictions, cells)


class OpenLoopStep(nn.Module):
    """One context step of the rollout: a real frame arrives (piece of the unrolled rollout.onnx).

    inputs:  frame (B, C, H, W) float32 in [0, 1], then the state as in StepGraph
    outputs: h_l_out, c_l_out, pred_l_out per level (pred_0_out is the predicted next frame)
    """

    def __init__(self, model: MSPN):
        super().__init__()
        self.model = model
        self.levels = len(model.levels)

    def forward(self, frame: torch.Tensor, *state: torch.Tensor):
        cells, predictions = _unpack(state, self.levels)
        state = MSPNState(tuple(cells), self.model.errors(predictions, frame))
        return _pack(*self.model.predict_levels(state))


class ClosedLoopStep(nn.Module):
    """One horizon step of the rollout: no frame, the target is the model's own pred_0, so level
    0's error is exactly zero (piece of the unrolled rollout.onnx).

    inputs:  the state as in StepGraph; outputs: as OpenLoopStep
    """

    def __init__(self, model: MSPN):
        super().__init__()
        self.model = model
        self.levels = len(model.levels)

    def forward(self, *state: torch.Tensor):
        cells, predictions = _unpack(state, self.levels)
        state = MSPNState(tuple(cells), self.model.errors(predictions, predictions[0]))
        return _pack(*self.model.predict_levels(state))


def _unpack(state: tuple[torch.Tensor, ...], levels: int):
    """(h_0, c_0, pred_0, h_1, ...) -> ([CellState per level], [pred per level])."""
    return ([CellState(state[3 * lv], state[3 * lv + 1]) for lv in range(levels)],
            [state[3 * lv + 2] for lv in range(levels)])


def _pack(predictions: list[torch.Tensor], cells: list[CellState]) -> tuple[torch.Tensor, ...]:
    out = []
    for cell, pred in zip(cells, predictions, strict=True):
        out += [cell.h, cell.c, pred]
    return tuple(out)


class RolloutGraph(nn.Module):
    """The recurrence unrolled over a fixed context and horizon.

    frames: (B, T_ctx, C, H, W) float32 in [0, 1] -> future: (B, T_pred, C, H, W) float32.
    The t = 0 state is stored as buffers (batch 1, expanded to B), not recomputed.
    """

    def __init__(self, model: MSPN, horizon: int, height: int, width: int):
        super().__init__()
        self.model = model
        self.horizon = horizon
        self.levels = len(model.levels)
        for name, value in initial_state(model, height, width).items():
            self.register_buffer(f"init_{name}", value.clone())

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        batch = frames.shape[0]
        cells = [CellState(getattr(self, f"init_h_{lv}").expand(batch, -1, -1, -1),
                           getattr(self, f"init_c_{lv}").expand(batch, -1, -1, -1))
                 for lv in range(self.levels)]
        predictions = [getattr(self, f"init_pred_{lv}").expand(batch, -1, -1, -1)
                       for lv in range(self.levels)]
        ones = frames.new_ones(batch)
        for t in range(frames.shape[1]):
            predictions, cells = _advance(self.model, frames[:, t], ones, cells, predictions)
        future = [predictions[0]]
        for _ in range(self.horizon - 1):
            # Closed loop: the target is the model's own prediction, so level 0's error is zero.
            state = MSPNState(tuple(cells), self.model.errors(predictions, predictions[0]))
            predictions, cells = self.model.predict_levels(state)
            future.append(predictions[0])
        return torch.stack(future, dim=1)
