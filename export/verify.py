"""Checks run on every graph the moment it is written: onnx.checker, ONNX Runtime vs PyTorch,
and the step graph looped per the streaming contract vs the rollout.

``run_step_loop`` and ``compare`` are torch-free (numpy + a step callable), so the runtime can
reuse them; only ``torch_rollout`` needs torch.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from mspn.errors import MSPNError
from mspn.runtime.parity import psnr_from_mse

StepFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]



def check_model(path: str | Path) -> None:
    """onnx.checker with full checks (the path form also handles files near 2 GB)."""
    import onnx
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MSPNError(f"{Path(path).name}: onnx.checker rejects the graph: {first[:300]}") from None


def ort_session(path: str | Path, threads: int = 0):
    """A CPU ONNX Runtime session (threads=0: ORT's default)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def session_step(session) -> StepFn:
    """Wrap a step-graph session as feeds -> {output name: array}."""
    names = [o.name for o in session.get_outputs()]
    return lambda feeds: dict(zip(names, session.run(names, feeds), strict=True))


def tile_state(initial: Mapping[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """initial_state.npz holds batch 1; a session of batch B starts from it tiled along axis 0."""
    return {k: np.ascontiguousarray(np.repeat(np.asarray(v, np.float32), batch, axis=0))
            for k, v in initial.items()}


def run_step_loop(step: StepFn, initial: Mapping[str, np.ndarray], frames: np.ndarray,
                  horizon: int, state_names: list[str]) -> np.ndarray:
    """The streaming contract of docs/model-folder.md with a step graph.

    frames: (B, T_ctx, C, H, W) float32 in [0, 1] -> future: (B, horizon, C, H, W) float32.
    Push every context frame (open_loop = 1); the last push's next_frame is the first
    prediction; then each closed-loop step (frame = zeros, open_loop = 0) gives the next one.
    """
    frames = np.asarray(frames, np.float32)
    batch = frames.shape[0]
    state = tile_state(initial, batch)
    ones, zeros = np.ones(batch, np.float32), np.zeros(batch, np.float32)
    blank = np.zeros_like(frames[:, 0])
    out = None
    for t in range(frames.shape[1]):
        out = step({"frame": np.ascontiguousarray(frames[:, t]), "open_loop": ones, **state})
        state = {n: out[f"{n}_out"] for n in state_names}
    future = [out["next_frame"]]
    for _ in range(horizon - 1):
        out = step({"frame": blank, "open_loop": zeros, **state})
        state = {n: out[f"{n}_out"] for n in state_names}
        future.append(out["next_frame"])
    return np.stack(future, axis=1)


def record_step_feeds(step: StepFn, initial: Mapping[str, np.ndarray], frames: np.ndarray,
                      horizon: int, state_names: list[str]) -> list[dict[str, np.ndarray]]:
    """Every feed the step loop makes on these frames (for int8 calibration of the recurrent state)."""
    feeds: list[dict[str, np.ndarray]] = []

    def recording(f):
        feeds.append({k: np.array(v) for k, v in f.items()})
        return step(f)

    run_step_loop(recording, initial, frames, horizon, state_names)
    return feeds


def compare(pred: np.ndarray, ref: np.ndarray) -> dict:
    """Per predicted step (axis 1 of (B, T, C, H, W)): max and mean absolute error and PSNR.

    PSNR uses data range 1 and the MSE over the batch, capped at PSNR_CAP dB for identical frames.
    """
    if pred.shape != ref.shape:
        raise MSPNError(f"prediction shape {pred.shape} differs from the reference {ref.shape}")
    diff = np.abs(pred.astype(np.float64) - ref.astype(np.float64))
    axes = tuple(i for i in range(diff.ndim) if i != 1)
    mse = (diff ** 2).mean(axis=axes)
    psnr = [psnr_from_mse(m) for m in mse]
    if not np.isfinite(diff).all():
        raise MSPNError("graph output contains NaN or infinity")
    return {"max_abs": [float(v) for v in diff.max(axis=axes)],
            "mean_abs": [float(v) for v in diff.mean(axis=axes)],
            "psnr": [round(p, 3) for p in psnr],
            "worst_max_abs": float(diff.max()),
            "min_psnr": round(min(psnr), 3)}


def torch_rollout(model, frames: np.ndarray, horizon: int) -> np.ndarray:
    """The PyTorch reference: MSPN.rollout in float32. frames (B, T_ctx, C, H, W)."""
    import torch
    with torch.no_grad():
        return model.rollout(torch.from_numpy(np.asarray(frames, np.float32)), horizon).numpy()


def rollout_outputs(session, frames: np.ndarray) -> np.ndarray:
    return session.run(["future"], {"frames": np.ascontiguousarray(frames, dtype=np.float32)})[0]


def parity(rollout_path: str | Path, step_path: str | Path, initial: Mapping[str, np.ndarray],
           inputs: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray], horizon: int,
           state_names: list[str]) -> dict:
    """Both graphs of one precision against the PyTorch rollout, on every named input set.

    inputs / reference: {set name ("random", "data"): (B, T_ctx, C, H, W) / (B, T_pred, C, H, W)}.
    Returns {"rollout": {set: compare()}, "step_loop": {set: compare()}}.
    """
    rollout, step = ort_session(rollout_path), session_step(ort_session(step_path))
    out = {"rollout": {}, "step_loop": {}}
    for name, frames in inputs.items():
        out["rollout"][name] = compare(rollout_outputs(rollout, frames), reference[name])
        out["step_loop"][name] = compare(
            run_step_loop(step, initial, frames, horizon, state_names), reference[name])
    return out


def worst(result: dict) -> tuple[float, float]:
    """(largest max_abs, smallest PSNR) over every graph and input set of a parity() result."""
    stats = [s for per_graph in result.values() for s in per_graph.values()]
    return max(s["worst_max_abs"] for s in stats), min(s["min_psnr"] for s in stats)
