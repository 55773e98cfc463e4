"""Typed configuration: dataclasses, named presets, YAML files and checked ``--set`` overrides.

The whole Config is saved inside every checkpoint and model folder, so a checkpoint always knows
the network it holds and the frame size it was trained on.
"""
from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mspn.errors import MSPNError


class ConfigError(MSPNError, ValueError):
    """A config that cannot be used: unknown key, wrong type, impossible value."""


@dataclass
class ModelConfig:
    channels: tuple[int, ...] = (64, 128, 256, 512)
    levels: int = 3
    hidden: int = 32
    frame_channels: int = 1

    @property
    def size_multiple(self) -> int:
        """H and W must be multiples of this: every level's bottleneck lands at (H, W) / multiple."""
        return 2 ** (len(self.channels) - 1)

    def level_channels(self, level: int) -> tuple[int, ...]:
        """Encoder-decoder widths of a level: level l uses channels[: len(channels) - l]."""
        return tuple(self.channels[: len(self.channels) - level])

    def validate(self) -> None:
        if self.levels < 2:
            raise ConfigError(f"model.levels must be >= 2 (the hierarchy needs a coarse and a fine "
                              f"level), got {self.levels}")
        if len(self.channels) < self.levels + 1:
            raise ConfigError(
                f"model.channels needs at least levels + 1 = {self.levels + 1} widths "
                f"(the top level's encoder-decoder needs two), got {list(self.channels)}")
        if min(self.channels) < 1 or self.hidden < 1 or self.frame_channels < 1:
            raise ConfigError("model.channels, model.hidden and model.frame_channels must be positive")

    def check_size(self, height: int, width: int) -> None:
        """Refuse frame sizes the hierarchy cannot take, with the reason."""
        m = self.size_multiple
        if height <= 0 or width <= 0 or height % m or width % m:
            raise ConfigError(
                f"frame size {height}x{width} (HxW) is not usable: with {len(self.channels)} channel "
                f"widths both sides must be positive multiples of {m} (2^{len(self.channels) - 1})")


@dataclass
class DataConfig:
    size: tuple[int, int] = (64, 64)
    context: int = 10
    pred_steps: int = 10
    frame_interval: int = 1

    @property
    def clip_length(self) -> int:
        return self.context + self.pred_steps

    def validate(self) -> None:
        if self.context < 1 or self.pred_steps < 1:
            raise ConfigError(f"data.context and data.pred_steps must be >= 1, got "
                              f"{self.context} and {self.pred_steps}")
        if self.frame_interval < 1:
            raise ConfigError(f"data.frame_interval must be >= 1, got {self.frame_interval}")


@dataclass
class TrainConfig:
    lr: float = 1e-5
    weight_decay: float = 1e-5
    batch_size: int = 3
    epochs: int = 40
    max_steps: int = 0            # 0: no cap; otherwise stop after this many optimizer steps
    steps_per_epoch: int = 0      # 0: the whole train split each epoch
    val_clips: int = 0            # 0: the whole val split
    checkpoint_every: int = 200   # steps between last.pt writes (a kill loses at most this many)
    nan_policy: str = "stop"      # "stop" or "skip" (skip the batch and count it)
    amp: str = "off"              # "off", "bf16" or "fp16" (autocast; for GPUs)
    num_workers: int = 0
    seed: int = 0
    device: str = "auto"
    selection: str = "paper"      # best.pt score on val: "paper" (SSIM + PSNR/100 - LPIPS), "psnr", "ssim"

    def validate(self) -> None:
        if self.selection not in ("paper", "psnr", "ssim"):
            raise ConfigError(f"train.selection must be 'paper', 'psnr' or 'ssim', got {self.selection!r}")
        if self.nan_policy not in ("stop", "skip"):
            raise ConfigError(f"train.nan_policy must be 'stop' or 'skip', got {self.nan_policy!r}")
        if self.amp not in ("off", "bf16", "fp16"):
            raise ConfigError(f"train.amp must be 'off', 'bf16' or 'fp16', got {self.amp!r}")
        if self.batch_size < 1 or self.epochs < 0 or self.checkpoint_every < 1:
            raise ConfigError("train.batch_size and train.checkpoint_every must be >= 1, epochs >= 0")
        _positive_numbers("train", self, positive=("lr",), non_negative=(
            "weight_decay", "max_steps", "steps_per_epoch", "val_clips", "num_workers"))


ALTERNATIONS = ("per-video", "continuous")


@dataclass
class AdvConfig:
    enabled: bool = False
    g_lr: float = 1e-5
    d_lr: float = 1e-7
    weight_decay: float = 1e-4
    adv_weight: float = 100.0
    batch_size: int = 1
    epochs: int = 60
    disc_channels: tuple[int, ...] = (64, 64, 128, 256, 256, 512)
    window: int = 3
    # "per-video" (the authors'): clips of one video in a row, windows re-seeded with [0] at each
    # video; "continuous": clips shuffled over the split, windows run on (mspn.train.alternation)
    alternation: str = "per-video"
    selection: str = "paper"      # "paper" (SSIM + PSNR/100 - LPIPS), "psnr", "ssim"
    selection_slack: float = 0.02  # the authors' rule: best.pt when score > best / (1 + slack)

    def validate(self) -> None:
        if self.selection not in ("paper", "psnr", "ssim"):
            raise ConfigError(f"adv.selection must be 'paper', 'psnr' or 'ssim', got {self.selection!r}")
        if len(self.disc_channels) < 2:
            raise ConfigError("adv.disc_channels needs at least 2 widths")
        if self.alternation not in ALTERNATIONS:
            raise ConfigError(f"adv.alternation must be 'per-video' or 'continuous', got {self.alternation!r}")
        _positive_numbers("adv", self, positive=("g_lr", "d_lr", "batch_size", "window"),
                          non_negative=("weight_decay", "adv_weight", "epochs", "selection_slack"))


def _positive_numbers(section: str, values, positive=(), non_negative=()) -> None:
    """Refuse learning rates <= 0, negative weights and counts: they train nothing or diverge."""
    for name in positive:
        if not getattr(values, name) > 0:
            raise ConfigError(f"{section}.{name} must be > 0, got {getattr(values, name)!r}")
    for name in non_negative:
        if not getattr(values, name) >= 0:
            raise ConfigError(f"{section}.{name} must be >= 0, got {getattr(values, name)!r}")


@dataclass
class Config:
    name: str = "custom"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    adv: AdvConfig = field(default_factory=AdvConfig)

    def validate(self) -> Config:
        self.model.validate()
        self.data.validate()
        self.train.validate()
        self.adv.validate()
        self.model.check_size(*self.data.size)
        return self

    def to_dict(self) -> dict:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, raw: dict) -> Config:
        return _build(cls, raw, "").validate()


def _plain(value):
    """Tuples become lists so the dict is YAML/JSON-safe and loads with weights_only=True."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


_YAML12_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")


def _coerce(value, annotation, key: str):
    origin = typing.get_origin(annotation)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        args = typing.get_args(annotation)
        item_types = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
        if len(item_types) != len(value):
            raise ConfigError(f"{key} must have {len(item_types)} items, got {list(value)}")
        return tuple(_coerce(v, t, key) for v, t in zip(value, item_types, strict=True))
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str) and _YAML12_FLOAT.fullmatch(value.strip()):
            value = float(value)  # PyYAML reads '3e-4' (no dot) as a string; YAML 1.2 reads a float
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {annotation}")


def _build(cls, raw, prefix: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        where = f" in {prefix.rstrip('.')}" if prefix else ""
        raise ConfigError(f"unknown config key(s){where}: {', '.join(prefix + k for k in unknown)}; "
                          f"known: {', '.join(sorted(names))}")
    values = {}
    for name, value in raw.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            values[name] = _coerce(value, hint, prefix + name)
    return cls(**values)


PRESETS = {
    "paper-rgb": lambda: Config(
        name="paper-rgb",
        model=ModelConfig(channels=(64, 128, 256, 512, 1024), levels=4, hidden=64, frame_channels=3),
        data=DataConfig(size=(96, 128), context=10, pred_steps=10),
    ),
    # Moving MNIST videos hold one or two clips: per-video alternation would re-seed at nearly
    # every batch and never let G train, so the Moving MNIST presets use continuous windows.
    "paper-mnist": lambda: Config(
        name="paper-mnist",
        model=ModelConfig(channels=(64, 128, 256, 512), levels=3, hidden=32, frame_channels=1),
        data=DataConfig(size=(64, 64), context=10, pred_steps=10),
        adv=AdvConfig(alternation="continuous"),
    ),
    # The demo's config: Moving MNIST at 32x32, 5 -> 5; about 1.3 s per step of batch 8 on one
    # core. 200-step epochs validated on 200 clips; the demo trains a short run of it.
    "tiny": lambda: Config(
        name="tiny",
        model=ModelConfig(channels=(16, 32, 64), levels=2, hidden=16, frame_channels=1),
        data=DataConfig(size=(32, 32), context=5, pred_steps=5),
        train=TrainConfig(lr=2e-3, weight_decay=0.0, batch_size=8, epochs=60, steps_per_epoch=200,
                          val_clips=200, checkpoint_every=50),
        adv=AdvConfig(disc_channels=(8, 16, 32), g_lr=1e-5, d_lr=1e-4, batch_size=4, epochs=1,
                      alternation="continuous"),
    ),
    # Three levels at Moving MNIST's 64x64, sized to learn on a 2-core CPU (about 3.8 s per step of
    # batch 4 on one core): the shipped mid-size model. 0.45 M parameters.
    "mnist-small": lambda: Config(
        name="mnist-small",
        model=ModelConfig(channels=(8, 16, 32, 64), levels=3, hidden=16, frame_channels=1),
        data=DataConfig(size=(64, 64), context=10, pred_steps=10),
        train=TrainConfig(lr=1e-3, weight_decay=0.0, batch_size=4, epochs=40, steps_per_epoch=250,
                          val_clips=200, checkpoint_every=50),
        adv=AdvConfig(disc_channels=(16, 32, 64, 64), g_lr=1e-5, d_lr=1e-4, batch_size=4, epochs=1,
                      alternation="continuous"),
    ),
    # Smallest config the full hierarchy allows; for fast tests.
    "micro": lambda: Config(
        name="micro",
        model=ModelConfig(channels=(4, 8, 8), levels=2, hidden=4, frame_channels=1),
        data=DataConfig(size=(16, 16), context=3, pred_steps=2),
        train=TrainConfig(lr=1e-3, weight_decay=0.0, batch_size=2, epochs=1, checkpoint_every=5),
        adv=AdvConfig(disc_channels=(4, 8), batch_size=2, epochs=1, d_lr=1e-4, alternation="continuous"),
    ),
}


def load_config(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """A preset name or a YAML file (optionally ``base: PRESET`` plus sections), then overrides.

    overrides: ``section.key=value`` (or a bare ``key=value`` when the key name is unique),
    values parsed as YAML and checked against the field's type.
    """
    text = str(name_or_path)
    if text in PRESETS:
        raw = PRESETS[text]().to_dict()
    else:
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"no preset or YAML file named {text!r}; presets: {', '.join(PRESETS)}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a config file must be a mapping")
        base = loaded.pop("base", None)
        if base is not None and base not in PRESETS:
            raise ConfigError(f"{path}: base {base!r} is not a preset ({', '.join(PRESETS)})")
        raw = PRESETS[base]().to_dict() if base else Config().to_dict()
        raw["name"] = path.stem
        _merge(raw, loaded, "")
    for item in overrides:
        _apply_override(raw, item)
    return Config.from_dict(raw)


def _merge(into: dict, update: dict, prefix: str) -> None:
    for key, value in update.items():
        if key not in into:
            raise ConfigError(f"unknown config key: {prefix}{key}")
        if isinstance(into[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{prefix}{key} must be a mapping")
            _merge(into[key], value, f"{prefix}{key}.")
        else:
            into[key] = value


def _apply_override(raw: dict, item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key=value")
    key, text = item.split("=", 1)
    path = key.strip().split(".")
    if len(path) == 1:
        owners = [section for section, body in raw.items() if isinstance(body, dict) and path[0] in body]
        if path[0] in raw and not isinstance(raw[path[0]], dict):
            owners = [None]
        if not owners:
            raise ConfigError(f"unknown config key: {key}")
        if len(owners) > 1:
            raise ConfigError(f"config key {key!r} is ambiguous; write one of "
                              f"{', '.join(f'{o}.{key}' for o in owners)}")
        path = ([owners[0]] if owners[0] else []) + path
    node = raw
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            raise ConfigError(f"unknown config key: {key}")
        node = node[part]
    if path[-1] not in node or isinstance(node[path[-1]], dict):
        raise ConfigError(f"unknown config key: {key}")
    try:
        node[path[-1]] = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"override {item!r}: value is not valid YAML") from None


def save_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
