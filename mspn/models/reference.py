"""Import of checkpoints written by the authors' reference code.

Reference layout (see ../shared/reference/keys-*.txt): level 0 is ``EHcell``, the top level
``ELcell``, middle level l ``ELHcell{l}``. Inside a cell, ``en_decoder`` is the gate U-Net and
``out_conv`` the prediction conv. Two tensors per cell are never used by the reference's forward
pass and are dropped knowingly: ``en_decoder.scale`` and the last decoder stage's
``merge_conv{K-1}`` (that stage merges through ``en_decoder.out_conv`` instead).
"""
from __future__ import annotations

import re
from pathlib import Path

from mspn.config import ModelConfig
from mspn.errors import MSPNError
from mspn.statedict import describe_mismatch

_RESBLOCK = {"bottleneck.0": "conv1", "bottleneck.2": "conv2", "res": "proj"}
_STAGE = {"0": "res_in", "2": "res_out"}


def reference_cell_name(level: int, levels: int) -> str:
    if level == 0:
        return "EHcell"
    return "ELcell" if level == levels - 1 else f"ELHcell{level}"


def _map_cell_key(key: str, stages: int) -> str | None:
    """Map a key inside one reference cell to ours; None for the knowingly dropped tensors.

    Raises KeyError for a key this layout does not have.
    """
    if key == "en_decoder.scale":
        return None
    if m := re.fullmatch(r"out_conv\.0\.(weight|bias)", key):
        return f"predict.{m[1]}"
    if m := re.fullmatch(r"en_decoder\.in_conv\.0\.(weight|bias)", key):
        return f"gates.in_conv.{m[1]}"
    if key == "en_decoder.Merge_Hidden.0.weight":
        return "gates.merge_higher.weight"
    if m := re.fullmatch(r"en_decoder\.out_conv\.0\.(weight|bias)", key):
        return f"gates.decoders.{stages - 1}.merge.{m[1]}"
    if m := re.fullmatch(r"en_decoder\.merge_conv(\d+)\.0\.(weight|bias)", key):
        stage = int(m[1])
        if stage == stages - 1:
            return None
        if stage < stages - 1:
            return f"gates.decoders.{stage}.merge.{m[2]}"
    if m := re.fullmatch(r"en_decoder\.(encoder|upsample)(\d+)\.([02])\.(bottleneck\.[02]|res)\.(weight|bias)", key):
        kind, stage, sub, part, param = m.groups()
        if int(stage) < stages:
            group = "encoders" if kind == "encoder" else "decoders"
            return f"gates.{group}.{stage}.{_STAGE[sub]}.{_RESBLOCK[part]}.{param}"
    raise KeyError(key)


def map_reference_state(state: dict, config: ModelConfig) -> dict:
    """Reference MSPNet state_dict -> this project's MSPN state_dict (same tensors, our names).

    Raises MSPNError listing every unexpected key, and every parameter of ours left unfilled.
    """
    from mspn.models.mspn import MSPN  # torch only when actually importing weights

    if state and all(k.startswith("module.") for k in state):  # saved from nn.DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    cells = {reference_cell_name(level, config.levels): level for level in range(config.levels)}
    mapped, unexpected = {}, []
    for key, tensor in state.items():
        cell, _, rest = key.partition(".")
        if cell not in cells:
            unexpected.append(key)
            continue
        level = cells[cell]
        try:
            ours = _map_cell_key(rest, len(config.level_channels(level)) - 1)
        except KeyError:
            unexpected.append(key)
            continue
        if ours is not None:
            mapped[f"levels.{level}.{ours}"] = tensor
    problem = describe_mismatch(MSPN(config).state_dict(), mapped)
    if unexpected or problem:
        parts = (([f"unexpected keys: {', '.join(sorted(unexpected))}"] if unexpected else [])
                 + ([problem] if problem else []))
        raise MSPNError("reference checkpoint does not match this config (" + "; ".join(parts) + ")")
    return mapped


def reference_generator_state(raw) -> dict:
    """The generator's state_dict from what the reference saved: a dict holding ``model_state``
    (pixel stage) or ``g_model`` (adversarial stage), or a bare state_dict."""
    if isinstance(raw, dict):
        for key in ("model_state", "g_model"):
            if key in raw:
                return raw[key]
        if raw and all(hasattr(v, "shape") for v in raw.values()):
            return raw
    raise MSPNError("not a reference checkpoint: expected a dict with 'model_state' or 'g_model', "
                    "or a bare state_dict")


def import_reference_file(ckpt: str | Path, config_name: str, out: str | Path, size=None) -> None:
    """Convert the authors' checkpoint into this project's checkpoint format at ``out``.

    A reference adversarial checkpoint's discriminator (``d_img_model``) is converted too.
    """
    from mspn.checkpoint import load_raw, save_checkpoint
    from mspn.config import load_config

    config = load_config(config_name)
    if size is not None:
        config.model.check_size(*size)
        config.data.size = tuple(size)
    raw = load_raw(ckpt)
    model_state = map_reference_state(reference_generator_state(raw), config.model)
    extra = {}
    if isinstance(raw, dict) and "d_img_model" in raw:
        from mspn.models.discriminator import map_reference_discriminator_state
        extra["discriminator"] = map_reference_discriminator_state(raw["d_img_model"], config)
    save_checkpoint(out, config, model_state, **extra)
