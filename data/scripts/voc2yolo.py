"""Convert PASCAL VOC XML annotations to YOLO layout (used by get_voc.sh; works offline on extracted data).

    python data/scripts/voc2yolo.py --voc ../VOC_raw --out ../VOC \
        --split train=VOC2007:trainval,VOC2012:trainval --split val=VOC2007:test

``--voc`` holds ``VOCdevkit/VOC2007``-style folders (or ``VOC2007`` directly). Objects marked ``difficult`` are
skipped. VOC boxes are 1-based inclusive pixel corners; YOLO rows are ``class x_center y_center width height``
normalised by the image size. Images are hard-linked (copied when linking is impossible).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Tuple

NAMES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
         "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]


def convert_annotation(xml_file: Path) -> List[Tuple[int, float, float, float, float]]:
    """YOLO rows of one VOC annotation file (difficult objects left out)."""
    root = ET.parse(xml_file).getroot()
    size = root.find("size")
    w, h = float(size.findtext("width")), float(size.findtext("height"))
    if w <= 0 or h <= 0:
        raise ValueError(f"{xml_file}: invalid image size {w}x{h}")
    rows = []
    for obj in root.iter("object"):
        name = obj.findtext("name", "").strip()
        if name not in NAMES:
            raise ValueError(f"{xml_file}: unknown class '{name}'")
        if obj.findtext("difficult", "0").strip() == "1":
            continue
        bb = obj.find("bndbox")
        x1, y1 = float(bb.findtext("xmin")) - 1, float(bb.findtext("ymin")) - 1  # 1-based inclusive -> 0-based
        x2, y2 = float(bb.findtext("xmax")), float(bb.findtext("ymax"))
        x1, x2 = max(0.0, min(x1, w)), max(0.0, min(x2, w))
        y1, y2 = max(0.0, min(y1, h)), max(0.0, min(y2, h))
        rows.append((NAMES.index(name), (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h))
    return rows


def _year_dir(voc: Path, year: str) -> Path:
    for d in (voc / "VOCdevkit" / year, voc / year):
        if d.is_dir():
            return d
    raise FileNotFoundError(f"{year} not found under {voc} (expected VOCdevkit/{year} or {year})")


def convert(voc: Path, out: Path, splits: Dict[str, List[Tuple[str, str]]]) -> Dict[str, int]:
    """Write ``out/images/<split>`` + ``out/labels/<split>`` -> number of images per split."""
    counts = {}
    for split, sources in splits.items():
        img_dir, lb_dir = out / "images" / split, out / "labels" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        lb_dir.mkdir(parents=True, exist_ok=True)
        n = 0
        for year, image_set in sources:
            yd = _year_dir(voc, year)
            ids = (yd / "ImageSets" / "Main" / f"{image_set}.txt").read_text().split()
            for i in ids:
                rows = convert_annotation(yd / "Annotations" / f"{i}.xml")
                (lb_dir / f"{i}.txt").write_text("".join(f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n"
                                                         for c, x, y, w, h in rows))
                src, dst = yd / "JPEGImages" / f"{i}.jpg", img_dir / f"{i}.jpg"
                if not dst.exists():
                    try:
                        os.link(src, dst)
                    except OSError:
                        shutil.copy2(src, dst)
                n += 1
        counts[split] = n
    return counts


def _parse_split(s: str) -> Tuple[str, List[Tuple[str, str]]]:
    try:
        name, spec = s.split("=", 1)
        return name, [tuple(x.split(":", 1)) for x in spec.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--split '{s}': expected name=YEAR:imageset[,YEAR:imageset]") from None


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voc", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--split", type=_parse_split, action="append", required=True)
    a = ap.parse_args(argv)
    counts = convert(a.voc, a.out, dict(a.split))
    print(", ".join(f"{k}: {v} images" for k, v in counts.items()))


if __name__ == "__main__":
    sys.exit(main())
