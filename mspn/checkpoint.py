"""Checkpoints: one dict saved atomically with torch.save, loaded with ``weights_only=True``.

Layout (every value is a tensor, a plain container or a number, so weights_only loading works):
  format: "mspn-checkpoint", version: 1
  config: Config.to_dict()   the whole typed config, so the file knows its network
  frame_size: [H, W]         the size it was trained on (the export default)
  model: MSPN state_dict
  model_sha256: digest of the model's tensors (names, dtypes, shapes, bytes), checked at load,
                so weights corrupted in storage or transfer are refused instead of predicting
  optional: discriminator, optimizers, train_state (counters, alternation windows, RNG states)
"""
from __future__ import annotations

import hashlib
import pickle
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mspn.config import Config, ConfigError
from mspn.errors import MSPNError
from mspn.fileio import atomic_path
from mspn.models.mspn import MSPN
from mspn.statedict import describe_mismatch

FORMAT = "mspn-checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    config: Config
    frame_size: tuple[int, int]
    model: dict
    extra: dict = field(default_factory=dict)

    def build_model(self) -> MSPN:
        """An MSPN of the checkpoint's config with its weights, in eval mode."""
        model = MSPN(self.config.model)
        load_weights(model, self.model, "checkpoint")
        return model.eval()


def save_checkpoint(path: str | Path, config: Config, model_state: dict, frame_size=None,
                    **extra) -> None:
    """Atomic write: a kill during the save leaves the previous file intact."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": config.to_dict(),
        "frame_size": list(frame_size or config.data.size),
        "model": model_state,
        "model_sha256": weights_digest(model_state),
        **extra,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def weights_digest(state: dict) -> str:
    """SHA-256 over a state_dict's tensors in name order: name, dtype, shape and raw bytes."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load_raw(path: str | Path) -> dict:
    """torch.load with weights_only=True, turning every failure into a one-line MSPNError."""
    path = Path(path)
    if not path.is_file():
        raise MSPNError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # a plain pickle is refused below; torch's hint is noise
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):  # torch's advice to unpickle anyway is not ours
            raise MSPNError(f"{path}: holds Python objects beyond tensors and plain values, which mspn never "
                            f"unpickles (they could run code); not an mspn checkpoint") from None
        raise MSPNError(f"{path}: not a readable checkpoint (truncated or corrupt?): "
                        f"{_first_line(exc)}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError, IndexError,
            TypeError, AttributeError, UnicodeDecodeError) as exc:
        # A file that is not a checkpoint at all sends the unpickler wherever its bytes point.
        raise MSPNError(f"{path}: not a readable checkpoint (truncated, corrupt or another kind of file): "
                        f"{_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return (f"{type(exc).__name__}: {line}" if isinstance(exc, LookupError) or not line else line)[:200]


def check_finite_weights(state: dict, path) -> None:
    """Refuse weights holding NaN or infinity, naming the first tensor: they predict only NaN."""
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            raise MSPNError(f"{path}: model entry {name!r} is a {type(tensor).__name__}, not a tensor")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise MSPNError(f"{path}: weight {name} holds {bad} NaN or infinite value(s) (a diverged run?); "
                            f"use an earlier checkpoint")


def load_checkpoint(path: str | Path, expect: Config | None = None) -> Checkpoint:
    """Load an mspn checkpoint. With ``expect``, refuse one whose model config differs."""
    raw = load_raw(path)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise MSPNError(f"{path}: not an mspn checkpoint (a checkpoint of the authors' code? "
                        f"convert it with `mspn import-reference`)")
    if raw.get("version") != VERSION:
        raise MSPNError(f"{path}: checkpoint format version {raw.get('version')} is not supported "
                        f"(this mspn reads version {VERSION})")
    try:
        config = Config.from_dict(raw["config"])
    except ConfigError as exc:
        raise MSPNError(f"{path}: its stored config is invalid: {exc}") from None
    if expect is not None and config.model != expect.model:
        raise MSPNError(f"{path}: checkpoint of another config ({config.name}: {config.model}) "
                        f"where {expect.name} ({expect.model}) was expected")
    if not isinstance(raw.get("model"), dict):
        raise MSPNError(f"{path}: its model weights are missing or not a state_dict")
    check_finite_weights(raw["model"], path)
    recorded = raw.get("model_sha256")
    if recorded is not None and recorded != weights_digest(raw["model"]):
        raise MSPNError(f"{path}: its weights do not match the SHA-256 recorded when it was saved "
                        f"(corrupted in storage or transfer); use another copy")
    extra = {k: v for k, v in raw.items()
             if k not in ("format", "version", "config", "frame_size", "model", "model_sha256")}
    return Checkpoint(config, tuple(raw["frame_size"]), raw["model"], extra)


def load_weights(module: torch.nn.Module, state: dict, what: str) -> None:
    """Strict load with a one-line error naming missing and unexpected keys and bad shapes."""
    problem = describe_mismatch(module.state_dict(), state, limit=6)
    if problem:
        raise MSPNError(f"{what} does not fit this model ({problem}): probably a checkpoint of another config")
    module.load_state_dict(state)
