"""One measuring interface over every backend: rollout, streaming push / closed-loop step.

ONNX Runtime, OpenVINO and TensorRT go through the runtime's runner contract
(``mspn.runtime.base.make_runner``), so they are measured as users run them, and importing this
module stays torch-free. The PyTorch eager reference is ``MSPN.rollout`` under
``torch.inference_mode`` with ``torch.set_num_threads(threads)``; its streaming twin is the eager
``StepGraph``. Layouts: frames (B, T_ctx, C, H, W), one frame (B, C, H, W), float32.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from mspn.errors import MSPNError

BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt")
# bf16 is not a file of the folder: OpenVINO compiles the fp32 graphs with bf16 inference precision.
VARIANTS = ("fp32", "fp16", "int8", "bf16")


def graph_variant(variant: str) -> str:
    """The folder's graph files a bench variant runs on."""
    return "fp32" if variant == "bf16" else variant


def why_not(backend: str, variant: str, manifest, ckpt: str | None) -> str | None:
    """None when (backend, variant) can run here, otherwise one line saying why not."""
    if backend not in BACKENDS:
        return f"unknown backend (known: {', '.join(BACKENDS)})"
    if variant not in VARIANTS:
        return f"unknown variant (known: {', '.join(VARIANTS)})"
    if backend == "torch":
        if variant != "fp32":
            return "the PyTorch eager reference is measured in fp32 only"
        if ckpt is None:
            return "no checkpoint: the model folder carries none; pass --ckpt"
        if importlib.util.find_spec("torch") is None:
            return "torch is not installed"
        return None
    if variant == "bf16" and backend != "openvino":
        return "bf16 is an OpenVINO compile option on CPUs with bf16 units (fp32 graph, bf16 precision)"
    if graph_variant(variant) not in manifest.variants:
        return (f"the model folder has no {graph_variant(variant)} graphs (exported: "
                f"{', '.join(manifest.variants) or 'none'}); re-export with --precision {graph_variant(variant)}")
    if backend == "onnxruntime" and importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed"
    if backend == "openvino":
        if importlib.util.find_spec("openvino") is None:
            return "openvino is not installed"
        if variant == "bf16" and not openvino_bf16():
            return ("this CPU has no bf16 units (OpenVINO's CPU capabilities lack BF16; "
                    "avx512_bf16 / amx_bf16 absent)")
    if backend == "tensorrt":
        if importlib.util.find_spec("tensorrt") is None:
            return "TensorRT is not installed (needs an NVIDIA GPU and pip install 'mspn[gpu]')"
        try:
            manifest.engine_for("rollout", graph_variant(variant))
        except MSPNError:
            return f"no TensorRT engine for the {variant} graphs; build one with `mspn build-engine`"
    return None


def openvino_bf16() -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 here (it decides from CPUID, not from a hint)."""
    try:
        import openvino as ov
        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # noqa: BLE001 - an unusual build: judge from the CPU flags instead
        return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def runner_options(backend: str, variant: str, threads: int) -> dict:
    if backend == "onnxruntime":
        return {"threads": threads}
    if backend == "openvino":
        return {"threads": threads, "precision": "bf16" if variant == "bf16" else "f32"}
    return {}


class Engine:
    """rollout(frames) -> future (B, T_pred, C, H, W); reset(batch), push(frame) -> next frame,
    closed_step() -> the emitted prediction (the streaming session's rollout(1))."""

    def rollout(self, frames: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def reset(self, batch: int) -> None:
        raise NotImplementedError

    def push(self, frame: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def closed_step(self) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass


class RunnerEngine(Engine):
    """ONNX Runtime / OpenVINO / TensorRT through the runtime's runners."""

    def __init__(self, model_dir: str | Path, backend: str, variant: str, threads: int):
        from mspn.runtime.base import make_runner
        from mspn.runtime.manifest import Manifest

        self.manifest = Manifest.load(model_dir)
        self.backend, self.variant = backend, variant
        self._make = lambda kind: make_runner(backend, self.manifest, kind, graph_variant(variant),
                                              **runner_options(backend, variant, threads))
        self.rollout_runner = self._make("rollout").activate()
        self.step_runner = None
        self._initial = None
        self._handle = None

    def rollout(self, frames: np.ndarray) -> np.ndarray:
        return self.rollout_runner.infer({"frames": frames})["future"]

    def reset(self, batch: int) -> None:
        if self.step_runner is None:
            self.step_runner = self._make("step").activate()
            path = self.manifest.verified_path(self.manifest.state_file)
            with np.load(path) as data:
                self._initial = {n: np.asarray(data[n], np.float32) for n in self.manifest.state_names}
        if self._handle is not None:
            self.step_runner.free_state(self._handle)
        tiled = {k: np.repeat(v, batch, axis=0) for k, v in self._initial.items()}
        self._handle = self.step_runner.new_state(tiled)
        self._batch = batch
        shape = self._initial["pred_0"].shape[1:]
        self._zeros = np.zeros((batch, *shape), np.float32)
        self._ones, self._closed = np.ones(batch, np.float32), np.zeros(batch, np.float32)
        self._pending = None

    def _step(self, frame: np.ndarray, gate: np.ndarray) -> np.ndarray:
        out, self._handle = self.step_runner.step(self._handle, {"frame": frame, "open_loop": gate})
        return out["next_frame"]

    def push(self, frame: np.ndarray) -> np.ndarray:
        self._pending = self._step(frame, self._ones)
        return self._pending

    def closed_step(self) -> np.ndarray:
        emitted = self._pending
        self._pending = self._step(self._zeros, self._closed)
        return emitted

    def close(self) -> None:
        for runner in (self.rollout_runner, self.step_runner):
            if runner is not None:
                runner.deactivate()


class TorchEngine(Engine):
    """The fp32 PyTorch eager reference: MSPN.rollout; streaming through the eager StepGraph."""

    def __init__(self, ckpt: str | Path, threads: int, horizon: int, frame_size=None):
        import torch

        from mspn.checkpoint import load_checkpoint

        self.torch = torch
        torch.set_num_threads(threads)
        checkpoint = load_checkpoint(ckpt)
        self.model = checkpoint.build_model()
        self.horizon = horizon
        self.frame_size = tuple(frame_size or checkpoint.frame_size)
        self.step_graph = None

    def rollout(self, frames: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.model.rollout(self.torch.from_numpy(frames), self.horizon).numpy()

    def reset(self, batch: int) -> None:
        from mspn.export.wrappers import StepGraph, initial_state, state_names

        torch = self.torch
        if self.step_graph is None:
            self.step_graph = StepGraph(self.model).eval()
            self._initial = initial_state(self.model, *self.frame_size)
            self._names = state_names(len(self.model.levels))
        self._state = [self._initial[n].expand(batch, -1, -1, -1).contiguous() for n in self._names]
        self._ones, self._closed = torch.ones(batch), torch.zeros(batch)
        self._zeros = torch.zeros_like(self._initial["pred_0"].expand(batch, -1, -1, -1))
        self._pending = None

    def _step(self, frame, gate) -> np.ndarray:
        with self.torch.inference_mode():
            out = self.step_graph(frame, gate, *self._state)
        self._state = list(out[1:])
        return out[0].numpy()

    def push(self, frame: np.ndarray) -> np.ndarray:
        self._pending = self._step(self.torch.from_numpy(frame), self._ones)
        return self._pending

    def closed_step(self) -> np.ndarray:
        emitted = self._pending
        self._pending = self._step(self._zeros, self._closed)
        return emitted


def open_engine(model_dir, backend: str, variant: str, threads: int, ckpt=None,
                horizon: int | None = None, frame_size=None) -> Engine:
    if backend == "torch":
        if ckpt is None:
            raise MSPNError("the torch backend needs a checkpoint (--ckpt)")
        return TorchEngine(ckpt, threads, horizon, frame_size)
    return RunnerEngine(model_dir, backend, variant, threads)
