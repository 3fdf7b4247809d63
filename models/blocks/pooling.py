"""Spatial pyramid pooling blocks: SPP (v5.0, evaluated as a cascade of small pools) and SPPF (v6.0)."""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.blocks.conv import Conv


def _same_maxpool(m: nn.Module) -> Optional[int]:
    """Kernel size of a stride-1, same-padded, odd-kernel max-pool (the only pools that cascade), else None."""
    if type(m) is not nn.MaxPool2d:
        return None
    k, s, p, d = (x if isinstance(x, int) else (x[0] if len(set(x)) == 1 else None)
                  for x in (m.kernel_size, m.stride, m.padding, m.dilation))
    if k is None or k % 2 == 0 or s != 1 or p != k // 2 or d != 1 or m.ceil_mode or m.return_indices:
        return None
    return k


def cascade_maxpools(x: torch.Tensor, pools: Sequence[nn.Module]) -> List[torch.Tensor]:
    """Outputs of ``pools`` applied to ``x`` (in the given order), computed as a cascade when possible.

    For stride-1 max-pools with 'same' padding (PyTorch pads with -inf), pooling with kernel a then kernel b
    equals one pool with kernel a + b - 1, exactly (a max of maxes over windows whose union is the big window).
    So kernels (5, 9, 13) become 5, then 5 on that (9), then 5 again (13); (3, 5, 7) become three 3x3 pools.
    The results are bit-identical to separate pools but much cheaper (75 vs 275 window reads per pixel for
    5/9/13). Pools that are not stride-1 'same' odd-kernel max-pools fall back to separate evaluation.
    """
    kernels = [_same_maxpool(m) for m in pools]
    if any(k is None for k in kernels):
        return [m(x) for m in pools]
    out: List[Optional[torch.Tensor]] = [None] * len(pools)
    y, reach = x, 1  # current map is x max-pooled with kernel ``reach`` (1 = identity)
    for i in sorted(range(len(kernels)), key=kernels.__getitem__):
        step = kernels[i] - reach + 1  # odd, since both kernels are odd
        if step > 1:
            y = F.max_pool2d(y, step, 1, step // 2)
            reach = kernels[i]
        out[i] = y
    return out


class SPP(nn.Module):
    """Spatial pyramid pooling: cv2(cat(x', maxpool_k(x') for k in ks)) with x' = cv1(x) (c1 -> c1 // 2).

    The pools are evaluated as a cascade of small pools (see :func:`cascade_maxpools`), bit-identical to
    separate pools. Set the class attribute ``cascade = False`` to run the separate pools (benchmark baseline).
    """

    cascade = True

    def __init__(self, c1: int, c2: int, k: Sequence[int] = (5, 9, 13)):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * (len(k) + 1), c2, 1, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=x, stride=1, padding=x // 2) for x in k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        pooled = cascade_maxpools(x, self.m) if self.cascade else [m(x) for m in self.m]
        return self.cv2(torch.cat([x, *pooled], 1))


class SPPF(nn.Module):
    """SPP-Fast (v6.0): one k x k max-pool applied three times in series; equals SPP(k, 2k-1, 3k-2)."""

    def __init__(self, c1: int, c2: int, k: int = 5):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))

