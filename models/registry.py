"""The block registry: every layer a model yaml may name, how the builder computes its channels, and the paths under
which upstream checkpoints pickled it.

The yaml builder (models/builder.py) reads :func:`yaml_block`; the checkpoint loader's allow-list
(engine/checkpoint.py) reads :func:`pickle_classes`. A new block is one row in :data:`BLOCKS`.

Channel rules (what the builder does with a row ``[from, n, Block, args]``; ``ch`` = output widths so far):

    conv      c1 = ch[from], c2 = args[0] x width_multiple (rounded to 8), the block gets (c1, c2, *args[1:])
    exact     like conv, but c2 = args[0] as written (torchvision-exact blocks: their widths are the pretrained
              network's, never scaled by width_multiple nor rounded to 8)
    csp       like conv, and the block builds its own n repeats (n is inserted as its third argument)
    bn        BatchNorm2d(ch[from])
    concat    c2 = sum of the input widths
    detect    the head gets the list of its input widths appended
    contract  c2 = ch[from] * gain^2 (space to depth)
    expand    c2 = ch[from] / gain^2 (depth to space)
    same      c2 = ch[from] (any other layer, torch.nn layers included)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch.nn as nn

from models.blocks.conv import Concat, Contract, Conv, DWConv, Expand, Focus, GhostConv
from models.blocks.csp import (C3, C3SPP, C3TR, Bottleneck, BottleneckCSP, C3Ghost, GhostBottleneck,
                               TransformerBlock, TransformerLayer)
from models.blocks.experimental import CrossConv, MixConv2d, Sum
from models.blocks.heads import NMS, Classify
from models.blocks.mobile import (InputNormalize, MobileNetV3_InvertedResidual, SELayer, ShuffleNetV2_InvertedResidual,
                                  StemBlock, TorchvisionBatchNorm2d, TVConvBNAct, TVMobileNetV3Block,
                                  TVShuffleNetV2Unit, TVSqueezeExcitation, conv_bn_hswish, conv_bn_relu_maxpool,
                                  h_sigmoid, h_swish)
from models.blocks.pooling import SPP, SPPF
from models.detect import Detect

CHANNEL_RULES = ("conv", "exact", "csp", "bn", "concat", "detect", "contract", "expand", "same")
_COMMON, _EXPERIMENTAL = "models.common", "models.experimental"


@dataclass(frozen=True)
class Block:
    """One registered layer class: the yaml names it answers to, its channel rule, its upstream pickle paths."""

    cls: type
    rule: str
    names: Tuple[str, ...] = ()  # yaml module names (empty: only found inside other blocks)
    pickled_as: Tuple[str, ...] = ()  # "module.Class" paths in upstream / reference-fork checkpoints

    @property
    def type_name(self) -> str:
        """The layer's ``type`` attribute and layer-table name: its upstream path ('models.common.C3') when it has
        one, else its own ('torch.nn.modules.upsampling.Upsample')."""
        return self.pickled_as[0] if self.pickled_as else f"{self.cls.__module__}.{self.cls.__qualname__}"


def _row(cls: type, rule: str, *modules: str, names: Tuple[str, ...] = ()) -> Block:
    names = names or (cls.__name__,)
    return Block(cls, rule, names, tuple(f"{m}.{n}" for m in modules for n in names))


BLOCKS: Tuple[Block, ...] = (
    # v5.0 models/common.py (and v6.0 additions)
    _row(Conv, "conv", _COMMON),
    _row(DWConv, "conv", _COMMON),
    _row(Focus, "conv", _COMMON),
    _row(Bottleneck, "conv", _COMMON),
    _row(BottleneckCSP, "csp", _COMMON),
    _row(C3, "csp", _COMMON),
    _row(C3TR, "csp", _COMMON),
    _row(C3Ghost, "csp", _COMMON),
    _row(C3SPP, "conv", _COMMON),
    _row(SPP, "conv", _COMMON),
    _row(SPPF, "conv", _COMMON),
    _row(GhostConv, "conv", _COMMON, _EXPERIMENTAL),  # v5.0 pickles: experimental; v6.0: common
    _row(GhostBottleneck, "conv", _COMMON, _EXPERIMENTAL),
    _row(TransformerLayer, "same", _COMMON),
    _row(TransformerBlock, "same", _COMMON),
    _row(Concat, "concat", _COMMON),
    _row(Contract, "contract", _COMMON),
    _row(Expand, "expand", _COMMON),
    _row(NMS, "same", _COMMON),
    _row(Classify, "same", _COMMON),
    # v5.0 models/experimental.py
    _row(CrossConv, "conv", _EXPERIMENTAL),
    _row(MixConv2d, "conv", _EXPERIMENTAL),
    _row(Sum, "same", _EXPERIMENTAL),
    # the head (v5.0 models/yolo.py)
    _row(Detect, "detect", "models.yolo"),
    # ShuffleNetV2 / MobileNetV3 (the YOLOv5-ShuffleNetV2 and YOLOv5-Lite forks pickle them under models.common)
    _row(conv_bn_relu_maxpool, "conv", _COMMON, names=("conv_bn_relu_maxpool", "conv_bn_act_maxpool")),
    _row(ShuffleNetV2_InvertedResidual, "conv", _COMMON, names=("ShuffleNetV2_InvertedResidual", "Shuffle_Block")),
    _row(StemBlock, "conv", _COMMON),
    _row(conv_bn_hswish, "conv", _COMMON),
    _row(MobileNetV3_InvertedResidual, "conv", _COMMON),
    # torchvision-exact backbones (models/yolov5-tv-*.yaml; project-only, never pickled upstream)
    Block(InputNormalize, "same", ("InputNormalize",)),
    Block(TVConvBNAct, "exact", ("TVConvBNAct",)),
    Block(TVShuffleNetV2Unit, "exact", ("TVShuffleNetV2Unit",)),
    Block(TVMobileNetV3Block, "exact", ("TVMobileNetV3Block",)),
    # modules that only occur inside the blocks above
    Block(h_sigmoid, "same", (), (f"{_COMMON}.h_sigmoid",)),
    Block(h_swish, "same", (), (f"{_COMMON}.h_swish",)),
    Block(SELayer, "same", (), (f"{_COMMON}.SELayer",)),
    Block(TVSqueezeExcitation, "same"),
    Block(TorchvisionBatchNorm2d, "bn"),
)

_BY_NAME: Dict[str, Block] = {n: b for b in BLOCKS for n in b.names}


def yaml_block(name: str) -> Optional[Block]:
    """The registered block a yaml module name stands for, or None."""
    return _BY_NAME.get(name)


def yaml_names() -> Tuple[str, ...]:
    """Every block name a model yaml may use without an ``nn.`` prefix."""
    return tuple(_BY_NAME)


def torch_layer(name: str) -> Optional[Block]:
    """A torch.nn layer as a block (``BatchNorm2d`` takes its width from its input, everything else keeps it)."""
    cls = getattr(nn, name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)) or name.startswith("_"):
        return None
    return Block(cls, "bn" if cls is nn.BatchNorm2d else "same", (name,))


def pickle_classes() -> Dict[str, type]:
    """'models.common.Conv' -> Conv, ... for every registered block, under its upstream paths and its own
    ('models.blocks.conv.Conv'): the project part of the checkpoint allow-list."""
    own = {f"{b.cls.__module__}.{b.cls.__qualname__}": b.cls for b in BLOCKS}
    return {**own, **{path: b.cls for b in BLOCKS for path in b.pickled_as}}


def rule_of(cls: type) -> str:
    """The channel rule of a layer class ('same' for unregistered classes)."""
    return next((b.rule for b in BLOCKS if b.cls is cls), "bn" if cls is nn.BatchNorm2d else "same")
