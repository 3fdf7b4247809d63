"""torchvision ImageNet backbones as the backbone of the ``models/yolov5-tv-*.yaml`` detectors.

For each of torchvision's ``shufflenet_v2_x0_5 / x1_0 / x1_5 / x2_0`` and ``mobilenet_v3_small / large`` this module
knows the shipped config, which torchvision state_dict keys are backbone (all but the classifier ``fc`` /
``classifier``) and where each of them lives in the detector. It recognises a state_dict by its exact key set and
shapes (compared with torchvision's own model built on the meta device, so nothing is written down twice) and
renames its keys; checking that they fit a chosen config and loading them is the training workflow's job
(engine/train/torchvision_weights.py).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Tuple

import torch

__all__ = ["TorchvisionBackbone", "BACKBONES", "backbone_shapes", "identify", "looks_like_torchvision",
           "to_model_keys", "weights_url", "hub_cache_file", "strip_wrapper_prefix"]


def _shufflenet_key(key: str) -> str:
    """conv1 -> row 1, maxpool = row 2 (no tensors), stageN unit 0 -> its own row, units 1.. -> the next row's
    Sequential (index - 1), conv5 -> row 9 (see models/yolov5-tv-shufflenetv2-*.yaml)."""
    part, rest = key.split(".", 1)
    if part == "conv1":
        return f"model.1.{rest}"
    if part == "conv5":
        return f"model.9.{rest}"
    row = {"stage2": 3, "stage3": 5, "stage4": 7}[part]
    unit, rest = rest.split(".", 1)
    return f"model.{row}.{rest}" if unit == "0" else f"model.{row + 1}.{int(unit) - 1}.{rest}"


def _mobilenet_key(key: str) -> str:
    """features.i -> row i + 1 (row 0 is the input normalisation), same sub-keys."""
    _, i, rest = key.split(".", 2)
    return f"model.{int(i) + 1}.{rest}"


@dataclass(frozen=True)
class TorchvisionBackbone:
    """One torchvision classifier whose features a shipped config reproduces."""

    name: str  # torchvision model name, e.g. 'shufflenet_v2_x1_0'
    cfg: str  # shipped model yaml (under models/)
    classifier: str  # key prefix of the classifier (not backbone)
    model_key: Callable[[str], str]  # torchvision key -> detector state_dict key
    backbone_rows: int  # yaml rows 0..backbone_rows-1 are the backbone (what --freeze N freezes)


BACKBONES: Dict[str, TorchvisionBackbone] = {b.name: b for b in (
    *(TorchvisionBackbone(f"shufflenet_v2_{w}", f"yolov5-tv-shufflenetv2-{w}.yaml", "fc.", _shufflenet_key, 10)
      for w in ("x0_5", "x1_0", "x1_5", "x2_0")),
    TorchvisionBackbone("mobilenet_v3_small", "yolov5-tv-mobilenetv3-small.yaml", "classifier.", _mobilenet_key, 14),
    TorchvisionBackbone("mobilenet_v3_large", "yolov5-tv-mobilenetv3-large.yaml", "classifier.", _mobilenet_key, 18),
)}


def _is_counted(key: str) -> bool:
    # BN's num_batches_tracked is absent from older torchvision files and unused with a fixed momentum
    return not key.endswith("num_batches_tracked")


@functools.lru_cache(maxsize=None)
def backbone_shapes(name: str) -> Dict[str, Tuple[int, ...]]:
    """Backbone key -> shape of torchvision's ``name`` (num_batches_tracked excluded), from the model built on the
    meta device (no memory, no weights)."""
    import torchvision  # ~2 s to import: only when a torchvision backbone is used

    with torch.device("meta"):
        model = torchvision.models.get_model(name, weights=None)
    prefix = BACKBONES[name].classifier
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith(prefix) and _is_counted(k)}


def strip_wrapper_prefix(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The state_dict without the ``module.`` prefix of a DataParallel / DDP-wrapped model, if every key has it."""
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def _backbone_part(name: str, state_dict: Mapping[str, torch.Tensor]) -> Dict[str, Tuple[int, ...]]:
    prefix = BACKBONES[name].classifier
    return {k: tuple(v.shape) for k, v in state_dict.items() if not k.startswith(prefix) and _is_counted(k)}


def identify(state_dict: Mapping[str, torch.Tensor]) -> Optional[str]:
    """The torchvision model whose backbone keys and shapes ``state_dict`` has exactly, or None."""
    for name in BACKBONES:
        if _backbone_part(name, state_dict) == backbone_shapes(name):
            return name
    return None


_FAMILY = re.compile(r"^(conv1\.0\.weight|stage2\.0\.|features\.0\.0\.weight)")


def looks_like_torchvision(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True for a flat tensor dict with ShuffleNetV2 / MobileNetV3 style keys (used to explain a near miss)."""
    return any(_FAMILY.match(k) for k in state_dict)


def to_model_keys(name: str, state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The backbone tensors of a ``name`` state_dict under the detector's keys (the classifier dropped)."""
    spec = BACKBONES[name]
    return {spec.model_key(k): v for k, v in state_dict.items() if not k.startswith(spec.classifier)}


def weights_url(name: str) -> str:
    """URL of torchvision's default ImageNet weights for ``name`` (its weights registry)."""
    import torchvision

    return torchvision.models.get_model_weights(name).DEFAULT.url


def hub_cache_file(name: str) -> Path:
    """Where ``torch.hub`` (and torchvision's ``weights.get_state_dict``) keeps that file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights_url(name)).name
