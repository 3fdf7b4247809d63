"""The programs behind ``val.py --task ...`` / ``test.py``: evaluate a split, time the model, or sweep image sizes.

:func:`check_options` validates every numeric flag before anything is loaded; :func:`run_task` runs the task.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import List

import numpy as np

from engine.cli import FlagError, check_at_least, check_fraction
from engine.val.validator import check_task, run
from utils.files import increment_path
from utils.log import LOGGER
from utils.plots import plot_study_txt, zip_files

STUDY_SIZES = list(range(256, 1536 + 128, 128))  # --task study image sizes
RUN_KEYS = ("data", "weights", "batch_size", "imgsz", "conf_thres", "iou_thres", "task", "device", "workers",
            "single_cls", "augment", "verbose", "save_txt", "save_hybrid", "save_conf", "save_json", "project",
            "name", "exist_ok", "half", "max_det", "dnn", "fp32", "calib_conf")


def check_options(opt: argparse.Namespace) -> None:
    """Every numeric flag in range, and no contradicting flags (FlagError naming the flag)."""
    check_task(opt.task)
    check_at_least(opt, "batch_size", 1)
    check_at_least(opt, "imgsz", 32)
    check_fraction(opt, "conf_thres", "iou_thres", "calib_conf")
    check_at_least(opt, "max_det", 1)
    check_at_least(opt, "workers", 0)
    if opt.half and opt.fp32:
        raise FlagError("--half and --fp32 contradict each other: pass one of them")


def run_kwargs(opt: argparse.Namespace, plot_prefix: str = "val") -> dict:
    """Keyword arguments of :func:`engine.val.validator.run` from parsed flags."""
    kw = {k: getattr(opt, k) for k in RUN_KEYS if hasattr(opt, k)}
    if isinstance(kw["weights"], list) and len(kw["weights"]) == 1:
        kw["weights"] = kw["weights"][0]
    kw["plot_prefix"] = plot_prefix
    return kw


def run_task(opt: argparse.Namespace, plot_prefix: str = "val") -> None:
    """Run ``opt.task``: train/val/test evaluate that split, speed times it, study sweeps image sizes."""
    check_options(opt)
    kw = run_kwargs(opt, plot_prefix)
    if opt.task in ("train", "val", "test"):
        if opt.conf_thres > 0.001:
            LOGGER.info(f"WARNING: confidence threshold {opt.conf_thres} > 0.001 produces invalid mAP values")
        run(**kw)
    elif opt.task == "speed":  # timing at detection thresholds, no plots / json
        for w in opt.weights:
            run(**dict(kw, weights=w, conf_thres=0.25, iou_thres=0.45, save_json=False, plots=False))
    elif opt.task == "study":
        study(opt, kw)


def study(opt: argparse.Namespace, kw: dict) -> List[Path]:
    """mAP and speed against image size: one ``study_<data>_<weights>.txt`` per weights file (rows: 7 results
    + 3 times per size), zipped to study.zip and plotted to study.png; all runs share one run folder."""
    save_dir = increment_path(Path(opt.project) / opt.name, exist_ok=opt.exist_ok)
    files = []
    for w in opt.weights:
        f = Path(f"study_{Path(str(opt.data)).stem}_{Path(w).stem}.txt")
        rows = []
        for size in STUDY_SIZES:
            LOGGER.info(f"\nRunning {f} --imgsz {size}...")
            r, _, t = run(**dict(kw, weights=w, imgsz=size, save_json=False, plots=False,
                                 project=save_dir.parent, name=save_dir.name, exist_ok=True))
            rows.append(r + t)
        np.savetxt(f, rows, fmt="%10.4g")
        files.append(f)
    zip_files(files, "study.zip")
    plot_study_txt(x=STUDY_SIZES, files=files)
    return files
