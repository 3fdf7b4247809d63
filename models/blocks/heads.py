"""Output layers other than the Detect head (models/detect.py): a classification head and an NMS layer."""
from __future__ import annotations

from typing import List, Optional, Union

import torch
import torch.nn as nn

from models.blocks.conv import IntOrPair, autopad
from utils.nms import non_max_suppression


class NMS(nn.Module):
    """Non-maximum suppression as the last model layer (``Model.nms()``): input = the Detect output."""

    conf = 0.25  # confidence threshold
    iou = 0.45  # IoU threshold
    classes = None  # optional class filter

    def forward(self, x):
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

