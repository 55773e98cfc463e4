"""Command options, declared once: one typed dataclass per command.

Each field of an options class is also its command-line option (``option(...)`` carries the help
text); ``add_arguments`` builds the argparse arguments from the fields, with the dataclass's
defaults and, for ``Literal`` fields, its choices; ``from_args`` turns the parsed namespace back
into the dataclass, whose ``__post_init__`` validates. Library functions take these objects, so
the CLI and Python callers share one set of defaults and one validation.

Torch-free: the CLI builds its parser from here without importing the heavy libraries.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
import warnings
from dataclasses import MISSING, dataclass, field
from typing import Literal

from mspn.errors import UsageError
from mspn.export.spec import PRECISIONS

Backend = Literal["onnxruntime", "openvino", "tensorrt", "torch"]
Variant = Literal["fp32", "fp16", "int8"]



def option(default=MISSING, *, help: str, flag: str | None = None, parse=None, metavar: str | None = None,
           action: str | None = None, positional: bool = False, default_factory=MISSING,
           deprecated: tuple[str, ...] = ()):
    """A dataclass field that is also a command-line option (``--field-name`` unless ``flag``);
    ``deprecated``: old spellings that still work, with a note naming the new one."""
    metadata = {"help": help, "flag": flag, "parse": parse, "metavar": metavar, "action": action,
                "positional": positional, "deprecated": deprecated}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def size_hw(text: str) -> tuple[int, int]:
    """'96x128' -> (96, 128)."""
    try:
        height, width = text.lower().split("x")
        return int(height), int(width)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like HxW (e.g. 96x128), got {text!r}") from None


def precision_list(text: str) -> tuple[str, ...]:
    """'fp16,int8' -> ('fp32', 'fp16', 'int8'): fp32 is always exported (the reference variant)."""
    items = tuple(dict.fromkeys(p.strip().lower() for p in text.split(",") if p.strip()))
    unknown = [p for p in items if p not in PRECISIONS]
    if unknown or not items:
        raise UsageError(f"unknown variant {', '.join(map(repr, unknown)) or repr(text)}; "
                         f"choose from {', '.join(PRECISIONS)} (comma-separated)")
    return items if "fp32" in items else ("fp32",) + items


# --- the generic machinery -------------------------------------------------------------------------

def _base_type(hint):
    """(type without None, is optional)."""
    args = typing.get_args(hint)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return hint, False


def _default_of(f: dataclasses.Field):
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def add_arguments(parser, cls) -> None:
    """An argparse argument for every option() field of ``cls``, defaults from the dataclass."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if "help" not in meta:
            continue
        base, _ = _base_type(hints[f.name])
        default = _default_of(f)
        kwargs: dict = {"help": meta["help"]}
        if meta["action"]:
            kwargs["action"] = meta["action"]
        elif base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction if default is True else "store_true"
        elif typing.get_origin(base) is Literal:
            kwargs["choices"] = list(typing.get_args(base))
        if meta["parse"] is not None:
            kwargs["type"] = meta["parse"]
        elif base in (int, float) and "action" not in kwargs:
            kwargs["type"] = base
        if meta["metavar"]:
            kwargs["metavar"] = meta["metavar"]
        if meta["positional"]:
            parser.add_argument(f.name, **kwargs)
            continue
        if default is MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = default
            if default not in (None, False, ()) and kwargs.get("action") != "append":
                shown = ",".join(default) if isinstance(default, tuple) else default
                kwargs["help"] += f" (default: {shown})"
        flag = meta["flag"] or "--" + f.name.replace("_", "-")
        parser.add_argument(flag, dest=f.name, **kwargs)
        for old in meta["deprecated"]:
            parser.add_argument(old, dest=f.name, action=DeprecatedAlias, new=flag, type=kwargs.get("type"),
                                metavar=kwargs.get("metavar"), help=argparse.SUPPRESS, default=argparse.SUPPRESS)


class DeprecatedAlias(argparse.Action):
    """An old spelling of an option (or a positional) that still works, with a note on stderr."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        old = option_string or f"the positional {self.metavar or self.dest.upper()}"
        print(f"{parser.prog}: note: {old} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def from_args(cls, args: argparse.Namespace):
    """The options object from a parsed namespace (validation runs in its __post_init__)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    if "overrides" in values and values["overrides"] is None:
        values["overrides"] = []
    return cls(**values)


def check_literals(options) -> None:
    """Refuse a value outside a Literal field's choices (Python callers skip argparse's check)."""
    hints = typing.get_type_hints(type(options))
    for f in dataclasses.fields(options):
        base, optional = _base_type(hints[f.name])
        value = getattr(options, f.name)
        if typing.get_origin(base) is Literal and not (optional and value is None):
            choices = typing.get_args(base)
            if value not in choices:
                raise UsageError(f"{f.name.replace('_', '-')} must be one of {', '.join(map(str, choices))}, "
                                f"got {value!r}")


def _positive(options, *names: str, minimum: int = 1) -> None:
    for name in names:
        value = getattr(options, name)
        if value is not None and value < minimum:
            raise UsageError(f"--{name.replace('_', '-')} must be >= {minimum}, got {value}")


# --- the commands' options -------------------------------------------------------------------------

@dataclass
class TrainOptions:
    data: str = option(help="dataset folder with train/ and val/ splits")
    out: str = option(help="run folder (checkpoints, logs)")
    config: str = option("tiny", help="preset name or YAML file")
    overrides: list = option(flag="--set", action="append", metavar="KEY=VALUE", default_factory=list,
                             help="config override, e.g. --set train.epochs=2 (repeatable)")
    resume: bool = option(False, help="continue from OUT/last.pt")
    adv: bool = option(False, help="adversarial stage (needs --init)")
    init: str | None = option(None, help="pixel checkpoint the adversarial generator starts from")


@dataclass
class EvalOptions:
    ckpt: str = option(help="checkpoint to evaluate")
    data: str = option(help="dataset folder")
    split: str = option("test", help="split to measure")
    context: int | None = option(None, help="context frames (default: the checkpoint's)")
    horizon: int | None = option(None, help="predicted frames (default: the checkpoint's)")
    report: str = option("report.json", help="JSON report path; pictures go beside it")
    max_clips: int = option(0, help="measure at most this many clips (0: every clip of the split)")
    batch: int = option(8, help="clips per forward pass")
    lpips_weights: str | None = option(None, help="AlexNet ImageNet weights (.pth) for LPIPS")
    clip: bool = option(False, help="clip predictions to [0, 1] before the metrics")
    untrained: bool = option(False, help="also measure the same network at the initialisation its "
                                         "training started from")
    quiet: bool = False

    def __post_init__(self):
        _positive(self, "context", "horizon", "batch")
        _positive(self, "max_clips", minimum=0)


@dataclass
class PredictOptions:
    out: str = option(help=".npy output (B, HORIZON, C, H, W) float32, or a video (.mp4/.avi) of "
                           "real | predicted frames with --video")
    ckpt: str | None = option(None, help="PyTorch checkpoint to predict with (with --model: the torch "
                                         "backend's weights)")
    model: str | None = option(None, metavar="DIR", help="exported model folder, run torch-free on --backend")
    input: str | None = option(None, help=".npy (B, T, C, H, W) uint8 or float32 in [0, 1]")
    horizon: int | None = option(None, help="frames to predict (default: the model's or the config's)")
    max_horizon: int = option(1000, help="refuse a --horizon above this (a runaway request would run for hours)")
    backend: Backend = option("onnxruntime", help="backend for --model")
    variant: Variant = option("fp32", help="which of the model folder's exported variants to run")
    provider: Literal["cpu", "cuda", "tensorrt"] | None = option(None, help="onnxruntime execution provider")
    precision: Literal["f32", "bf16"] | None = option(
        None, help="the backend's arithmetic precision (openvino: bf16 on CPUs with bf16 units; default f32)")
    threads: int | None = option(None, help="CPU threads (onnxruntime, openvino)")
    video: str | None = option(None, help="input video; frames are resized to the model's size")
    stream: bool = option(False, help="video: stream frame by frame (lead 1)")
    lead: int = option(1, help="video: predict this many frames ahead")
    gif: str | None = option(None, help="video: also write this animated GIF")
    max_frames: int = option(0, help="video: read at most this many frames (0: all)")
    source: str | None = option(None, help="live source, read frame by frame: a video file, camera index (0), "
                                           "RTSP/HTTP URL, image folder, or - for raw uint8 HxWxC frames on "
                                           "stdin; --out is a video, a PNG folder or .npy (raw predictions)")
    server: str | None = option(None, help="stream --video/--source through a running `mspn serve` "
                                           "(gRPC host:port, or http://host:port) instead of --model")

    def __post_init__(self):
        check_literals(self)
        _positive(self, "horizon", "threads", "max_horizon", "lead")
        _positive(self, "max_frames", minimum=0)

    def backend_options(self) -> dict:
        """Options for Predictor.load: only those given, so each backend's defaults apply."""
        options = {k: getattr(self, k) for k in ("provider", "threads", "precision") if getattr(self, k)}
        if self.backend == "torch":
            options["ckpt"] = self.ckpt
        return options


@dataclass
class BuildEngineOptions:
    # Not required by argparse: the old positional MODEL_DIR still fills it (mspn.cli).
    model: str | None = option(None, metavar="DIR", help="model folder written by `mspn export` (required)")
    variant: Variant = option("fp32", help="the folder's exported variant to build from (the engine's arithmetic "
                                           "follows the graph's)")
    workspace: float = option(4.0, help="builder workspace in GiB")
    timing_cache: str | None = option(None, help="timing cache file, read if present and updated")
    min_batch: int | None = option(None, help="profile min batch (default: the manifest's)")
    opt_batch: int | None = option(None, help="profile opt batch (default: the manifest's)")
    max_batch: int | None = option(None, help="profile max batch (default: the manifest's)")
    graphs: list | None = option(None, flag="--graph", action="append",
                                 help="build only this graph, rollout or step (repeatable; default both)")
    hardware_compat: bool = option(False, help="engines that also run on later GPUs (TensorRT's Ampere-plus "
                                   "hardware compatibility; builds on compute capability 8.0+, may run slower)")

    def __post_init__(self):
        if not self.model:
            raise UsageError("--model DIR is required: the model folder to build engines into")
        check_literals(self)
        bad = [g for g in self.graphs or [] if g not in ("rollout", "step")]
        if bad:
            raise UsageError(f"--graph must be rollout or step, got {', '.join(bad)}")
        _positive(self, "min_batch", "opt_batch", "max_batch")


@dataclass
class InspectOptions:
    model: str = option(help="model folder written by `mspn export`, or a bare .onnx graph copied out of one",
                        metavar="DIR|FILE")


@dataclass
class ExportOptions:
    """What the user chose; everything about the graphs themselves goes into ExportSpec."""

    ckpt: str = option(help="mspn checkpoint")
    out: str = option(help="model folder to write (must not exist unless --force)")
    context: int | None = option(None, help="T_ctx context frames (default: the config's)")
    horizon: int | None = option(None, help="T_pred predicted frames (default: the config's)")
    size: tuple[int, int] | None = option(None, parse=size_hw, help="frame size HxW (default: the checkpoint's)")
    # given as text on the command line; __post_init__ parses and checks it (one-line errors)
    variants: tuple[str, ...] = option(("fp32",), deprecated=("--precision",), metavar="LIST",
                                       help="the folder's variants to write, comma-separated: fp32,fp16,int8 "
                                            "(fp32 always; --precision is the old spelling)")
    static_batch: int | None = option(None, metavar="N", help="fixed batch N instead of a dynamic axis")
    max_batch: int = option(8, help="largest dynamic batch (TensorRT profile)")
    data: str | None = option(None, help="dataset folder: parity also on clips of its val (or test) split")
    calib: str | None = option(None, help="dataset folder for int8 calibration (default: synthetic clips)")
    calib_split: str = option("val", help="split of --calib to calibrate on")
    calib_clips: int = option(8, help="int8 calibration clips")
    verify_clips: int = option(4, help="real clips checked with --data")
    tolerance: float = option(1e-4, help="fp32 max abs error vs PyTorch")
    psnr_floor: float = option(30.0, help="dB; variants below are flagged")
    budget_db: float = option(40.0, help="fp16/int8 must stay >= this PSNR (dB) vs the fp32 rollout at every "
                                         "predicted step on held-out clips (and SSIM within 0.005 of fp32's), "
                                         "else int8 keeps sensitive blocks float32 or the variant is refused")
    # 64, not 16: the SSIM criterion is a mean over clips, and its standard error over 16 clips
    # (0.002-0.0035 on the trained tiny model, 10 -> 30) is close to the 0.005 budget itself.
    budget_clips: int = option(64, help="held-out clips (--data test split) the budget is measured on")
    calib_methods: tuple[str, ...] = option(("MinMax", "Entropy", "Percentile"),
                                            help="comma-separated int8 calibration methods compared "
                                                 "(MinMax,Entropy,Percentile); the best on the budget is kept")
    openvino_int8: Literal["auto", "nncf", "qdq"] = option(
        "auto", help="what OpenVINO runs for the int8 variant: nncf writes an OpenVINO int8 model "
                     "(openvino/*.int8.xml, NNCF quantizing what the ONNX int8 plan quantizes) when it meets "
                     "the budget on OpenVINO, else the ONNX QDQ graph; qdq: the ONNX QDQ graph; auto: the NNCF "
                     "model when nncf is installed and it is at least as accurate on OpenVINO as the QDQ graph")
    # "auto": dynamo, then TorchScript
    exporter: Literal["auto", "dynamo", "torchscript"] = option("auto", help="ONNX exporter")
    rollout: Literal["unrolled", "traced"] = option(
        "unrolled", help="unrolled: export the open- and closed-loop steps and wire copies of them into "
                         "rollout.onnx (fast at any horizon); traced: export the unrolled PyTorch loop")
    opset: int = option(18, help="ONNX opset")
    channel_order: Literal["gray", "bgr", "rgb"] | None = option(
        None, help="default: gray for 1 channel, bgr (the reference's) for 3")
    seed: int = option(0, help="seed of the random parity inputs")
    force: bool = option(False, help="replace an existing output folder")
    progress: bool = True

    # The old keyword for variants (ExportOptions(precisions=...)); still accepted.
    precisions: dataclasses.InitVar[tuple[str, ...] | str | None] = None

    def __post_init__(self, precisions=None):
        check_literals(self)
        if precisions is not None:
            warnings.warn("ExportOptions(precisions=...) is deprecated; use variants=...", DeprecationWarning,
                          stacklevel=3)
            self.variants = precisions
        if isinstance(self.variants, str):
            self.variants = precision_list(self.variants)
        _positive(self, "context", "horizon", "static_batch", "max_batch", "calib_clips", "verify_clips",
                  "budget_clips")
        self.calib_methods = calibration_methods(self.calib_methods)
        if self.openvino_int8 == "nncf" and "int8" not in self.variants:
            raise UsageError("--openvino-int8 nncf: the folder has no int8 variant (add --variants ...,int8)")


def calibration_methods(text: str | tuple) -> tuple[str, ...]:
    """"MinMax,Entropy" -> ("MinMax", "Entropy"); names of onnxruntime's CalibrationMethod."""
    allowed = ("MinMax", "Entropy", "Percentile")
    items = tuple(t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip())
    unknown = [t for t in items if t not in allowed]
    if unknown or not items:
        raise UsageError(f"--calib-methods: unknown {', '.join(unknown) or '(empty)'}; "
                        f"choose from {', '.join(allowed)}")
    return tuple(dict.fromkeys(items))


@dataclass
class BenchOptions:
    model: str = option(metavar="DIR", help="model folder written by `mspn export`")
    backends: str = option("torch,onnxruntime,openvino", help="comma list of torch, onnxruntime, openvino, tensorrt")
    variants: str | None = option(None, help="comma list of fp32, fp16, int8, bf16 (OpenVINO); "
                                             "default: the folder's variants and bf16")
    batch: int = option(1, help="batch of the timed rollouts")
    threads: int | None = option(None, help="threads for every backend (default: usable CPUs)")
    runs: int = option(20, help="timed runs per measurement (at most)")
    warmup: int = option(3, help="untimed runs first")
    max_seconds: float = option(60.0, help="stop a measurement's runs after this long (at least 3 runs are taken)")
    stream_runs: int = option(5, help="streaming sessions per backend")
    ab_runs: int | None = option(None, help="alternating A/B pairs against PyTorch (default: --runs)")
    report: str = option("bench.json", help="JSON report; PNG charts go beside it")
    ckpt: str | None = option(None, help="checkpoint of the PyTorch reference, if the folder carries none")
    data: str | None = option(None, help="dataset folder: parity and accuracy on its test clips")
    clips: int = option(4, help="clips for parity and accuracy")
    profile: bool = option(False, help="op-type time breakdown (ORT / OpenVINO)")
    charts: bool = option(True, help="PNG charts beside the report")
    worker_timeout: float = 3600.0

    def __post_init__(self):
        _positive(self, "batch", "threads", "runs", "stream_runs", "ab_runs", "clips")
        _positive(self, "warmup", minimum=0)
        if self.max_seconds <= 0:
            raise UsageError(f"--max-seconds must be > 0, got {self.max_seconds}")


ServeBackend = Literal["onnxruntime", "openvino", "tensorrt"]


@dataclass
class ServeOptions:
    model: str = option(help="model folder written by `mspn export`")
    backend: ServeBackend = option("onnxruntime", help="mspn.runtime backend inside Triton's Python backend")
    variant: Variant = option("fp32", help="the model folder's graphs to serve")
    name: str | None = option(None, help="Triton model name prefix: NAME_rollout and NAME_stream "
                                         "(default: the folder's name)")
    http_port: int = option(8000, help="Triton HTTP port")
    grpc_port: int = option(8001, help="Triton gRPC port")
    metrics_port: int = option(8002, help="Triton Prometheus metrics port")
    max_batch: int | None = option(None, help="largest batch Triton forms (default: the folder's max batch)")
    max_queue_delay_us: int = option(2000, help="microseconds a request may wait for others to batch with")
    max_sequences: int = option(64, help="live streams NAME_stream keeps state for; more get an error")
    idle_timeout_s: float = option(60.0, help="seconds after which an idle stream is released")
    threads: int | None = option(None, help="CPU threads per model (onnxruntime, openvino)")
    repository: str | None = option(None, help="write the model repository here (default: a temporary folder)")
    triton_verbose: bool = option(False, help="Triton's own verbose log (--log-verbose=1)")

    def __post_init__(self):
        check_literals(self)
        _positive(self, "max_batch", "max_sequences", "threads")
        _positive(self, "max_queue_delay_us", minimum=0)
        for port in ("http_port", "grpc_port", "metrics_port"):
            _positive(self, port, minimum=1)
        if self.idle_timeout_s <= 0:
            raise UsageError(f"--idle-timeout-s must be > 0, got {self.idle_timeout_s}")
        if self.name is not None and not self.name.replace("_", "").replace("-", "").isalnum():
            raise UsageError(f"--name may hold letters, digits, - and _ only, got {self.name!r}")

    def backend_options(self) -> dict:
        return {"threads": self.threads} if self.threads else {}


@dataclass
class ExportTritonOptions:
    model: str = option(help="model folder written by `mspn export`")
    out: str = option(help="Triton model repository to write (must not exist unless --force)")
    backend: Literal["onnxruntime", "tensorrt"] = option(
        "onnxruntime", help="Triton's native backend: onnxruntime (model.onnx) or tensorrt (model.plan "
                            "from the folder's engines; build them with `mspn build-engine`)")
    variant: Variant = option("fp32", help="the model folder's graphs to export")
    name: str | None = option(None, help="model name prefix (default: the folder's name)")
    instances: int = option(1, help="model instances per GPU (instance_group count)")
    max_queue_delay_us: int = option(2000, help="dynamic / sequence batcher queue delay in microseconds")
    max_sequences: int = option(64, help="live sequences of the step model (oldest strategy candidates)")
    idle_timeout_s: float = option(60.0, help="seconds after which an idle sequence is released")
    force: bool = option(False, help="replace an existing repository")

    def __post_init__(self):
        check_literals(self)
        _positive(self, "instances", "max_sequences")
        _positive(self, "max_queue_delay_us", minimum=0)
        if self.idle_timeout_s <= 0:
            raise UsageError(f"--idle-timeout-s must be > 0, got {self.idle_timeout_s}")
