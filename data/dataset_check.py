"""What is wrong with a dataset before training on it: the findings of ``python data/check.py``.

Per split: images and boxes per class, images without labels (no label file, or an empty one), images and
label files the label cache dropped (corrupt images, rows outside [0, 1], unknown class ids: its own messages,
grouped by reason). Across the dataset: classes with fewer than ``min_boxes`` training boxes, exact duplicate
images (content hash) within a split and across splits (leakage: the same picture in train and val makes val
optimistic), boxes narrower or lower than ``min_pixels`` at the training image size (the image's long side scaled
to ``img_size``), boxes more elongated than ``max_aspect``, and boxes reaching past the image edge.

Labels come from the label cache (:mod:`data.label_cache`: read once, in threads, reused by training); file
hashes are computed in a thread pool (hashlib and file reads release the GIL).
"""
from __future__ import annotations

import hashlib
import os
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from data.datasets import img_files_from
from data.label_cache import NUM_THREADS, cache_labels, img2label_paths

MAX_EXAMPLES = 10  # files listed per finding in the report (all are counted)
EDGE_TOLERANCE = 1e-3  # a box may reach this far (normalised) past the image edge before it is reported
DROP_REASONS = (  # label cache message -> reason shown (first match wins)
    ("coordinate > 1", "label rows outside [0, 1]"), ("negative value", "label rows outside [0, 1]"),
    ("outside 0-", "class id >= nc"), ("ignoring corrupt image ", "corrupt image"),
    ("values, expected", "malformed label rows"), ("non-numeric", "malformed label rows"),
    ("non-finite", "malformed label rows"), ("is not an integer", "malformed label rows"),
    ("duplicate label row", "duplicate label rows removed"),
)


@dataclass
class CheckSettings:
    img_size: int = 640  # training image size: the long side of every image is scaled to it
    min_boxes: int = 10  # a class with fewer training boxes is reported
    min_pixels: float = 3.0  # a box narrower or lower than this at img_size is reported
    max_aspect: float = 20.0  # a box more elongated than this is reported
    workers: int = NUM_THREADS


@dataclass
class SplitData:
    """One split as the label cache sees it: usable images, their labels and sizes, the cache's messages."""

    name: str
    files: List[str]
    labels: List[np.ndarray]  # (n, 5) [cls, x, y, w, h] normalised, per image
    shapes: np.ndarray  # (n, 2) image (w, h)
    msgs: List[str]
    results: Tuple[int, int, int, int, int]  # found, missing, empty, corrupt, total


@dataclass
class Finding:
    """One kind of problem: how many, one line of explanation, and some of the files involved."""

    kind: str
    count: int
    message: str
    severity: str = "warning"  # warning | info
    examples: List[str] = field(default_factory=list)


@dataclass
class CheckReport:
    names: List[str]
    settings: CheckSettings
    splits: Dict[str, Dict[str, Any]]  # split -> images, boxes, per-class boxes / images, label-file counts
    findings: List[Finding]
    box_sizes: Dict[str, np.ndarray] = field(default_factory=dict)  # split -> (n, 2) box w, h in px at img_size

    def warnings(self) -> List[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def to_dict(self) -> Dict[str, Any]:
        """The JSON report (box sizes left out: they are in the plot)."""
        return {"names": self.names, "settings": asdict(self.settings), "splits": self.splits,
                "findings": [asdict(f) for f in self.findings]}

    def short_lines(self) -> List[str]:
        """A few lines for the start of training: the splits, then one line per warning."""
        splits = ", ".join(f"{s} {d['images']} images / {d['boxes']} boxes" for s, d in self.splits.items())
        out = [f"Dataset check: {splits}; {len(self.names)} classes; "
               f"{len(self.warnings()) or 'no'} warning{'s' if len(self.warnings()) != 1 else ''}"]
        out += [f"  WARNING: {f.message}" for f in self.warnings()]
        return out


# ------------------------------------------------------------------------------------------------ reading
def split_from_path(name: str, path: Any, nc: int, progress: bool = True) -> SplitData:
    """A split of a dataset yaml through the label cache (built or reused, like training does)."""
    im_files = img_files_from(path, prefix=f"{name}: ")
    lb_files = img2label_paths(im_files)
    first = Path(path[0] if isinstance(path, (list, tuple)) else path)
    cache_path = (first if first.is_file() and first.suffix.lower() == ".txt"
                  else Path(lb_files[0]).parent).with_suffix(".cache")
    cache, _ = cache_labels(cache_path, im_files, lb_files, nc=nc, prefix=f"{name}: ", progress=progress)
    labels = [x.numpy().astype(np.float32).reshape(-1, 5) for x in cache["labels"]]
    shapes = np.array(cache["shapes"], dtype=np.float64).reshape(-1, 2)
    return SplitData(name, list(cache["files"]), labels, shapes, list(cache["msgs"]), tuple(cache["results"]))


def split_from_dataset(name: str, dataset: Any) -> SplitData:
    """A split from a built ``LoadImagesAndLabels`` (training start-up: nothing is read twice)."""
    return SplitData(name, list(dataset.img_files), list(dataset.labels), np.asarray(dataset.shapes),
                     list(dataset.msgs), tuple(dataset.results))


def file_hash(path: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def file_hashes(files: Sequence[str], workers: int = NUM_THREADS) -> List[str]:
    """Content hash of every file (threads; an unreadable file gets a unique placeholder)."""
    def one(p: str) -> str:
        try:
            return file_hash(p)
        except OSError:
            return f"unreadable:{p}"
    if workers <= 1 or len(files) < 64:
        return [one(p) for p in files]
    with ThreadPool(workers) as pool:
        return pool.map(one, files, chunksize=64)


# ----------------------------------------------------------------------------------------------- findings
def _box_pixels(split: SplitData, img_size: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All boxes of a split: (labels (n, 5), image index (n,), box w h in pixels at img_size (n, 2))."""
    counts = [len(lb) for lb in split.labels]
    if not sum(counts):
        return np.zeros((0, 5), np.float32), np.zeros(0, int), np.zeros((0, 2))
    labels = np.concatenate(split.labels, 0)
    owner = np.repeat(np.arange(len(counts)), counts)
    wh_img = split.shapes[owner]  # (w, h) of the owning image
    scale = img_size / wh_img.max(1, keepdims=True)
    return labels, owner, labels[:, 3:5] * wh_img * scale


def split_stats(split: SplitData, nc: int) -> Dict[str, Any]:
    labels, owner, _ = _box_pixels(split, 640)
    cls = labels[:, 0].astype(int)
    images_per_class = np.zeros(nc, int)
    for c in range(nc):
        images_per_class[c] = len(np.unique(owner[cls == c]))
    found, missing, empty, corrupt, total = split.results
    return {"images": len(split.files), "boxes": int(len(labels)),
            "boxes_per_class": np.bincount(cls, minlength=nc)[:nc].tolist(),
            "images_per_class": images_per_class.tolist(),
            "label_files": {"found": found, "missing": missing, "empty": empty, "dropped": corrupt, "total": total}}


def _examples(items: Sequence[str]) -> List[str]:
    return list(items[:MAX_EXAMPLES])


def unlabeled(split: SplitData) -> List[Finding]:
    """Images without boxes: no label file at all, or an empty one (both train as background)."""
    no_boxes = [f for f, lb in zip(split.files, split.labels) if not len(lb)]
    if not no_boxes:
        return []
    no_file = [f for f, lb in zip(no_boxes, img2label_paths(no_boxes)) if not os.path.isfile(lb)]
    out = []
    if no_file:
        out.append(Finding("images_without_label_file", len(no_file),
                           f"{split.name}: {len(no_file)} images have no label file (trained as background; "
                           f"labels are looked up in .../labels/ beside .../images/)", examples=_examples(no_file)))
    n_empty = len(no_boxes) - len(no_file)
    if n_empty:
        without = set(no_file)
        empty = [f for f in no_boxes if f not in without]
        out.append(Finding("images_with_empty_labels", n_empty,
                           f"{split.name}: {n_empty} images have an empty label file (background images)",
                           severity="info", examples=_examples(empty)))
    return out


def dropped(split: SplitData) -> List[Finding]:
    """What the label cache left out or repaired, grouped by reason, with its own messages as examples."""
    groups: Dict[str, List[str]] = defaultdict(list)
    for m in split.msgs:
        reason = next((r for key, r in DROP_REASONS if key in m), "other label problems")
        groups[reason].append(re.sub(r"^WARNING: ", "", m))
    out = []
    for reason, msgs in groups.items():
        repaired = reason == "duplicate label rows removed"
        what = "label files had duplicate rows (removed)" if repaired else f"images dropped: {reason}"
        out.append(Finding(f"dropped:{reason}" if not repaired else "duplicate_rows", len(msgs),
                           f"{split.name}: {len(msgs)} {what}", severity="info" if repaired else "warning",
                           examples=_examples(msgs)))
    return out


def duplicates(splits: Sequence[SplitData], hashes: Dict[str, List[str]]) -> List[Finding]:
    """Identical files within a split, and across splits (leakage)."""
    where: Dict[str, List[Tuple[str, str]]] = defaultdict(list)  # hash -> [(split, file)]
    for s in splits:
        for f, h in zip(s.files, hashes[s.name]):
            where[h].append((s.name, f))
    out = []
    for s in splits:
        groups = [[f for sp, f in v if sp == s.name] for v in where.values()]
        groups = [g for g in groups if len(g) > 1]
        if groups:
            extra = sum(len(g) - 1 for g in groups)
            out.append(Finding(f"duplicates:{s.name}", extra,
                               f"{s.name}: {extra} images are exact copies of another {s.name} image "
                               f"({len(groups)} groups)", examples=[" = ".join(g) for g in groups[:MAX_EXAMPLES]]))
    names = [s.name for s in splits]
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = [v for v in where.values() if {a, b} <= {sp for sp, _ in v}]
            if shared:
                ex = [" = ".join(f"{sp}:{f}" for sp, f in v if sp in (a, b)) for v in shared[:MAX_EXAMPLES]]
                same = sum(len({os.path.realpath(f) for sp, f in v if sp in (a, b)}) == 1 for v in shared)
                why = f"; {same} are the very same files: does the yaml's {b} point at {a}?" if same else ""
                out.append(Finding(f"leakage:{a}-{b}", len(shared),
                                   f"{len(shared)} images of {b} are also in {a} (identical content: leakage, "
                                   f"{b} metrics will be optimistic{why})", examples=ex))
    return out


def box_findings(split: SplitData, settings: CheckSettings) -> List[Finding]:
    """Tiny, elongated and edge-crossing boxes of a split (examples name the file and the label row)."""
    labels, owner, px = _box_pixels(split, settings.img_size)
    if not len(labels):
        return []
    row = np.concatenate([np.arange(len(lb)) for lb in split.labels if len(lb)])
    lb_files = img2label_paths(split.files)
    out = []

    def finding(kind: str, mask: np.ndarray, text: str) -> None:
        idx = np.flatnonzero(mask)
        if len(idx):
            ex = [f"{lb_files[owner[i]]}:{row[i] + 1} ({px[i, 0]:.1f}x{px[i, 1]:.1f} px)" for i in idx[:MAX_EXAMPLES]]
            out.append(Finding(f"{kind}:{split.name}", len(idx), f"{split.name}: {len(idx)} {text}", examples=ex))

    s = settings
    finding("tiny_boxes", px.min(1) < s.min_pixels,
            f"boxes smaller than {s.min_pixels:g} px at --img {s.img_size} (too small to learn from)")
    aspect = np.maximum(px[:, 0], 1e-9) / np.maximum(px[:, 1], 1e-9)
    finding("extreme_aspect", np.maximum(aspect, 1 / aspect) > s.max_aspect,
            f"boxes with an aspect ratio beyond {s.max_aspect:g}:1 (training drops these)")
    b = labels[:, 1:5]
    past = ((b[:, 0] - b[:, 2] / 2 < -EDGE_TOLERANCE) | (b[:, 0] + b[:, 2] / 2 > 1 + EDGE_TOLERANCE)
            | (b[:, 1] - b[:, 3] / 2 < -EDGE_TOLERANCE) | (b[:, 1] + b[:, 3] / 2 > 1 + EDGE_TOLERANCE))
    finding("boxes_past_edge", past, "boxes reach past the image edge (centre +- size / 2 outside [0, 1]; "
                                     "clipped in training)")
    return out


def rare_classes(stats: Dict[str, Dict[str, Any]], names: List[str], min_boxes: int) -> List[Finding]:
    """Classes with fewer than ``min_boxes`` training boxes; classes absent from val."""
    out = []
    if "train" in stats:
        counts = stats["train"]["boxes_per_class"]
        rare = [(names[c], n) for c, n in enumerate(counts) if n < min_boxes]
        if rare:
            out.append(Finding("rare_classes", len(rare),
                               f"{len(rare)} classes have fewer than {min_boxes} training boxes: "
                               + ", ".join(f"{n} ({k})" for n, k in rare[:MAX_EXAMPLES])
                               + (", ..." if len(rare) > MAX_EXAMPLES else ""),
                               examples=[f"{n}: {k}" for n, k in rare]))
    if "val" in stats:
        absent = [names[c] for c, n in enumerate(stats["val"]["boxes_per_class"]) if n == 0]
        if absent:
            out.append(Finding("classes_missing_in_val", len(absent),
                               f"{len(absent)} classes have no val boxes (their mAP is not measured): "
                               + ", ".join(absent[:MAX_EXAMPLES]) + (", ..." if len(absent) > MAX_EXAMPLES else ""),
                               severity="info", examples=absent))
    return out


def run_checks(splits: Sequence[SplitData], names: List[str], settings: Optional[CheckSettings] = None
               ) -> CheckReport:
    """Every finding of the module docstring for the given splits (train first, then val, test)."""
    settings = settings or CheckSettings()
    nc = len(names)
    stats = {s.name: split_stats(s, nc) for s in splits}
    unique = list(dict.fromkeys(f for s in splits for f in s.files))  # a val that is train is read once
    by_file = dict(zip(unique, file_hashes(unique, settings.workers)))
    hashes = {s.name: [by_file[f] for f in s.files] for s in splits}
    findings: List[Finding] = []
    for s in splits:
        findings += dropped(s) + unlabeled(s)
    findings += duplicates(splits, hashes)
    findings += rare_classes(stats, names, settings.min_boxes)
    for s in splits:
        findings += box_findings(s, settings)
    sizes = {s.name: _box_pixels(s, settings.img_size)[2] for s in splits}
    return CheckReport(list(names), settings, stats, findings, sizes)
