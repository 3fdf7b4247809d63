"""Convert PASCAL VOC to YOLO layout (used by get_voc.sh; works offline on extracted data).

    python data/scripts/voc2yolo.py --voc ../VOC_raw --out ../VOC \
        --split train=VOC2007:trainval,VOC2012:trainval --split val=VOC2007:test

The v5.0-era command line over the VOC converter of ``python data/convert.py --from voc`` (see
``data/converters/voc.py``): ``--voc`` holds ``VOCdevkit/VOC2007``-style folders (or ``VOC2007`` directly), the
20 VOC classes in their usual order, ``difficult`` objects skipped, images hard-linked (copied when linking is
impossible). ``--out`` is replaced as a whole once the new dataset is complete.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

if __package__ in (None, ""):  # run as a file: import the project from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[2])

from data.converters.base import Box, ConvertError  # noqa: E402
from data.converters.voc import NAMES, read_files, year_dir_files  # noqa: E402
from data.converters.writer import write_dataset  # noqa: E402
from utils.errors import UserError  # noqa: E402


def _year_dir(voc: Path, year: str) -> Path:
    for d in (voc / "VOCdevkit" / year, voc / year):
        if d.is_dir():
            return d
    raise ConvertError(f"{year} not found under {voc} (expected VOCdevkit/{year} or {year})")


def convert_annotation(xml_file: Path) -> List[Tuple[int, float, float, float, float]]:
    """YOLO rows ``(class, xc, yc, w, h)`` of one VOC annotation file (difficult objects left out)."""
    im = read_files([(None, Path(xml_file))], names=NAMES).images[0]
    return [_row(b, im.width, im.height) for b in im.boxes]


def _row(b: Box, w: int, h: int) -> Tuple[int, float, float, float, float]:
    return b.cls, (b.x1 + b.x2) / 2 / w, (b.y1 + b.y2) / 2 / h, (b.x2 - b.x1) / w, (b.y2 - b.y1) / h


def convert(voc: Path, out: Path, splits: Dict[str, List[Tuple[str, str]]]) -> Dict[str, int]:
    """Write ``out/images/<split>`` + ``out/labels/<split>`` (+ ``data.yaml``) -> number of images per split."""
    files = [pair for split, sources in splits.items() for year, image_set in sources
             for pair in year_dir_files(_year_dir(Path(voc), year), {split: image_set})]
    summary = write_dataset(read_files(files, names=NAMES), Path(out), mode="hardlink", exist_ok=True)
    return dict(summary.images)


def _parse_split(s: str) -> Tuple[str, List[Tuple[str, str]]]:
    try:
        name, spec = s.split("=", 1)
        return name, [tuple(x.split(":", 1)) for x in spec.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--split '{s}': expected name=YEAR:imageset[,YEAR:imageset]") from None


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voc", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--split", type=_parse_split, action="append", required=True)
    a = ap.parse_args(argv)
    try:
        counts = convert(a.voc, a.out, dict(a.split))
    except UserError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    print(", ".join(f"{k}: {v} images" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
