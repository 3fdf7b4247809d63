"""Evaluate a detector on a dataset split: P, R, mAP@0.5, mAP@0.5:0.95 overall and per class, calibration, speed.

Usage (v6+ name; ``test.py`` is the same program with the v5.0 defaults):
    python val.py --data data/coco128.yaml --weights yolov5s.pt --img 640
    python val.py --data shapes.yaml --weights runs/train/exp/weights/best.pt --save-json --save-txt
    python val.py --task speed --weights yolov5s.pt      # conf 0.25, iou 0.45 timing run
    python val.py --task study --weights yolov5s.pt      # mAP and speed over image sizes 256..1536

The run folder (runs/val/expN) holds the batch mosaics, PR / F1 / P / R curves, confusion_matrix.png,
calibration.png and metrics.json. This file only parses the flags; the work is done by engine/val.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence, Union

FILE = Path(__file__).resolve()
ROOT = FILE.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from engine.cli import (add_device, add_dnn, add_imgsz, add_output, add_precision, add_thresholds,  # noqa: E402
                        add_weights, exit_process, run_cli)
from engine.val import (TASKS, coco80_to_coco91_class, process_batch, run, save_one_json,  # noqa: E402,F401
                        save_one_txt)
from engine.val.tasks import run_task  # noqa: E402
from utils.allocator import keep_freed_memory  # noqa: E402
from utils.calibration import MIN_CONF  # noqa: E402


def make_parser(prog: str = "val.py", project: Union[str, Path] = ROOT / "runs/val") -> argparse.ArgumentParser:
    """The val.py / test.py parser. Prefix abbreviations (``--img``, ``--batch``, ``--conf``, ``--iou``) work."""
    p = argparse.ArgumentParser(prog=prog, allow_abbrev=True,
                                description="Evaluate a YOLOv5 detector on a dataset split.")
    p.add_argument("--data", type=str, default="data/coco128.yaml", help="dataset.yaml path")
    add_weights(p, help="model weights (.pt, .torchscript, .ptl, .onnx); several .pt = ensemble")
    p.add_argument("--batch-size", type=int, default=32, help="batch size")
    add_imgsz(p, 640, pair=False)
    add_thresholds(p, conf=0.001, iou=0.6, max_det=300)
    p.add_argument("--task", default="val", choices=TASKS, help="train, val, test, speed or study")
    add_device(p)
    p.add_argument("--workers", type=int, default=8, help="max dataloader workers")
    p.add_argument("--single-cls", action="store_true", help="treat as single-class dataset")
    p.add_argument("--augment", action="store_true", help="augmented inference (TTA)")
    p.add_argument("--verbose", action="store_true", help="report mAP by class")
    p.add_argument("--save-txt", action="store_true", help="save results to *.txt")
    p.add_argument("--save-hybrid", action="store_true", help="save label+prediction hybrid results to *.txt")
    p.add_argument("--save-conf", action="store_true", help="save confidences in --save-txt labels")
    p.add_argument("--save-json", action="store_true", help="save a COCO-JSON results file and score it")
    add_output(p, project)
    add_precision(p)
    add_dnn(p)
    p.add_argument("--calib-conf", type=float, default=MIN_CONF,
                   help="lowest confidence counted by the calibration numbers (ECE, wrong-class rate)")
    return p


def parse_opt(argv: Optional[Sequence[str]] = None, prog: str = "val.py",
              project: Union[str, Path] = ROOT / "runs/val") -> argparse.Namespace:
    opt = make_parser(prog, project).parse_args(argv)
    opt.save_txt |= opt.save_hybrid
    if str(opt.data).endswith("coco.yaml"):
        opt.save_json = True  # v5.0: COCO is always scored with pycocotools
    return opt


def main(opt: argparse.Namespace, plot_prefix: str = "val") -> None:
    """Run the ``--task`` asked for (bad input raises utils.errors.UserError; :func:`cli` turns it into exit 1)."""
    keep_freed_memory()  # glibc: no page-fault churn (utils/allocator.py)
    run_task(opt, plot_prefix)


def cli(argv: Optional[Sequence[str]] = None) -> int:
    """The command line: exit status 0, 1 (bad input, one ERROR line), 2 (usage), 130 (Ctrl-C)."""
    return run_cli(main, parse_opt(argv))


if __name__ == "__main__":
    exit_process(cli(), __file__)
