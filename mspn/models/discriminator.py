"""The frame discriminator of MSPN's adversarial stage, and the importer of the reference's one.

frames (N, C, H, W) -> scores (N, 1). The whole batch tensor is standardised first
((x - mean) / std over every element), and in train mode BatchNorm uses the batch's statistics:
a score depends on the other frames of its call. The reference therefore judges real and fake
frames in separate calls (``JudgeApart``), never in one concatenated batch, which would let D use
set-level cues (contrast, blur) that tell the two sets apart.

The reference hard-codes the kernel of its last convolution for one input size; here it is
derived from the frame size the discriminator is built for (``disc_kernel``).
"""
from __future__ import annotations

import re

import torch
from torch import nn
from torch.nn import functional as F

from mspn.errors import MSPNError
from mspn.statedict import describe_mismatch

HEAD_CHANNELS = 1024
HIDDEN = 256


def disc_kernel(frame_size: tuple[int, int], channels: tuple[int, ...]) -> tuple[int, int]:
    """Spatial size left after len(channels) - 1 max-pools of 2 (the final conv's kernel).

    Raises MSPNError when the frame is too small to pool that many times.
    """
    height, width = (int(s) for s in frame_size)
    pools = len(channels) - 1
    h, w = height >> pools, width >> pools
    if h < 1 or w < 1:
        raise MSPNError(
            f"the discriminator (adv.disc_channels={list(channels)}) pools {pools} times, which a "
            f"{height}x{width} (HxW) frame cannot take (needs both sides >= {2 ** pools}); "
            f"use fewer adv.disc_channels or larger frames")
    return h, w


class ResBlockBN(nn.Module):
    """conv3x3 -> BN -> LeakyReLU -> conv3x3 -> BN, plus conv1x1 -> BN projection, then LeakyReLU.

    x: (N, cin, H, W) -> (N, cout, H, W).
    """

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.proj = nn.Conv2d(cin, cout, 1)
        self.proj_bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        body = self.bn2(self.conv2(F.leaky_relu(self.bn1(self.conv1(x)))))
        return F.leaky_relu(body + self.proj_bn(self.proj(x)))


class FrameDiscriminator(nn.Module):
    """Single-frame discriminator (least-squares GAN: real -> +1, fake -> -1).

    standardise -> conv7x7(C, d0) -> [ResBlockBN(d_k, d_k+1) -> MaxPool2] for each k
    -> conv(kernel = remaining size, d_last -> 1024) -> Linear(1024, 256) -> LeakyReLU -> Linear(256, 1).
    channels: the widths d (paper: (64, 64, 128, 256, 256, 512)); frame_size: (H, W).
    """

    def __init__(self, channels: tuple[int, ...], frame_channels: int, frame_size: tuple[int, int]):
        super().__init__()
        if len(channels) < 2:
            raise MSPNError(f"the discriminator needs at least 2 widths, got {list(channels)}")
        self.channels = tuple(int(c) for c in channels)
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.kernel = disc_kernel(self.frame_size, self.channels)
        self.stem = nn.Conv2d(frame_channels, channels[0], 7, padding=3)
        self.blocks = nn.ModuleList(ResBlockBN(a, b) for a, b in zip(channels[:-1], channels[1:], strict=True))
        self.head = nn.Conv2d(channels[-1], HEAD_CHANNELS, self.kernel)
        self.fc1 = nn.Linear(HEAD_CHANNELS, HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: (N, C, H, W) at the size given at construction -> (N, 1) scores."""
        if tuple(frames.shape[-2:]) != self.frame_size:
            raise MSPNError(f"the discriminator was built for {self.frame_size[0]}x{self.frame_size[1]} "
                            f"frames, got {frames.shape[-2]}x{frames.shape[-1]}")
        # std of a constant batch is 0; the clamp only avoids 0/0 and is inactive otherwise
        x = (frames - frames.mean()) / frames.std().clamp_min(1e-12)
        x = self.stem(x)
        for block in self.blocks:
            x = F.max_pool2d(block(x), 2)
        x = self.head(x).flatten(1)
        return self.fc2(F.leaky_relu(self.fc1(x)))


class JudgeApart(nn.Module):
    """forward(real, fake) -> (D(real), D(fake)): two calls, so each set is standardised and
    batch-normalised on its own, as the reference does; real first, which decides the order of
    the BatchNorm running-statistics updates.

    One module for both calls, so DistributedDataParallel sees one forward per backward.
    real, fake: (N, C, H, W) -> (N, 1) each.
    """

    def __init__(self, disc: FrameDiscriminator):
        super().__init__()
        self.disc = disc

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.disc(real), self.disc(fake)


def build_discriminator(config, frame_size: tuple[int, int]) -> FrameDiscriminator:
    """The discriminator of a mspn Config (adv.disc_channels, model.frame_channels) for (H, W)."""
    return FrameDiscriminator(tuple(config.adv.disc_channels), config.model.frame_channels, frame_size)


# Reference layout (see shared/reference/keys-discriminator.txt): conv.{2k} are the ResBlocks
# (the odd indices are their max-pools); inside one, bottleneck.{0,1,3,4} = conv, BN, (LeakyReLU), conv, BN.
_BLOCK_PARTS = {"bottleneck.0": "conv1", "bottleneck.1": "bn1", "bottleneck.3": "conv2",
                "bottleneck.4": "bn2", "res.0": "proj", "res.1": "proj_bn"}
_TOP = {"layer1": "stem", "full_conv": "head", "linear.0": "fc1", "linear.2": "fc2"}
_BLOCK_KEY = re.compile(r"^conv\.(\d+)\.((?:bottleneck|res)\.\d+)\.(\w+)$")


def map_reference_discriminator_state(state: dict, config=None, frame_size=None) -> dict:
    """Reference discriminator state_dict (``d_img_model``) -> FrameDiscriminator state_dict.

    With ``config`` (a mspn Config) the result is checked against the discriminator of
    adv.disc_channels at ``frame_size`` (default config.data.size): any unexpected key, missing
    key or shape mismatch (e.g. a final kernel made for another frame size) is a one-line MSPNError.
    """
    if not isinstance(state, dict):
        raise MSPNError("reference discriminator state must be a dict of tensors")
    if state and all(k.startswith("module.") for k in state):  # saved from nn.DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    mapped, unexpected = {}, []
    for key, tensor in state.items():
        top, _, param = key.rpartition(".")
        if top in _TOP:
            mapped[f"{_TOP[top]}.{param}"] = tensor
            continue
        match = _BLOCK_KEY.match(key)
        if match and int(match.group(1)) % 2 == 0 and match.group(2) in _BLOCK_PARTS:
            mapped[f"blocks.{int(match.group(1)) // 2}.{_BLOCK_PARTS[match.group(2)]}.{match.group(3)}"] = tensor
        else:
            unexpected.append(key)
    if unexpected:
        raise MSPNError(f"reference discriminator has unexpected keys: {', '.join(sorted(unexpected)[:6])}")
    if config is not None:
        size = tuple(frame_size or config.data.size)
        problem = describe_mismatch(build_discriminator(config, size).state_dict(), mapped, limit=4)
        if problem:
            raise MSPNError(f"reference discriminator does not fit adv.disc_channels="
                            f"{list(config.adv.disc_channels)} at {size[0]}x{size[1]} frames ({problem})")
    return mapped
