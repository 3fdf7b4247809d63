"""Annotation formats -> YOLO datasets: one reader per format (:data:`READERS`), one writer (``writer``)."""
from __future__ import annotations

from data.converters import coco, cvat, labelme, voc

READERS = {"coco": coco.read, "labelme": labelme.read, "cvat": cvat.read, "voc": voc.read}
