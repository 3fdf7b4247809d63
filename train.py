"""Train a YOLOv5 model on a detection dataset (the command line; the workflow is engine/train).

Single process:
    python train.py --data data/shapes.yaml --cfg models/yolov5-shufflenetv2.yaml --weights '' --img 320
Resume the latest (or a given) run; with --epochs N, train it on to N epochs (also a finished run):
    python train.py --resume [runs/train/exp/weights/last.pt | runs/train/exp] [--epochs N]
Distributed (gloo on CPU, nccl on CUDA), batch split across ranks:
    torchrun --nproc_per_node 2 train.py --batch 32 --data ... --device cpu

Exit status: 0 trained (also when a plot after training failed), 1 bad input (one ERROR line), 2 bad flag syntax,
130 / 143 stopped by SIGINT / SIGTERM after saving last.pt (resume with --resume).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import torch

FILE = Path(__file__).resolve()
ROOT = FILE.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from engine.cli import exit_process, run_cli  # noqa: E402
from engine.train import workflow  # noqa: E402
from engine.train.options import BOX_LOSSES, CLS_LOSSES  # noqa: E402
from utils.allocator import keep_freed_memory  # noqa: E402

# ------------------------------------------------------------------------------------------------ options
class _EpochsGiven(argparse.Action):
    """``--epochs N``, noting that it was given: --resume keeps the run's own epochs unless it is."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.epochs_given = True


def parse_opt(known: bool = False, args: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """v5.0 flags with their defaults, the v6/v7 spellings as aliases of the same options, and the fork's own."""
    p = argparse.ArgumentParser(description="Train a YOLOv5 detector")  # allow_abbrev stays on (--img, --batch)
    p.add_argument("--weights", type=str, default="yolov5s.pt", help="initial weights path, '' = from scratch")
    p.add_argument("--cfg", type=str, default="", help="model.yaml path ('' = the yaml stored in --weights)")
    p.add_argument("--allow-partial-transfer", action="store_true",
                   help="train even when --weights fills less than half of the --cfg model (or none of its "
                        "backbone); without it that is an error")
    p.add_argument("--data", type=str, default="data/coco128.yaml", help="dataset.yaml path")
    p.add_argument("--hyp", type=str, default="data/hyps/hyp.scratch.yaml", help="hyperparameters path")
    p.add_argument("--epochs", type=int, default=300, action=_EpochsGiven,
                   help="total training epochs; with --resume: train that run on to this many (default: its own)")
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
    p.add_argument("--fp32", action="store_true",
                   help="exact fp32 training (default: fp16 autocast + GradScaler on CUDA; on CPU bf16 autocast "
                        "where the CPU runs bf16 natively (AMX / AVX512-BF16), fp32 elsewhere)")
    p.add_argument("--bf16", action="store_true",
                   help="bf16 autocast training on any device (CPU default where native; emulated, slow, elsewhere)")
    return p.parse_known_args(args)[0] if known else p.parse_args(args)


def main(opt: argparse.Namespace) -> argparse.Namespace:
    """Train (or --evolve / --resume) per the parsed options; returns the resolved options."""
    keep_freed_memory()  # glibc: no page-fault churn, in dataloader workers and DDP ranks too
    return workflow.main(opt, defaults=parse_opt(True, args=[]))


def train(hyp: Union[str, Dict[str, Any]], opt: argparse.Namespace, device: torch.device):
    """v5.0 ``train(hyp, opt, device)``: ``opt`` as prepared by :func:`main` (save_dir, total_batch_size, ...)."""
    keep_freed_memory()
    return workflow.train(hyp, opt, device)


def run(**kwargs: Any) -> argparse.Namespace:
    """Programmatic entry point: ``import train; train.run(data='data/shapes.yaml', imgsz=320, weights='')``."""
    opt = parse_opt(True, args=[])
    aliases = {"imgsz": "img_size", "img": "img_size", "noval": "notest", "batch": "batch_size"}
    for k, v in kwargs.items():
        k = aliases.get(k, k)
        if k == "img_size" and isinstance(v, int):
            v = [v]
        setattr(opt, k, v)
    opt.epochs_given = "epochs" in kwargs
    return main(opt)


def cli(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry; returns the exit status (see the module docstring)."""
    return run_cli(main, parse_opt(args=list(argv) if argv is not None else None))


if __name__ == "__main__":
    exit_process(cli(), __file__)
