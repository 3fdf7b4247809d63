"""The model of a training: built from --cfg or a checkpoint's yaml, weights transferred, state of a resumed run."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from data.diagnosis import diagnose_labels
from engine.checkpoint import CheckpointError, checkpoint_state_dict, load_checkpoint
from engine.train.options import TrainError
from engine.train.torchvision_weights import build_from_torchvision, inherit_backbone_record, torchvision_source
from models.model import Model
from utils.errors import UserError
from utils.log import LOGGER
from utils.loggers import trained_epochs
from utils.loss import warn_multilabel_files
from utils.text import load_yaml
from utils.torch_utils import ModelEMA, intersect_dicts


def load_weights(weights: str) -> Dict[str, Any]:
    """Checkpoint dict of ``--weights`` (project format or an upstream .pt via the allow-list loader).

    A missing official weights name (yolov5s.pt, ...) is downloaded by ``engine.downloads.attempt_download``.
    """
    try:
        return load_checkpoint(weights, map_location="cpu")
    except CheckpointError as e:
        raise TrainError(f"--weights {weights}: {e}") from None
    except FileNotFoundError as e:  # DownloadError included: its message names the URL and the manual way
        raise TrainError(f"--weights {weights}: {e} (use --weights '' --cfg <model.yaml> to train from scratch)"
                         ) from None
    except (OSError, RuntimeError) as e:  # torch's zip reader on a truncated file: EINVAL / "failed reading zip"
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TrainError(f"--weights {weights}: cannot read the checkpoint, truncated or not a torch file ({reason})"
                         ) from None


def build_model(opt: argparse.Namespace, hyp: Dict[str, Any], nc: int,
                device: torch.device) -> Tuple[nn.Module, Optional[Dict[str, Any]]]:
    """Model from --cfg (or the checkpoint's yaml) with weights transferred by name and shape; (model, ckpt)."""
    anchors = hyp.get("anchors")
    if not opt.weights:
        if not opt.cfg:
            raise TrainError("--cfg: a model yaml is required when training from scratch (--weights '')")
        return Model(opt.cfg, ch=3, nc=nc, anchors=anchors).to(device), None
    tv = None if opt.resume else torchvision_source(opt.weights)  # ImageNet backbone weights from torchvision
    if tv is not None:
        return build_from_torchvision(tv, opt.cfg, nc, anchors).to(device), None
    ckpt = load_weights(opt.weights)
    try:
        csd, ckpt_yaml, _ = checkpoint_state_dict(ckpt, "model")
    except CheckpointError as e:
        raise TrainError(f"--weights {opt.weights}: {e}") from None
    cfg = opt.cfg or ckpt_yaml
    if not cfg:
        raise TrainError(f"--weights {opt.weights}: the checkpoint stores no model yaml, pass --cfg")
    model = Model(cfg, ch=3, nc=nc, anchors=anchors).to(device)
    # anchors of a different model/hyp are not transferred (they are recomputed or come from the yaml)
    exclude = ["anchor"] if (opt.cfg or anchors) and not opt.resume else []
    csd = intersect_dicts(csd, model.state_dict(), exclude=exclude)
    check_transfer(transfer_share(csd, model), opt)
    model.load_state_dict(csd, strict=False)
    inherit_backbone_record(model, ckpt)
    LOGGER.info(f"Transferred {len(csd)}/{len(model.state_dict())} items from {opt.weights}")
    return model, ckpt


@dataclass
class TransferShare:
    """How much of a model a checkpoint filled: tensors matched by name and shape, overall and in the backbone."""

    matched: int
    total: int
    backbone_matched: int
    backbone_total: int
    body_missing: List[str]  # model tensors outside the Detect head that start from scratch

    @property
    def share(self) -> float:
        return self.matched / max(self.total, 1)


def _layer(key: str) -> int:
    """Layer index of a ``model.<i>.…`` state_dict key (-1 for anything else)."""
    parts = key.split(".")
    return int(parts[1]) if len(parts) > 2 and parts[0] == "model" and parts[1].isdigit() else -1


def transfer_share(transferred: Dict[str, Any], model: nn.Module) -> TransferShare:
    """Which of ``model``'s tensors ``transferred`` covers (backbone = the rows of the yaml's ``backbone``)."""
    n_backbone = len((getattr(model, "yaml", None) or {}).get("backbone") or [])
    head = len(model.model) - 1  # the Detect layer: its output convs follow nc, its anchors the yaml / hyp
    keys = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]  # counters, no weights
    backbone = [k for k in keys if 0 <= _layer(k) < n_backbone]
    return TransferShare(matched=sum(k in transferred for k in keys), total=len(keys),
                         backbone_matched=sum(k in transferred for k in backbone), backbone_total=len(backbone),
                         body_missing=[k for k in keys if k not in transferred and _layer(k) != head])


def check_transfer(t: TransferShare, opt: argparse.Namespace) -> None:
    """A warning when layers outside the Detect head start from scratch; a TrainError when less than half of the
    model (or none of its backbone) is transferred, unless --allow-partial-transfer (then a warning)."""
    what = f"{t.matched}/{t.total} tensors ({t.share:.0%})"
    fit = f"--weights {opt.weights}" + (f" with --cfg {opt.cfg}" if opt.cfg else "")
    if t.share < 0.5 or (t.backbone_total and not t.backbone_matched):
        reason = f"only {what} transferred" + (", none of the backbone" if not t.backbone_matched else "")
        if not getattr(opt, "allow_partial_transfer", False):
            raise TrainError(f"{fit}: the checkpoint does not fit the model ({reason}); training would start "
                             f"(almost) from scratch. Pass the model yaml this checkpoint was trained with (or no "
                             f"--cfg), or add --allow-partial-transfer to train anyway")
        LOGGER.warning(f"WARNING: {fit}: {reason}; training anyway (--allow-partial-transfer)")
    elif t.body_missing:
        layers = sorted({_layer(k) for k in t.body_missing} - {-1})
        LOGGER.warning(f"WARNING: {fit}: transferred {what}; {len(t.body_missing)} tensors of "
                       f"layer{'s' if len(layers) > 1 else ''} {_ranges(layers)} (outside the Detect head) start "
                       f"from scratch")


def _ranges(numbers: List[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8'."""
    out: List[str] = []
    for n in numbers:
        if out and n == int(out[-1].split("-")[-1]) + 1:
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out)


def restore_training_state(ckpt: Dict[str, Any], opt: argparse.Namespace, optimizer: torch.optim.Optimizer,
                           ema: Optional[ModelEMA], epochs: int) -> Tuple[int, float, int]:
    """Optimizer, EMA, best fitness and epoch from a checkpoint; returns (start_epoch, best_fitness, epochs).

    A finished run (strip_optimizer ran: no optimizer, no EMA, epoch -1) resumed with a larger --epochs goes on
    from the epochs its results.csv holds, with a fresh optimizer (engine/train/options.py: resume_target)."""
    finished = ckpt.get("optimizer") is None
    if not finished:
        optimizer.load_state_dict(ckpt["optimizer"])
    # the best fitness of the run this one continues; a fine-tuning measures its own (other data, other model)
    best_fitness = 0.0
    if opt.resume:
        best_fitness = float(np.asarray(ckpt.get("best_fitness") or 0.0, dtype=float).reshape(-1)[0])
    if ema is not None and ckpt.get("ema") is not None:
        record = ckpt["ema"]
        sd = record["state_dict"] if isinstance(record, dict) else record.float().state_dict()
        ema.ema.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
        ema.updates = int(ckpt.get("updates") or 0)
    epoch = ckpt.get("epoch", -1)
    start_epoch = (epoch if isinstance(epoch, int) else -1) + 1
    if opt.resume and finished:
        start_epoch = trained_epochs(Path(opt.save_dir) / "results.csv") or epochs
    if opt.resume:
        if start_epoch >= epochs:
            raise TrainError(f"--resume {opt.weights}: training to {epochs} epochs is finished, nothing to resume")
        LOGGER.info(f"Resuming training from {opt.weights} from epoch {start_epoch} to {epochs} total epochs")
    elif epochs < start_epoch:
        LOGGER.info(f"{opt.weights} has been trained for {start_epoch} epochs. Fine-tuning for {epochs} more epochs.")
        epochs += start_epoch
    return start_epoch, best_fitness, epochs


def check_labels(dataset: Any, nc: int, data: str) -> None:
    """Every label class must be < nc; otherwise name the first offending label file."""
    for lb, f in zip(dataset.labels, dataset.label_files):
        if len(lb) and int(lb[:, 0].max()) >= nc:
            raise TrainError(f"{f}: label class {int(lb[:, 0].max())} exceeds nc={nc} in {data} "
                             f"(possible class labels are 0-{nc - 1})")


def log_label_diagnosis(dataset: Any, names: Any, cls_loss: str) -> None:
    """Print what the training labels say about the class loss (a recommendation only: nothing is switched);
    with ``ce``, warn about the label files whose boxes carry several classes (one scan of the labels for both)."""
    structure = diagnose_labels(dataset.labels, dataset.label_files, names)
    for line in structure.lines():
        LOGGER.info(line)
    if cls_loss == "ce":
        warn_multilabel_files(structure.multilabel_files)


def warn_without_names(data_file: str) -> None:
    """The trainer's warning for a data yaml without ``names`` (the dataset config invents class0, class1, ...)."""
    try:  # the dataset config has already parsed this file successfully
        raw = load_yaml(data_file)
    except (OSError, UserError):
        return
    if isinstance(raw, dict) and raw.get("names") is None:
        last = int(raw.get("nc", 1)) - 1
        LOGGER.warning(f"WARNING: {data_file} has no 'names': classes are called class0..class{last} in the "
                       f"checkpoint, plots and detections; add a 'names' list to the yaml")
