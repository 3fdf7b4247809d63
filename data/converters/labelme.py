"""LabelMe JSON (one file per image: ``shapes``, ``imagePath``, ``imageWidth``, ``imageHeight``) -> Conversion.

``rectangle`` shapes are boxes (two corner points, any order); ``polygon`` shapes become their bounding box.
Other shape types (circle, line, linestrip, point, mask) are skipped and counted. Class names are the shapes'
labels: in the order of ``--names`` when given (a label not in it is an error), else in order of first
appearance over the files sorted by path. The image is ``imagePath`` relative to the JSON file, or found by name
under ``--images``. A folder of annotations is walked recursively; a ``train`` / ``val`` / ``test`` folder in a
file's path is its split.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, Tuple

from data.converters.base import (Conversion, ConvertError, ImageIndex, ImageRecord, NameTable, image_size,
                                  missing_image, normalise_split, place_box)
from data.converters.coco import load_json
from utils.files import walk_files


def annotation_files(annotations: List[Tuple[Optional[str], Path]], suffix: str) -> List[Tuple[Optional[str], Path]]:
    """(split, file) for every file given or found (recursively) in a folder given; the split is the one given
    with ``split=path`` or a train / val / test folder name between the folder given and the file."""
    out = []
    for split, p in annotations:
        if p.is_dir():
            files = [Path(f) for f in walk_files(p, suffixes=[suffix])]
            if not files:
                raise ConvertError(f"{p}: no .{suffix} annotation files in this folder")
            for f in files:
                found = next((s for s in map(normalise_split, f.relative_to(p).parts[:-1]) if s), None)
                out.append((split or found, f))
        elif p.is_file():
            out.append((split, p))
        else:
            raise ConvertError(f"{p}: annotation file or folder not found")
    return out


def _points(shape: dict, where: str) -> List[Tuple[float, float]]:
    pts = shape.get("points")
    try:
        out = [(float(x), float(y)) for x, y in pts]
    except (TypeError, ValueError):
        raise ConvertError(f"{where}: 'points' must be a list of [x, y] pairs, got {pts!r}") from None
    if not out:
        raise ConvertError(f"{where}: no points")
    return out


def read_file(file: Path, split: Optional[str], index: ImageIndex, names: NameTable, conv: Conversion) -> None:
    d = load_json(file)
    if not isinstance(d, dict) or not isinstance(d.get("shapes"), list) or not d.get("imagePath"):
        raise ConvertError(f"{file}: not a LabelMe file (needs 'shapes' and 'imagePath')")
    path = index.find(str(d["imagePath"]), near=file.parent)
    if path is None:
        raise missing_image(file, str(d["imagePath"]), "imagePath", index)
    w, h = image_size(conv, str(file), path, d.get("imageWidth"), d.get("imageHeight"))
    im = ImageRecord(path, w, h, split=split)
    for i, s in enumerate(d["shapes"]):
        where = f"{file}: shape {i}"
        if not isinstance(s, dict) or not str(s.get("label", "")).strip():
            raise ConvertError(f"{where}: needs a 'label'")
        where += f" ('{s['label']}')"
        kind = s.get("shape_type") or "polygon"  # LabelMe files older than 3.x have no shape_type: polygons
        if kind not in ("rectangle", "polygon"):
            conv.skip(where, f"{kind} shape")
            continue
        cls = names.id(str(s["label"]).strip(), where)
        pts = _points(s, where)
        if kind == "rectangle" and len(pts) != 2:
            raise ConvertError(f"{where}: a rectangle needs 2 points, got {len(pts)}")
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        box = place_box(conv, where, cls, min(xs), min(ys), max(xs), max(ys), w, h)
        if box is not None:
            im.boxes.append(box)
    conv.images.append(im)


def read(annotations: List[Tuple[Optional[str], Path]], images: Optional[Path],
         names: Optional[List[str]] = None, **_: Any) -> Conversion:
    table = NameTable(names)
    conv = Conversion("labelme", table.names)
    index = ImageIndex(images)
    for split, file in annotation_files(annotations, "json"):
        read_file(file, normalise_split(split), index, table, conv)
    return conv
