"""Training options: the flag checks, hyperparameters, ``--weights`` / ``--resume`` / ``--data`` resolution and
the run folder. Everything here runs before any model, dataset or loader is built, so bad input fails in a second.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union


from engine.checkpoint import load_checkpoint
from engine.cli import FlagError, check_at_least, check_fraction
from engine.downloads import OFFICIAL_WEIGHTS, is_official
from engine.train.hyp_keys import warn_unknown_keys
from models.torchvision_backbones import BACKBONES as TORCHVISION_BACKBONES
from utils.errors import UserError
from utils.files import ROOT, check_file, glob_files, increment_path
from utils.log import LOGGER
from utils.loggers import trained_epochs
from utils.text import load_yaml

CLS_LOSSES = ("bce", "ce", "grouped")
BOX_LOSSES = ("iou", "giou", "diou", "ciou", "eiou", "siou")
HYP_REQUIRED = ("lr0", "lrf", "momentum", "weight_decay", "box", "cls", "obj")
PRECISIONS = ("auto", "fp32", "bf16")
# keys of an opt.yaml written by another version -> this parser's dest
_RENAMED = {"noval": "notest", "imgsz": "img_size", "save-period": "save_period"}


class TrainError(UserError):
    """A user error of training (bad flag, file or dataset) reported as one line, exit status 1."""


# ------------------------------------------------------------------------------------------------ flags
def check_flags(opt: argparse.Namespace) -> None:
    """Every numeric flag within its range, before anything is built; FlagError naming the flag otherwise."""
    if opt.batch_size == -1:  # v5.0: -1 = the default batch (the autobatch of later versions needs CUDA)
        LOGGER.info("--batch-size -1: using batch size 16")
        opt.batch_size = 16
    for name, low in (("epochs", 1), ("batch_size", 1), ("img_size", 32), ("workers", 0), ("patience", 0),
                      ("save_period", -1), ("freeze", 0), ("seed", 0), ("local_rank", -1), ("bbox_interval", -1)):
        check_at_least(opt, name, low)
    if opt.evolve is not None:
        check_at_least(opt, "evolve", 1)
    if len(opt.img_size) > 2:
        raise FlagError(f"--img-size {' '.join(map(str, opt.img_size))}: give one size, or two sizes [train, test]")
    check_fraction(opt, "label_smoothing")
    if getattr(opt, "fp32", False) and getattr(opt, "bf16", False):
        raise FlagError("--fp32 and --bf16 contradict each other: pass one of them")


def precision_mode(opt: argparse.Namespace) -> str:
    """'fp32' (--fp32), 'bf16' (--bf16) or 'auto' (see utils/precision.py training_precision)."""
    return "fp32" if getattr(opt, "fp32", False) else "bf16" if getattr(opt, "bf16", False) else "auto"


# ------------------------------------------------------------------------------------------------ files
def existing_file(path: str, flag: str, what: str) -> str:
    """``path`` if it is a file (also searched below the repository, v5.0 style); TrainError naming the flag."""
    if Path(path).is_dir():
        raise TrainError(f"{flag} {path}: is a directory, expected a {what} file")
    try:
        return check_file(path, what=what)
    except FileNotFoundError as e:
        raise TrainError(f"{flag} {path}: {e}") from None


def resolve_weights(weights: str) -> str:
    """'' (from scratch), an existing checkpoint file, an official release name or a torchvision backbone name
    (both downloaded when loaded)."""
    weights = str(weights or "").strip()
    if not weights or Path(weights).is_file() or is_official(weights) or weights in TORCHVISION_BACKBONES:
        return weights  # official and torchvision names are downloaded when loaded
    if Path(weights).is_dir():
        raise TrainError(f"--weights {weights}: is a directory, expected a checkpoint file (e.g. "
                         f"{Path(weights) / 'weights' / 'best.pt'}), or '' to train from scratch")
    raise TrainError(f"--weights {weights}: file not found (a checkpoint path, one of {', '.join(OFFICIAL_WEIGHTS)}"
                     f" to download, a torchvision backbone name such as mobilenet_v3_small, or '' to train from "
                     f"scratch)")


def resolve_hyp_path(hyp: str) -> str:
    """Hyp file path; the v5.0 location ``data/hyp.X.yaml`` also finds the v6.0 ``data/hyps/hyp.X.yaml``."""
    for candidate in (hyp, ROOT / hyp, ROOT / "data" / "hyps" / Path(hyp).name):
        if Path(candidate).is_file():
            return str(candidate)
    return existing_file(hyp, "--hyp", "hyperparameter yaml")


def read_yaml(path: Union[str, Path], flag: str) -> Any:
    """The yaml at ``path`` as plain data; bad syntax, a code tag or an encoding is one line naming ``flag``."""
    return load_yaml(path, TrainError, what=f"{flag} ")


def load_hyp(hyp: Union[str, Path, Dict[str, Any]], opt: argparse.Namespace) -> Dict[str, Any]:
    """Hyperparameters from a yaml path or dict, with the --cls-loss / --box-loss overrides applied.

    Keys of a yaml file that training does not read are warned about (with the closest known key); a dict comes
    from a caller (--evolve) that already loaded, and so checked, its file.
    """
    if not isinstance(hyp, dict):
        path = hyp
        hyp = read_yaml(path, "--hyp")
        if not isinstance(hyp, dict):
            raise TrainError(f"--hyp {path}: not a yaml mapping of hyperparameters")
        warn_unknown_keys(hyp, f"--hyp {path}")
    hyp = dict(hyp)
    missing = [k for k in HYP_REQUIRED if k not in hyp]
    if missing:
        raise TrainError(f"--hyp {opt.hyp}: missing keys {missing}")
    if opt.cls_loss:
        hyp["cls_loss"] = opt.cls_loss
    hyp["cls_loss"] = str(hyp.get("cls_loss") or "bce").lower()
    if hyp["cls_loss"] not in CLS_LOSSES:
        raise TrainError(f"--hyp {opt.hyp}: cls_loss must be one of {CLS_LOSSES}, got '{hyp['cls_loss']}'")
    if opt.box_loss:
        hyp["box_loss"] = opt.box_loss
    if "box_loss" in hyp and str(hyp["box_loss"]).lower() not in BOX_LOSSES:
        raise TrainError(f"--hyp {opt.hyp}: box_loss must be one of {BOX_LOSSES}, got '{hyp['box_loss']}'")
    return hyp


# ------------------------------------------------------------------------------------------------ resume
def get_latest_run(search_dir: str = ".") -> str:
    """Most recently written ``last*.pt`` below ``search_dir`` ('' when there is none)."""
    runs = glob_files(f"{search_dir}/**/last*.pt")  # never caught in a symlink loop below search_dir
    return max(runs, key=os.path.getctime) if runs else ""


def resume_checkpoint(resume: Union[bool, str]) -> Path:
    """The checkpoint ``--resume`` names: a file, a run folder (its weights/last.pt), or the latest run."""
    ckpt = resume if isinstance(resume, str) else get_latest_run()
    if not ckpt:
        raise TrainError(f"--resume: no last*.pt checkpoint found under {Path.cwd()}; "
                         "pass one, e.g. --resume runs/train/exp/weights/last.pt")
    path = Path(ckpt)
    if path.is_dir():
        path = path / "weights" / "last.pt" if (path / "weights").is_dir() else path / "last.pt"
        if not path.is_file():
            raise TrainError(f"--resume {ckpt}: a folder without weights/last.pt (not a training run folder)")
    if not path.is_file():
        raise TrainError(f"--resume {ckpt}: checkpoint not found")
    return path


def resume_progress(ckpt: Path) -> Tuple[Optional[int], bool]:
    """(epochs trained, finished) of the run of checkpoint ``ckpt``; finished = its optimizer was stripped.

    A finished checkpoint stores no epoch (v5.0 sets it to -1): the count comes from the run's results.csv (None
    without one).
    """
    try:
        state = load_checkpoint(ckpt, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - whatever makes the file unreadable, one line naming it
        raise TrainError(f"--resume {ckpt}: cannot read the checkpoint ({type(e).__name__}: "
                         f"{str(e).strip().splitlines()[0] if str(e).strip() else ''})") from None
    if state.get("optimizer") is not None:
        epoch = state.get("epoch", -1)
        return (epoch if isinstance(epoch, int) else -1) + 1, False
    return trained_epochs(ckpt.parent.parent / "results.csv"), True


def resume_target(ckpt: Path, epochs: Optional[int], saved_epochs: int) -> int:
    """The total epochs of a resumed run: its own, or ``epochs`` (an explicit --epochs) when larger than what
    it has trained. A finished run is trained on only to an explicit larger --epochs."""
    done, finished = resume_progress(ckpt)
    if epochs is None:
        if finished:
            raise TrainError(f"--resume {ckpt}: that training is finished ({done or saved_epochs} epochs), nothing "
                             f"to resume; to train it longer add --epochs N with N > {done or saved_epochs}")
        return saved_epochs
    if done is None:
        raise TrainError(f"--resume {ckpt} --epochs {epochs}: that training is finished and "
                         f"{ckpt.parent.parent / 'results.csv'} (which tells how many epochs it trained) is missing")
    if epochs <= done:
        raise TrainError(f"--resume {ckpt} --epochs {epochs}: that run has trained {done} epochs already; pass "
                         f"--epochs N with N > {done} to train it on to N epochs")
    LOGGER.info(f"--epochs {epochs}: training {'the finished' if finished else 'the'} run {ckpt.parent.parent} on "
                f"from epoch {done} to {epochs} (its LR schedule recomputed for {epochs} epochs"
                + ("; momentum and EMA start afresh: the finished checkpoint keeps neither)" if finished else ")"))
    return epochs


def resume_options(opt: argparse.Namespace, defaults: argparse.Namespace,
                   epochs_given: bool = False) -> argparse.Namespace:
    """The original options of the run being resumed, from ``<run>/opt.yaml`` two levels above the checkpoint.

    ``defaults`` (the parser's defaults) fill options added after that run was started. The precision flags of
    this command line win: a run started in bf16 can continue in fp32 and vice versa (checkpoints are fp32).
    So does an explicit --epochs (``epochs_given``): the run trains on to that many epochs, finished or not.
    """
    ckpt = resume_checkpoint(opt.resume)
    opt_file = ckpt.parent.parent / "opt.yaml"
    if not opt_file.is_file():
        raise TrainError(f"--resume {ckpt}: {opt_file} (the options of that run) not found")
    saved = read_yaml(opt_file, "--resume") or {}
    if not isinstance(saved, dict):
        raise TrainError(f"--resume {ckpt}: {opt_file} is not a mapping of options")
    new = argparse.Namespace(**vars(defaults))
    for k, v in saved.items():
        setattr(new, _RENAMED.get(k, k), v)
    if isinstance(new.img_size, int):
        new.img_size = [new.img_size]
    if saved.get("adam"):
        new.optimizer = "Adam"
    if "cos_lr" in saved:
        new.linear_lr = not saved["cos_lr"]
    hyp_file = opt_file.parent / "hyp.yaml"  # the hyps as that run used them
    if hyp_file.is_file():
        new.hyp = str(hyp_file)
    new.cfg, new.weights, new.resume = "", str(ckpt), True
    new.save_dir = str(opt_file.parent)  # where the run is now, even if it was moved
    new.batch_size = int(saved.get("total_batch_size", new.batch_size))
    new.local_rank = opt.local_rank
    new.epochs = resume_target(ckpt, opt.epochs if epochs_given else None, int(new.epochs))
    if getattr(opt, "fp32", False) or getattr(opt, "bf16", False):
        new.fp32, new.bf16 = bool(getattr(opt, "fp32", False)), bool(getattr(opt, "bf16", False))
    LOGGER.info(f"Resuming training from {ckpt}")
    return new


# ------------------------------------------------------------------------------------------------ all options
def prepare_options(opt: argparse.Namespace, defaults: argparse.Namespace, world_size: int = 1,
                    rank: int = -1) -> argparse.Namespace:
    """Check the flags and resolve files, sizes, the run directory and the DDP fields of the options."""
    epochs_given = bool(vars(opt).pop("epochs_given", False))  # set by train.py's --epochs; not an option to save
    check_flags(opt)
    if opt.resume and not opt.evolve:
        opt = resume_options(opt, defaults, epochs_given)
    else:
        if not opt.data:
            raise TrainError("--data: a dataset yaml is required")
        opt.data = existing_file(opt.data, "--data", "dataset yaml")
        opt.cfg = existing_file(opt.cfg, "--cfg", "model yaml") if opt.cfg else ""
        if not isinstance(opt.hyp, dict):
            opt.hyp = resolve_hyp_path(opt.hyp)
        if not opt.cfg and not opt.weights:
            raise TrainError("either --cfg or --weights must be specified (--cfg <model.yaml> to train from scratch)")
        opt.weights = resolve_weights(opt.weights)
        opt.img_size = list(opt.img_size) + [opt.img_size[-1]] * (2 - len(opt.img_size))
        name = "evolve" if opt.evolve and opt.name == "exp" else opt.name
        opt.save_dir = str(increment_path(Path(opt.project) / name, exist_ok=opt.exist_ok or bool(opt.evolve)))
    opt.world_size, opt.global_rank, opt.total_batch_size = world_size, rank, opt.batch_size
    if world_size > 1 and opt.batch_size % world_size:
        raise FlagError(f"--batch-size {opt.batch_size} must be a multiple of WORLD_SIZE {world_size}")
    return opt
