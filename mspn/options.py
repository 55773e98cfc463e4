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
import typing
from dataclasses import MISSING, dataclass, field
from typing import Literal

from mspn.errors import MSPNError
from mspn.export.spec import PRECISIONS

Backend = Literal["onnxruntime", "openvino", "tensorrt", "torch"]
Variant = Literal["fp32", "fp16", "int8"]



def option(default=MISSING, *, help: str, flag: str | None = None, parse=None, metavar: str | None = None,
           action: str | None = None, positional: bool = False, default_factory=MISSING):
    """A dataclass field that is also a command-line option (``--field-name`` unless ``flag``)."""
    metadata = {"help": help, "flag": flag, "parse": parse, "metavar": metavar, "action": action,
                "positional": positional}
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
        raise MSPNError(f"unknown precision {', '.join(map(repr, unknown)) or repr(text)}; "
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
        parser.add_argument(meta["flag"] or "--" + f.name.replace("_", "-"), dest=f.name, **kwargs)


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
                raise MSPNError(f"{f.name.replace('_', '-')} must be one of {', '.join(map(str, choices))}, "
                                f"got {value!r}")


def _positive(options, *names: str, minimum: int = 1) -> None:
    for name in names:
        value = getattr(options, name)
        if value is not None and value < minimum:
            raise MSPNError(f"--{name.replace('_', '-')} must be >= {minimum}, got {value}")


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
    model: str | None = option(None, help="exported model folder, run torch-free on --backend")
    input: str | None = option(None, help=".npy (B, T, C, H, W) uint8 or float32 in [0, 1]")
    horizon: int | None = option(None, help="frames to predict (default: the model's or the config's)")
    backend: Backend = option("onnxruntime", help="backend for --model")
    variant: Variant = option("fp32", help="the model folder's graphs to run")
    provider: Literal["cpu", "cuda", "tensorrt"] | None = option(None, help="onnxruntime provider")
    precision: Literal["f32", "bf16"] | None = option(None, help="openvino inference precision")
    threads: int | None = option(None, help="CPU threads (onnxruntime, openvino)")
    video: str | None = option(None, help="input video; frames are resized to the model's size")
    stream: bool = option(False, help="video: stream frame by frame (lead 1)")
    lead: int = option(1, help="video: predict this many frames ahead")
    gif: str | None = option(None, help="video: also write this animated GIF")
    max_frames: int = option(0, help="video: read at most this many frames (0: all)")

    def __post_init__(self):
        check_literals(self)
        _positive(self, "horizon", "threads")

    def backend_options(self) -> dict:
        """Options for Predictor.load: only those given, so each backend's defaults apply."""
        options = {k: getattr(self, k) for k in ("provider", "threads", "precision") if getattr(self, k)}
        if self.backend == "torch":
            options["ckpt"] = self.ckpt
        return options


@dataclass
class BuildEngineOptions:
    model_dir: str = option(help="model folder written by `mspn export`", positional=True, metavar="MODEL_DIR")
    variant: Variant = option("fp32", help="exported graph to build from (precision comes from the graph)")
    workspace: float = option(4.0, help="builder workspace in GiB")
    timing_cache: str | None = option(None, help="timing cache file, read if present and updated")
    min_batch: int | None = option(None, help="profile min batch (default: the manifest's)")
    opt_batch: int | None = option(None, help="profile opt batch (default: the manifest's)")
    max_batch: int | None = option(None, help="profile max batch (default: the manifest's)")
    graphs: list | None = option(None, flag="--graph", action="append",
                                 help="build only this graph, rollout or step (repeatable; default both)")

    def __post_init__(self):
        check_literals(self)
        bad = [g for g in self.graphs or [] if g not in ("rollout", "step")]
        if bad:
            raise MSPNError(f"--graph must be rollout or step, got {', '.join(bad)}")
        _positive(self, "min_batch", "opt_batch", "max_batch")


@dataclass
class ExportOptions:
    """What the user chose; everything about the graphs themselves goes into ExportSpec."""

    ckpt: str = option(help="mspn checkpoint")
    out: str = option(help="model folder to write (must not exist unless --force)")
    context: int | None = option(None, help="T_ctx context frames (default: the config's)")
    horizon: int | None = option(None, help="T_pred predicted frames (default: the config's)")
    size: tuple[int, int] | None = option(None, parse=size_hw, help="frame size HxW (default: the checkpoint's)")
    # given as text on the command line; __post_init__ parses and checks it (one-line errors)
    precisions: tuple[str, ...] = option(("fp32",), flag="--precision", help="comma-separated: fp32,fp16,int8")
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
    budget_clips: int = option(16, help="held-out clips (--data test split) the budget is measured on")
    calib_methods: tuple[str, ...] = option(("MinMax", "Entropy", "Percentile"),
                                            help="comma-separated int8 calibration methods compared "
                                                 "(MinMax,Entropy,Percentile); the best on the budget is kept")
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

    def __post_init__(self):
        check_literals(self)
        if isinstance(self.precisions, str):
            self.precisions = precision_list(self.precisions)
        _positive(self, "context", "horizon", "static_batch", "max_batch", "calib_clips", "verify_clips",
                  "budget_clips")
        self.calib_methods = calibration_methods(self.calib_methods)


def calibration_methods(text: str | tuple) -> tuple[str, ...]:
    """"MinMax,Entropy" -> ("MinMax", "Entropy"); names of onnxruntime's CalibrationMethod."""
    allowed = ("MinMax", "Entropy", "Percentile")
    items = tuple(t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip())
    unknown = [t for t in items if t not in allowed]
    if unknown or not items:
        raise MSPNError(f"--calib-methods: unknown {', '.join(unknown) or '(empty)'}; "
                        f"choose from {', '.join(allowed)}")
    return tuple(dict.fromkeys(items))


@dataclass
class BenchOptions:
    model: str = option(help="model folder written by `mspn export`")
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
            raise MSPNError(f"--max-seconds must be > 0, got {self.max_seconds}")
