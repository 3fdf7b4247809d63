"""Train a YOLOv5 model on a detection dataset.

Single process:
    python train.py --data data/shapes.yaml --cfg models/yolov5-shufflenetv2.yaml --weights '' --img 320
Resume the latest (or a given) run:
    python train.py --resume [runs/train/exp/weights/last.pt]
Distributed (gloo on CPU, nccl on CUDA), batch split across ranks:
    torchrun --nproc_per_node 2 train.py --batch 32 --data ... --device cpu
"""
from __future__ import annotations

import argparse
import glob
import math
import os
import random
import sys
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import yaml
from tqdm import tqdm

FILE = Path(__file__).resolve()
ROOT = FILE.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from utils.distributed import (LOCAL_RANK, RANK, WORLD_SIZE, broadcast_object,  # noqa: E402
                               convert_sync_batchnorm, init_distributed)
from utils.checks import check_img_size
from utils.files import check_file, increment_path
from utils.log import LOGGER, colorstr, set_logging
from utils.torch_utils import init_seeds, one_cycle
from data.label_stats import labels_to_class_weights, labels_to_image_weights  # noqa: E402
from utils.loggers import Loggers  # noqa: E402

NBS = 64  # nominal batch size: gradients are accumulated up to this many images per optimizer step
CLS_LOSSES = ("bce", "ce", "grouped")
BOX_LOSSES = ("iou", "giou", "diou", "ciou", "eiou", "siou")

# --evolve mutation metadata: key -> (mutation scale (0 = fixed), lower bound, upper bound)
EVOLVE_META = {
    "lr0": (1, 1e-5, 1e-1), "lrf": (1, 0.01, 1.0), "momentum": (0.3, 0.6, 0.98),
    "weight_decay": (1, 0.0, 0.001), "warmup_epochs": (1, 0.0, 5.0), "warmup_momentum": (1, 0.0, 0.95),
    "warmup_bias_lr": (1, 0.0, 0.2), "box": (1, 0.02, 0.2), "cls": (1, 0.2, 4.0), "cls_pw": (1, 0.5, 2.0),
    "obj": (1, 0.2, 4.0), "obj_pw": (1, 0.5, 2.0), "iou_t": (0, 0.1, 0.7), "anchor_t": (1, 2.0, 8.0),
    "anchors": (2, 2.0, 10.0), "fl_gamma": (0, 0.0, 2.0), "hsv_h": (1, 0.0, 0.1), "hsv_s": (1, 0.0, 0.9),
    "hsv_v": (1, 0.0, 0.9), "degrees": (1, 0.0, 45.0), "translate": (1, 0.0, 0.9), "scale": (1, 0.0, 0.9),
    "shear": (1, 0.0, 10.0), "perspective": (0, 0.0, 0.001), "flipud": (1, 0.0, 1.0), "fliplr": (0, 0.0, 1.0),
    "mosaic": (1, 0.0, 1.0), "mixup": (1, 0.0, 1.0), "copy_paste": (1, 0.0, 1.0),
}


class TrainError(Exception):
    """A user error (bad flag, file or dataset) reported as one line, exit status 1."""


# ------------------------------------------------------------------------------------------------ options
def parse_opt(known: bool = False, args: Optional[list] = None) -> argparse.Namespace:
    """v5.0 flags with their defaults, the v6/v7 spellings as aliases of the same options, and the fork's own."""
    p = argparse.ArgumentParser(description="Train a YOLOv5 detector")  # allow_abbrev stays on (--img, --batch)
    p.add_argument("--weights", type=str, default="yolov5s.pt", help="initial weights path, '' = from scratch")
    p.add_argument("--cfg", type=str, default="", help="model.yaml path ('' = the yaml stored in --weights)")
    p.add_argument("--data", type=str, default="data/coco128.yaml", help="dataset.yaml path")
    p.add_argument("--hyp", type=str, default="data/hyps/hyp.scratch.yaml", help="hyperparameters path")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--batch-size", "--batch", type=int, default=16,
                   help="total batch size for all devices/ranks (-1 = 16)")
    p.add_argument("--img-size", "--imgsz", "--img", dest="img_size", nargs="+", type=int, default=[640, 640],
                   help="[train, test] image sizes (one value = both)")
    p.add_argument("--rect", action="store_true", help="rectangular training")
    p.add_argument("--resume", nargs="?", const=True, default=False, help="resume most recent or given last.pt")
    p.add_argument("--nosave", action="store_true", help="only save final checkpoint")
    p.add_argument("--notest", "--noval", dest="notest", action="store_true", help="only validate final epoch")
    p.add_argument("--noautoanchor", action="store_true", help="disable AutoAnchor")
    p.add_argument("--noplots", action="store_true", help="save no plot files")
    p.add_argument("--evolve", type=int, nargs="?", const=300, default=None,
                   help="evolve hyperparameters for N generations (default 300)")
    p.add_argument("--bucket", type=str, default="", help="gsutil bucket (not used offline)")
    p.add_argument("--cache", "--cache-images", dest="cache", nargs="?", const="ram", default=None,
                   choices=["ram", "disk"], help="cache images in ram (default) or on disk")
    p.add_argument("--image-weights", action="store_true", help="class-weighted image selection for training")
    p.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    p.add_argument("--multi-scale", action="store_true", help="vary img-size +/- 50%%")
    p.add_argument("--single-cls", action="store_true", help="train multi-class data as single-class")
    p.add_argument("--optimizer", type=str, choices=["SGD", "Adam", "AdamW"], default="SGD", help="optimizer")
    p.add_argument("--adam", dest="optimizer", action="store_const", const="Adam", help="= --optimizer Adam")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm, DDP mode only (works on CPU too)")
    p.add_argument("--local_rank", "--local-rank", type=int, default=-1, help="DDP launcher argument")
    p.add_argument("--workers", type=int, default=8, help="maximum number of dataloader workers")
    p.add_argument("--project", default="runs/train", help="save to project/name")
    p.add_argument("--entity", default=None, help="W&B entity (not used)")
    p.add_argument("--name", default="exp", help="save to project/name")
    p.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    p.add_argument("--quad", action="store_true", help="quad dataloader")
    p.add_argument("--linear-lr", dest="linear_lr", action="store_true", help="linear LR decay")
    p.add_argument("--cos-lr", dest="linear_lr", action="store_false", help="cosine LR decay (the default)")
    p.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing epsilon")
    p.add_argument("--upload_dataset", nargs="?", const=True, default=False, help="W&B upload (not used)")
    p.add_argument("--bbox_interval", type=int, default=-1, help="W&B bbox logging interval (not used)")
    p.add_argument("--save-period", "--save_period", dest="save_period", type=int, default=-1,
                   help="save weights/epoch{N}.pt every N epochs (< 1 = never)")
    p.add_argument("--artifact_alias", type=str, default="latest", help="W&B artifact version (not used)")
    p.add_argument("--patience", type=int, default=100, help="early stopping patience (epochs without gain)")
    p.add_argument("--freeze", nargs="+", type=int, default=[0],
                   help="freeze layers: one number = first N layers, several = those layer indices")
    p.add_argument("--seed", type=int, default=0, help="global training seed")
    p.add_argument("--cls-loss", type=str, choices=CLS_LOSSES, default=None,
                   help="class loss: bce (sigmoid, upstream) or ce (softmax); default: hyp cls_loss, else bce")
    p.add_argument("--box-loss", type=str, choices=BOX_LOSSES, default=None,
                   help="box regression IoU loss; default: hyp box_loss, else ciou")
    return p.parse_known_args(args)[0] if known else p.parse_args(args)


def resolve_hyp_path(hyp: str) -> str:
    """Hyp file path; the v5.0 location ``data/hyp.X.yaml`` also finds the v6.0 ``data/hyps/hyp.X.yaml``."""
    for candidate in (hyp, ROOT / hyp, ROOT / "data" / "hyps" / Path(hyp).name):
        if Path(candidate).is_file():
            return str(candidate)
    try:
        return check_file(hyp, what="--hyp file")
    except FileNotFoundError as e:
        raise TrainError(str(e)) from None


def load_hyp(hyp, opt: argparse.Namespace) -> dict:
    """Hyperparameters from a yaml path or dict, with the --cls-loss / --box-loss overrides applied."""
    if not isinstance(hyp, dict):
        with open(hyp, errors="ignore") as f:
            hyp = yaml.safe_load(f)
        if not isinstance(hyp, dict):
            raise TrainError(f"--hyp {opt.hyp}: not a yaml mapping of hyperparameters")
    hyp = dict(hyp)
    missing = [k for k in ("lr0", "lrf", "momentum", "weight_decay", "box", "cls", "obj") if k not in hyp]
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


def get_latest_run(search_dir: str = ".") -> str:
    """Most recently written ``last*.pt`` below ``search_dir`` ('' when there is none)."""
    runs = glob.glob(f"{search_dir}/**/last*.pt", recursive=True)
    return max(runs, key=os.path.getctime) if runs else ""


def resume_options(opt: argparse.Namespace) -> argparse.Namespace:
    """The original options of the run being resumed, from ``<run>/opt.yaml`` two levels above the checkpoint."""
    ckpt = opt.resume if isinstance(opt.resume, str) else get_latest_run()
    if not ckpt:
        raise TrainError(f"--resume: no last*.pt checkpoint found under {Path.cwd()}; "
                         "pass one, e.g. --resume runs/train/exp/weights/last.pt")
    if not Path(ckpt).is_file():
        raise TrainError(f"--resume {ckpt}: checkpoint not found")
    opt_file = Path(ckpt).parent.parent / "opt.yaml"
    if not opt_file.is_file():
        raise TrainError(f"--resume {ckpt}: {opt_file} (the options of that run) not found")
    with open(opt_file, errors="ignore") as f:
        saved = yaml.safe_load(f) or {}
    new = parse_opt(known=True, args=[])  # defaults for options added after that run was started
    for k, v in saved.items():
        setattr(new, {"noval": "notest", "imgsz": "img_size", "save-period": "save_period"}.get(k, k), v)
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
    LOGGER.info(f"Resuming training from {ckpt}")
    return new


# ------------------------------------------------------------------------------------------------ helpers
class EarlyStopping:
    """Stop when fitness has not improved for ``patience`` epochs (<= 0 disables)."""

    def __init__(self, patience: int = 30):
        self.best_fitness, self.best_epoch = 0.0, 0
        self.patience = patience if patience > 0 else float("inf")
        self.possible_stop = False  # the next epoch may be the last one: validate it

    def __call__(self, epoch: int, fitness: float) -> bool:
        if fitness >= self.best_fitness:
            self.best_epoch, self.best_fitness = epoch, fitness
        delta = epoch - self.best_epoch
        self.possible_stop = delta >= self.patience - 1
        stop = delta >= self.patience
        if stop:
            LOGGER.info(f"Stopping training early: no improvement in the last {self.patience} epochs; "
                        f"best results at epoch {self.best_epoch}. Change with --patience (0 = never stop).")
        return stop


def fitness_value(results) -> float:
    """0.1 * mAP@0.5 + 0.9 * mAP@0.5:0.95 of a (P, R, mAP@0.5, mAP@0.5:0.95, ...) row."""
    from utils.metrics import fitness
    return float(np.asarray(fitness(np.array(results, dtype=float).reshape(1, -1))).reshape(-1)[0])


def memory_usage(device: torch.device) -> str:
    """Reserved CUDA memory, or the process's peak RSS on CPU, as e.g. '1.23G'."""
    if device.type == "cuda":
        return f"{torch.cuda.memory_reserved(device) / 1e9:.3g}G"
    try:
        import resource
        return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.3g}G"  # KiB on Linux
    except (ImportError, AttributeError):
        return "0G"


# ------------------------------------------------------------------------------------------------ model
def load_weights(weights: str) -> dict:
    """Checkpoint dict of ``--weights`` (project format or an upstream .pt via the allow-list loader).

    A missing official weights name (yolov5s.pt, ...) is downloaded by ``engine.downloads.attempt_download``.
    """
    from engine.checkpoint import CheckpointError, load_checkpoint
    try:
        return load_checkpoint(weights, map_location="cpu")
    except FileNotFoundError as e:
        raise TrainError(f"--weights {weights}: {e} (use --weights '' --cfg <model.yaml> to train from scratch)") from None
    except CheckpointError as e:
        raise TrainError(f"--weights {weights}: {e}") from None


def checkpoint_model(ckpt: dict, weights: str):
    """(model yaml dict or None, float state_dict) of the ``model`` (else ``ema``) entry of a checkpoint."""
    from engine.checkpoint import CheckpointError, checkpoint_state_dict
    try:
        state_dict, cfg, _ = checkpoint_state_dict(ckpt, "model")
    except CheckpointError as e:
        raise TrainError(f"--weights {weights}: {e}") from None
    return cfg, state_dict


def build_model(opt, hyp: dict, nc: int, device: torch.device):
    """Model from --cfg (or the checkpoint's yaml) with weights transferred by name and shape; (model, ckpt)."""
    from models.model import Model
    from utils.torch_utils import intersect_dicts
    anchors = hyp.get("anchors")
    ckpt = None
    if str(opt.weights).endswith(".pt") or (opt.weights and Path(opt.weights).is_file()):
        ckpt = load_weights(opt.weights)
        ckpt_yaml, csd = checkpoint_model(ckpt, opt.weights)
        cfg = opt.cfg or ckpt_yaml
        if not cfg:
            raise TrainError(f"--weights {opt.weights}: the checkpoint stores no model yaml, pass --cfg")
        model = Model(cfg, ch=3, nc=nc, anchors=anchors).to(device)
        # anchors of a different model/hyp are not transferred (they are recomputed or come from the yaml)
        exclude = ["anchor"] if (opt.cfg or anchors) and not opt.resume else []
        csd = intersect_dicts(csd, model.state_dict(), exclude=exclude)
        model.load_state_dict(csd, strict=False)
        LOGGER.info(f"Transferred {len(csd)}/{len(model.state_dict())} items from {opt.weights}")
    else:
        if not opt.cfg:
            raise TrainError("--cfg: a model yaml is required when training from scratch (--weights '')")
        model = Model(opt.cfg, ch=3, nc=nc, anchors=anchors).to(device)
    return model, ckpt


def freeze_layers(model: nn.Module, freeze: list) -> None:
    """--freeze N freezes layers 0..N-1; several numbers freeze exactly those layer indices."""
    indices = list(range(freeze[0])) if len(freeze) == 1 else list(freeze)
    prefixes = tuple(f"model.{i}." for i in indices)
    for k, v in model.named_parameters():
        v.requires_grad = True
        if prefixes and k.startswith(prefixes):
            LOGGER.info(f"freezing {k}")
            v.requires_grad = False


def build_optimizer(model: nn.Module, name: str, lr: float, momentum: float, decay: float):
    """v5.0 parameter groups: 0 = norm-layer weights (no decay), 1 = other weights (decay), 2 = biases."""
    norm_types = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)
    g_norm, g_weight, g_bias = [], [], []
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            if pname == "bias":
                g_bias.append(p)
            elif isinstance(module, norm_types):
                g_norm.append(p)
            else:
                g_weight.append(p)
    if name == "Adam":
        optimizer = torch.optim.Adam(g_norm, lr=lr, betas=(momentum, 0.999))
    elif name == "AdamW":
        optimizer = torch.optim.AdamW(g_norm, lr=lr, betas=(momentum, 0.999), weight_decay=0.0)
    elif name == "SGD":
        optimizer = torch.optim.SGD(g_norm, lr=lr, momentum=momentum, nesterov=True)
    else:
        raise TrainError(f"--optimizer {name}: not one of SGD, Adam, AdamW")
    optimizer.add_param_group({"params": g_weight, "weight_decay": decay})
    optimizer.add_param_group({"params": g_bias})
    LOGGER.info(f"{colorstr('optimizer:')} {type(optimizer).__name__} with parameter groups "
                f"{len(g_norm)} weight (no decay), {len(g_weight)} weight (decay {decay:.3g}), {len(g_bias)} bias")
    return optimizer


def lr_lambda(hyp: dict, epochs: int, linear: bool):
    """LR factor per epoch: cosine one-cycle 1 -> lrf (default) or linear 1 -> lrf (--linear-lr)."""
    if linear:
        return lambda e: (1 - e / max(epochs - 1, 1)) * (1.0 - hyp["lrf"]) + hyp["lrf"]
    return one_cycle(1, hyp["lrf"], epochs)


def check_labels(dataset, nc: int, data: str) -> None:
    """Every label class must be < nc; otherwise name the first offending label file."""
    for lb, f in zip(dataset.labels, dataset.label_files):
        if len(lb) and int(lb[:, 0].max()) >= nc:
            raise TrainError(f"{f}: label class {int(lb[:, 0].max())} exceeds nc={nc} in {data} "
                             f"(possible class labels are 0-{nc - 1})")


# ------------------------------------------------------------------------------------------------ training
def train(hyp, opt: argparse.Namespace, device: torch.device):
    """Train per the options; returns the final (P, R, mAP@0.5, mAP@0.5:0.95, val box, obj, cls) results."""
    from engine.checkpoint import model_record, save_checkpoint
    from data.config import check_dataset
    from data.datasets import create_dataloader
    from utils.loss import CLS_ACTIVATION, ComputeLoss, warn_multilabel
    from utils.torch_utils import ModelEMA, de_parallel, torch_distributed_zero_first

    save_dir, epochs, batch_size = Path(opt.save_dir), opt.epochs, opt.total_batch_size
    plots = not opt.evolve and not opt.noplots
    main_rank = RANK in (-1, 0)
    w = save_dir / "weights"
    last, best = w / "last.pt", w / "best.pt"
    if main_rank:
        w.mkdir(parents=True, exist_ok=True)

    # hyperparameters (hyp.yaml is written before the gain scaling below)
    hyp = load_hyp(hyp, opt)
    LOGGER.info(colorstr("hyperparameters: ") + ", ".join(f"{k}={v}" for k, v in hyp.items()))
    opt.hyp = hyp.copy()
    if main_rank:
        with open(save_dir / "hyp.yaml", "w") as f:
            yaml.safe_dump(hyp, f, sort_keys=False)
        with open(save_dir / "opt.yaml", "w") as f:
            yaml.safe_dump({k: v for k, v in vars(opt).items() if k != "hyp"} | {"hyp": hyp}, f, sort_keys=False)
    loggers = Loggers(save_dir) if main_rank else None

    # data
    with torch_distributed_zero_first(LOCAL_RANK):
        try:
            data_dict = check_dataset(opt.data)
        except ValueError as e:  # malformed dataset yaml (nc / names mismatch, missing keys, ...)
            raise TrainError(str(e)) from None  # the message names the yaml
    train_path, val_path = data_dict["train"], data_dict["val"]
    nc = 1 if opt.single_cls else int(data_dict["nc"])
    names = list(data_dict["names"])
    if opt.single_cls and len(names) != 1:
        names = ["item"]
    if len(names) != nc:
        raise TrainError(f"{opt.data}: {len(names)} names found for nc={nc}")
    is_coco = str(opt.data).endswith("coco.yaml") and nc == 80

    # model
    init_seeds(opt.seed + 1 + RANK, deterministic=True)
    model, ckpt = build_model(opt, hyp, nc, device)
    freeze_layers(model, opt.freeze)
    gs = max(int(model.stride.max()), 32)
    nl = de_parallel(model).model[-1].nl
    imgsz, imgsz_test = [check_img_size(x, gs) for x in opt.img_size]

    # optimizer: accumulate to the nominal batch, weight decay scaled accordingly
    accumulate = max(round(NBS / batch_size), 1)
    hyp["weight_decay"] *= batch_size * accumulate / NBS
    lr0 = hyp["lr0"]
    optimizer = build_optimizer(model, opt.optimizer, lr0, hyp["momentum"], hyp["weight_decay"])
    lf = lr_lambda(hyp, epochs, opt.linear_lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lf)

    # dataloaders
    train_loader, dataset = create_dataloader(
        train_path, imgsz, batch_size // WORLD_SIZE, gs, opt.single_cls, hyp=hyp, augment=True, cache=opt.cache,
        rect=opt.rect, rank=LOCAL_RANK, workers=opt.workers, image_weights=opt.image_weights, quad=opt.quad,
        prefix=colorstr("train: "), shuffle=True, seed=opt.seed)
    check_labels(dataset, nc, opt.data)
    nb = len(train_loader)
    val_loader = None
    if main_rank:
        val_loader = create_dataloader(
            val_path, imgsz_test, batch_size // WORLD_SIZE * 2, gs, opt.single_cls, hyp=hyp,
            cache=None if opt.notest else opt.cache, rect=True, rank=-1, workers=opt.workers, pad=0.5,
            prefix=colorstr("val: "))[0]
        if not opt.resume:
            if plots:
                from utils.plots import plot_labels
                plot_labels(np.concatenate(dataset.labels, 0), names, save_dir)
            if not opt.noautoanchor:
                from engine.autoanchor import check_anchors
                check_anchors(dataset, model=model, thr=hyp["anchor_t"], imgsz=imgsz)
            model.half().float()  # pre-reduce anchor precision

    # EMA and the state of a resumed / fine-tuned checkpoint
    ema = ModelEMA(model) if main_rank else None
    start_epoch, best_fitness = 0, 0.0
    if ckpt is not None:
        start_epoch, best_fitness, epochs = restore_training_state(ckpt, opt, optimizer, ema, epochs)
    del ckpt
    if loggers:
        loggers.truncate(start_epoch if opt.resume else 0)  # rows of epochs about to be (re)trained go

    # DDP (the EMA keeps plain BatchNorm: it is copied before the SyncBatchNorm conversion)
    if opt.sync_bn and RANK != -1:
        model = convert_sync_batchnorm(model, device).to(device)
        LOGGER.info("Using SyncBatchNorm()")
    if RANK != -1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        model = DDP(model, device_ids=[LOCAL_RANK] if device.type == "cuda" else None,
                    output_device=LOCAL_RANK if device.type == "cuda" else None)

    # loss gains scale with the number of detection layers, classes and image size
    hyp["box"] *= 3 / nl
    hyp["cls"] *= nc / 80 * 3 / nl
    hyp["obj"] *= (imgsz / 640) ** 2 * 3 / nl
    hyp["label_smoothing"] = opt.label_smoothing
    m = de_parallel(model)
    m.nc, m.hyp, m.gr, m.names = nc, hyp, 1.0, names
    m.class_weights = labels_to_class_weights(dataset.labels, nc).to(device) * nc
    activation = CLS_ACTIVATION[hyp["cls_loss"]]
    groups = data_dict.get("cls_groups") if activation == "grouped" else None
    if activation == "grouped" and groups is None:
        raise TrainError(f"--cls-loss grouped: {opt.data} has no 'cls_groups' (the groups of exclusive classes)")
    m.set_class_activation(activation, groups)
    if ema is not None:
        ema.ema.set_class_activation(activation, groups)  # the validated / saved model decodes like the trained one
    compute_loss = ComputeLoss(m)
    if hyp["cls_loss"] == "ce":
        warn_multilabel(dataset.labels, dataset.label_files, "ce")

    # train
    nw = max(round(hyp.get("warmup_epochs", 3.0) * nb), 100)  # warmup iterations (v7.0 minimum 100)
    scheduler.last_epoch = start_epoch - 1
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    stopper, stop = EarlyStopping(patience=opt.patience), False
    maps = np.zeros(nc)
    results = (0, 0, 0, 0, 0, 0, 0)
    state = SimpleNamespace(accumulate=accumulate, last_opt_step=-1, nw=nw, nb=nb, gs=gs, imgsz=imgsz, lf=lf,
                            batch_size=batch_size, epochs=epochs, plots=plots)
    t0, epoch = time.time(), start_epoch
    LOGGER.info(f"Image sizes {imgsz} train, {imgsz_test} test\n"
                f"Using {train_loader.num_workers} dataloader workers\n"
                f"Logging results to {colorstr('bold', save_dir)}\n"
                f"Starting training for {epochs} epochs...")
    for epoch in range(start_epoch, epochs):
        model.train()
        if opt.image_weights:
            resample_images(dataset, m, maps, nc)
        mloss = train_one_epoch(model, train_loader, optimizer, scaler, ema, compute_loss, hyp, opt, device,
                                epoch, state, save_dir, names)
        lr = [x["lr"] for x in optimizer.param_groups]
        scheduler.step()

        if main_rank:
            ema.update_attr(m, include=["yaml", "nc", "hyp", "gr", "names", "stride", "class_weights"])
            final_epoch = epoch + 1 == epochs or stopper.possible_stop
            if not opt.notest or final_epoch:
                import val
                results, maps, _ = val.run(data_dict, batch_size=batch_size // WORLD_SIZE * 2, imgsz=imgsz_test,
                                           model=ema.ema, single_cls=opt.single_cls, dataloader=val_loader,
                                           save_dir=save_dir, plots=False, compute_loss=compute_loss,
                                           half=device.type == "cuda", verbose=False)
            loggers.log_epoch(epoch, list(mloss[:3]) + list(results) + lr)
            fi = fitness_value(results)
            if fi > best_fitness:
                best_fitness = fi
            stop = stopper(epoch, fi)
            if not opt.nosave or (final_epoch and not opt.evolve):
                ckpt = {"epoch": epoch, "best_fitness": float(best_fitness),
                        "model": model_record(de_parallel(model)), "ema": model_record(ema.ema),
                        "updates": ema.updates, "optimizer": optimizer.state_dict(),
                        "opt": {k: v for k, v in vars(opt).items()}, "date": datetime.now().isoformat()}
                save_checkpoint(ckpt, last)
                if best_fitness == fi:
                    save_checkpoint(ckpt, best)
                if opt.save_period > 0 and epoch % opt.save_period == 0:
                    save_checkpoint(ckpt, w / f"epoch{epoch}.pt")
                del ckpt
        if RANK != -1:
            stop = broadcast_object(stop, 0)
        if stop:
            break

    if main_rank:
        LOGGER.info(f"\n{epoch - start_epoch + 1} epochs completed in {(time.time() - t0) / 3600:.3f} hours.")
        results = finish_training(last, best, opt, data_dict, val_loader, save_dir, compute_loss, device,
                                  is_coco, plots, results, loggers, epoch)
    torch.cuda.empty_cache()
    return results


def restore_training_state(ckpt: dict, opt, optimizer, ema, epochs: int):
    """Optimizer, EMA, best fitness and epoch from a checkpoint; returns (start_epoch, best_fitness, epochs)."""
    if ckpt.get("optimizer") is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    best_fitness = ckpt.get("best_fitness") or 0.0
    best_fitness = float(np.asarray(best_fitness, dtype=float).reshape(-1)[0])
    if ema is not None and ckpt.get("ema") is not None:
        record = ckpt["ema"]
        sd = record["state_dict"] if isinstance(record, dict) else record.float().state_dict()
        ema.ema.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
        ema.updates = int(ckpt.get("updates") or 0)
    epoch = ckpt.get("epoch", -1)
    start_epoch = (epoch if isinstance(epoch, int) else -1) + 1
    if opt.resume:
        if start_epoch <= 0:
            raise TrainError(f"--resume {opt.weights}: training to {epochs} epochs is finished, nothing to resume")
        LOGGER.info(f"Resuming training from {opt.weights} from epoch {start_epoch} to {epochs} total epochs")
    if epochs < start_epoch:
        LOGGER.info(f"{opt.weights} has been trained for {start_epoch} epochs. "
                    f"Fine-tuning for {epochs} more epochs.")
        epochs += start_epoch
    return start_epoch, best_fitness, epochs


def resample_images(dataset, model, maps: np.ndarray, nc: int) -> None:
    """--image-weights: draw this epoch's images with weights from class weights and per-class mAP."""
    if RANK in (-1, 0):
        cw = model.class_weights.cpu().numpy() * (1 - maps) ** 2 / nc
        iw = labels_to_image_weights(dataset.labels, nc, cw)
        indices = random.choices(range(dataset.n), weights=iw, k=dataset.n)
    else:
        indices = None
    dataset.indices = broadcast_object(indices, 0) if RANK != -1 else indices


def train_one_epoch(model, loader, optimizer, scaler, ema, compute_loss, hyp, opt, device, epoch, st, save_dir,
                    names):
    """One pass over the training data with warmup, multi-scale, AMP and gradient accumulation; mean losses."""
    cuda = device.type == "cuda"
    mloss = torch.zeros(4, device=device)  # running mean box, obj, cls, total
    if RANK != -1 and hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    LOGGER.info(("\n" + "%10s" * 8) % ("Epoch", "mem", "box", "obj", "cls", "total", "labels", "img_size"))
    pbar = enumerate(loader)
    if RANK in (-1, 0):
        pbar = tqdm(pbar, total=st.nb, bar_format="{l_bar}{bar:10}{r_bar}")
    optimizer.zero_grad()
    for i, (imgs, targets, paths, _) in pbar:
        ni = i + st.nb * epoch  # integrated batch count since the start of training
        imgs = imgs.to(device, non_blocking=True).float() / 255

        if ni <= st.nw:  # warmup: bias LR falls from warmup_bias_lr, others rise from 0; momentum rises
            xi = [0, st.nw]
            st.accumulate = max(1, int(np.interp(ni, xi, [1, NBS / st.batch_size]).round()))
            for j, x in enumerate(optimizer.param_groups):
                start = hyp.get("warmup_bias_lr", 0.1) if j == 2 else 0.0
                x["lr"] = float(np.interp(ni, xi, [start, x["initial_lr"] * st.lf(epoch)]))
                if "momentum" in x:
                    x["momentum"] = float(np.interp(ni, xi, [hyp.get("warmup_momentum", 0.8), hyp["momentum"]]))

        if opt.multi_scale:
            sz = random.randrange(int(st.imgsz * 0.5), int(st.imgsz * 1.5) + st.gs) // st.gs * st.gs
            sf = sz / max(imgs.shape[2:])
            if sf != 1:
                ns = [math.ceil(x * sf / st.gs) * st.gs for x in imgs.shape[2:]]
                imgs = nn.functional.interpolate(imgs, size=ns, mode="bilinear", align_corners=False)

        with torch.autocast(device_type="cuda", enabled=cuda):
            pred = model(imgs)
            loss, loss_items = compute_loss(pred, targets.to(device))
            if RANK != -1:
                loss *= WORLD_SIZE  # DDP averages gradients over ranks
            if opt.quad:
                loss *= 4.0
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss {loss_items.tolist()} at epoch {epoch} batch {i}; "
                                     "lower lr0 (--hyp) or check the labels")
        scaler.scale(loss).backward()

        if ni - st.last_opt_step >= st.accumulate:
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad()
            if ema is not None:
                ema.update(model)
            st.last_opt_step = ni

        if RANK in (-1, 0):
            items = loss_items.detach().reshape(-1)[:4].to(device)
            if items.numel() == 3:  # v6-style loss items: append the total
                items = torch.cat([items, items.sum().reshape(1)])
            mloss = (mloss * i + items) / (i + 1)
            pbar.set_description(("%10s" * 2 + "%10.4g" * 6) % (
                f"{epoch}/{st.epochs - 1}", memory_usage(device), *mloss.tolist(), targets.shape[0],
                imgs.shape[-1]))
            if st.plots and ni < 3:
                from utils.plots import plot_images
                plot_images(imgs, targets, paths, fname=save_dir / f"train_batch{ni}.jpg", names=names)
    return mloss.cpu().numpy()


def finish_training(last, best, opt, data_dict, val_loader, save_dir, compute_loss, device, is_coco, plots,
                    results, loggers, epoch):
    """Strip the optimizer from last/best, validate best.pt with plots and draw results.png."""
    from engine.checkpoint import strip_optimizer
    for f in (last, best):
        if f.exists():
            strip_optimizer(f)
    if not opt.evolve and best.exists():
        import val
        from engine.checkpoint import attempt_load
        LOGGER.info(f"\nValidating {best}...")
        results, _, _ = val.run(data_dict, batch_size=opt.total_batch_size // WORLD_SIZE * 2,
                                imgsz=check_img_size(opt.img_size[-1], 32), model=attempt_load(best, device),
                                iou_thres=0.65 if is_coco else 0.60, single_cls=opt.single_cls,
                                dataloader=val_loader, save_dir=save_dir, save_json=is_coco, verbose=True,
                                plots=plots, compute_loss=compute_loss, half=device.type == "cuda")
    if plots:
        from utils.plots import plot_results
        plot_results(file=save_dir / "results.csv")
        loggers.log_images([save_dir / f for f in ("results.png", "confusion_matrix.png", "F1_curve.png",
                                                   "PR_curve.png", "P_curve.png", "R_curve.png")], epoch)
    loggers.close()
    LOGGER.info(f"Results saved to {colorstr('bold', save_dir)}")
    return results


# ------------------------------------------------------------------------------------------------ evolve
def evolve(hyp: dict, opt: argparse.Namespace, device: torch.device) -> None:
    """Genetic hyperparameter search: mutate the best earlier hyps, train, append results to evolve.txt."""
    base = load_hyp(hyp, opt)
    keys = [k for k in EVOLVE_META if k in base and isinstance(base[k], (int, float))]
    opt.notest, opt.nosave = True, True  # only validate / save the final epoch
    yaml_file = Path(opt.save_dir) / "hyp_evolved.yaml"
    evolve_txt = Path("evolve.txt")
    for _ in range(opt.evolve):
        hyp = dict(base)
        if evolve_txt.exists():
            x = np.loadtxt(evolve_txt, ndmin=2)
            if x.shape[1] == 7 + len(keys):
                # own RNG: train() re-seeds the global ones, which would repeat the same mutation every time
                rng = np.random.default_rng([opt.seed, len(x)])
                hyp.update(mutate(x, keys, rng))
        results = train(hyp.copy(), opt, device)
        write_evolve(hyp, keys, results, evolve_txt, yaml_file)
    try:
        from utils.plots import plot_evolution
        plot_evolution(yaml_file)
    except (ImportError, ValueError, OSError) as e:
        LOGGER.warning(f"evolve plot skipped: {e}")
    LOGGER.info(f"Hyperparameter evolution complete. Best results saved as: {yaml_file}\n"
                f"Command to train a new model with these hyperparameters: $ python train.py --hyp {yaml_file}")


def mutate(x: np.ndarray, keys: list, rng: np.random.Generator) -> dict:
    """New hyps from the (up to 5) fittest rows of evolve.txt: pick a parent by fitness, then mutate it."""
    from utils.metrics import fitness
    x = x[np.argsort(-fitness(x))][:5]
    w = fitness(x) - fitness(x).min() + 1e-6
    parent = x[rng.choice(len(x), p=w / w.sum())]
    scale = np.array([EVOLVE_META[k][0] for k in keys], dtype=float)
    mp, s = 0.8, 0.2  # mutation probability and sigma
    v = np.ones(len(keys))
    while np.all(v == 1) and scale.any():  # mutate until something changes
        v = (scale * (rng.random(len(keys)) < mp) * rng.standard_normal(len(keys)) * rng.random() * s + 1)
        v = v.clip(0.3, 3.0)
    out = {}
    for i, k in enumerate(keys):
        lo, hi = EVOLVE_META[k][1:]
        out[k] = round(float(min(max(parent[i + 7] * v[i], lo), hi)), 5)
    return out


def write_evolve(hyp: dict, keys: list, results, evolve_txt: Path, yaml_file: Path) -> None:
    """Append one generation (7 results + the evolved hyps) to evolve.txt; write the best hyps to yaml."""
    from utils.metrics import fitness
    row = np.array(list(results)[:7] + [hyp[k] for k in keys], dtype=float)
    with open(evolve_txt, "a") as f:
        f.write(("%10.4g" * len(row)) % tuple(row) + "\n")
    x = np.loadtxt(evolve_txt, ndmin=2)
    x = x[np.argsort(-fitness(x))]
    np.savetxt(evolve_txt, x, "%10.4g")
    # evolved keys first, in evolve.txt column order (plot_evolution pairs columns with the yaml key order)
    best = {k: float(x[0, i + 7]) for i, k in enumerate(keys)} | {k: v for k, v in hyp.items() if k not in keys}
    yaml_file.parent.mkdir(parents=True, exist_ok=True)
    with open(yaml_file, "w") as f:
        f.write(f"# Hyperparameter evolution results\n# Generations: {len(x)}\n"
                f"# Best metrics (P, R, mAP@0.5, mAP@0.5:0.95, val box, obj, cls): {x[0, :7].tolist()}\n")
        yaml.safe_dump(best, f, sort_keys=False)
    LOGGER.info(f"{colorstr('evolve: ')}{len(x)} generations in {evolve_txt}, best hyps in {yaml_file}")


# ------------------------------------------------------------------------------------------------ entry
def prepare_options(opt: argparse.Namespace) -> argparse.Namespace:
    """Resolve files, sizes, the run directory and the DDP fields of the options."""
    if opt.resume and not opt.evolve:
        opt = resume_options(opt)
    else:
        opt.data = check_file(opt.data, what="--data yaml") if opt.data else opt.data
        if not opt.data:
            raise TrainError("--data: a dataset yaml is required")
        opt.cfg = check_file(opt.cfg, what="--cfg model yaml") if opt.cfg else ""
        if not isinstance(opt.hyp, dict):
            opt.hyp = resolve_hyp_path(opt.hyp)
        if not opt.cfg and not opt.weights:
            raise TrainError("either --cfg or --weights must be specified")
        if opt.batch_size == -1:
            LOGGER.info("--batch-size -1: using batch size 16")
            opt.batch_size = 16
        if opt.batch_size < 1:
            raise TrainError(f"--batch-size {opt.batch_size}: must be >= 1")
        if len(opt.img_size) > 2:
            raise TrainError(f"--img-size {opt.img_size}: give one size, or two sizes [train, test]")
        opt.img_size.extend([opt.img_size[-1]] * (2 - len(opt.img_size)))
        name = "evolve" if opt.evolve and opt.name == "exp" else opt.name
        opt.save_dir = str(increment_path(Path(opt.project) / name, exist_ok=opt.exist_ok or bool(opt.evolve)))
    opt.world_size = WORLD_SIZE
    opt.global_rank = RANK
    opt.total_batch_size = opt.batch_size
    return opt


def main(opt: argparse.Namespace):
    set_logging(RANK)
    opt = prepare_options(opt)
    if LOCAL_RANK == -1 and opt.local_rank != -1:
        raise TrainError("--local_rank given without the launcher's environment; use "
                         "'torchrun --nproc_per_node N train.py ...'")
    from utils.torch_utils import select_device
    device = select_device(opt.device, batch_size=opt.batch_size)
    if LOCAL_RANK != -1:
        if opt.batch_size % WORLD_SIZE:
            raise TrainError(f"--batch-size {opt.batch_size} must be a multiple of WORLD_SIZE {WORLD_SIZE}")
        if opt.evolve:
            raise TrainError("--evolve is not compatible with DDP training")
        if opt.image_weights:
            LOGGER.info("--image-weights with DDP: every rank samples from the indices drawn by rank 0")
        if device.type == "cuda":
            torch.cuda.set_device(LOCAL_RANK)
            device = torch.device("cuda", LOCAL_RANK)
        backend = init_distributed(device)
        opt.save_dir = broadcast_object(opt.save_dir, 0)  # every rank uses rank 0's run directory
        LOGGER.info(f"DDP: {WORLD_SIZE} processes, backend {backend}, batch {opt.batch_size // WORLD_SIZE} per rank")
    try:
        if opt.evolve:
            evolve(opt.hyp, opt, device)
        else:
            train(opt.hyp, opt, device)
    finally:
        if WORLD_SIZE > 1 and RANK != -1:
            import torch.distributed as dist
            if dist.is_initialized():
                dist.destroy_process_group()
    return opt


def run(**kwargs) -> argparse.Namespace:
    """Programmatic entry point: ``import train; train.run(data='data/shapes.yaml', imgsz=320, weights='')``."""
    opt = parse_opt(True, args=[])
    aliases = {"imgsz": "img_size", "img": "img_size", "noval": "notest", "batch": "batch_size"}
    for k, v in kwargs.items():
        k = aliases.get(k, k)
        if k == "img_size" and isinstance(v, int):
            v = [v]
        setattr(opt, k, v)
    return main(opt)


def user_errors() -> tuple:
    """Exception types that mean bad input (reported as one line) rather than a bug."""
    errors = [TrainError, FileNotFoundError, yaml.YAMLError]
    for module, name in (("engine.checkpoint", "CheckpointError"), ("data.config", "DatasetError"),
                         ("data.datasets", "DatasetError"), ("models.builder", "ModelYamlError")):
        try:
            errors.append(getattr(__import__(module, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def cli(argv: Optional[list] = None) -> int:
    """Command-line entry: bad input ends with one ERROR line and exit status 1 (argparse errors exit 2)."""
    opt = parse_opt(args=argv)
    try:
        main(opt)
    except user_errors() as e:
        LOGGER.error(f"{colorstr('red', 'bold', 'ERROR:')} {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli())
