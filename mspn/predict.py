"""Predict future frames of videos stored in a .npy file with a PyTorch checkpoint.

Input: (B, T, C, H, W) uint8 (0..255) or float32 in [0, 1]; output: (B, horizon, C, H, W) float32,
not clamped (the model's raw level-0 predictions, as the metrics see them).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mspn.errors import MSPNError, UsageError
from mspn.fileio import atomic_path, check_fits_memory, check_output, read_npy

BATCH = 8  # clips per forward pass: bounds memory for files holding many clips


def load_frames(path) -> np.ndarray:
    """Read and check an input file; returns (B, T, C, H, W) float32 in [0, 1]."""
    path = Path(path)
    array = read_npy(path)
    if array.ndim != 5:
        raise MSPNError(f"{path}: expected a 5-D array (B, T, C, H, W), got shape {array.shape}")
    if min(array.shape) < 1:
        raise MSPNError(f"{path}: empty array, shape {array.shape} (B, T, C, H, W)")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype != np.float32:
        raise MSPNError(f"{path}: dtype {array.dtype} not supported: use uint8 (0..255) or "
                        f"float32 in [0, 1]")
    if not np.isfinite(array).all():
        raise MSPNError(f"{path}: holds {int(np.count_nonzero(~np.isfinite(array)))} NaN or "
                        f"infinite value(s)")
    low, high = array.min(), array.max()
    if low < 0.0 or high > 1.0:
        from mspn.runtime.predictor import range_problem
        raise MSPNError(f"{path}: float32 frames must lie in [0, 1]: {range_problem(low, high)} "
                        f"(uint8 input is scaled by 1/255 itself)")
    return array


def check_horizon(horizon: int, max_horizon: int) -> None:
    """Refuse a horizon above --max-horizon: millions of steps would run for hours."""
    if horizon > max_horizon:
        raise MSPNError(f"--horizon {horizon} is above --max-horizon {max_horizon}; raise --max-horizon "
                        f"if you mean it")


def predict_file(ckpt, input, horizon: int | None, out, quiet: bool = False,
                 max_horizon: int = 1000) -> np.ndarray:
    """Roll a checkpoint forward: ``input`` (B, T, C, H, W) -> ``out`` (B, horizon, C, H, W) float32.

    The whole input sequence is the context; horizon None predicts the config's data.pred_steps.
    Channels and frame size must match the checkpoint; the output file is written atomically.
    Returns the predictions.
    """
    import torch

    from mspn.checkpoint import load_checkpoint
    from mspn.progress import tqdm

    if ckpt is None:
        raise UsageError("--ckpt is required: the checkpoint to predict with")
    if horizon is not None and horizon < 1:
        raise MSPNError(f"--horizon must be >= 1, got {horizon}")
    check_output(out, inputs=(input, ckpt))
    checkpoint = load_checkpoint(ckpt)
    if horizon is None:
        horizon = checkpoint.config.data.pred_steps
    check_horizon(horizon, max_horizon)
    frames = load_frames(input)
    check_fits_memory(4 * len(frames) * horizon * int(np.prod(frames.shape[2:])), f"--horizon {horizon}")
    channels = checkpoint.config.model.frame_channels
    if frames.shape[2] != channels:
        raise MSPNError(f"{input}: frames have {frames.shape[2]} channel(s) but checkpoint "
                        f"{checkpoint.config.name} predicts {channels} (layout B, T, C, H, W)")
    if tuple(frames.shape[3:]) != tuple(checkpoint.frame_size):
        h, w = checkpoint.frame_size
        raise MSPNError(f"{input}: frames are {frames.shape[3]}x{frames.shape[4]} (HxW) but the "
                        f"checkpoint was trained on {h}x{w}")
    model = checkpoint.build_model()
    parts = []
    with torch.no_grad():
        for start in tqdm(range(0, len(frames), BATCH), desc="predict", unit="batch",
                          disable=quiet or len(frames) <= BATCH):
            context = torch.from_numpy(frames[start:start + BATCH])
            parts.append(model.rollout(context, horizon).numpy().astype(np.float32))
    predictions = np.concatenate(parts)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as handle:  # a file object, so np.save does not append ".npy"
            np.save(handle, predictions, allow_pickle=False)
    return predictions
