"""A stand-in exporter for the runtime tests: writes a tiny model folder per docs/model-folder.md.

Used until the real exporter (mspn.export.pipeline) lands; it follows the same contract, with the
legacy TorchScript exporter (dynamo=False) for speed. Needs torch; only the fixture imports it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from mspn.export.wrappers import RolloutGraph, StepGraph, initial_state, state_names
from mspn.checkpoint import save_checkpoint
from mspn.config import load_config
from mspn.models.mspn import MSPN


def make_checkpoint(path: Path, config_name: str = "tiny", seed: int = 0, gain: float = 3.0) -> Path:
    """A random checkpoint of a preset whose predictions move (mean ~0.26, std ~0.24 on tiny).

    Freshly initialised weights predict nearly constant ~1e-3 frames, on which parity checks
    would prove little, so weight matrices are scaled by ``gain`` and biases jittered.
    """
    torch.manual_seed(seed)
    config = load_config(config_name)
    model = MSPN(config.model)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.mul_(gain)
            else:
                param.add_(0.05 * gain * torch.randn_like(param))
    save_checkpoint(path, config, model.state_dict())
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_folder(ckpt: Path, out: Path, max_batch: int = 8) -> Path:
    """rollout.onnx, step.onnx, initial_state.npz and manifest.json, dynamic batch 1..max_batch."""
    from mspn.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(ckpt)
    config = checkpoint.config
    model = checkpoint.build_model()
    height, width = checkpoint.frame_size
    channels, levels = config.model.frame_channels, config.model.levels
    context, horizon = config.data.context, config.data.pred_steps
    out.mkdir(parents=True, exist_ok=True)

    init = initial_state(model, height, width)
    names = state_names(levels)
    np.savez(out / "initial_state.npz", **{n: init[n].numpy() for n in names})

    def shape_of(t, batch_axis=True):
        return ["batch"] + list(t.shape[1:]) if batch_axis else list(t.shape)

    frames = torch.rand(2, context, channels, height, width)
    rollout = RolloutGraph(model, horizon, height, width).eval()
    with torch.no_grad():
        future = rollout(frames)
    torch.onnx.export(rollout, (frames,), str(out / "rollout.onnx"), input_names=["frames"],
                      output_names=["future"], opset_version=18, dynamo=False,
                      dynamic_axes={"frames": {0: "batch"}, "future": {0: "batch"}})

    step = StepGraph(model).eval()
    frame = torch.rand(2, channels, height, width)
    ones = torch.ones(2)
    state = [init[n].expand(2, -1, -1, -1).contiguous() for n in names]
    with torch.no_grad():
        step_out = step(frame, ones, *state)
    in_names = ["frame", "open_loop"] + names
    out_names = ["next_frame"] + [f"{n}_out" for n in names]
    torch.onnx.export(step, (frame, ones, *state), str(out / "step.onnx"), input_names=in_names,
                      output_names=out_names, opset_version=18, dynamo=False,
                      dynamic_axes={n: {0: "batch"} for n in in_names + out_names})

    step_inputs = [{"name": "frame", "shape": shape_of(frame), "dtype": "float32"},
                   {"name": "open_loop", "shape": ["batch"], "dtype": "float32"}]
    step_inputs += [{"name": n, "shape": shape_of(s), "dtype": "float32"} for n, s in zip(names, state)]
    step_outputs = [{"name": n, "shape": shape_of(t), "dtype": "float32"}
                    for n, t in zip(out_names, step_out)]
    graphs = {
        "rollout": {"fp32": {"file": "rollout.onnx",
                             "inputs": [{"name": "frames", "shape": shape_of(frames), "dtype": "float32"}],
                             "outputs": [{"name": "future", "shape": shape_of(future), "dtype": "float32"}]}},
        "step": {"fp32": {"file": "step.onnx", "inputs": step_inputs, "outputs": step_outputs}},
    }
    manifest = {
        "format": "mspn-model", "format_version": 1,
        "config": config.to_dict(), "name": config.name,
        "context": context, "horizon": horizon, "frame_size": [height, width], "channels": channels,
        "channel_order": "gray" if channels == 1 else "bgr", "value_range": [0.0, 1.0],
        "batch": {"dynamic": True, "min": 1, "opt": 1, "max": max_batch},
        "opset": 18, "exporter": "torchscript", "graphs": graphs,
        "state": {"file": "initial_state.npz", "names": names},
        "versions": {"torch": torch.__version__},
        "files": {f.name: _sha(f) for f in sorted(out.iterdir()) if f.name != "manifest.json"},
        "verification": {}, "tensorrt_preflight": {}, "engines": {},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out
