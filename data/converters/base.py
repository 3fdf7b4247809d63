"""What every converter produces: images with pixel boxes and class ids, and what was left out and why.

A converter (``coco``, ``labelme``, ``cvat``, ``voc``) reads its format into a :class:`Conversion` and raises
:class:`ConvertError` (one line naming the file, and the annotation when there is one) for input it cannot use:
a missing, empty or malformed annotation file, a missing image, an unknown category. Problems of single boxes do
not stop a conversion; :func:`place_box` decides them, the same way for every format:

* a box sticking out of the image by more than ``TOLERANCE_PX`` is clipped to the image (one line per box);
* a box with no area (after clipping, or inverted corners) or wholly outside the image is skipped (one line);
* annotations a format cannot express as a box (crowd regions, lines, points, ...) are skipped (one line).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from PIL import Image

from data.label_cache import exif_size
from utils.errors import UserError
from utils.files import walk_files
from utils.text import read_text

TOLERANCE_PX = 1.0  # overshoot of rounding size (e.g. COCO's x + w = 640.01) is clipped without a message
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "testing": "test"}


class ConvertError(UserError, ValueError):
    """Annotations that cannot be converted; the message names the file (and the annotation)."""


@dataclass
class Box:
    """One box in pixels, corners ``x1 < x2``, ``y1 < y2`` inside the image."""

    cls: int
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass
class ImageRecord:
    """One image of the source and its boxes; ``split`` is the source's split (None when it has none)."""

    file: Path
    width: int
    height: int
    boxes: List[Box] = field(default_factory=list)
    split: Optional[str] = None


@dataclass
class Conversion:
    """A whole source: class names in the source's order, images, and one line per box clipped or skipped."""

    fmt: str
    names: List[str]
    images: List[ImageRecord] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)  # '<file>: <annotation>: clipped / skipped ... (why)'
    skipped: Dict[str, int] = field(default_factory=dict)  # reason -> boxes left out
    clipped: int = 0
    size_mismatch: int = 0  # images whose annotated size differs from the file's

    def skip(self, where: str, reason: str, detail: str = "") -> None:
        """Record an annotation left out, with a short ``reason`` (counted) and an optional detail."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self.notes.append(f"{where}: skipped ({reason}{f': {detail}' if detail else ''})")


def place_box(conv: Conversion, where: str, cls: int, x1: float, y1: float, x2: float, y2: float,
              width: int, height: int) -> Optional[Box]:
    """The box clipped to the image, or None (skipped); the decision is recorded in ``conv`` (module docstring)."""
    values = (x1, y1, x2, y2)
    if not all(math.isfinite(v) for v in values):
        conv.skip(where, "invalid coordinates", f"{values}")
        return None
    if x2 <= x1 or y2 <= y1:
        conv.skip(where, "box without area", f"x {x1:g}..{x2:g}, y {y1:g}..{y2:g}")
        return None
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        conv.skip(where, "box outside the image", f"x {x1:g}..{x2:g}, y {y1:g}..{y2:g} in {width}x{height}")
        return None
    cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
    overshoot = max(cx1 - x1, cy1 - y1, x2 - cx2, y2 - cy2)
    if overshoot > TOLERANCE_PX:
        conv.clipped += 1
        conv.notes.append(f"{where}: clipped to the image (x {x1:g}..{x2:g}, y {y1:g}..{y2:g} in "
                          f"{width}x{height})")
    return Box(cls, cx1, cy1, cx2, cy2)


def normalise_split(name: Optional[str]) -> Optional[str]:
    """'Train' -> 'train', 'validation' -> 'val', ...; None or an unknown name (e.g. CVAT's 'default') -> None."""
    return SPLIT_ALIASES.get(str(name).strip().lower()) if name else None


class ImageIndex:
    """The image files under a folder (walked once, symlink-loop safe), found by relative path or by file name."""

    def __init__(self, root: Optional[Path]):
        self.root = root
        self.by_rel: Dict[str, Path] = {}
        self.by_name: Dict[str, List[Path]] = {}
        if root is None:
            return
        if not root.is_dir():
            raise ConvertError(f"--images {root}: not a folder")
        for f in walk_files(root):
            p = Path(f)
            self.by_rel[p.relative_to(root).as_posix()] = p
            self.by_name.setdefault(p.name, []).append(p)

    def find(self, name: str, near: Optional[Path] = None) -> Optional[Path]:
        """The image called ``name`` (a relative path or a bare file name); ``near``: also look beside that file."""
        rel = name.replace("\\", "/")
        rel = rel[2:] if rel.startswith("./") else rel
        if near is not None and (near / rel).is_file():
            return near / rel
        if rel in self.by_rel:
            return self.by_rel[rel]
        matches = self.by_name.get(Path(rel).name, [])
        if len(matches) > 1:
            raise ConvertError(f"image '{name}' is ambiguous under --images {self.root}: "
                               f"{', '.join(str(m) for m in matches[:3])}")
        return matches[0] if matches else None


def image_size(conv: "Conversion", where: str, file: Path, width: Any, height: Any) -> Tuple[int, int]:
    """The size boxes are normalised by: the annotation's ``width`` x ``height`` when it has one (boxes were drawn
    in that frame, e.g. before the images were downscaled), else the image's. A size that differs from the image
    (after its EXIF rotation, as training reads it) is noted; an unreadable image is a ConvertError."""
    try:
        with Image.open(file) as im:
            real = exif_size(im)
    except Exception as e:  # PIL raises many kinds on a damaged or foreign file
        raise ConvertError(f"{where}: cannot read the image {file} ({e})") from None
    try:
        given = (int(float(width)), int(float(height)))
    except (TypeError, ValueError):
        given = (0, 0)
    if given[0] <= 0 or given[1] <= 0:  # absent, or 0 as labelImg writes when it could not read the image
        return real
    if given != real:
        conv.size_mismatch += 1
        conv.notes.append(f"{where}: image size {given[0]}x{given[1]} in the annotation, {real[0]}x{real[1]} in "
                          f"{file} (boxes normalised by the annotation's size)")
    return given


def missing_image(annotation_file: Path, name: str, what: str, index: ImageIndex) -> ConvertError:
    """The error for an image an annotation file names that is not there."""
    where = f" under --images {index.root}" if index.root is not None else f" beside {annotation_file}"
    return ConvertError(f"{annotation_file}: {what}: image '{name}' not found{where}")


def names_from_option(names: Optional[Sequence[str]]) -> Optional[List[str]]:
    """``--names a,b,c`` or ``--names classes.txt`` (one per line) -> list; labelme's ``__ignore__`` /
    ``_background_`` entries are dropped."""
    if not names:
        return None
    out: List[str] = []
    for item in names:
        p = Path(item)
        if p.suffix == ".txt" and p.is_file():
            out += [ln.strip() for ln in read_text(p).splitlines() if ln.strip()]
        elif p.suffix == ".txt":
            raise ConvertError(f"--names {item}: file not found")
        else:
            out += [n.strip() for n in item.split(",") if n.strip()]
    out = [n for n in out if n not in ("__ignore__", "_background_")]
    if len(set(out)) != len(out):
        dup = sorted({n for n in out if out.count(n) > 1})
        raise ConvertError(f"--names: repeated class names {dup}")
    return out


class NameTable:
    """Class name -> id: fixed by ``--names`` (an unknown name is an error) or grown in order of appearance."""

    def __init__(self, names: Optional[List[str]]):
        self.fixed = names is not None
        self.names: List[str] = list(names or [])
        self.ids = {n: i for i, n in enumerate(self.names)}

    def id(self, name: str, where: str) -> int:
        if name not in self.ids:
            if self.fixed:
                raise ConvertError(f"{where}: unknown class '{name}' (not in --names: {', '.join(self.names)})")
            self.ids[name] = len(self.names)
            self.names.append(name)
        return self.ids[name]
