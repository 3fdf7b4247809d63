"""Convert annotations from a labelling tool to a YOLO dataset, ready to check and train on.

    python data/convert.py --from coco --annotations instances_train.json instances_val.json --images images/ \\
        --out datasets/mine
    python data/convert.py --from labelme --annotations labelme_dir/ --out datasets/mine --val-fraction 0.2
    python data/convert.py --from cvat --annotations annotations.xml --images images/ --out datasets/mine
    python data/convert.py --from voc --annotations VOCdevkit/VOC2007 --out datasets/voc07

Writes ``images/<split>``, ``labels/<split>``, ``data.yaml`` (names in the source's order) and
``conversion.txt`` (what was converted, clipped and skipped, and why) under ``--out``, all or nothing. The
formats and their rules are described in ``data/converters/<format>.py``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

if __package__ in (None, ""):  # run as `python data/convert.py`: import the project from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from data.converters import READERS  # noqa: E402
from data.converters.base import ConvertError, names_from_option  # noqa: E402
from data.converters.writer import MODES, Summary, write_dataset  # noqa: E402
from engine.cli import run_cli  # noqa: E402
from utils.log import LOGGER  # noqa: E402


def split_path(value: str) -> Tuple[Optional[str], Path]:
    """``train=x.json`` -> ('train', x.json); ``x.json`` -> (None, x.json)."""
    head, sep, tail = value.partition("=")
    if sep and head in ("train", "val", "test"):
        return head, Path(tail)
    return None, Path(value)


def parse_opt(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="fmt", required=True, choices=sorted(READERS), help="annotation format")
    p.add_argument("--annotations", nargs="+", required=True, type=split_path,
                   help="annotation file(s) or folder(s); prefix split= (train=, val=, test=) to set a split")
    p.add_argument("--images", type=Path, help="folder of the images (searched recursively by path or name)")
    p.add_argument("--out", type=Path, required=True, help="output dataset folder")
    p.add_argument("--names", nargs="+", help="class names in order (a,b,c or a names .txt); default: the source's")
    p.add_argument("--val-fraction", type=float, default=None,
                   help="re-split at random: this fraction of the images to val (default: keep the source's "
                        "split, or 0.1 when it has none)")
    p.add_argument("--seed", type=int, default=0, help="random seed of --val-fraction")
    p.add_argument("--mode", choices=MODES, default="copy", help="how images get into --out")
    p.add_argument("--exist-ok", action="store_true", help="replace a non-empty --out")
    return p.parse_args(argv)


def run(opt: argparse.Namespace) -> Summary:
    """Read, convert, write; prints the summary."""
    names = names_from_option(opt.names)
    if opt.fmt == "coco" and names:
        raise ConvertError("--names: COCO files name their categories; --names is for labelme, cvat and voc")
    conv = READERS[opt.fmt](opt.annotations, opt.images, names=names)
    summary = write_dataset(conv, opt.out, mode=opt.mode, val_fraction=opt.val_fraction, seed=opt.seed,
                            exist_ok=opt.exist_ok)
    for line in summary.lines(conv):
        LOGGER.info(line)
    return summary


def main(argv: Optional[List[str]] = None) -> int:
    """Command line; bad input is one ``ERROR:`` line and exit status 1."""
    return run_cli(run, parse_opt(argv))


if __name__ == "__main__":
    sys.exit(main())
