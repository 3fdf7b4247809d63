"""The class activation: how class logits become scores, and which class loss trains each activation.

One hyperparameter, ``cls_loss`` (hyp yaml or ``train.py --cls-loss``), picks the loss; the loss fixes the
activation the Detect head applies at inference (``Detect.cls_act``), which checkpoints and exported files record
so that every consumer decodes the scores the way they were trained:

    cls_loss  bce     -> cls_act sigmoid  one sigmoid per class (upstream; multi-label / nested classes)
    cls_loss  ce      -> cls_act softmax  one softmax over the classes (mutually exclusive classes)
    cls_loss  grouped -> cls_act grouped  a softmax per group of exclusive classes, sigmoids for independent
                                          classes, subclass score = P(parent) * P(subclass | parent); the groups
                                          (``cls_groups`` of the data yaml, utils/class_groups.py) travel with it
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

CLS_ACTIVATION = {"bce": "sigmoid", "ce": "softmax", "grouped": "grouped"}  # cls_loss -> head activation
CLS_LOSSES = tuple(CLS_ACTIVATION)
CLS_ACTIVATIONS = tuple(CLS_ACTIVATION.values())
DEFAULT_CLS_LOSS = "bce"  # also when the hyp has no cls_loss key: upstream hyp files keep their meaning


def cls_loss_of(hyp: Optional[dict]) -> str:
    """Validated ``hyp['cls_loss']`` ('bce' when missing); ValueError naming the allowed values otherwise."""
    value = (hyp or {}).get("cls_loss")
    value = DEFAULT_CLS_LOSS if value is None else str(value).strip().lower()
    if value not in CLS_LOSSES:
        raise ValueError(f"hyp['cls_loss'] = {value!r} is not supported; allowed values: {', '.join(CLS_LOSSES)}")
    return value


def activation_for(cls_loss: str) -> str:
    """The head activation matching a class loss: 'bce' -> 'sigmoid', 'ce' -> 'softmax', 'grouped' -> 'grouped'."""
    return CLS_ACTIVATION[cls_loss_of({"cls_loss": cls_loss})]


def check_activation(act: str, where: str = "class activation") -> str:
    """``act`` if it is a known activation, else ValueError naming ``where``."""
    if act not in CLS_ACTIVATIONS:
        raise ValueError(f"{where}: must be one of {', '.join(CLS_ACTIVATIONS)}, got {act!r}")
    return act


def class_scores(logits: torch.Tensor, act: str, grouped: Optional[nn.Module] = None) -> torch.Tensor:
    """Class probabilities from class logits (last dimension = classes): per-class sigmoid, softmax, or the
    grouped activation module (utils.class_groups.GroupedActivation) for 'grouped'."""
    if act == "softmax":
        return logits.softmax(-1)
    if act == "grouped":
        if grouped is None:
            raise ValueError("class activation 'grouped' needs its class groups (cls_groups)")
        return grouped(logits).to(logits.dtype)
    return logits.sigmoid()
