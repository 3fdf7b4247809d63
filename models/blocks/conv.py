"""Convolution blocks of the model yamls: Conv (conv-BN-act), DWConv, Focus, GhostConv and the tensor plumbing
layers Concat, Contract and Expand.

Constructor signatures and attribute names follow upstream exactly: upstream checkpoints are pickled module trees, so
a block's ``forward`` (and ``Model.fuse``) may only rely on the attributes upstream stored. New behaviour that needs
extra state is driven by class attributes (which unpickled instances inherit).
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn

IntOrPair = Union[int, Sequence[int]]


def autopad(k: IntOrPair, p: Optional[IntOrPair] = None) -> IntOrPair:
    """'Same' padding (k // 2 per dimension) when ``p`` is None."""
    if p is None:
        p = k // 2 if isinstance(k, int) else [x // 2 for x in k]
    return p


def _activation(act: Union[bool, nn.Module]) -> nn.Module:
    # act=True -> SiLU (one instance per Conv, so module counts match upstream), a module -> itself, else Identity
    if act is True:
        return nn.SiLU()
    return act if isinstance(act, nn.Module) else nn.Identity()


class Conv(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> activation. After ``Model.fuse()`` the BN is folded into the conv."""

    def __init__(self, c1: int, c2: int, k: IntOrPair = 1, s: IntOrPair = 1, p: Optional[IntOrPair] = None,
                 g: int = 1, act: Union[bool, nn.Module] = True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p), groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = _activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def forward_fuse(self, x: torch.Tensor) -> torch.Tensor:
        """Forward once ``bn`` has been folded into ``conv``."""
        return self.act(self.conv(x))

    fuseforward = forward_fuse  # v5.0 name, referenced by fused v5.0 pickles


class DWConv(Conv):
    """Depth-wise convolution: a Conv with groups = gcd(c1, c2) (a function at v5.0, a class from v6.0)."""

    def __init__(self, c1: int, c2: int, k: IntOrPair = 1, s: IntOrPair = 1, act: Union[bool, nn.Module] = True):
        super().__init__(c1, c2, k, s, g=math.gcd(c1, c2), act=act)


class Focus(nn.Module):
    """Space-to-depth: the four 2x2 pixel phases stacked on channels (c1 -> 4*c1, H/2, W/2), then a Conv."""

    def __init__(self, c1: int, c2: int, k: IntOrPair = 1, s: IntOrPair = 1, p: Optional[IntOrPair] = None,
                 g: int = 1, act: Union[bool, nn.Module] = True):
        super().__init__()
        self.conv = Conv(c1 * 4, c2, k, s, p, g, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # phase order: (even row, even col), (odd row, even col), (even row, odd col), (odd row, odd col)
        phases = (x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2])
        return self.conv(torch.cat(phases, 1))


class GhostConv(nn.Module):
    """Ghost convolution (GhostNet): half the channels from a Conv, the other half from a cheap 5x5 depth-wise Conv."""

    def __init__(self, c1: int, c2: int, k: IntOrPair = 1, s: IntOrPair = 1, g: int = 1,
                 act: Union[bool, nn.Module] = True):
        super().__init__()
        c_ = c2 // 2
        self.cv1 = Conv(c1, c_, k, s, None, g, act)
        self.cv2 = Conv(c_, c_, 5, 1, None, c_, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv1(x)
        return torch.cat((y, self.cv2(y)), 1)


class Concat(nn.Module):
    """Concatenate a list of tensors along dimension ``d``."""

    def __init__(self, dimension: int = 1):
        super().__init__()
        self.d = dimension

    def forward(self, x: List[torch.Tensor]) -> torch.Tensor:
        return torch.cat(x, self.d)


class Contract(nn.Module):
    """Space-to-depth by ``gain``: (b, c, h, w) -> (b, c*gain^2, h/gain, w/gain)."""

    def __init__(self, gain: int = 2):
        super().__init__()
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.gain
        x = x.view(b, c, h // s, s, w // s, s)
        # output channel index = (row phase * s + col phase) * c + input channel
        return x.permute(0, 3, 5, 1, 2, 4).contiguous().view(b, c * s * s, h // s, w // s)


class Expand(nn.Module):
    """Depth-to-space by ``gain`` (inverse of Contract): (b, c, h, w) -> (b, c/gain^2, h*gain, w*gain)."""

    def __init__(self, gain: int = 2):
        super().__init__()
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.gain
        x = x.view(b, s, s, c // s ** 2, h, w)
        return x.permute(0, 3, 4, 1, 5, 2).contiguous().view(b, c // s ** 2, h * s, w * s)

