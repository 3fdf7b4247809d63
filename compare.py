"""Answer "BCE or softmax CE?" with numbers: train each class-loss variant with several seeds, evaluate, report.

    python compare.py --data data/shapes.yaml --cfg models/yolov5-shufflenetv2.yaml --weights '' --img 256 \
        --epochs 15 --seeds 3 --cls-loss bce ce
    python compare.py ... --cls-loss bce ce --variant "ce fl_gamma=1.5" --variant "bce --label-smoothing 0.05"

Every run is ``train.py <your flags> --cls-loss L [variant options] --seed S`` into
``runs/compare/expN/runs/<variant>-s<S>``, then ``val.py`` on its best.pt (same data and image size). Flags
compare.py does not know go to train.py unchanged, the same for every run. ``runs/compare/expN/report.md``
(and report.json, PNG plots) hold mean +- std per variant and, per pair of variants, whether the difference
exceeds the seed spread. Running the same command again resumes in the same expN and skips finished runs.
Variant syntax: ``LOSS [name=NAME] [HYP_KEY=VALUE ...] [--train-flag VALUE ...]`` (engine/compare/variants.py).
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

FILE = Path(__file__).resolve()
ROOT = FILE.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from engine.cli import FlagError, add_device, check_at_least, run_cli  # noqa: E402
from engine.compare import run_comparison  # noqa: E402
from engine.compare.variants import CLS_LOSSES  # noqa: E402
from utils.log import set_logging  # noqa: E402


def make_parser() -> argparse.ArgumentParser:
    """compare.py's own flags; abbreviations are off so train.py flags (e.g. --workers) never match them."""
    p = argparse.ArgumentParser(prog="compare.py", allow_abbrev=False,
                                description="Compare class losses over several seeds; unknown flags go to train.py.")
    p.add_argument("--data", type=str, default="data/coco128.yaml", help="dataset.yaml path (train and val)")
    p.add_argument("--img-size", "--imgsz", "--img", dest="img_size", nargs="+", type=int, default=[640],
                   help="train [val] image size, as train.py")
    p.add_argument("--hyp", type=str, default="", help="base hyperparameters (default: train.py's)")
    p.add_argument("--cls-loss", nargs="+", choices=CLS_LOSSES, default=None,
                   help="plain variants, one per class loss (default: bce ce when no --variant)")
    p.add_argument("--variant", action="append", default=[], metavar="'LOSS [KEY=VALUE] [--flag V]'",
                   help="a variant: class loss, hyp overrides, train.py flags, e.g. \"ce fl_gamma=1.5\" (repeat)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per variant (seed-start, seed-start+1, ...)")
    p.add_argument("--seed-start", type=int, default=0, help="first seed")
    p.add_argument("--project", default="runs/compare", help="save to project/name")
    p.add_argument("--name", default=None, help="experiment folder name (default: the exp* with the same "
                                                "settings, else a new expN)")
    p.add_argument("--exist-ok", action="store_true", help="reuse project/name even when its settings differ")
    p.add_argument("--fresh", action="store_true", help="start a new experiment folder, never resume")
    p.add_argument("--jobs", type=int, default=None, help="runs in parallel (default: one per CPU core)")
    p.add_argument("--threads-per-run", "--workers-per-run", dest="threads_per_run", type=int, default=None,
                   help="torch/OpenMP threads per run (default: cores / jobs)")
    p.add_argument("--workers", type=int, default=None, help="dataloader workers per run (default: threads per run)")
    p.add_argument("--ddp", action="store_true", help="train each run with torchrun over all cores, one at a time")
    add_device(p)
    p.add_argument("--val-script", type=str, default=None, help=argparse.SUPPRESS)  # tests: a stand-in val.py
    return p


def parse_opt(argv: Optional[Sequence[str]] = None) -> Tuple[argparse.Namespace, List[str]]:
    """compare.py's options and the train.py arguments it passes through."""
    opt, train_extra = make_parser().parse_known_args(argv)
    return opt, train_extra


def check_opt(opt: argparse.Namespace) -> None:
    check_at_least(opt, "img_size", 32)
    for name in ("jobs", "threads_per_run", "workers"):
        if getattr(opt, name) is not None:
            check_at_least(opt, name, 0 if name == "workers" else 1)
    if len(opt.img_size) > 2:
        raise FlagError(f"--img {' '.join(map(str, opt.img_size))}: one or two sizes (train [val])")
    if opt.ddp and opt.jobs and opt.jobs > 1:
        raise FlagError("--ddp runs one training at a time over all cores; it does not combine with --jobs > 1")


def run(opt: argparse.Namespace, train_extra: List[str], argv: Sequence[str]) -> dict:
    """Check the flags and run the comparison; returns the report dict."""
    check_opt(opt)
    return run_comparison(opt, train_extra, ["python", "compare.py", *argv], val_script=opt.val_script)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Programmatic entry point (user errors raise :class:`utils.errors.UserError`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    opt, train_extra = parse_opt(argv)
    return run(opt, train_extra, argv)


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM ends the runs the same way as Ctrl-C (children stopped, resumable)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    set_logging()
    _opt, _extra = parse_opt()
    sys.exit(run_cli(lambda o: run(o, _extra, sys.argv[1:]), _opt))
