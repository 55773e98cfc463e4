"""The PyTorch reference backend of ``mspn.runtime``: the export wrappers run on the checkpoint.

``Predictor.load(MODEL_DIR, backend="torch", ckpt=CKPT)`` runs StepGraph / RolloutGraph
(export/wrappers.py) eagerly in PyTorch behind the same runner contract as the ONNX backends,
so parity is one loop over backends. A model folder holds no PyTorch weights (an edge device has
no use for them), so the checkpoint the folder was exported from must be given as ``ckpt``; its
model config and frame size are checked against the manifest's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mspn.checkpoint import load_checkpoint
from mspn.config import Config, ConfigError
from mspn.errors import MSPNError
from mspn.export.wrappers import RolloutGraph, StepGraph
from mspn.runtime.base import Runner, split_options
from mspn.runtime.manifest import Manifest

DEFAULTS = {"ckpt": None, "device": "cpu", "threads": 0}  # threads 0: torch's default


class TorchRunner(Runner):
    backend = "torch"

    def __init__(self, manifest: Manifest, graph, ckpt: Path, device: str, threads: int = 0):
        super().__init__(manifest, graph)
        self.ckpt = Path(ckpt)
        self.device = torch.device(device)
        self.threads = int(threads)
        self.module = None

    def _activate(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)  # process-wide: torch has no per-module pools
        checkpoint = load_checkpoint(self.ckpt)
        try:
            folder_model = Config.from_dict(self.manifest.raw["config"]).model
        except ConfigError as exc:
            raise MSPNError(f"{self.manifest.folder}: manifest config is invalid: {exc}") from None
        if checkpoint.config.model != folder_model:
            raise MSPNError(f"{self.ckpt}: its model config ({checkpoint.config.model}) is not the model "
                            f"folder's ({folder_model}); pass the checkpoint the folder was exported from")
        model = checkpoint.build_model().to(self.device)
        height, width = self.manifest.frame_size
        if self.graph.kind == "rollout":
            self.module = RolloutGraph(model, self.manifest.horizon, height, width).eval()
        else:
            self.module = StepGraph(model).eval()

    def _deactivate(self) -> None:
        self.module = None

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = [torch.from_numpy(np.ascontiguousarray(feed[t.name])).to(self.device) for t in self.graph.inputs]
        with torch.inference_mode():
            outputs = self.module(*args)
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        return {name: t.float().cpu().numpy() for name, t in zip(self.output_names, outputs, strict=True)}


def build_runner(manifest: Manifest, kind: str, variant: str, **options) -> TorchRunner:
    options = split_options(options, DEFAULTS, "torch")
    if variant != "fp32":
        raise MSPNError(f"the torch backend is the fp32 reference; variant {variant!r} is not available")
    if options["ckpt"] is None:
        raise MSPNError("the torch backend needs the checkpoint the model folder was exported from: "
                        "pass ckpt=PATH (command line: --ckpt PATH)")
    return TorchRunner(manifest, manifest.graph(kind, "fp32"), options["ckpt"], options["device"],
                       options["threads"])
