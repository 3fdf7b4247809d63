"""Experimental blocks (upstream ``models/experimental.py``): CrossConv, Sum (BiFPN-style weighted sum), MixConv2d."""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn as nn

from models.blocks.conv import Conv


class CrossConv(nn.Module):
    """A k x k convolution factored into (1 x k, stride (1, s)) then (k x 1, stride (s, 1)), optional residual."""

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, g: int = 1, e: float = 1.0,
                 shortcut: bool = False):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, (1, k), (1, s))
        self.cv2 = Conv(c_, c2, (k, 1), (s, 1), g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class Sum(nn.Module):
    """Sum of ``n`` tensors, optionally weighted by learned gates 2*sigmoid(w) on inputs 2..n (BiFPN-style)."""

    def __init__(self, n: int, weight: bool = False):
        super().__init__()
        self.weight = weight
        self.iter = range(n - 1)
        if weight:
            # initial gates 2*sigmoid(-i/2) decrease with the input index
            self.w = nn.Parameter(-torch.arange(1.0, n) / 2, requires_grad=True)

    def forward(self, x: List[torch.Tensor]) -> torch.Tensor:
        y = x[0]
        if self.weight:
            w = torch.sigmoid(self.w) * 2
            for i in self.iter:
                y = y + x[i + 1] * w[i]
        else:
            for i in self.iter:
                y = y + x[i + 1]
        return y


def _mixconv_split(c2: int, k: Sequence[int], equal_ch: bool) -> List[int]:
    """Output channels per kernel group of MixConv2d."""
    groups = len(k)
    if equal_ch:
        # channel j goes to group floor(j * groups / c2) (evenly spread, earlier groups get the remainder)
        idx = torch.linspace(0, groups - 1e-6, c2).floor()
        return [int((idx == g).sum()) for g in range(groups)]
    # equal parameter count per group: c_g * k_g^2 constant, sum c_g = c2
    inv = [1.0 / (kg ** 2) for kg in k]
    return [round(c2 * v / sum(inv)) for v in inv]


class MixConv2d(nn.Module):
    """Mixed depth-wise kernel sizes (MixNet): parallel convs with kernels ``k`` whose outputs are concatenated."""

    def __init__(self, c1: int, c2: int, k: Sequence[int] = (1, 3), s: int = 1, equal_ch: bool = True):
        super().__init__()
        c_ = _mixconv_split(c2, k, equal_ch)
        c_[0] += c2 - sum(c_)  # rounding leftovers go to the first group
        self.m = nn.ModuleList(nn.Conv2d(c1, cg, kg, s, kg // 2, bias=False) for cg, kg in zip(c_, k))
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.LeakyReLU(0.1, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.act(self.bn(torch.cat([m(x) for m in self.m], 1)))

