"""CVAT "for images 1.1" XML -> Conversion.

Class names come from the label list of the task or project in ``<meta>`` (its order), or ``--names``. Each
``<image name= width= height= [subset=]>`` holds ``<box label= xtl= ytl= xbr= ybr=>`` (pixels; a ``rotation``
is ignored: the box is taken as drawn before rotation, with a note) and ``<polygon points="x,y;x,y;...">``
(its bounding box). Polylines, points, ellipses, masks and cuboids are skipped and counted. The ``subset`` of an
image (Train / Validation / Test) is its split; CVAT's ``default`` subset means none.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, List, Optional, Tuple

from data.converters.base import (Conversion, ConvertError, ImageIndex, ImageRecord, NameTable, image_size,
                                  missing_image, normalise_split, place_box)
from data.converters.labelme import annotation_files

SKIPPED_SHAPES = ("polyline", "points", "ellipse", "mask", "cuboid", "skeleton", "tag")


def parse_xml(file: Path) -> ET.Element:
    """Root element, or ConvertError naming the file (missing, empty, malformed)."""
    if not file.is_file():
        raise ConvertError(f"{file}: annotation file not found")
    if not file.read_bytes().strip():
        raise ConvertError(f"{file}: empty annotation file")
    try:
        return ET.parse(file).getroot()
    except ET.ParseError as e:
        raise ConvertError(f"{file}: not valid XML ({e})") from None


def meta_labels(root: ET.Element) -> List[str]:
    """Label names of the task / project in the file's meta block, in order."""
    for path in ("meta/task/labels/label", "meta/project/labels/label", "meta/job/labels/label"):
        names = [str(el.findtext("name", "")).strip() for el in root.findall(path)]
        if names:
            return [n for n in names if n]
    return []


def _float(el: ET.Element, key: str, where: str) -> float:
    try:
        return float(el.attrib[key])
    except (KeyError, ValueError):
        raise ConvertError(f"{where}: attribute {key}={el.attrib.get(key)!r} is missing or not a number") from None


def _corners(el: ET.Element, where: str, conv: Conversion) -> Tuple[float, float, float, float]:
    if el.tag == "box":
        if float(el.attrib.get("rotation", 0) or 0):
            conv.notes.append(f"{where}: rotation {el.attrib['rotation']} ignored (axis-aligned box as drawn)")
        return tuple(_float(el, k, where) for k in ("xtl", "ytl", "xbr", "ybr"))  # type: ignore[return-value]
    try:
        pts = [tuple(float(v) for v in p.split(",")) for p in el.attrib["points"].split(";") if p.strip()]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    except (KeyError, ValueError, IndexError):
        raise ConvertError(f"{where}: 'points' must be 'x,y;x,y;...', got {el.attrib.get('points')!r}") from None
    return min(xs), min(ys), max(xs), max(ys)


def read_file(file: Path, index: ImageIndex, names: NameTable, conv: Conversion) -> None:
    root = parse_xml(file)
    if root.tag != "annotations":
        raise ConvertError(f"{file}: not a CVAT for images XML (root <{root.tag}>, expected <annotations>)")
    images = root.findall("image")
    if not images:
        raise ConvertError(f"{file}: no <image> elements (a CVAT 'for video' export? use 'for images 1.1')")
    for el in images:
        name = el.attrib.get("name", "")
        where = f"{file}: image id {el.attrib.get('id', '?')} '{name}'"
        path = index.find(name, near=file.parent)
        if path is None:
            raise missing_image(file, name, f"image id {el.attrib.get('id', '?')}", index)
        w, h = image_size(conv, where, path, el.attrib.get("width"), el.attrib.get("height"))
        im = ImageRecord(path, w, h, split=normalise_split(el.attrib.get("subset")))
        for k, shape in enumerate(el):
            swhere = f"{where}: {shape.tag} {k} ('{shape.attrib.get('label', '')}')"
            if shape.tag in SKIPPED_SHAPES:
                conv.skip(swhere, f"{shape.tag} shape")
                continue
            if shape.tag not in ("box", "polygon"):
                continue
            cls = names.id(shape.attrib.get("label", "").strip(), swhere)
            box = place_box(conv, swhere, cls, *_corners(shape, swhere, conv), w, h)
            if box is not None:
                im.boxes.append(box)
        conv.images.append(im)


def read(annotations: List[Tuple[Optional[str], Path]], images: Optional[Path],
         names: Optional[List[str]] = None, **_: Any) -> Conversion:
    files = annotation_files(annotations, "xml")
    if names is None:
        labels = meta_labels(parse_xml(files[0][1]))
        if not labels:
            raise ConvertError(f"{files[0][1]}: no label list in <meta> (pass --names)")
        names = labels
    table = NameTable(names)
    conv = Conversion("cvat", table.names)
    index = ImageIndex(images)
    for _, file in files:
        read_file(file, index, table, conv)
    return conv
