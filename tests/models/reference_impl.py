"""An independent re-implementation of the spec in the authors' module layout and key names.

Written from ../shared/docs/mspn-architecture.md in the reference's structure (nn.Sequential
blocks, nn.Upsample, interpolation by scale factor, the unused ``scale`` and last merge conv
present), so that importing its state_dict into mspn and comparing predictions tests the key
mapping and the forward pass against a second reading of the spec.
"""
import torch
from torch import nn
from torch.nn import functional as F


class RefResBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.bottleneck = nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.LeakyReLU(), nn.Conv2d(cout, cout, 3, 1, 1))
        self.res = nn.Conv2d(cin, cout, 1)
        self.act = nn.LeakyReLU()

    def forward(self, x):
        return self.act(self.bottleneck(x) + self.res(x))


class RefEnDecoder(nn.Module):
    def __init__(self, channels, cin, cout, higher):
        super().__init__()
        self.depth = len(channels) - 1
        self.scale = nn.Parameter(torch.ones(1))
        self.in_conv = nn.Sequential(nn.Conv2d(cin, channels[0], 5, 1, 2), nn.LeakyReLU())
        for k in range(self.depth):
            setattr(self, f"encoder{k}", nn.Sequential(
                RefResBlock(channels[k], channels[k + 1]), nn.MaxPool2d(2),
                RefResBlock(channels[k + 1], channels[k + 1])))
        if higher:
            self.Merge_Hidden = nn.Sequential(nn.Conv2d(channels[-1] + higher, channels[-1], 3, 1, 1, bias=False),
                                              nn.LeakyReLU())
        r = channels[::-1]
        for k in range(self.depth):
            setattr(self, f"upsample{k}", nn.Sequential(
                RefResBlock(r[k], r[k + 1]), nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                RefResBlock(r[k + 1], r[k + 1])))
            setattr(self, f"merge_conv{k}", nn.Sequential(nn.Conv2d(2 * r[k + 1], r[k + 1], 3, 1, 1), nn.ReLU()))
        self.out_conv = nn.Sequential(nn.Conv2d(2 * channels[0], cout, 3, 1, 1))
        self.higher = higher

    def forward(self, x, hidden=None):
        skips = [self.in_conv(x)]
        for k in range(self.depth):
            skips.append(getattr(self, f"encoder{k}")(skips[-1]))
        feature = skips[-1]
        if self.higher:
            feature = self.Merge_Hidden(torch.cat((feature, hidden), 1))
        out = feature
        for k in range(self.depth):
            out = getattr(self, f"upsample{k}")(out)
            out = torch.cat((out, skips[self.depth - 1 - k]), 1)
            out = self.out_conv(out) if k == self.depth - 1 else getattr(self, f"merge_conv{k}")(out)
        return out, feature


class RefCell(nn.Module):
    def __init__(self, cin, hid, channels, higher, c):
        super().__init__()
        self.hid = hid
        self.en_decoder = RefEnDecoder(channels, cin + hid, 4 * hid, higher)
        self.out_conv = nn.Sequential(nn.Conv2d(hid, c, 5, 1, 2), nn.LeakyReLU())

    def forward(self, x, hc, hidden=None):
        h, c = hc
        gates, feature = self.en_decoder(torch.cat((x, h), 1), hidden)
        i, f, o, g = torch.split(gates, self.hid, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return self.out_conv(h), (h, c), feature


class MSPNet(nn.Module):
    def __init__(self, channels, layers, in_ch, hidden_dim):
        super().__init__()
        self.layers, self.c, self.hid = layers, in_ch, hidden_dim
        n = len(channels)
        self.EHcell = RefCell(3 * in_ch, hidden_dim, channels, channels[n - 2], in_ch)
        for lv in range(1, layers - 1):
            setattr(self, f"ELHcell{lv}",
                    RefCell(5 * in_ch, hidden_dim, channels[: n - lv], channels[n - lv - 2], in_ch))
        self.ELcell = RefCell(4 * in_ch, hidden_dim, channels[: n - layers + 1], 0, in_ch)

    def cell(self, lv):
        if lv == 0:
            return self.EHcell
        return self.ELcell if lv == self.layers - 1 else getattr(self, f"ELHcell{lv}")

    def forward(self, frames, pred_steps):
        """frames: (B, T, C, H, W); the last pred_steps steps are closed loop. Returns P_0 per step."""
        B, T, C, H, W = frames.shape
        L = self.layers
        E = [frames.new_zeros(B, 2 * C, H >> lv, W >> lv) for lv in range(L)]
        HC = [(frames.new_zeros(B, self.hid, H >> lv, W >> lv),) * 2 for lv in range(L)]
        outputs = []
        for t in range(T):
            P = [None] * L
            feature = None
            for lv in reversed(range(L)):
                parts = [E[lv]]
                if lv > 0:
                    parts.append(F.interpolate(E[lv - 1], scale_factor=0.5, mode="nearest"))
                if lv < L - 1:
                    parts.append(F.interpolate(P[lv + 1], scale_factor=2, mode="bilinear", align_corners=True))
                P[lv], HC[lv], feature = self.cell(lv)(torch.cat(parts, 1), HC[lv], feature)
            target = P[0] if t >= T - pred_steps else frames[:, t]
            for lv in range(L):
                tl = F.interpolate(target, scale_factor=1 / 2 ** lv, mode="nearest") if lv else target
                E[lv] = torch.cat((F.relu(tl - P[lv]), F.relu(P[lv] - tl)), 1)
            outputs.append(P[0])
        return torch.stack(outputs, 1)
