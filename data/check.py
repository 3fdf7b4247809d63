"""Check a dataset before training on it: class counts, unlabeled images, duplicates and train/val leakage, tiny
and elongated boxes, label rows the loader drops (see data/dataset_check.py for every finding).

    python data/check.py --data data/coco128.yaml
    python data/check.py --data datasets/mine/data.yaml --img 320 --min-boxes 20

Prints the findings and writes ``report.md``, ``report.json``, ``class_counts.png`` and ``box_sizes.png`` to
``--project/--name`` (runs/check/exp, exp2, ...). Exit status 0 whatever is found (it reports, it does not judge),
1 for a dataset that cannot be read (missing yaml or images).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

if __package__ in (None, ""):  # run as `python data/check.py`: import the project from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from data.check_report import summary_lines, write_report  # noqa: E402
from engine.cli import run_cli  # noqa: E402
from data.config import SPLITS, DatasetError, check_dataset  # noqa: E402
from data.dataset_check import CheckReport, CheckSettings, run_checks, split_from_path  # noqa: E402
from utils.files import increment_path  # noqa: E402
from utils.log import LOGGER, colorstr  # noqa: E402


def parse_opt(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset yaml")
    p.add_argument("--img", "--imgsz", "--img-size", dest="imgsz", type=int, default=640,
                   help="training image size (pixels): box sizes are judged at it")
    p.add_argument("--min-boxes", type=int, default=10, help="report classes with fewer training boxes")
    p.add_argument("--min-pixels", type=float, default=3.0, help="report boxes smaller than this at --img")
    p.add_argument("--max-aspect", type=float, default=20.0, help="report boxes more elongated than this")
    p.add_argument("--workers", type=int, default=CheckSettings().workers, help="threads for reading and hashing")
    p.add_argument("--project", default="runs/check", help="report to project/name")
    p.add_argument("--name", default="exp", help="report to project/name")
    p.add_argument("--exist-ok", action="store_true", help="reuse project/name instead of incrementing it")
    p.add_argument("--noplots", action="store_true", help="no class_counts.png / box_sizes.png")
    return p.parse_args(argv)


def check(opt: argparse.Namespace) -> CheckReport:
    """Read the yaml and its splits, run the checks, write the report; returns it."""
    for flag in ("imgsz", "min_boxes", "workers"):
        if getattr(opt, flag) < 1:
            raise DatasetError(f"--{flag.replace('_', '-')} {getattr(opt, flag)}: must be at least 1")
    data = check_dataset(opt.data, autodownload=False)
    names = list(data["names"])
    t = time.time()
    splits = []
    for name in SPLITS:
        if data.get(name):
            try:
                splits.append(split_from_path(name, data[name], len(names)))
            except FileNotFoundError as e:
                raise DatasetError(f"{opt.data}: {e}") from None
    settings = CheckSettings(opt.imgsz, opt.min_boxes, opt.min_pixels, opt.max_aspect, opt.workers)
    report = run_checks(splits, names, settings)
    save_dir = increment_path(Path(opt.project) / opt.name, exist_ok=opt.exist_ok)
    md = write_report(report, save_dir, plots=not opt.noplots)
    for line in summary_lines(report):
        LOGGER.info(line)
    LOGGER.info(f"Checked in {time.time() - t:.1f}s; report: {colorstr('bold', str(md))} (+ report.json"
                f"{'' if opt.noplots else ', class_counts.png, box_sizes.png'})")
    return report


def main(argv: Optional[List[str]] = None) -> int:
    """Command line; a dataset that cannot be read is one ``ERROR:`` line and exit status 1."""
    return run_cli(check, parse_opt(argv))


if __name__ == "__main__":
    sys.exit(main())
