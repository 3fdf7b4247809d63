"""Class groups for ``cls_loss: grouped``: mutually exclusive class sets and subclasses, between ``bce`` and ``ce``.

Per-class sigmoid BCE (``bce``) treats every class as independent; softmax cross-entropy (``ce``) makes all of
them mutually exclusive. Real label sets mix both: a vehicle is a car *or* a truck *or* a bus, and also red *or*
blue; a person may further be a man *or* a woman. This module holds the maths and validation of that middle
ground. It imports only torch and numpy (nothing from models/, train.py, val.py).

Data yaml key ``cls_groups`` (optional)
---------------------------------------
A list of groups; a group is a list of classes, or a mapping ``{classes: [...], parent: <class>}``. Classes
are ids (int) or names (str, looked up in ``names``)::

    names: [person, man, woman, car, truck, bus, red, blue, boy]
    cls_groups:
      - [car, truck, bus]                      # exclusive
      - [6, 7]                                 # red | blue, by id
      - {classes: [man, woman], parent: person}
      - {classes: [boy], parent: man}          # parents chain: person > man > boy

* Every group of size >= 2 is mutually exclusive. Classes listed in no group form singleton groups (one
  independent present / absent class each), after the listed groups, in id order. A size-1 group may be given
  explicitly, e.g. to give it a parent.
* A group with a ``parent`` refines that class. Parents may chain (grandparents); several groups may refine
  the same parent (person > {man, woman} and person > {adult, child}).
* Invalid specs raise :class:`ClassGroupsError` (a ``ValueError``) whose message starts with the ``source``
  (the yaml file) and names the problem: a value that is not a list, an entry that is neither a list nor a
  mapping, unknown mapping keys, an empty group, an unknown / ambiguous name, an id out of range or of the
  wrong type, a class listed twice or in two groups, a parent inside its own group, a cycle of parents.

Probabilities (inference, :class:`GroupedActivation`, :func:`grouped_probabilities`)
------------------------------------------------------------------------------------
Conditional probabilities first: a group of size >= 2 is a softmax over its classes' logits; a singleton group
is the sigmoid of its logit (a binary present / absent group, i.e. a softmax against an implicit zero logit).
Then the hierarchy: a class in a group with parent p gets ``P(class) = P(p) * P(class | p)``, applied level by
level so chains multiply through. The children's scores therefore sum to at most the parent's (exactly the
parent's for a softmax group). One group of all classes is ``softmax`` exactly; all singletons (no parents) are
per-class ``sigmoid`` exactly. Maths runs in fp32 (fp64 stays fp64) whatever the input dtype.

Loss (training, :class:`GroupedClassLoss`)
------------------------------------------
For N positive predictions (rows of nc class logits ``z``) with multi-hot labels (0/1; > 0.5 counts as a label),
first closed under parents (a labelled child implies its parent and ancestors). Per row and group:

* the group has a parent the row is not labelled with: nothing (the question does not arise);
* size >= 2, the row has a label in the group: softmax cross-entropy over the group's K classes,
  ``-sum_k q_k log softmax(z_group)_k`` with ``q = (1 - eps) t + eps / K`` (torch's ``label_smoothing``
  semantics within the group; t is the one-hot label, or uniform over the labelled classes if a box breaks
  exclusivity, see :func:`group_conflicts`); with focal ``gamma > 0`` it is weighted by ``(1 - p_t)^gamma``,
  p_t the softmax probability of the labelled class(es) (no alpha);
* size >= 2, no label in the group: nothing (unknown, not negative);
* singleton: BCE with target ``1 - eps/2`` if labelled else ``eps/2`` (``smooth_BCE``); with ``gamma > 0`` the
  sigmoid focal loss of utils/loss.py ``FocalLoss`` (alpha 0.25, ``p_t`` from the smoothed target).

``total = (sum over rows and groups) / (N * nc)``. With one group of all classes (one label per box) this is the
``ce`` mode value ``mean CE / nc``; with all singletons it is the ``bce`` mode value (mean over N * nc BCE
elements, pos_weight 1), exactly, including smoothing and focal options.

Labels
------
YOLOv5 writes a multi-label box as several label rows with the same box. :func:`merge_multilabel_targets`
turns training targets ``(nt, 6) [image, class, x, y, w, h]`` into unique boxes (class column = box index) and
a ``(nb, nc)`` multi-hot matrix, closed under parents so users may label only the most specific class.
:func:`group_conflicts` / :func:`find_label_conflicts` report boxes with two classes of one exclusive group.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.errors import UserError

FOCAL_ALPHA = 0.25  # sigmoid focal loss alpha, as utils/loss.py FocalLoss
MERGE_DECIMALS = 5  # box coordinates agreeing to this many decimals are the same box (as find_multilabel_boxes)
GROUP_KEYS = ("classes", "parent")


class ClassGroupsError(UserError, ValueError):
    """An invalid class-group specification; the message starts with its source (e.g. the data yaml)."""


def _label(c: int, names: Optional[Sequence[str]]) -> str:
    return f"'{names[c]}' ({c})" if names is not None and 0 <= c < len(names) else str(c)


def _short(value: Any, n: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= n else text[:n - 3] + "..."


# --------------------------------------------------------------------------------------------------------
# the structure and its validation
# --------------------------------------------------------------------------------------------------------
@dataclass
class ClassGroups:
    """A partition of the nc classes into groups; ``parents[g]`` is the class group g refines, or None.

    Order: groups as declared, then the undeclared classes as singletons in id order. Construction validates
    the structure (coverage, parents, cycles) and raises :class:`ClassGroupsError`.
    """

    groups: List[List[int]]
    parents: List[Optional[int]]
    nc: int

    def __post_init__(self):
        self.groups = [[int(c) for c in g] for g in self.groups]
        self.parents = [None if p is None else int(p) for p in self.parents]
        self.nc = int(self.nc)
        _validate(self.groups, self.parents, self.nc, "ClassGroups.groups", None)

    @classmethod
    def singletons(cls, nc: int) -> ClassGroups:
        """Every class on its own: equivalent to ``cls_loss: bce``."""
        return cls([[c] for c in range(nc)], [None] * nc, nc)

    @classmethod
    def from_spec(cls, spec: Any, nc: int, source: str = "class-group metadata") -> ClassGroups:
        """Inverse of :meth:`to_spec` (accepts any id-based ``cls_groups`` value), validated."""
        return parse_class_groups(spec, nc, None, source)

    def to_spec(self) -> List[Any]:
        """All groups, ids only, in order, as JSON-able ``cls_groups`` syntax (a list, or a mapping if parented)."""
        return [list(g) if p is None else {"classes": list(g), "parent": p} for g, p in zip(self.groups, self.parents)]

    @property
    def is_softmax(self) -> bool:
        """One group of all classes (nc >= 2): the probabilities are a plain softmax."""
        return len(self.groups) == 1 and self.nc >= 2

    @property
    def is_sigmoid(self) -> bool:
        """All singletons without parents: the probabilities are a plain per-class sigmoid."""
        return all(len(g) == 1 for g in self.groups) and all(p is None for p in self.parents)

    @property
    def activation(self) -> str:
        """'softmax' / 'sigmoid' when the groups reduce to that plain activation, else 'grouped'."""
        return "softmax" if self.is_softmax else "sigmoid" if self.is_sigmoid else "grouped"

    @property
    def class_parents(self) -> List[Optional[int]]:
        """Per class, the parent of its group (None for top-level classes)."""
        out: List[Optional[int]] = [None] * self.nc
        for g, p in zip(self.groups, self.parents):
            for c in g:
                out[c] = p
        return out

    @property
    def depth(self) -> int:
        """Longest parent chain (0 without parents, 1 for person > man, 2 for person > man > boy)."""
        parent = self.class_parents
        best = 0
        for c in range(self.nc):
            d = 0
            while parent[c] is not None:  # acyclic by construction
                c, d = parent[c], d + 1
            best = max(best, d)
        return best

    def describe(self, names: Optional[Sequence[str]] = None, max_listed: int = 8) -> str:
        """One-line summary, e.g. ``9 classes: {car, truck, bus}; person > {man, woman}; independent: person``."""
        name = (lambda c: str(names[c])) if names is not None else str
        if self.is_softmax:
            return f"{self.nc} classes in one softmax group (same as cls_loss=ce)"
        if self.is_sigmoid:
            return f"{self.nc} independent sigmoid classes (same as cls_loss=bce)"
        parts = []
        for g, p in zip(self.groups, self.parents):
            if len(g) > 1 or p is not None:
                members = "{" + ", ".join(name(c) for c in g) + "}"
                parts.append(members if p is None else f"{name(p)} > {members}")
        free = [name(g[0]) for g, p in zip(self.groups, self.parents) if len(g) == 1 and p is None]
        if free:
            more = f", ... ({len(free)} in all)" if len(free) > max_listed else ""
            parts.append("independent: " + ", ".join(free[:max_listed]) + more)
        return f"{self.nc} classes: " + "; ".join(parts)


def _validate(groups: List[List[int]], parents: List[Optional[int]], nc: int, where: str,
              names: Optional[Sequence[str]]) -> None:
    """Structural checks shared by :func:`parse_class_groups` and direct construction."""
    if nc < 1:
        raise ClassGroupsError(f"{where}: nc must be >= 1, got {nc}")
    if len(parents) != len(groups):
        raise ClassGroupsError(f"{where}: {len(groups)} groups but {len(parents)} parents")
    owner: Dict[int, int] = {}
    for g, members in enumerate(groups):
        if not members:
            raise ClassGroupsError(f"{where}[{g}] is empty; a group needs at least one class")
        for c in members:
            if not 0 <= c < nc:
                raise ClassGroupsError(f"{where}[{g}]: class id {c} is out of range for nc={nc}")
            if c in owner:
                other = "the same group" if owner[c] == g else f"{where}[{owner[c]}]"
                raise ClassGroupsError(f"{where}[{g}]: class {_label(c, names)} is already in {other}; "
                                       f"a class can belong to one group only")
            owner[c] = g
    missing = [c for c in range(nc) if c not in owner]
    if missing:
        raise ClassGroupsError(f"{where}: classes {missing} are in no group (every class needs one, "
                               f"singletons included)")
    for g, p in enumerate(parents):
        if p is None:
            continue
        if not 0 <= p < nc:
            raise ClassGroupsError(f"{where}[{g}]: parent id {p} is out of range for nc={nc}")
        if owner[p] == g:
            raise ClassGroupsError(f"{where}[{g}]: parent {_label(p, names)} is a member of the group itself; "
                                   f"a group refines a class outside it")
    cycle = _parent_cycle(parents, owner)
    if cycle:
        steps = " -> ".join(f"{where}[{g}] (parent {_label(parents[g], names)})" for g in cycle)
        raise ClassGroupsError(f"{where}: the parents form a cycle: {steps} -> {where}[{cycle[0]}]; "
                               f"a class cannot be its own ancestor")


def _parent_cycle(parents: List[Optional[int]], owner: Dict[int, int]) -> Optional[List[int]]:
    """Group indices on a cycle of 'group g refines a class of group owner[parents[g]]', or None.

    Each group has at most one outgoing edge, so walking from every group until reaching a visited one finds
    all cycles.
    """
    state = [0] * len(parents)  # 0 unvisited, 1 on the current walk, 2 finished
    for start in range(len(parents)):
        walk, g = [], start
        while g is not None and state[g] == 0:
            state[g] = 1
            walk.append(g)
            g = owner[parents[g]] if parents[g] is not None else None
        if g is not None and state[g] == 1:
            return walk[walk.index(g):]
        for h in walk:
            state[h] = 2
    return None


# --------------------------------------------------------------------------------------------------------
# parsing the data yaml value
# --------------------------------------------------------------------------------------------------------
def parse_class_groups(spec: Any, nc: int, names: Optional[Sequence[str]] = None,
                       source: str = "data yaml") -> ClassGroups:
    """Validated :class:`ClassGroups` from a data yaml's ``cls_groups`` value (None: all singletons).

    ``names`` (length nc) resolves class names; ``source`` (the yaml path) starts every error message.
    """
    where = f"{source}: cls_groups"
    if names is not None and len(names) != nc:
        raise ClassGroupsError(f"{source}: {len(names)} names for nc={nc}")
    if spec is None:
        return ClassGroups.singletons(nc)
    if not isinstance(spec, (list, tuple)):
        raise ClassGroupsError(f"{where} must be a list of groups (each a list of classes, or a mapping with "
                               f"'classes' and optional 'parent'), got {type(spec).__name__} {_short(spec)}")
    lookup: Dict[str, List[int]] = {}
    for i, n in enumerate(names or []):
        lookup.setdefault(str(n), []).append(i)
    groups, parents = [], []
    for i, entry in enumerate(spec):
        members, parent = _parse_group(entry, f"{where}[{i}]", nc, names, lookup)
        groups.append(members)
        parents.append(parent)
    listed = {c for g in groups for c in g}  # a class in two groups is reported by _validate
    free = [[c] for c in range(nc) if c not in listed]
    groups += free
    parents += [None] * len(free)
    _validate(groups, parents, nc, where, names)
    return ClassGroups(groups, parents, nc)


def _parse_group(entry: Any, where: str, nc: int, names: Optional[Sequence[str]],
                 lookup: Dict[str, List[int]]) -> Tuple[List[int], Optional[int]]:
    """One ``cls_groups`` entry -> (class ids, parent id or None)."""
    parent = None
    items, items_where = entry, where
    if isinstance(entry, Mapping):
        unknown = [str(k) for k in entry if k not in GROUP_KEYS]
        if unknown:
            raise ClassGroupsError(f"{where}: unknown key(s) {unknown}; a group mapping has 'classes' and "
                                   f"optionally 'parent'")
        if "classes" not in entry:
            raise ClassGroupsError(f"{where}: a group mapping needs 'classes' (a list of class ids or names)")
        if entry.get("parent") is not None:
            parent = _class_id(entry["parent"], f"{where}.parent", nc, names, lookup)
        items, items_where = entry["classes"], f"{where}.classes"
    if not isinstance(items, (list, tuple)):
        raise ClassGroupsError(f"{items_where} must be a list of class ids or names (or the group a mapping "
                               f"with 'classes'), got {type(items).__name__} {_short(items)}")
    if not items:
        raise ClassGroupsError(f"{items_where} is empty; a group needs at least one class")
    members: List[int] = []
    for k, item in enumerate(items):
        c = _class_id(item, f"{items_where}[{k}]", nc, names, lookup)
        if c in members:
            raise ClassGroupsError(f"{items_where}: class {_label(c, names)} is listed twice")
        members.append(c)
    return members, parent


def _class_id(item: Any, where: str, nc: int, names: Optional[Sequence[str]],
              lookup: Dict[str, List[int]]) -> int:
    """A class given by id (int) or name (str) -> id, or a clear error."""
    if isinstance(item, str):
        ids = lookup.get(item)
        if not ids:
            close = difflib.get_close_matches(item, list(lookup), n=3)
            hint = (f"; did you mean {', '.join(map(repr, close))}?" if close else
                    "" if names is not None else "; no class names are known here, use ids")
            raise ClassGroupsError(f"{where}: unknown class name {item!r}{hint}")
        if len(ids) > 1:
            raise ClassGroupsError(f"{where}: class name {item!r} is ambiguous, 'names' has it at ids {ids}; "
                                   f"use an id")
        return ids[0]
    if isinstance(item, (bool, np.bool_)) or not isinstance(item, (int, np.integer)):
        raise ClassGroupsError(f"{where}: {_short(item)} is not a class id (int) or name (str)")
    c = int(item)
    if not 0 <= c < nc:
        raise ClassGroupsError(f"{where}: class id {c} is out of range for nc={nc} (ids are 0..{nc - 1})")
    return c


# --------------------------------------------------------------------------------------------------------
# probabilities
# --------------------------------------------------------------------------------------------------------
def _parent_index(groups: ClassGroups) -> torch.Tensor:
    """(nc,) parent id per class, nc for top-level classes (index of an appended column of ones)."""
    return torch.tensor([groups.nc if p is None else p for p in groups.class_parents], dtype=torch.long)


class GroupedActivation(nn.Module):
    """Class logits (..., nc) -> grouped probabilities (..., nc), fp32 (fp64 stays fp64).

    A fixed graph: gather the classes singletons-first then group by group (one index_select), a sigmoid over
    all singletons and a softmax per group of size >= 2 (static slices), scatter back to class order (one
    index_select), then ``depth`` rounds of ``P = cond * P[parent]``. No data-dependent control flow, so
    torch.jit.trace, torch.onnx.export and torch.export see the same ops for any input. When the groups reduce
    to a plain softmax / sigmoid, exactly that op is used. Index tensors are non-persistent buffers: they follow
    ``.to(device)`` but do not enter the owner's state_dict (keep the groups via :meth:`ClassGroups.to_spec`).
    """

    def __init__(self, groups: ClassGroups):
        super().__init__()
        self.nc = groups.nc
        self.mode = groups.activation
        self.depth = groups.depth
        singles = [g[0] for g in groups.groups if len(g) == 1]
        multis = [g for g in groups.groups if len(g) > 1]
        order = singles + [c for g in multis for c in g]
        self.n_single = len(singles)
        self.group_sizes = [len(g) for g in multis]
        self.register_buffer("order", torch.tensor(order, dtype=torch.long), persistent=False)
        self.register_buffer("inverse", torch.tensor(np.argsort(order), dtype=torch.long), persistent=False)
        self.register_buffer("parent_index", _parent_index(groups), persistent=False)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        x = logits.to(torch.promote_types(logits.dtype, torch.float32))
        if self.mode == "softmax":
            return x.softmax(-1)
        if self.mode == "sigmoid":
            return x.sigmoid()
        x = x.index_select(-1, self.order)
        parts = [x[..., :self.n_single].sigmoid()] if self.n_single else []
        start = self.n_single
        for k in self.group_sizes:
            parts.append(x[..., start:start + k].softmax(-1))
            start += k
        cond = torch.cat(parts, -1).index_select(-1, self.inverse)  # P(class | parent), class order
        prob = cond
        for _ in range(self.depth):  # round d makes depth-d classes final: P = P(class | parent) * P(parent)
            with_one = torch.cat((prob, torch.ones_like(prob[..., :1])), -1)
            prob = cond * with_one.index_select(-1, self.parent_index)
        return prob

    def extra_repr(self) -> str:
        return f"nc={self.nc}, mode={self.mode}, groups={self.group_sizes}, singletons={self.n_single}, " \
               f"depth={self.depth}"


def grouped_probabilities(logits: torch.Tensor, groups: ClassGroups) -> torch.Tensor:
    """Functional form of :class:`GroupedActivation` (builds the index tensors on each call)."""
    return GroupedActivation(groups).to(logits.device)(logits)


# --------------------------------------------------------------------------------------------------------
# labels
# --------------------------------------------------------------------------------------------------------
def close_under_parents(multihot: torch.Tensor, groups: ClassGroups) -> torch.Tensor:
    """Multi-hot (..., nc) with each labelled class's parent and ancestors also set (a new tensor)."""
    pairs = [(c, p) for c, p in enumerate(groups.class_parents) if p is not None]
    out = multihot.reshape(-1, groups.nc).clone()
    if pairs:
        child = torch.tensor([c for c, _ in pairs], device=out.device)
        parent = torch.tensor([p for _, p in pairs], device=out.device).expand(out.shape[0], -1)
        for _ in range(groups.depth):  # each round lifts the labels one level
            out = out.scatter_reduce(1, parent, out.index_select(1, child), "amax")
    return out.view(multihot.shape)


def merge_multilabel_targets(targets: torch.Tensor, nc: int, groups: Optional[ClassGroups] = None,
                             decimals: int = MERGE_DECIMALS) -> Tuple[torch.Tensor, torch.Tensor]:
    """Training targets (nt, 6) [image, class, x, y, w, h] -> (boxes (nb, 6), multi-hot (nb, nc)).

    Rows with the same image index and coordinates (to ``decimals`` places) are one box. Boxes keep the order
    of their first row; their class column holds the box index (a row of the multi-hot matrix), so target
    assignment can carry it like a class id. The multi-hot matrix is closed under ``groups``' parents.
    """
    if targets.ndim != 2 or targets.shape[1] != 6:
        raise ValueError(f"merge_multilabel_targets: targets must be (nt, 6) [image, class, x, y, w, h], "
                         f"got {tuple(targets.shape)}")
    if groups is not None and groups.nc != nc:
        raise ValueError(f"merge_multilabel_targets: nc={nc} but the class groups have nc={groups.nc}")
    hot_dtype = targets.dtype if targets.is_floating_point() else torch.float32
    cls = targets[:, 1].long()
    bad = (cls < 0) | (cls >= nc) | (cls.to(targets.dtype) != targets[:, 1])
    if bad.any():
        raise ValueError(f"merge_multilabel_targets: class values {targets[bad, 1].unique().tolist()} are not "
                         f"class ids 0..{nc - 1}")
    nt = targets.shape[0]
    if nt == 0:
        return targets.new_zeros((0, 6)), torch.zeros((0, nc), dtype=hot_dtype, device=targets.device)
    key = torch.cat((targets[:, :1].double(), targets[:, 2:6].double() * 10 ** decimals), 1).round().long()
    _, inverse = torch.unique(key, dim=0, return_inverse=True)
    nb = int(inverse.max()) + 1
    rows = torch.arange(nt, device=targets.device)
    first = torch.full((nb,), nt, device=targets.device).scatter_reduce(0, inverse, rows, "amin")
    order = first.argsort()  # unique boxes in order of first appearance
    rank = torch.empty_like(order)
    rank[order] = torch.arange(nb, device=targets.device)
    box = rank[inverse]
    boxes = targets[first[order]].clone()
    boxes[:, 1] = torch.arange(nb, device=targets.device, dtype=targets.dtype)
    multihot = torch.zeros((nb, nc), dtype=hot_dtype, device=targets.device)
    multihot[box, cls] = 1
    if groups is not None:
        multihot = close_under_parents(multihot, groups)
    return boxes, multihot


class GroupConflict(NamedTuple):
    """Box ``box`` carries the classes ``classes`` of the exclusive group ``groups.groups[group]``."""
    box: int
    group: int
    classes: Tuple[int, ...]


def group_conflicts(multihot: torch.Tensor, groups: ClassGroups) -> List[GroupConflict]:
    """Boxes (rows of a closed multi-hot (nb, nc)) labelled with more than one class of an exclusive group.

    The loss still has a defined value for them (the group's target is uniform over the labelled classes), but
    an exclusive group then cannot be fitted: the trainer should report the label files.
    """
    labelled = (multihot.detach().reshape(-1, groups.nc) > 0.5).cpu()
    found = []
    for gi, g in enumerate(groups.groups):
        if len(g) < 2:
            continue
        sub = labelled[:, g]
        for b in torch.nonzero(sub.sum(1) > 1).flatten().tolist():
            found.append(GroupConflict(b, gi, tuple(g[k] for k in torch.nonzero(sub[b]).flatten().tolist())))
    return sorted(found)


def find_label_conflicts(labels: Sequence[np.ndarray], files: Sequence[str], groups: ClassGroups,
                         decimals: int = MERGE_DECIMALS) -> Dict[str, List[Tuple[int, ...]]]:
    """Label files -> conflicting class tuples, for boxes with two classes of one exclusive group.

    ``labels`` are (n, 5) [cls, x, y, w, h] arrays per file; rows are merged into boxes and closed under parents
    as in training (so 'man' + 'cat' conflicts when person and cat are exclusive and man refines person).
    """
    if len(labels) != len(files):
        raise ValueError(f"find_label_conflicts: {len(labels)} label arrays for {len(files)} files")
    found: Dict[str, List[Tuple[int, ...]]] = {}
    for lb, f in zip(labels, files):
        lb = np.asarray(lb, dtype=np.float64).reshape(-1, 5)
        if len(lb) < 2:  # one label plus its ancestors cannot conflict (ancestors lie in other groups)
            continue
        t = torch.from_numpy(np.concatenate((np.zeros((len(lb), 1)), lb), 1))
        _, hot = merge_multilabel_targets(t, groups.nc, groups, decimals)
        conflicts = group_conflicts(hot, groups)
        if conflicts:
            found[str(f)] = [c.classes for c in conflicts]
    return found


def describe_label_conflicts(found: Mapping[str, List[Tuple[int, ...]]], names: Optional[Sequence[str]] = None,
                             max_listed: int = 10) -> str:
    """A one-paragraph report of :func:`find_label_conflicts` output ('' when there is none)."""
    if not found:
        return ""
    name = (lambda c: str(names[c])) if names is not None else str
    listed = "; ".join(f"{f}: " + ", ".join("+".join(name(c) for c in cl) for cl in conflicts)
                       for f, conflicts in list(found.items())[:max_listed])
    more = f"; and {len(found) - max_listed} more files" if len(found) > max_listed else ""
    n = sum(len(v) for v in found.values())
    return (f"{n} boxes in {len(found)} label files carry two or more classes of one exclusive class group "
            f"(after adding parents): {listed}{more}")


# --------------------------------------------------------------------------------------------------------
# loss
# --------------------------------------------------------------------------------------------------------
class GroupedClassLoss(nn.Module):
    """Grouped class loss of (n, nc) logits against (n, nc) multi-hot labels, divided by n * nc.

    See the module docstring; reduces exactly to utils/loss.py ``SoftmaxCELoss`` (one group) and
    ``BCEClassLoss`` with pos_weight 1 (all singletons).
    """

    def __init__(self, groups: ClassGroups, gamma: float = 0.0, label_smoothing: float = 0.0):
        super().__init__()
        self.groups = groups
        self.nc = groups.nc
        self.gamma = float(gamma)
        self.eps = float(label_smoothing)
        self.cp, self.cn = 1.0 - 0.5 * self.eps, 0.5 * self.eps  # smooth_BCE
        parent_index = _parent_index(groups)  # nc = top level: the appended always-known column
        singles = [g[0] for g in groups.groups if len(g) == 1]
        multis = [(g, p) for g, p in zip(groups.groups, groups.parents) if len(g) > 1]
        self.group_sizes = [len(g) for g, _ in multis]
        self.group_parents = [self.nc if p is None else p for _, p in multis]
        self.register_buffer("single_index", torch.tensor(singles, dtype=torch.long), persistent=False)
        self.register_buffer("single_parent", parent_index[singles], persistent=False)
        self.register_buffer("group_index", torch.tensor([c for g, _ in multis for c in g], dtype=torch.long),
                             persistent=False)

    def forward(self, logits: torch.Tensor, multihot: torch.Tensor) -> torch.Tensor:
        if logits.ndim != 2 or logits.shape[1] != self.nc or multihot.shape != logits.shape:
            raise ValueError(f"GroupedClassLoss: expected logits and multi-hot labels of shape (n, {self.nc}), "
                             f"got {tuple(logits.shape)} and {tuple(multihot.shape)}")
        x = logits.to(torch.promote_types(logits.dtype, torch.float32))
        labels = close_under_parents((multihot > 0.5).to(x.dtype), self.groups)
        known = torch.cat((labels, torch.ones_like(labels[:, :1])), 1)  # column nc: 'no parent', always 1
        total = self._singleton_loss(x, labels, known) if len(self.single_index) else x.new_zeros(())
        start = 0
        for k, parent in zip(self.group_sizes, self.group_parents):
            idx = self.group_index[start:start + k]
            total = total + self._group_loss(x.index_select(1, idx), labels.index_select(1, idx), known[:, parent])
            start += k
        return total / max(x.shape[0] * self.nc, 1)

    def _singleton_loss(self, x: torch.Tensor, labels: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """Summed (focal) BCE of the singleton classes, for rows labelled with the class's parent."""
        z = x.index_select(1, self.single_index)
        t = labels.index_select(1, self.single_index) * (self.cp - self.cn) + self.cn
        loss = F.binary_cross_entropy_with_logits(z, t, reduction="none")
        if self.gamma > 0:
            p = z.sigmoid()
            p_t = t * p + (1 - t) * (1 - p)
            alpha_t = t * FOCAL_ALPHA + (1 - t) * (1 - FOCAL_ALPHA)
            loss = loss * alpha_t * (1.0 - p_t) ** self.gamma
        return (loss * known.index_select(1, self.single_parent)).sum()

    def _group_loss(self, z: torch.Tensor, labels: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """Summed (focal, smoothed) softmax CE of one exclusive group over the rows labelled in it (and gate)."""
        count = labels.sum(1)
        t = labels / count.clamp(min=1)[:, None]  # one-hot (uniform over the labels if exclusivity is broken)
        q = t * (1.0 - self.eps) + self.eps / z.shape[1]
        logp = z.log_softmax(1)
        ce = -(q * logp).sum(1)
        if self.gamma > 0:
            p_t = (t * logp.exp()).sum(1)
            ce = ce * (1.0 - p_t).clamp(min=0) ** self.gamma
        return (ce * gate * (count > 0).to(ce.dtype)).sum()

    def extra_repr(self) -> str:
        return f"groups={self.group_sizes}, singletons={len(self.single_index)}, gamma={self.gamma}, " \
               f"label_smoothing={self.eps}"
