"""ShuffleNetV2 and MobileNetV3 building blocks usable as rows of a model yaml.

Behaviour follows ``../shared/spec/mobile-blocks.md``. Every block is "conv-like" for the yaml parser: its
constructor takes ``(c1, c2, *yaml_args[1:])``. :data:`MOBILE_BLOCKS` maps every accepted yaml name (including
aliases) to its class.

Two design rules keep inference fast and export clean:

* every convolution that is followed by a BatchNorm sits right before it in an ``nn.Sequential``, so
  ``Model.fuse()`` folds all of them (the reference fork left these BNs unfused);
* only primitive ops are used (``view``/``transpose``/``reshape``, ``relu6``, ``mean``), which ONNX and
  TorchScript handle without custom symbolics.

"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.blocks.conv import Conv

__all__ = [
    "MOBILE_BLOCKS", "channel_shuffle", "h_sigmoid", "h_swish", "SELayer",
    "conv_bn_relu_maxpool", "conv_bn_act_maxpool", "ShuffleNetV2_InvertedResidual", "Shuffle_Block",
    "StemBlock", "conv_bn_hswish", "MobileNetV3_InvertedResidual",
    "InputNormalize", "TorchvisionBatchNorm2d", "TVConvBNAct", "TVShuffleNetV2Unit", "TVSqueezeExcitation",
    "TVMobileNetV3Block", "tv_make_divisible",
]


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    """Interleave the channel groups: (N, g*k, H, W) -> channel order 0, k, 2k, ..., 1, k+1, ..."""
    n, c, h, w = x.shape
    x = x.view(n, groups, c // groups, h, w).transpose(1, 2)
    return x.reshape(n, c, h, w)


class h_sigmoid(nn.Module):
    """Hard sigmoid: relu6(x + 3) / 6."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0) / 6.0


class h_swish(nn.Module):
    """Hard swish: x * relu6(x + 3) / 6."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (F.relu6(x + 3.0) / 6.0)


class SELayer(nn.Module):
    """Squeeze-and-excitation: global mean -> Linear(c, c/r) -> ReLU -> Linear(c/r, c) -> h_sigmoid -> scale."""

    def __init__(self, c: int, reduction: int = 4):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(c, c // reduction),
            nn.ReLU(inplace=True),
            nn.Linear(c // reduction, c),
            h_sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.fc(x.mean((2, 3)))  # (N, C): mean over H, W exports as a single ReduceMean
        return x * w.unsqueeze(-1).unsqueeze(-1)


def _conv_bn(c1: int, c2: int, k: int = 1, s: int = 1, g: int = 1, norm: type = nn.BatchNorm2d) -> list:
    """[Conv2d (bias-free, same padding), norm(c2)] as consecutive items for an nn.Sequential."""
    return [nn.Conv2d(c1, c2, k, s, k // 2, groups=g, bias=False), norm(c2)]


class conv_bn_relu_maxpool(nn.Module):
    """ShuffleNetV2 stem: 3x3/2 conv + BN + ReLU, then 3x3/2 max-pool (net stride 4)."""

    def __init__(self, c1: int, c2: int):
        super().__init__()
        self.conv = nn.Sequential(*_conv_bn(c1, c2, 3, 2), nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.conv(x))


conv_bn_act_maxpool = conv_bn_relu_maxpool  # name used by the reference fork's yaml


class ShuffleNetV2_InvertedResidual(nn.Module):
    """ShuffleNetV2 unit. stride > 1 downsamples through two branches; stride 1 keeps half the channels as is."""

    norm: type = nn.BatchNorm2d  # the BatchNorm class of every conv (TVShuffleNetV2Unit keeps torchvision's)

    def __init__(self, c1: int, c2: int, stride: int):
        super().__init__()
        if not 1 <= stride <= 3:
            raise ValueError(f"ShuffleNetV2_InvertedResidual: stride must be in 1..3, got {stride}")
        if c2 % 2:
            raise ValueError(f"ShuffleNetV2_InvertedResidual: output channels must be even, got {c2}")
        self.stride = stride
        cb = c2 // 2  # width of each branch
        if stride == 1 and c1 != c2:
            raise ValueError(f"ShuffleNetV2_InvertedResidual: stride 1 needs c1 == c2, got c1={c1}, c2={c2}")
        bn = self.norm
        if stride > 1:
            self.branch1 = nn.Sequential(
                *_conv_bn(c1, c1, 3, stride, g=c1, norm=bn),  # depthwise, no activation
                *_conv_bn(c1, cb, norm=bn), nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Identity()
        cin = c1 if stride > 1 else cb
        self.branch2 = nn.Sequential(
            *_conv_bn(cin, cb, norm=bn), nn.ReLU(inplace=True),
            *_conv_bn(cb, cb, 3, stride, g=cb, norm=bn),  # depthwise, no activation
            *_conv_bn(cb, cb, norm=bn), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), 1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), 1)
        return channel_shuffle(out, 2)


Shuffle_Block = ShuffleNetV2_InvertedResidual  # YOLOv5-Lite name


class StemBlock(nn.Module):
    """PeleeNet-style stem (net stride 4 at s=2): Conv, then [Conv 1x1 -> Conv 3x3/2 | max-pool 2x2], fuse 1x1."""

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 2, p: Optional[int] = None, g: int = 1,
                 act: bool = True):
        super().__init__()
        self.stem_1 = Conv(c1, c2, k, s, p, g, act)
        self.stem_2a = Conv(c2, c2 // 2, 1, 1)
        self.stem_2b = Conv(c2 // 2, c2, 3, 2)
        self.stem_2p = nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)
        self.stem_3 = Conv(c2 * 2, c2, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_1(x)
        return self.stem_3(torch.cat((self.stem_2b(self.stem_2a(x)), self.stem_2p(x)), 1))


class conv_bn_hswish(nn.Sequential):
    """MobileNetV3 stem: 3x3 conv (stride s) + BN + h_swish."""

    def __init__(self, c1: int, c2: int, stride: int):
        super().__init__(*_conv_bn(c1, c2, 3, stride), h_swish())


class MobileNetV3_InvertedResidual(nn.Module):
    """MobileNetV3 bottleneck: [1x1 expand] -> depthwise kxk -> [SE] -> 1x1 project; residual iff s=1, c1=c2."""

    def __init__(self, c1: int, c2: int, hidden: int, kernel: int, stride: int, use_se: int, use_hs: int):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"MobileNetV3_InvertedResidual: stride must be 1 or 2, got {stride}")
        self.identity = stride == 1 and c1 == c2
        act = h_swish if use_hs else (lambda: nn.ReLU(inplace=True))
        se = SELayer(hidden) if use_se else nn.Identity()
        if c1 == hidden:  # no expansion: the depthwise conv works on the input directly
            layers = [*_conv_bn(hidden, hidden, kernel, stride, g=hidden), act(), se,
                      *_conv_bn(hidden, c2)]
        else:
            layers = [*_conv_bn(c1, hidden), act(),
                      *_conv_bn(hidden, hidden, kernel, stride, g=hidden), se, act(),
                      *_conv_bn(hidden, c2)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.identity else y


# ------------------------------------------------------------------------------------------------------------------
# torchvision-exact backbones (models/yolov5-tv-*.yaml): module for module like torchvision's shufflenet_v2_* and
# mobilenet_v3_*, so an ImageNet state_dict loads tensor for tensor (models/torchvision_backbones.py maps the keys).
# Their yaml rows use the 'exact' channel rule: widths are torchvision's, never scaled or rounded by the yaml.
# ------------------------------------------------------------------------------------------------------------------
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class InputNormalize(nn.Module):
    """``(x - mean) / std`` per channel: the ImageNet normalisation torchvision backbones were trained with.

    YOLOv5 feeds RGB in 0..1. Folding this into the first conv would be wrong at the image border (the conv's zero
    padding would then be padding in the un-normalised space); as a layer it is exact and exports as Sub + Div.
    The constants are not in the state_dict: the yaml row defines them.
    """

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        if len(mean) != len(std) or min(std) <= 0:
            raise ValueError(f"InputNormalize: mean and std need one value per channel and std > 0, got {mean}, {std}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class TorchvisionBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d whose eps / momentum are the network's own (torchvision's), not YOLOv5's.

    ``initialize_weights`` resets eps / momentum of plain ``nn.BatchNorm2d`` layers only (upstream behaviour);
    a different eps would make the ImageNet weights compute different features.
    """


def _tv_norm(eps: float, momentum: float):
    return lambda c: TorchvisionBatchNorm2d(c, eps=eps, momentum=momentum)


_ACTIVATIONS = {"relu": lambda: nn.ReLU(inplace=True), "hardswish": h_swish, "none": None}


class TVConvBNAct(nn.Sequential):
    """torchvision's Conv2dNormActivation: bias-free conv (padding k // 2), BatchNorm (eps, momentum), activation.

    yaml args ``[c2, k, s, act, eps, momentum]``; ``act`` is ``relu``, ``hardswish`` or ``none``. Items 0 (conv) and
    1 (BN) carry torchvision's state_dict keys; ``hardswish`` is :class:`h_swish` (same function, exports anywhere).
    """

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, act: Optional[str] = "relu", eps: float = 1e-5,
                 momentum: float = 0.1, g: int = 1):
        act = "none" if act is None else str(act).lower()
        if act not in _ACTIVATIONS:
            raise ValueError(f"TVConvBNAct: act must be one of {list(_ACTIVATIONS)}, got {act!r}")
        layers = _conv_bn(c1, c2, k, s, g=g, norm=_tv_norm(eps, momentum))
        if _ACTIVATIONS[act] is not None:
            layers.append(_ACTIVATIONS[act]())
        super().__init__(*layers)


class TVShuffleNetV2Unit(ShuffleNetV2_InvertedResidual):
    """torchvision's ShuffleNetV2 InvertedResidual: the same unit with torchvision's BatchNorm (eps 1e-5,
    momentum 0.1) kept through ``initialize_weights``; yaml args ``[c2, stride]`` with exact widths (116, 232, ...)."""

    norm = staticmethod(_tv_norm(1e-5, 0.1))


def tv_make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's channel rounding: nearest multiple of ``divisor`` (at least ``divisor``), never 10 % below v."""
    rounded = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * v else rounded


class TVSqueezeExcitation(nn.Module):
    """torchvision's SqueezeExcitation as MobileNetV3 uses it: mean -> 1x1 conv (fc1) -> ReLU -> 1x1 conv (fc2) ->
    hard sigmoid -> scale. The global mean is ``x.mean`` (one ReduceMean in exports), equal to AdaptiveAvgPool2d(1)."""

    def __init__(self, c: int, squeeze: int):
        super().__init__()
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, c, 1)
        self.activation = nn.ReLU(inplace=True)
        self.scale_activation = h_sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.activation(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * self.scale_activation(scale)


class TVMobileNetV3Block(nn.Module):
    """torchvision's MobileNetV3 InvertedResidual: [1x1 expand + BN + act] -> depthwise kxk + BN + act -> [SE] ->
    1x1 project + BN; residual iff stride 1 and c1 == c2.

    Unlike :class:`MobileNetV3_InvertedResidual` (the reference fork's order: SE before the activation), the
    activation comes before SE, the SE squeeze width is ``tv_make_divisible(hidden // 4)``, and BN uses
    torchvision's eps 0.001 / momentum 0.01. yaml args ``[c2, hidden, k, s, se, hs, eps, momentum]``.
    """

    def __init__(self, c1: int, c2: int, hidden: int, kernel: int, stride: int, use_se: int, use_hs: int,
                 eps: float = 1e-3, momentum: float = 1e-2):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"TVMobileNetV3Block: stride must be 1 or 2, got {stride}")
        self.use_res_connect = stride == 1 and c1 == c2
        act = "hardswish" if use_hs else "relu"
        layers: list = []
        if hidden != c1:
            layers.append(TVConvBNAct(c1, hidden, 1, 1, act, eps, momentum))
        layers.append(TVConvBNAct(hidden, hidden, kernel, stride, act, eps, momentum, g=hidden))
        if use_se:
            layers.append(TVSqueezeExcitation(hidden, tv_make_divisible(hidden // 4, 8)))
        layers.append(TVConvBNAct(hidden, c2, 1, 1, "none", eps, momentum))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_res_connect else y


MOBILE_BLOCKS: Dict[str, type] = {
    "conv_bn_relu_maxpool": conv_bn_relu_maxpool,
    "conv_bn_act_maxpool": conv_bn_relu_maxpool,
    "ShuffleNetV2_InvertedResidual": ShuffleNetV2_InvertedResidual,
    "Shuffle_Block": ShuffleNetV2_InvertedResidual,
    "StemBlock": StemBlock,
    "conv_bn_hswish": conv_bn_hswish,
    "MobileNetV3_InvertedResidual": MobileNetV3_InvertedResidual,
    "InputNormalize": InputNormalize,
    "TVConvBNAct": TVConvBNAct,
    "TVShuffleNetV2Unit": TVShuffleNetV2Unit,
    "TVMobileNetV3Block": TVMobileNetV3Block,
}
