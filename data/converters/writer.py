"""Writing a :class:`~data.converters.base.Conversion` as a YOLO dataset, all or nothing.

Layout under ``out``: ``images/<split>/``, ``labels/<split>/`` (one ``class xc yc w h`` row per box, normalised),
``data.yaml`` (absolute ``path``, the splits, ``nc``, ``names`` in the source's order) and ``conversion.txt``
(the summary and one line per box clipped or skipped). Everything is written into a hidden folder beside ``out``
and renamed at the end, so a failure leaves nothing half-written; an existing non-empty ``out`` is refused unless
``exist_ok``, which replaces it.
"""
from __future__ import annotations

import os
import random
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from data.converters.base import Conversion, ConvertError, ImageRecord

MODES = ("copy", "hardlink", "symlink")
SPLIT_ORDER = ("train", "val", "test")


@dataclass
class Summary:
    """What was written: images and boxes per split, boxes per class, the clipped / skipped counts."""

    out: Path
    images: Dict[str, int] = field(default_factory=dict)
    boxes: Dict[str, int] = field(default_factory=dict)
    class_boxes: List[int] = field(default_factory=list)
    split_note: str = ""

    def lines(self, conv: Conversion, max_notes: int = 20) -> List[str]:
        splits = ", ".join(f"{s} {self.images[s]} images / {self.boxes[s]} boxes" for s in self.images)
        out = [f"Converted {conv.fmt}: {sum(self.images.values())} images, {sum(self.boxes.values())} boxes, "
               f"{len(conv.names)} classes ({splits})", self.split_note]
        skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(conv.skipped.items()))
        out.append(f"Skipped {sum(conv.skipped.values())} annotations" + (f" ({skipped})" if skipped else "")
                   + f"; clipped {conv.clipped} boxes to their image")
        if conv.size_mismatch:
            out.append(f"WARNING: {conv.size_mismatch} images differ in size from their annotation (listed below "
                       f"and in conversion.txt): check that the annotations belong to these images")
        empty = [n for n, k in zip(conv.names, self.class_boxes) if k == 0]
        if empty:
            out.append(f"WARNING: classes without any box: {', '.join(empty)}")
        out += conv.notes[:max_notes]
        if len(conv.notes) > max_notes:
            out.append(f"... {len(conv.notes) - max_notes} more in {self.out / 'conversion.txt'}")
        out.append(f"Dataset yaml: {self.out / 'data.yaml'}  (check it: python data/check.py --data "
                   f"{self.out / 'data.yaml'})")
        return [ln for ln in out if ln]


def assign_splits(images: List[ImageRecord], val_fraction: Optional[float], seed: int) -> str:
    """Set every image's split; returns the sentence saying how.

    The source's split is kept when it has one (images without one go to train). An explicit ``val_fraction``
    re-splits all images at random (seeded); without a source split, ``val_fraction`` defaults to 0.1.
    """
    has_split = any(im.split for im in images)
    if has_split and val_fraction is None:
        for im in images:
            im.split = im.split or "train"
        if not any(im.split == "val" for im in images):
            return "WARNING: the source has no validation split; data.yaml uses train as val (or re-run with " \
                   "--val-fraction)"
        return "Splits as in the source"
    fraction = 0.1 if val_fraction is None else val_fraction
    order = list(range(len(images)))
    random.Random(seed).shuffle(order)
    n_val = int(round(len(images) * fraction))
    if fraction > 0 and n_val == 0 and len(images) > 1:
        n_val = 1
    val = set(order[:n_val])
    for i, im in enumerate(images):
        im.split = "val" if i in val else "train"
    why = "the source has no split" if not has_split else "--val-fraction given"
    return f"Splits: {n_val} of {len(images)} images to val at random (fraction {fraction:g}, seed {seed}; {why})"


def _unique_names(images: List[ImageRecord]) -> List[str]:
    """Output file names: the image's own, numbered when two images of a split share a stem (their label files
    would collide: ``a.jpg`` and ``a.png`` both label ``a.txt``)."""
    taken: Dict[str, Counter] = {}
    out = []
    for im in images:
        used = taken.setdefault(im.split or "train", Counter())
        stem, suffix, k = im.file.stem, im.file.suffix.lower(), 1
        name = stem
        while used[name.lower()]:
            k += 1
            name = f"{stem}_{k}"
        used[name.lower()] += 1
        out.append(f"{name}{suffix}")
    return out


def _place_image(src: Path, dst: Path, mode: str) -> None:
    if mode == "symlink":
        os.symlink(src.resolve(), dst)
        return
    if mode == "hardlink":
        try:
            os.link(src, dst)
            return
        except OSError:  # another file system, or links not allowed: copy
            pass
    shutil.copyfile(src, dst)


def label_rows(im: ImageRecord) -> str:
    """YOLO rows of an image: ``class xc yc w h`` normalised by its size, 6 decimals."""
    rows = []
    for b in im.boxes:
        xc, yc = (b.x1 + b.x2) / 2 / im.width, (b.y1 + b.y2) / 2 / im.height
        w, h = (b.x2 - b.x1) / im.width, (b.y2 - b.y1) / im.height
        rows.append(f"{b.cls} {xc:.6f} {yc:.6f} {w:.6f} {h:.6f}\n")
    return "".join(rows)


def _check_out(out: Path, exist_ok: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConvertError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not exist_ok:
        raise ConvertError(f"--out {out}: folder exists and is not empty (choose another, or --exist-ok to "
                           f"replace it)")


def _write_tree(conv: Conversion, tmp: Path, final: Path, mode: str, summary: Summary) -> None:
    for im, name in zip(conv.images, _unique_names(conv.images)):
        split = im.split or "train"
        img_dir, lb_dir = tmp / "images" / split, tmp / "labels" / split
        if not img_dir.is_dir():
            img_dir.mkdir(parents=True)
            lb_dir.mkdir(parents=True)
        _place_image(im.file, img_dir / name, mode)
        (lb_dir / f"{Path(name).stem}.txt").write_text(label_rows(im))
        summary.images[split] = summary.images.get(split, 0) + 1
        summary.boxes[split] = summary.boxes.get(split, 0) + len(im.boxes)
        for b in im.boxes:
            summary.class_boxes[b.cls] += 1
    summary.images = {s: summary.images[s] for s in sorted(summary.images, key=_split_rank)}
    summary.boxes = {s: summary.boxes[s] for s in summary.images}
    splits = list(summary.images)
    data = {"path": str(final.resolve()), "train": "images/train",
            "val": "images/val" if "val" in splits else "images/train"}
    if "test" in splits:
        data["test"] = "images/test"
    data |= {"nc": len(conv.names), "names": list(conv.names)}
    with open(tmp / "data.yaml", "w", encoding="utf-8") as f:
        f.write(f"# converted from {conv.fmt} by data/convert.py\n")
        yaml.safe_dump(data, f, sort_keys=False, allow_unicode=True, default_flow_style=None, width=120)


def _split_rank(split: str) -> tuple:
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


def write_dataset(conv: Conversion, out: Path, mode: str = "copy", val_fraction: Optional[float] = None,
                  seed: int = 0, exist_ok: bool = False) -> Summary:
    """Write ``conv`` as a YOLO dataset at ``out`` (module docstring); returns the summary."""
    if mode not in MODES:
        raise ConvertError(f"--mode {mode}: expected one of {', '.join(MODES)}")
    if val_fraction is not None and not 0 <= val_fraction < 1:
        raise ConvertError(f"--val-fraction {val_fraction}: expected a number in [0, 1)")
    if not conv.images:
        raise ConvertError(f"{conv.fmt}: no images to convert")
    out = Path(out)
    _check_out(out, exist_ok)
    summary = Summary(out, class_boxes=[0] * len(conv.names))
    summary.split_note = assign_splits(conv.images, val_fraction, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    old = out.parent / f".{out.name}.replaced-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        _write_tree(conv, tmp, out, mode, summary)
        (tmp / "conversion.txt").write_text("\n".join(summary.lines(conv, max_notes=len(conv.notes))) + "\n")
        if out.exists():
            os.replace(out, old)  # exist_ok or empty: keep it until the new tree is in place
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not out.exists():
            os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return summary
