"""Pascal VOC XML (one ``<annotation>`` per image; labelImg writes the same format) -> Conversion.

``--annotations`` is a VOC year folder (``VOC2007`` with ``Annotations/``, ``JPEGImages/``,
``ImageSets/Main/``), a folder of XML files, or XML files. In a year folder the splits are
``ImageSets/Main/{train,val,test}.txt`` (``trainval.txt`` when there is no ``train.txt``); elsewhere a
``train`` / ``val`` / ``test`` folder in a file's path is its split. VOC corners are 1-based and inclusive:
``xmin=1, xmax=100`` is pixels 0..100 from the left edge. Objects marked ``difficult`` are skipped (counted).
The image is ``JPEGImages/<filename>`` of a year folder, else ``<filename>`` beside the XML or under ``--images``.
Class names: ``--names`` when given, else in order of first appearance.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from data.converters.base import (Conversion, ConvertError, ImageIndex, ImageRecord, NameTable, image_size,
                                  missing_image, normalise_split, place_box)
from data.converters.cvat import parse_xml
from data.converters.labelme import annotation_files
from utils.text import read_text

NAMES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
         "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]  # the VOC classes


def is_year_dir(p: Path) -> bool:
    return (p / "Annotations").is_dir() and (p / "ImageSets" / "Main").is_dir()


def year_dir_files(year: Path, image_sets: Optional[Dict[str, str]] = None) -> List[Tuple[str, Path]]:
    """(split, xml) of a year folder: ``image_sets`` maps split -> ImageSets/Main list name (default: the
    train / val / test lists present)."""
    main = year / "ImageSets" / "Main"
    if image_sets is None:
        image_sets = {s: s for s in ("train", "val", "test") if (main / f"{s}.txt").is_file()}
        if "train" not in image_sets and (main / "trainval.txt").is_file():
            image_sets["train"] = "trainval"
        if not image_sets:
            raise ConvertError(f"{main}: no train.txt, val.txt, test.txt or trainval.txt")
    out = []
    for split, name in image_sets.items():
        lst = main / f"{name}.txt"
        if not lst.is_file():
            raise ConvertError(f"{lst}: image set not found")
        out += [(split, year / "Annotations" / f"{i}.xml") for i in read_text(lst).split()]
    return out


def _box(obj, where: str) -> Tuple[float, float, float, float]:
    bb = obj.find("bndbox")
    try:
        x1, y1, x2, y2 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
    except (AttributeError, TypeError, ValueError):
        raise ConvertError(f"{where}: <bndbox> needs numeric xmin, ymin, xmax, ymax") from None
    return x1 - 1, y1 - 1, x2, y2  # 1-based inclusive -> 0-based edges


def read_file(file: Path, split: Optional[str], index: ImageIndex, names: NameTable, conv: Conversion) -> None:
    if not file.is_file():
        raise ConvertError(f"{file}: annotation file not found")
    root = parse_xml(file)
    if root.tag != "annotation":
        raise ConvertError(f"{file}: not a VOC annotation (root <{root.tag}>, expected <annotation>)")
    name = (root.findtext("filename") or f"{file.stem}.jpg").strip()
    jpeg_dir = file.parent.parent / "JPEGImages"
    path = index.find(name, near=jpeg_dir if jpeg_dir.is_dir() else file.parent)
    if path is None:
        raise missing_image(file, name, "filename", index)
    w, h = image_size(conv, str(file), path, root.findtext("size/width"), root.findtext("size/height"))
    im = ImageRecord(path, w, h, split=split)
    for k, obj in enumerate(root.iter("object")):
        label = (obj.findtext("name") or "").strip()
        where = f"{file}: object {k} ('{label}')"
        cls = names.id(label, where)
        if (obj.findtext("difficult") or "0").strip() == "1":
            conv.skip(where, "difficult")
            continue
        box = place_box(conv, where, cls, *_box(obj, where), w, h)
        if box is not None:
            im.boxes.append(box)
    conv.images.append(im)


def read(annotations: List[Tuple[Optional[str], Path]], images: Optional[Path],
         names: Optional[List[str]] = None, image_sets: Optional[Dict[str, str]] = None, **_: Any) -> Conversion:
    files: List[Tuple[Optional[str], Path]] = []
    for split, p in annotations:
        if p.is_dir() and is_year_dir(p):
            files += year_dir_files(p, image_sets)
        else:
            files += annotation_files([(split, p)], "xml")
    return read_files(files, images, names)


def read_files(files: List[Tuple[Optional[str], Path]], images: Optional[Path] = None,
               names: Optional[List[str]] = None) -> Conversion:
    """(split, xml file) pairs -> Conversion."""
    table = NameTable(names)
    conv = Conversion("voc", table.names)
    index = ImageIndex(images)
    for split, file in files:
        read_file(file, normalise_split(split), index, table, conv)
    return conv
