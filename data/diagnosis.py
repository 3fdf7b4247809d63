"""What the labels say about the classification loss: one class per box, nested classes, or free multi-label.

YOLOv5 writes a box with several classes as several label rows with the same box. From those rows this module
finds, per unique box (coordinates agreeing to 5 decimals, as ``utils.loss.find_multilabel_boxes``):

* boxes with several classes, and which class pairs share boxes;
* subclasses: class A whose every box is also a B ("A implies B"), e.g. ``man`` -> ``person``;
* which ``--cls-loss`` fits:

  - no box has two classes: ``ce`` (softmax over all classes) fits; ``bce`` also works;
  - some classes are subclasses, each with one direct parent: ``grouped`` with the suggested ``cls_groups``
    block (softmax among classes that never share a box, children under their parent), or ``bce``;
  - otherwise (classes that overlap without any nesting, classes always on the same boxes, a class with two
    unrelated parents): ``bce``.

It only reports: nothing here changes a setting (train.py and compare.py print :meth:`ClassStructure.lines`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import yaml

from data.datasets import img_files_from
from data.label_cache import img2label_paths, parse_label_file
from utils.class_groups import parse_class_groups

BOX_DECIMALS = 5  # rows whose coordinates agree to this many decimals describe the same box
MAX_LISTED = 8


@dataclass
class ClassStructure:
    """The class structure of a label set (see the module docstring); ``lines()`` is the printed diagnosis."""

    nc: int
    names: List[str]
    files: int
    rows: int
    boxes: int
    class_boxes: List[int]  # unique boxes carrying each class
    multilabel_files: Dict[str, int]  # label file -> boxes in it with several classes
    pairs: Dict[Tuple[int, int], int]  # (a, b), a < b -> boxes carrying both
    implications: List[Tuple[int, int, int]]  # (a, b, boxes): every box of a is also b (a != b)
    equivalent: List[Tuple[int, int]] = field(default_factory=list)  # always on the same boxes: duplicates?
    overlaps: List[Tuple[int, int, int]] = field(default_factory=list)  # shared boxes that no nesting explains
    multi_parent: Dict[int, List[int]] = field(default_factory=dict)  # class -> several unrelated parents
    suggested_groups: List[dict] = field(default_factory=list)  # cls_groups entries, class names
    recommendation: str = ""
    loss: str = ""  # the recommended --cls-loss: ce | grouped | bce

    @property
    def multilabel_boxes(self) -> int:
        return int(sum(self.multilabel_files.values()))

    def name(self, c: int) -> str:
        return self.names[c] if 0 <= c < len(self.names) else str(c)

    def groups_yaml(self) -> str:
        """The suggested ``cls_groups`` block for the data yaml ('' when there is none)."""
        if not self.suggested_groups:
            return ""
        return yaml.safe_dump({"cls_groups": self.suggested_groups}, default_flow_style=None, sort_keys=False,
                              allow_unicode=True).rstrip()

    def lines(self) -> List[str]:
        """The diagnosis as printable lines, the recommendation last."""
        out = [f"Labels: {self.files} files, {self.boxes} boxes ({self.rows} label rows), {self.nc} classes; "
               + self._multilabel_text()]
        if self.pairs:
            top = sorted(self.pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_LISTED]
            more = f", ... ({len(self.pairs)} pairs)" if len(self.pairs) > MAX_LISTED else ""
            out.append("Classes on the same box: " + ", ".join(
                f"{self.name(a)} + {self.name(b)} ({n})" for (a, b), n in top) + more)
        if self.implications:
            out.append("Subclasses (every box of A is also B): " + ", ".join(
                f"{self.name(a)} -> {self.name(b)} ({n} boxes)" for a, b, n in self.implications[:MAX_LISTED]))
        if self.equivalent:
            out.append("Always on the same boxes (duplicate classes?): " + ", ".join(
                f"{self.name(a)} = {self.name(b)}" for a, b in self.equivalent))
        if self.overlaps:
            out.append("Overlapping without nesting: " + ", ".join(
                f"{self.name(a)} + {self.name(b)} ({n})" for a, b, n in self.overlaps[:MAX_LISTED]))
        for c, ps in self.multi_parent.items():
            out.append(f"'{self.name(c)}' implies several unrelated classes: {', '.join(self.name(p) for p in ps)}")
        if self.suggested_groups:
            out += ["Suggested for the data yaml:"] + ["  " + ln for ln in self.groups_yaml().splitlines()]
        out.append(f"Recommendation: {self.recommendation}")
        return out

    def _multilabel_text(self) -> str:
        if not self.multilabel_files:
            return "every box has one class"
        listed = list(self.multilabel_files.items())[:3]
        more = ", ..." if len(self.multilabel_files) > 3 else ""
        return (f"{self.multilabel_boxes} boxes in {len(self.multilabel_files)} files carry several classes "
                f"(e.g. {', '.join(f'{Path(f).name} ({n})' for f, n in listed)}{more})")

    def to_dict(self) -> dict:
        """JSON-able form (class ids and names)."""
        return {
            "nc": self.nc, "files": self.files, "rows": self.rows, "boxes": self.boxes,
            "class_boxes": {self.name(c): n for c, n in enumerate(self.class_boxes)},
            "multilabel_boxes": self.multilabel_boxes, "multilabel_files": len(self.multilabel_files),
            "pairs": [{"a": self.name(a), "b": self.name(b), "boxes": n} for (a, b), n in self.pairs.items()],
            "implications": [{"class": self.name(a), "implies": self.name(b), "boxes": n}
                             for a, b, n in self.implications],
            "equivalent": [[self.name(a), self.name(b)] for a, b in self.equivalent],
            "overlaps": [{"a": self.name(a), "b": self.name(b), "boxes": n} for a, b, n in self.overlaps],
            "suggested_groups": self.suggested_groups, "loss": self.loss, "recommendation": self.recommendation,
        }


# --------------------------------------------------------------------------------------------------------
# counting
# --------------------------------------------------------------------------------------------------------
def _box_class_sets(lb: np.ndarray) -> List[frozenset]:
    """The set of classes of every unique box of one label file."""
    lb = np.asarray(lb, dtype=np.float64).reshape(-1, 5) if len(lb) else np.zeros((0, 5))
    if not len(lb):
        return []
    keys = np.round(lb[:, 1:5] * 10 ** BOX_DECIMALS).astype(np.int64)
    _, box_id = np.unique(keys, axis=0, return_inverse=True)
    box_id = box_id.reshape(-1)
    return [frozenset(int(c) for c in lb[box_id == b, 0]) for b in range(int(box_id.max()) + 1)]


def _count(labels: Sequence[np.ndarray], files: Sequence[str], nc: int):
    class_boxes = np.zeros(nc, dtype=np.int64)
    pairs: Dict[Tuple[int, int], int] = {}
    multilabel: Dict[str, int] = {}
    boxes = rows = 0
    for lb, f in zip(labels, files):
        sets = _box_class_sets(lb)
        rows += len(lb)
        boxes += len(sets)
        for s in sets:
            for c in s:
                if 0 <= c < nc:
                    class_boxes[c] += 1
            for a, b in combinations(sorted(s), 2):
                pairs[(a, b)] = pairs.get((a, b), 0) + 1
        n = sum(len(s) > 1 for s in sets)
        if n:
            multilabel[str(f)] = n
    return class_boxes, pairs, multilabel, boxes, rows


def _implications(class_boxes: np.ndarray, pairs: Dict[Tuple[int, int], int], min_boxes: int):
    """(a, b, n): all n boxes of a also carry b; pairs that imply each other are returned apart as equivalent."""
    implied, equivalent = [], []
    for (a, b), n in sorted(pairs.items()):
        a_in_b, b_in_a = n == class_boxes[a] and n >= min_boxes, n == class_boxes[b] and n >= min_boxes
        if a_in_b and b_in_a:
            equivalent.append((a, b))
        elif a_in_b:
            implied.append((a, b, int(n)))
        elif b_in_a:
            implied.append((b, a, int(n)))
    return sorted(implied, key=lambda t: (-t[2], t[0], t[1])), equivalent


def _direct_parents(implied: List[Tuple[int, int, int]]) -> Tuple[Dict[int, int], Dict[int, List[int]]]:
    """Each subclass's most specific implied class (the one implying all its others); unresolvable ones apart."""
    supers: Dict[int, set] = {}
    for a, b, _ in implied:
        supers.setdefault(a, set()).add(b)
    parent, multi = {}, {}
    for a, ups in supers.items():
        direct = [p for p in ups if ups - {p} <= supers.get(p, set())]
        if len(direct) == 1:
            parent[a] = direct[0]
        else:
            multi[a] = sorted(ups)
    return parent, multi


# --------------------------------------------------------------------------------------------------------
# the suggestion
# --------------------------------------------------------------------------------------------------------
def _exclusive_groups(classes: List[int], pairs: Dict[Tuple[int, int], int]) -> List[List[int]]:
    """Split classes greedily into groups whose members never share a box (softmax groups must be exclusive)."""
    groups: List[List[int]] = []
    for c in classes:
        for g in groups:
            if not any(pairs.get((min(c, o), max(c, o))) for o in g):
                g.append(c)
                break
        else:
            groups.append([c])
    return groups


def _suggest_groups(nc: int, parent: Dict[int, int], pairs: Dict[Tuple[int, int], int],
                    class_boxes: np.ndarray) -> List[Tuple[List[int], Optional[int]]]:
    """Exclusive groups (members never share a box) of the top-level classes and of the children of each parent;
    classes left out stay independent sigmoids."""
    out: List[Tuple[List[int], Optional[int]]] = []
    for p in sorted(set(parent.values())):
        children = sorted(c for c, q in parent.items() if q == p)
        out += [(g, p) for g in _exclusive_groups(children, pairs)]
    roots = [c for c in range(nc) if c not in parent and class_boxes[c] > 0]
    return [(g, None) for g in _exclusive_groups(roots, pairs) if len(g) > 1] + out


def _recommend(s: ClassStructure) -> Tuple[str, str]:
    if not s.multilabel_files:
        return "ce", ("--cls-loss ce (softmax over all classes) fits: every box has exactly one class; bce also "
                      "works. Compare both with compare.py to know which is better on this data.")
    if s.suggested_groups:
        return "grouped", (f"--cls-loss grouped with the cls_groups above (subclasses share boxes with their "
                           f"parents), or bce. Not ce: softmax cannot learn the {s.multilabel_boxes} boxes that "
                           f"carry several classes.")
    return "bce", (f"--cls-loss bce (independent sigmoids): {s.multilabel_boxes} boxes carry several classes "
                   f"that are not nested subclasses: ce cannot learn them, and grouped has no hierarchy to use.")


def diagnose_labels(labels: Sequence[np.ndarray], files: Sequence[str], names: Sequence[str],
                    min_boxes: int = 2) -> ClassStructure:
    """Diagnose the class structure of ``labels`` ((n, 5) arrays [cls, x, y, w, h], one per label file).

    ``min_boxes``: a subclass relation needs at least this many boxes of the subclass (one shared box is chance).
    """
    if len(labels) != len(files):
        raise ValueError(f"diagnose_labels: {len(labels)} label arrays for {len(files)} files")
    names = [str(n) for n in names]
    nc = len(names)
    class_boxes, pairs, multilabel, boxes, rows = _count(labels, files, nc)
    implied, equivalent = _implications(class_boxes, pairs, min_boxes)
    parent, multi = _direct_parents(implied)
    explained = {(min(a, b), max(a, b)) for a, b, _ in implied} | set(equivalent)
    overlaps = sorted(((a, b, n) for (a, b), n in pairs.items() if (a, b) not in explained),
                      key=lambda t: (-t[2], t[0], t[1]))
    s = ClassStructure(nc, names, len(files), rows, boxes, class_boxes.tolist(), multilabel, pairs, implied,
                       equivalent, overlaps, multi)
    if parent and not multi and not equivalent:  # a hierarchy class_groups can express
        groups = _suggest_groups(nc, parent, pairs, class_boxes)
        parse_class_groups([{"classes": g, "parent": p} if p is not None else g for g, p in groups], nc, names,
                           "diagnose_labels")  # the suggestion must be a valid cls_groups value
        unique = len(set(names)) == nc
        key = (lambda c: names[c]) if unique else (lambda c: c)
        s.suggested_groups = [{"classes": [key(c) for c in g], **({"parent": key(p)} if p is not None else {})}
                              for g, p in groups]
    s.loss, s.recommendation = _recommend(s)
    return s


def read_split_labels(path: Union[str, Path, Sequence], nc: Optional[int] = None
                      ) -> Tuple[List[np.ndarray], List[str], List[str]]:
    """(labels, label files, unreadable-file messages) of a dataset split (images dir, list or .txt)."""
    labels, files, errors = [], [], []
    for lb_file in img2label_paths(img_files_from(path)):
        if not Path(lb_file).is_file():
            continue  # an image without labels: background
        try:
            lb, _, _ = parse_label_file(lb_file, nc)
        except ValueError as e:
            errors.append(f"{lb_file}: {e}")
            continue
        labels.append(lb)
        files.append(lb_file)
    return labels, files, errors


def diagnose_dataset(data: dict, split: str = "train") -> ClassStructure:
    """Diagnose a checked dataset dict (``data.config.check_dataset``) from the labels of one split."""
    labels, files, _ = read_split_labels(data[split], data.get("nc"))
    return diagnose_labels(labels, files, data["names"])
