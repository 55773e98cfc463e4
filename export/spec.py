"""ExportSpec: the one object that decides graph names, shapes, batch range, opset, precision and
tolerances. Export, verification, the manifest and the TensorRT engine build all read it.

Torch-free (plain dataclasses), so the runtime can rebuild it from a manifest with
``ExportSpec.from_manifest``.

Shapes are lists whose items are ints or the string ``"batch"`` (the dynamic batch axis; a static
batch N writes N instead). All graph tensors are float32, NCHW, values in [0, 1].
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from mspn.errors import MSPNError
from mspn.runtime.manifest import BATCH, TensorSpec, state_names

__all__ = ["BATCH", "TensorSpec", "ExportSpec"]

PRECISIONS = ("fp32", "fp16", "int8")
CHANNEL_ORDERS = ("gray", "bgr", "rgb")
SPEC_VERSION = 1


@dataclass
class ExportSpec:
    """Everything an export is made of except the weights.

    context / horizon: T_ctx context frames in, T_pred predicted frames out (rollout graph).
    height, width: frame size; channels: C; levels, hidden: the hierarchy (state shapes).
    batch_min/opt/max: the dynamic batch range (the TensorRT optimisation profile);
    static_batch: a fixed batch N instead (then min == opt == max == N).
    """

    name: str
    context: int
    horizon: int
    height: int
    width: int
    channels: int
    levels: int
    hidden: int
    size_multiple: int = 1
    channel_order: str = "gray"
    value_range: tuple[float, float] = (0.0, 1.0)
    opset: int = 18
    static_batch: int | None = None
    batch_min: int = 1
    batch_opt: int = 1
    batch_max: int = 8
    precisions: tuple[str, ...] = ("fp32",)
    fp32_max_abs: float = 1e-4       # ORT vs PyTorch, fp32 graphs; a failure stops the export
    psnr_floor: float = 30.0         # dB against fp32 PyTorch; variants below it are flagged
    verify_batch: int = 2            # random clips per parity check
    verify_seed: int = 0
    config: dict = field(default_factory=dict)   # the training Config as a dict

    # --- checks ----------------------------------------------------------------------------------

    def validate(self) -> ExportSpec:
        """Refuse a spec no graph can be made from, with a one-line reason."""
        if self.context < 1:
            raise MSPNError(f"context must be >= 1 frame, got {self.context}")
        if self.horizon < 1:
            raise MSPNError(f"horizon must be >= 1 frame, got {self.horizon}")
        m = self.size_multiple
        if self.height <= 0 or self.width <= 0 or self.height % m or self.width % m:
            raise MSPNError(f"frame size {self.height}x{self.width} (HxW) is not usable by config "
                            f"{self.name}: both sides must be positive multiples of {m}")
        unknown = [p for p in self.precisions if p not in PRECISIONS]
        if unknown:
            raise MSPNError(f"unknown precision {', '.join(map(repr, unknown))}; "
                            f"choose from {', '.join(PRECISIONS)}")
        if "fp32" not in self.precisions:
            raise MSPNError("precisions must include fp32 (the reference every variant is checked against)")
        if self.channel_order not in CHANNEL_ORDERS:
            raise MSPNError(f"channel order must be one of {', '.join(CHANNEL_ORDERS)}, "
                            f"got {self.channel_order!r}")
        if self.channel_order == "gray" and self.channels != 1 or \
                self.channel_order != "gray" and self.channels != 3:
            raise MSPNError(f"channel order {self.channel_order!r} does not fit {self.channels} channel(s)")
        if self.static_batch is not None and self.static_batch < 1:
            raise MSPNError(f"static batch must be >= 1, got {self.static_batch}")
        if not 1 <= self.batch_min <= self.batch_opt <= self.batch_max:
            raise MSPNError(f"batch range needs 1 <= min <= opt <= max, got "
                            f"{self.batch_min}/{self.batch_opt}/{self.batch_max}")
        if self.fp32_max_abs <= 0:
            raise MSPNError(f"fp32 tolerance must be > 0, got {self.fp32_max_abs}")
        if self.opset < 17:
            raise MSPNError(f"opset must be >= 17, got {self.opset}")
        return self

    # --- batch -----------------------------------------------------------------------------------

    @property
    def dynamic_batch(self) -> bool:
        return self.static_batch is None

    @property
    def batch_dim(self):
        """What a shape holds on axis 0: the string "batch" or the static N."""
        return BATCH if self.dynamic_batch else self.static_batch

    def batch_profile(self) -> dict:
        """{"dynamic", "min", "opt", "max"}: the manifest's batch entry and the TensorRT profile."""
        if self.dynamic_batch:
            return {"dynamic": True, "min": self.batch_min, "opt": self.batch_opt, "max": self.batch_max}
        n = self.static_batch
        return {"dynamic": False, "min": n, "opt": n, "max": n}

    def example_batch(self) -> int:
        """Batch of the tracing inputs. 2 for a dynamic batch: a tracer that sees 1 may bake it in."""
        return 2 if self.dynamic_batch else self.static_batch

    def check_batch(self) -> int:
        """Batch of the parity inputs: inside the allowed range."""
        if not self.dynamic_batch:
            return self.static_batch
        return max(self.batch_min, min(self.verify_batch, self.batch_max))

    # --- graph signatures ------------------------------------------------------------------------

    def level_size(self, level: int) -> tuple[int, int]:
        return self.height >> level, self.width >> level

    def state_names(self) -> list[str]:
        return state_names(self.levels)

    def state_specs(self, suffix: str = "") -> list[TensorSpec]:
        b, out = self.batch_dim, []
        for level in range(self.levels):
            h, w = self.level_size(level)
            out += [TensorSpec(f"h_{level}{suffix}", (b, self.hidden, h, w)),
                    TensorSpec(f"c_{level}{suffix}", (b, self.hidden, h, w)),
                    TensorSpec(f"pred_{level}{suffix}", (b, self.channels, h, w))]
        return out

    def rollout_inputs(self) -> list[TensorSpec]:
        return [TensorSpec("frames", (self.batch_dim, self.context, self.channels, self.height, self.width))]

    def rollout_outputs(self) -> list[TensorSpec]:
        return [TensorSpec("future", (self.batch_dim, self.horizon, self.channels, self.height, self.width))]

    def step_inputs(self) -> list[TensorSpec]:
        b = self.batch_dim
        return [TensorSpec("frame", (b, self.channels, self.height, self.width)),
                TensorSpec("open_loop", (b,))] + self.state_specs()

    def step_outputs(self) -> list[TensorSpec]:
        return [TensorSpec("next_frame", (self.batch_dim, self.channels, self.height, self.width))] + \
            self.state_specs("_out")

    def signature(self, graph: str) -> tuple[list[TensorSpec], list[TensorSpec]]:
        """(inputs, outputs) of a graph: "rollout", "step", or the rollout's pieces "open_step"
        (frame + state -> state) and "closed_step" (state -> state)."""
        if graph == "rollout":
            return self.rollout_inputs(), self.rollout_outputs()
        if graph == "step":
            return self.step_inputs(), self.step_outputs()
        if graph == "open_step":
            return self.step_inputs()[:1] + self.state_specs(), self.state_specs("_out")
        if graph == "closed_step":
            return self.state_specs(), self.state_specs("_out")
        raise MSPNError(f"unknown graph {graph!r} (rollout or step)")

    def dynamic_axes(self, graph: str) -> dict[str, dict[int, str]]:
        """TorchScript-exporter style: {tensor name: {0: "batch"}}; empty for a static batch."""
        if not self.dynamic_batch:
            return {}
        inputs, outputs = self.signature(graph)
        return {t.name: {0: BATCH} for t in inputs + outputs}

    @staticmethod
    def graph_file(graph: str, precision: str) -> str:
        """rollout.onnx, rollout.fp16.onnx, step.int8.onnx, ..."""
        return f"{graph}.onnx" if precision == "fp32" else f"{graph}.{precision}.onnx"

    def graph_entry(self, graph: str, precision: str) -> dict:
        """The manifest's G: {"file", "inputs", "outputs"} (shapes as in this spec)."""
        inputs, outputs = self.signature(graph)
        return {"file": self.graph_file(graph, precision),
                "inputs": [t.to_dict() for t in inputs],
                "outputs": [t.to_dict() for t in outputs]}

    # --- serialisation ---------------------------------------------------------------------------

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["value_range"] = list(self.value_range)
        out["precisions"] = list(self.precisions)
        out["spec_version"] = SPEC_VERSION
        return out

    @classmethod
    def from_dict(cls, raw: dict) -> ExportSpec:
        if not isinstance(raw, dict):
            raise MSPNError(f"export spec must be a mapping, got {type(raw).__name__}")
        raw = dict(raw)
        version = raw.pop("spec_version", SPEC_VERSION)
        if version != SPEC_VERSION:
            raise MSPNError(f"export spec version {version} is not supported (this mspn reads {SPEC_VERSION})")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise MSPNError(f"export spec has unknown key(s): {', '.join(unknown)}")
        try:
            spec = cls(**raw)
        except TypeError as exc:
            raise MSPNError(f"export spec is incomplete: {exc}") from None
        spec.value_range = tuple(spec.value_range)
        spec.precisions = tuple(spec.precisions)
        return spec.validate()

    @classmethod
    def from_manifest(cls, manifest: dict) -> ExportSpec:
        """The spec a model folder was exported with (manifest.json's "spec" section)."""
        if not isinstance(manifest, dict) or manifest.get("format") != "mspn-model":
            raise MSPNError("not an mspn model manifest (format != 'mspn-model')")
        if "spec" not in manifest:
            raise MSPNError("manifest has no 'spec' section (written by an older mspn export?)")
        return cls.from_dict(manifest["spec"])
