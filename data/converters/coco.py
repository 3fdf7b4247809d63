"""COCO instances JSON (``images``, ``annotations``, ``categories``) -> :class:`Conversion`.

Category ids (any integers, e.g. COCO's 1..90 with gaps) become 0..nc-1 in the order of the file's
``categories`` list; several files must list the same categories. ``bbox`` is ``[x, y, width, height]`` in pixels
from the top-left corner. ``iscrowd: 1`` regions are skipped (they mark groups, not objects) and counted. Images
without annotations are kept, with an empty label file (background images). The split of a file comes from
``split=file`` on the command line or from its name (``instances_val2017.json`` -> val).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from data.converters.base import (Conversion, ConvertError, ImageIndex, ImageRecord, image_size, missing_image,
                                  normalise_split, place_box)
from utils.text import read_text


def load_json(file: Path) -> Any:
    """Parsed JSON, or ConvertError naming the file (missing, empty, not JSON)."""
    if not file.is_file():
        raise ConvertError(f"{file}: annotation file not found")
    text = read_text(file)  # UTF-8, or a byte-order mark's encoding; other bytes are an error, never mangled
    if not text.strip():
        raise ConvertError(f"{file}: empty annotation file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConvertError(f"{file}: not valid JSON (line {e.lineno}: {e.msg})") from None


def split_from_name(file: Path) -> Optional[str]:
    """'instances_val2017.json' -> 'val', 'train.json' -> 'train', 'trainval' -> 'train', else None."""
    stem = file.stem.lower()
    for token, split in (("trainval", "train"), ("val", "val"), ("train", "train"), ("test", "test")):
        if token in stem:
            return split
    return None


def _list(d: dict, key: str, file: Path) -> list:
    v = d.get(key)
    if not isinstance(v, list):
        raise ConvertError(f"{file}: '{key}' must be a list (is this a COCO instances file?)")
    return v


def read_categories(d: dict, file: Path) -> Tuple[List[str], Dict[Any, int]]:
    """(names in the file's order, category id -> 0..nc-1)."""
    names, ids = [], {}
    for i, c in enumerate(_list(d, "categories", file)):
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            raise ConvertError(f"{file}: categories[{i}] needs 'id' and 'name'")
        if c["id"] in ids:
            raise ConvertError(f"{file}: category id {c['id']} appears twice")
        ids[c["id"]] = len(names)
        names.append(str(c["name"]))
    if not names:
        raise ConvertError(f"{file}: no categories")
    return names, ids


def _bbox(a: dict, where: str) -> Tuple[float, float, float, float]:
    bb = a.get("bbox")
    try:
        x, y, w, h = (float(v) for v in bb)
    except (TypeError, ValueError):
        raise ConvertError(f"{where}: 'bbox' must be [x, y, width, height], got {bb!r}") from None
    return x, y, x + w, y + h


def read_file(file: Path, split: Optional[str], index: ImageIndex, conv: Optional[Conversion]) -> Conversion:
    """Add one instances file to ``conv`` (a new Conversion when None)."""
    d = load_json(file)
    if not isinstance(d, dict):
        raise ConvertError(f"{file}: expected a JSON object with images, annotations and categories")
    names, cat_ids = read_categories(d, file)
    if conv is None:
        conv = Conversion("coco", names)
    elif names != conv.names:
        raise ConvertError(f"{file}: its categories {names} differ from the first file's {conv.names}")
    images: Dict[Any, ImageRecord] = {}
    for i, im in enumerate(_list(d, "images", file)):
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise ConvertError(f"{file}: images[{i}] needs 'id' and 'file_name'")
        path = index.find(str(im["file_name"]))
        if path is None:
            raise missing_image(file, str(im["file_name"]), f"image id {im['id']}", index)
        w, h = image_size(conv, f"{file}: image id {im['id']}", path, im.get("width"), im.get("height"))
        images[im["id"]] = ImageRecord(path, w, h, split=split)
    for i, a in enumerate(_list(d, "annotations", file)):
        if not isinstance(a, dict):
            raise ConvertError(f"{file}: annotations[{i}] is not an object")
        where = f"{file}: annotation id {a.get('id', f'#{i}')}"
        im = images.get(a.get("image_id"))
        if im is None:
            raise ConvertError(f"{where}: image_id {a.get('image_id')!r} is not in 'images'")
        if a.get("category_id") not in cat_ids:
            raise ConvertError(f"{where}: unknown category_id {a.get('category_id')!r} (categories: "
                               f"{', '.join(str(k) for k in cat_ids)})")
        if a.get("iscrowd"):
            conv.skip(where, "iscrowd")
            continue
        box = place_box(conv, where, cat_ids[a["category_id"]], *_bbox(a, where), im.width, im.height)
        if box is not None:
            im.boxes.append(box)
    conv.images += list(images.values())
    return conv


def read(annotations: List[Tuple[Optional[str], Path]], images: Optional[Path], **_: Any) -> Conversion:
    """All instances files -> one Conversion (``--images`` is the folder their ``file_name`` entries are under)."""
    if images is None:
        raise ConvertError("--from coco needs --images, the folder of the images the JSON names")
    index = ImageIndex(images)
    conv = None
    for split, file in annotations:
        conv = read_file(file, normalise_split(split) if split else split_from_name(file), index, conv)
    return conv
