"""``--weights`` given as torchvision ImageNet weights: a file (torch.hub's cached ``.pth`` or a ``state_dict``
saved from ``torchvision.models.<name>()``) or a torchvision model name, loaded into a ``models/yolov5-tv-*.yaml``
detector. The backbone gets every torchvision backbone tensor; the head keeps its initialisation.

Runs before the generic checkpoint path (engine/train/model_setup.py: build_model); anything that is not a
torchvision state_dict falls through to it unchanged. Which keys go where is the models layer's knowledge
(models/torchvision_backbones.py).
"""
from __future__ import annotations

import hashlib
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import torch

from engine.train.options import TrainError
from models.blocks.mobile import IMAGENET_MEAN, IMAGENET_STD, InputNormalize
from models.model import Model
from models.torchvision_backbones import (BACKBONES, backbone_shapes, hub_cache_file, identify, looks_like_torchvision,
                                          strip_wrapper_prefix, to_model_keys, weights_url)
from utils.log import LOGGER

__all__ = ["TorchvisionWeights", "is_torchvision_name", "torchvision_source", "build_from_torchvision",
           "inherit_backbone_record"]


@dataclass
class TorchvisionWeights:
    """A torchvision state_dict recognised as one of the supported backbones."""

    name: str  # torchvision model name
    path: Path  # the file it was read from
    weights: str  # the --weights value as given
    state_dict: Dict[str, torch.Tensor]


def is_torchvision_name(weights: str) -> bool:
    """True for the torchvision model names ``--weights`` accepts (shufflenet_v2_x1_0, mobilenet_v3_small, ...)."""
    return str(weights).strip() in BACKBONES


def _fetch(name: str) -> Path:
    """The cached ImageNet file of ``name`` (downloaded into torch.hub's cache if needed); one-line error offline."""
    dst = hub_cache_file(name)
    if dst.is_file():
        return dst
    url = weights_url(name)
    LOGGER.info(f"Downloading {url} to {dst}")
    match = re.search(r"-([a-f0-9]{6,})\.", dst.name)  # torch.hub's hash-prefix convention
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(dst), hash_prefix=match.group(1) if match else None, progress=False)
    except (OSError, RuntimeError, ValueError) as e:  # URLError is an OSError; a hash mismatch a RuntimeError
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TrainError(f"--weights {name}: cannot download {url} ({reason}); download it where there is a network "
                         f"and put it at {dst} (or pass the file itself to --weights)") from None
    return dst


def _read_tensor_dict(path: Path) -> Optional[Dict[str, torch.Tensor]]:
    """The file as a flat ``{str: Tensor}`` dict (weights-only unpickler), or None if it is anything else."""
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # reads only the tensors used
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy (pre-zip) torch.save format
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError, AttributeError):
        return None  # an upstream pickle, a damaged file, ...: the generic checkpoint path reports it
    if not isinstance(obj, Mapping) or not obj:
        return None
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        return None  # a checkpoint (nested dicts), not a state_dict
    return strip_wrapper_prefix(obj)


def torchvision_source(weights: str) -> Optional[TorchvisionWeights]:
    """The torchvision state_dict ``--weights`` names (a file or a model name), or None for any other weights."""
    weights = str(weights or "").strip()
    if not weights:
        return None
    if Path(weights).is_file():
        path = Path(weights)
    elif is_torchvision_name(weights):
        path = _fetch(weights)
    else:
        return None
    state_dict = _read_tensor_dict(path)
    name = identify(state_dict) if state_dict is not None else None
    if name is None:
        if state_dict is not None and (looks_like_torchvision(state_dict) or is_torchvision_name(weights)):
            raise TrainError(f"--weights {weights}: a state_dict of {len(state_dict)} tensors that is none of "
                             f"torchvision's {', '.join(BACKBONES)} (keys or shapes differ)")
        if is_torchvision_name(weights):
            raise TrainError(f"--weights {weights}: {path} is not a torchvision state_dict (damaged download?); "
                             f"delete it to download it again")
        return None
    return TorchvisionWeights(name, path, weights, state_dict)


def _refuse(tv: TorchvisionWeights, cfg: str, why: str) -> TrainError:
    return TrainError(f"--weights {tv.weights} is torchvision {tv.name}, which does not fit --cfg {cfg}: {why}; "
                      f"use --cfg models/{BACKBONES[tv.name].cfg}")


def _check_fit(model: Model, tv: TorchvisionWeights, cfg: str, mapped: Dict[str, torch.Tensor]) -> None:
    """Refuse (one line naming both) a config that does not reproduce ``tv``'s backbone tensor for tensor."""
    built_for = model.yaml.get("torchvision")
    if built_for != tv.name:
        raise _refuse(tv, cfg, f"it is built for torchvision {built_for}" if built_for else
                      "it has no torchvision backbone (no 'torchvision:' key)")
    norm = model.model[0]
    if not (isinstance(norm, InputNormalize) and torch.allclose(norm.mean.flatten(), torch.tensor(IMAGENET_MEAN))
            and torch.allclose(norm.std.flatten(), torch.tensor(IMAGENET_STD))):
        raise _refuse(tv, cfg, "row 0 is not InputNormalize with ImageNet's mean and std")
    own = model.state_dict()
    for k, v in mapped.items():
        if k not in own or own[k].shape != v.shape:
            found = tuple(own[k].shape) if k in own else "no such tensor"
            raise _refuse(tv, cfg, f"{k} should be {tuple(v.shape)}, the config has {found}")
    rows = len(model.yaml["backbone"])
    prefixes = tuple(f"model.{i}." for i in range(rows))
    missed = [k for k in own if k.startswith(prefixes) and k not in mapped and not k.endswith("num_batches_tracked")]
    if missed:
        raise _refuse(tv, cfg, f"{len(missed)} backbone tensors would stay random (first: {missed[0]})")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_from_torchvision(tv: TorchvisionWeights, cfg: str, nc: int, anchors: Any = None) -> Model:
    """The detector of ``cfg`` (default: the shipped config of ``tv.name``) with ``tv``'s backbone loaded exactly.

    The model records where its backbone came from (``backbone_source``, saved in every checkpoint record).
    """
    cfg = cfg or BACKBONES[tv.name].cfg  # found under models/ from any working directory
    model = Model(cfg, ch=3, nc=nc, anchors=anchors)
    mapped = {k: v.float() if v.is_floating_point() else v for k, v in to_model_keys(tv.name, tv.state_dict).items()}
    _check_fit(model, tv, cfg, mapped)
    model.load_state_dict(mapped, strict=False)
    n, total = sum(not k.endswith("num_batches_tracked") for k in mapped), len(backbone_shapes(tv.name))
    model.backbone_source = {"source": "torchvision", "model": tv.name, "file": str(tv.path.resolve()),
                             "sha256": _sha256(tv.path), "tensors": n}
    LOGGER.info(f"Transferred {n}/{total} backbone tensors from torchvision {tv.name}; head initialised")
    return model


def inherit_backbone_record(model: torch.nn.Module, ckpt: Mapping[str, Any]) -> None:
    """A model fine-tuned from (or resuming) a checkpoint keeps the checkpoint's record of its backbone origin."""
    entry = ckpt.get("model") if ckpt.get("model") is not None else ckpt.get("ema")
    record = entry.get("backbone") if isinstance(entry, dict) else None
    if isinstance(record, dict):
        model.backbone_source = dict(record)
