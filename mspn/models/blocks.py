"""Convolutional building blocks of MSPN: the residual block and the U-Net inside the LSTM gates.

Layer names follow this project's own layout; ``mspn.models.reference`` maps the authors' names
onto them. Every block is size-agnostic: no frame size is baked into any layer.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def conv(cin: int, cout: int, kernel: int, bias: bool = True) -> nn.Conv2d:
    """A 'same' convolution (stride 1, padding kernel // 2), as every MSPN convolution is."""
    return nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=bias)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 with align_corners=True, the reference's only upsampling (decoder and P_{l+1})."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)


class ResBlock(nn.Module):
    """conv3x3 -> LeakyReLU -> conv3x3, plus a conv1x1 projection of the input, then LeakyReLU.

    x: (B, cin, H, W) -> (B, cout, H, W).
    """

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = conv(cin, cout, 3)
        self.conv2 = conv(cout, cout, 3)
        self.proj = conv(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        body = self.conv2(F.leaky_relu(self.conv1(x)))
        return F.leaky_relu(body + self.proj(x))


class DownStage(nn.Module):
    """Encoder stage: ResBlock(cin, cout) -> MaxPool2 -> ResBlock(cout, cout); halves H and W."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.res_in = ResBlock(cin, cout)
        self.res_out = ResBlock(cout, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_out(F.max_pool2d(self.res_in(x), 2))


class UpStage(nn.Module):
    """Decoder stage: ResBlock(cin, cout) -> bilinear x2 -> ResBlock(cout, cout) -> concat(skip)
    -> conv3x3(2 cout, out_channels), followed by ReLU except on the U-Net's last stage.

    x: (B, cin, H, W), skip: (B, cout, 2H, 2W) -> (B, out_channels, 2H, 2W).
    """

    def __init__(self, cin: int, cout: int, out_channels: int, last: bool):
        super().__init__()
        self.res_in = ResBlock(cin, cout)
        self.res_out = ResBlock(cout, cout)
        self.merge = conv(2 * cout, out_channels, 3)
        self.last = last

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.res_out(upsample2(self.res_in(x)))
        merged = self.merge(torch.cat([up, skip], dim=1))
        return merged if self.last else F.relu(merged)


class EncDec(nn.Module):
    """The U-Net that computes an EDLSTM cell's gates.

    channels = (c0, ..., cK): K encoder stages take c0 down to cK at 1/2^K of the input size.
    With ``higher`` > 0 the deepest feature is merged with the level above's shared feature
    (concat -> conv3x3 without bias -> LeakyReLU); the merged (or plain deepest) tensor is the
    shared feature handed to the level below.

    x: (B, in_channels, H, W), higher_feature: (B, higher, H / 2^K, W / 2^K) or None
    -> (out: (B, out_channels, H, W), shared: (B, cK, H / 2^K, W / 2^K)).
    """

    def __init__(self, channels: tuple[int, ...], in_channels: int, out_channels: int, higher: int):
        super().__init__()
        if len(channels) < 2:
            raise ValueError(f"an encoder-decoder needs at least 2 channel widths, got {channels}")
        self.in_conv = conv(in_channels, channels[0], 5)
        self.encoders = nn.ModuleList(
            DownStage(channels[k], channels[k + 1]) for k in range(len(channels) - 1)
        )
        self.merge_higher = conv(channels[-1] + higher, channels[-1], 3, bias=False) if higher else None
        reversed_channels = channels[::-1]
        stages = len(channels) - 1
        self.decoders = nn.ModuleList(
            UpStage(
                reversed_channels[k],
                reversed_channels[k + 1],
                out_channels if k == stages - 1 else reversed_channels[k + 1],
                last=k == stages - 1,
            )
            for k in range(stages)
        )

    def forward(self, x: torch.Tensor, higher_feature: torch.Tensor | None):
        features = [F.leaky_relu(self.in_conv(x))]
        for encoder in self.encoders:
            features.append(encoder(features[-1]))
        deepest = features.pop()
        if self.merge_higher is not None:
            deepest = F.leaky_relu(self.merge_higher(torch.cat([deepest, higher_feature], dim=1)))
        shared = deepest
        out = deepest
        for decoder in self.decoders:
            out = decoder(out, features.pop())
        return out, shared
