"""Building blocks of the YOLOv5 model yamls (v5.0 set plus the v6.0 additions).

Constructor signatures and attribute names follow upstream exactly: upstream checkpoints are pickled module
trees, so a block's ``forward`` (and ``Model.fuse``) may only rely on the attributes upstream stored. New
behaviour that needs extra state is driven by class attributes (which unpickled instances inherit).
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

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


class Bottleneck(nn.Module):
    """1x1 Conv to c2*e, 3x3 Conv to c2, plus the input when ``shortcut`` and the widths match."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class BottleneckCSP(nn.Module):
    """Cross Stage Partial bottleneck stack (CSPNet): two branches joined by BN + LeakyReLU and a Conv."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = nn.Conv2d(c1, c_, 1, 1, bias=False)
        self.cv3 = nn.Conv2d(c_, c_, 1, 1, bias=False)
        self.cv4 = Conv(2 * c_, c2, 1, 1)
        self.bn = nn.BatchNorm2d(2 * c_)  # acts on the concatenation of both branches
        self.act = nn.LeakyReLU(0.1, inplace=True)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y1 = self.cv3(self.m(self.cv1(x)))
        y2 = self.cv2(x)
        return self.cv4(self.act(self.bn(torch.cat((y1, y2), 1))))


class C3(nn.Module):
    """CSP bottleneck with three Convs: cv3(cat(m(cv1(x)), cv2(x)))."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class TransformerLayer(nn.Module):
    """Transformer encoder layer without LayerNorm: self-attention and a 2-layer MLP, both residual."""

    def __init__(self, c: int, num_heads: int):
        super().__init__()
        self.q = nn.Linear(c, c, bias=False)
        self.k = nn.Linear(c, c, bias=False)
        self.v = nn.Linear(c, c, bias=False)
        self.ma = nn.MultiheadAttention(embed_dim=c, num_heads=num_heads)
        self.fc1 = nn.Linear(c, c, bias=False)
        self.fc2 = nn.Linear(c, c, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (sequence, batch, c)
        x = self.ma(self.q(x), self.k(x), self.v(x))[0] + x
        return self.fc2(self.fc1(x)) + x


class TransformerBlock(nn.Module):
    """Optional Conv to c2, learned position embedding, ``num_layers`` TransformerLayers over the H*W tokens."""

    def __init__(self, c1: int, c2: int, num_heads: int, num_layers: int):
        super().__init__()
        self.conv = Conv(c1, c2) if c1 != c2 else None
        self.linear = nn.Linear(c2, c2)  # position embedding computed from the tokens themselves
        self.tr = nn.Sequential(*(TransformerLayer(c2, num_heads) for _ in range(num_layers)))
        self.c2 = c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            x = self.conv(x)
        b, _, h, w = x.shape
        tokens = x.flatten(2).permute(2, 0, 1)  # (h*w, b, c)
        tokens = self.tr(tokens + self.linear(tokens))
        return tokens.permute(1, 2, 0).reshape(b, self.c2, h, w)


class C3TR(C3):
    """C3 whose bottleneck stack is a TransformerBlock (4 heads, n layers)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = TransformerBlock(c_, c_, 4, n)


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


class GhostBottleneck(nn.Module):
    """Ghost bottleneck: GhostConv -> (depth-wise stride-2 Conv) -> GhostConv, plus a (downsampled) shortcut."""

    def __init__(self, c1: int, c2: int, k: IntOrPair = 3, s: int = 1):
        super().__init__()
        c_ = c2 // 2
        self.conv = nn.Sequential(
            GhostConv(c1, c_, 1, 1),
            DWConv(c_, c_, k, s, act=False) if s == 2 else nn.Identity(),
            GhostConv(c_, c2, 1, 1, act=False))
        self.shortcut = (nn.Sequential(DWConv(c1, c1, k, s, act=False), Conv(c1, c2, 1, 1, act=False))
                         if s == 2 else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.shortcut(x)


class C3SPP(C3):
    """C3 whose inner module is an SPP (v6.0)."""

    def __init__(self, c1: int, c2: int, k: Sequence[int] = (5, 9, 13), n: int = 1, shortcut: bool = True,
                 g: int = 1, e: float = 0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = SPP(c_, c_, k)


class C3Ghost(C3):
    """C3 whose bottlenecks are GhostBottlenecks (v6.0)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = nn.Sequential(*(GhostBottleneck(c_, c_) for _ in range(n)))


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


class NMS(nn.Module):
    """Non-maximum suppression as the last model layer (``Model.nms()``): input = the Detect output."""

    conf = 0.25  # confidence threshold
    iou = 0.45  # IoU threshold
    classes = None  # optional class filter

    def forward(self, x):
        from utils.nms import non_max_suppression  # written separately; imported on use to keep models light
        return non_max_suppression(x[0], conf_thres=self.conf, iou_thres=self.iou, classes=self.classes)


class Classify(nn.Module):
    """Classification head: global average pool (of one map or a list, concatenated) -> 1x1 conv -> flatten."""

    def __init__(self, c1: int, c2: int, k: IntOrPair = 1, s: IntOrPair = 1, p: Optional[IntOrPair] = None,
                 g: int = 1):
        super().__init__()
        self.aap = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p), groups=g)
        self.flat = nn.Flatten()

    def forward(self, x: Union[torch.Tensor, List[torch.Tensor]]) -> torch.Tensor:
        xs = x if isinstance(x, list) else [x]
        return self.flat(self.conv(torch.cat([self.aap(y) for y in xs], 1)))


# AutoShape / Detections live in models/autoshape.py; exported here under the upstream names.
from models.autoshape import AutoShape, Detections  # noqa: E402

autoShape = AutoShape  # v5.0 name

# ShuffleNetV2 / MobileNetV3 blocks (models/mobile.py) are part of the model vocabulary too.
try:
    from models.mobile import *  # noqa: F401,F403,E402
except ModuleNotFoundError as e:  # only a missing models/mobile.py is tolerated, never an error inside it
    if e.name != "models.mobile":
        raise
