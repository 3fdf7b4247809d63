"""YOLOv5 training loss (v5.0 path ``utils.loss``): box + objectness + classification, with a choice of class loss.

Hyperparameters read from ``model.hyp`` (besides the v5.0 keys box, obj, cls, cls_pw, obj_pw, anchor_t,
fl_gamma, label_smoothing):

* ``cls_loss``: ``bce`` (default when the key is absent, so upstream hyp files and checkpoints keep their
  meaning), ``ce`` or ``grouped``. The loss does not touch the model: the trainer puts the Detect head in the
  matching activation (utils/class_activation.py) before building the loss, and ``grouped`` reads its class
  groups from the head, so training and inference share one definition of the groups.
* ``box_loss``: ``ciou`` (default), ``giou``, ``diou``, ``iou``, ``eiou``, ``siou`` (formulas in
  :mod:`utils.metrics`); the box loss is ``mean(1 - value)`` and the objectness target is ``clamp(value, 0)``.

Class loss, for the N positives of a level with class logits z_i (nc values) and true classes c_i:

* ``bce`` (upstream): ``L = 1/(N nc) sum_i sum_k BCE(z_ik, t_ik)`` with t_ik = cp for k = c_i, cn otherwise
  (label smoothing eps: cp = 1 - eps/2, cn = eps/2); ``cls_pw`` is BCE's positive weight; ``fl_gamma > 0``
  wraps it in sigmoid focal loss (alpha 0.25), as upstream.
* ``ce``: ``L = 1/N sum_i w_i CE_i / nc`` with ``CE_i = -sum_k q_ik log softmax(z_i)_k``, where the smoothed
  target is ``q_ik = (1 - eps) [k = c_i] + eps / nc`` (``torch.nn.functional.cross_entropy(label_smoothing=eps)``).
  - Softmax focal loss (``fl_gamma = gamma > 0``): ``w_i = (1 - p_i)^gamma`` with p_i = softmax(z_i)_{c_i}
    (no alpha); ``w_i = 1`` otherwise. Objectness keeps sigmoid focal loss in both modes.
  - Normalisation by nc: at initialisation the class logits are nearly equal, so ``CE_i ~ ln(nc)`` (4.38 for
    nc = 80), while BCE's per-element mean is ``(-ln p0 - (nc - 1) ln(1 - p0)) / nc`` with the prior
    ``p0 = sigmoid(ln(0.6 / (nc - 0.99)))`` of ``Model._initialize_biases`` (0.068 for nc = 80). Dividing
    CE by nc puts it on BCE's per-element scale (0.055 for nc = 80; the two stay within 1.2x - 2.1x of each
    other for nc = 2..80) and gives the true-class logit the same gradient per positive, ``(p - 1) / nc``,
    as BCE. The v5.0 ``cls`` gain, and train.py's ``cls *= nc / 80`` rescaling, therefore keep the same
    meaning; without it the CE term would start ~60x larger than box and objectness.
  - ``cls_pw`` has no meaning for softmax CE (there are no per-class negatives to re-weight): it is ignored,
    with a warning when it differs from 1.
  - CE assumes exactly one class per box: see :func:`warn_multilabel`.
* ``grouped`` (utils/class_groups.py): softmax CE within each group of mutually exclusive classes, BCE for
  independent classes, a subgroup trained only on boxes of its parent class; summed over groups and divided by
  ``N nc`` (= ``ce`` with one group of all classes, = ``bce`` with singleton groups). YOLOv5 writes a box with
  several labels as repeated rows: they are merged into one box with a multi-hot label before assignment.

With nc == 1 there is no class loss in either mode (upstream behaviour).
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.class_activation import CLS_ACTIVATION, CLS_LOSSES, cls_loss_of  # noqa: F401 (v-fork names)
from utils.class_groups import ClassGroups, GroupedClassLoss, merge_multilabel_targets
from utils.log import LOGGER
from utils.metrics import IOU_KINDS, bbox_iou
from utils.torch_utils import de_parallel, detect_head

BOX_LOSSES = ("ciou",) + tuple(k for k in IOU_KINDS if k != "ciou")  # ciou first: the default

NEIGHBOUR_G = 0.5  # a target also claims a neighbour cell when within this distance of the shared edge
BALANCE = {3: [4.0, 1.0, 0.4]}  # objectness weight per level (P3-P5); other depths use BALANCE_DEEP[:nl]
BALANCE_DEEP = [4.0, 1.0, 0.25, 0.06, 0.02]


def _hyp_choice(hyp: Optional[Mapping], key: str, allowed: Sequence[str], default: str) -> str:
    value = (hyp or {}).get(key)
    value = default if value is None else str(value).strip().lower()
    if value not in allowed:
        raise ValueError(f"hyp['{key}'] = {value!r} is not supported; allowed values: {', '.join(allowed)}")
    return value


def get_cls_loss(hyp: Optional[Mapping]) -> str:
    """Validated ``hyp['cls_loss']``: 'bce' (also when missing), 'ce' or 'grouped'."""
    return cls_loss_of(dict(hyp or {}))


def get_box_loss(hyp: Optional[Mapping]) -> str:
    """Validated ``hyp['box_loss']``: 'ciou' (also when missing), 'giou', 'diou', 'iou', 'eiou' or 'siou'."""
    return _hyp_choice(hyp, "box_loss", BOX_LOSSES, "ciou")


def smooth_BCE(eps: float = 0.1) -> Tuple[float, float]:
    """Label-smoothed BCE targets (positive, negative) = (1 - eps/2, eps/2)."""
    return 1.0 - 0.5 * eps, 0.5 * eps


class FocalLoss(nn.Module):
    """Sigmoid focal loss around a ``BCEWithLogitsLoss``: BCE * alpha_t * (1 - p_t)^gamma, p = sigmoid(pred)."""

    def __init__(self, loss_fcn: nn.BCEWithLogitsLoss, gamma: float = 1.5, alpha: float = 0.25):
        super().__init__()
        self.loss_fcn = loss_fcn
        self.gamma = gamma
        self.alpha = alpha
        self.reduction = loss_fcn.reduction
        self.loss_fcn.reduction = "none"  # the modulation is applied per element

    def forward(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        loss = self.loss_fcn(pred, true)
        p = torch.sigmoid(pred)
        p_t = true * p + (1 - true) * (1 - p)
        alpha_t = true * self.alpha + (1 - true) * (1 - self.alpha)
        loss = loss * alpha_t * (1.0 - p_t) ** self.gamma
        if self.reduction == "mean":
            return loss.mean()
        return loss.sum() if self.reduction == "sum" else loss


class BCEClassLoss(nn.Module):
    """Per-class sigmoid BCE of (n, nc) logits against one-hot (cp / cn) targets; mean over n * nc elements."""

    def __init__(self, pos_weight: float = 1.0, gamma: float = 0.0, label_smoothing: float = 0.0,
                 device: Optional[torch.device] = None):
        super().__init__()
        bce = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([pos_weight], device=device))
        self.criterion = FocalLoss(bce, gamma) if gamma > 0 else bce
        self.cp, self.cn = smooth_BCE(label_smoothing)

    def forward(self, logits: torch.Tensor, tcls: torch.Tensor) -> torch.Tensor:
        t = torch.full_like(logits, self.cn)
        t[torch.arange(logits.shape[0], device=logits.device), tcls] = self.cp
        return self.criterion(logits, t)


class SoftmaxCELoss(nn.Module):
    """Softmax cross-entropy of (n, nc) logits against class indices, optionally focal, divided by nc.

    ``mean_i((1 - p_i)^gamma * CE_i) / nc`` (see the module docstring for why the 1/nc).
    """

    def __init__(self, nc: int, gamma: float = 0.0, label_smoothing: float = 0.0):
        super().__init__()
        self.nc = nc
        self.gamma = gamma
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, tcls: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, tcls, reduction="none", label_smoothing=self.label_smoothing)
        if self.gamma > 0:
            p_true = torch.softmax(logits, 1).gather(1, tcls[:, None]).squeeze(1)
            ce = ce * (1.0 - p_true).clamp(min=0) ** self.gamma
        return ce.mean() / self.nc


def _hyp_value(hyp: Mapping, key: str) -> float:
    if key not in hyp:
        raise KeyError(f"ComputeLoss: model.hyp has no '{key}' (a v5.0 hyp file defines it)")
    return float(hyp[key])


class ComputeLoss:
    """v5.0 loss: ``loss, items = ComputeLoss(model)(p, targets)``.

    ``p`` is the training-mode output (list of nl raw maps (bs, na, ny, nx, 5 + nc)), ``targets`` (nt, 6)
    [image, class, x, y, w, h] normalised. Returns ``(total * bs, [box, obj, cls, total].detach())``.
    Construction reads ``model.hyp``, ``model.gr`` (default 1.0) and, for ``cls_loss: grouped``, the class groups
    of the Detect head; it does not change the model. The loss is computed in fp32 whatever the precision of
    ``p`` (bf16 / fp16 autocast): IoU, BCE / CE and their reductions need it.
    """

    def __init__(self, model: nn.Module, autobalance: bool = False):
        model = de_parallel(model)
        det = detect_head(model, required=True)
        device = next(model.parameters()).device
        hyp = getattr(model, "hyp", None)
        if not isinstance(hyp, Mapping):
            raise AttributeError("ComputeLoss: model.hyp must be the hyperparameter dict (train.py attaches it "
                                 f"before building the loss), got {type(hyp).__name__}")
        self.hyp = hyp
        self.gr = float(getattr(model, "gr", 1.0))
        self.cls_loss = get_cls_loss(hyp)
        self.box_loss = get_box_loss(hyp)
        self.na, self.nc, self.nl = det.na, det.nc, det.nl
        self.anchors = det.anchors  # (nl, na, 2) in grid units
        self.anchor_t = _hyp_value(hyp, "anchor_t")
        self.gains = {k: _hyp_value(hyp, k) for k in ("box", "obj", "cls")}
        gamma = float(hyp.get("fl_gamma", 0.0) or 0.0)
        obj_criterion = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([_hyp_value(hyp, "obj_pw")], device=device))
        self.BCEobj = FocalLoss(obj_criterion, gamma) if gamma > 0 else obj_criterion
        self.groups = self._class_groups(det)
        self.cls_criterion = self._class_criterion(gamma, float(hyp.get("label_smoothing", 0.0) or 0.0), device)
        self.balance = list(BALANCE.get(self.nl, BALANCE_DEEP[:self.nl]))
        strides = [float(s) for s in (det.stride if det.stride is not None else [])]
        self.ssi = strides.index(16.0) if autobalance and 16.0 in strides else 0
        self.autobalance = autobalance

    def _class_groups(self, det: nn.Module) -> Optional[ClassGroups]:
        """The head's class groups for ``grouped`` (the trainer sets them on the head first), else None."""
        if self.cls_loss != "grouped":
            return None
        spec = getattr(det, "cls_groups", None)
        if getattr(det, "cls_act", "sigmoid") != "grouped" or spec is None:
            raise ValueError("ComputeLoss: cls_loss 'grouped' needs a Detect head in 'grouped' mode with its class "
                             "groups: model.set_class_activation('grouped', groups) before building the loss")
        return ClassGroups.from_spec(spec, self.nc)

    def _class_criterion(self, gamma: float, smoothing: float, device: torch.device) -> nn.Module:
        cls_pw = _hyp_value(self.hyp, "cls_pw")
        if self.cls_loss == "bce":
            return BCEClassLoss(cls_pw, gamma, smoothing, device)
        if cls_pw != 1.0:
            LOGGER.warning(f"WARNING: hyp cls_pw={cls_pw:g} is a BCE positive weight and is ignored with "
                           f"cls_loss={self.cls_loss} (softmax cross-entropy has no per-class negatives to re-weight)")
        if self.cls_loss == "grouped":
            return GroupedClassLoss(self.groups, gamma, smoothing)
        return SoftmaxCELoss(self.nc, gamma, smoothing)

    def __call__(self, p: Sequence[torch.Tensor], targets: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(targets.device.type, enabled=False):
            p = [pi.float() if pi.dtype in (torch.float16, torch.bfloat16) else pi for pi in p]
            return self._loss(p, targets)

    def _loss(self, p: Sequence[torch.Tensor], targets: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        device, acc = targets.device, p[0].dtype  # fp32 (fp64 when the caller works in fp64)
        lbox, lobj, lcls = (torch.zeros(1, device=device, dtype=acc) for _ in range(3))
        multihot = None
        if self.cls_loss == "grouped":  # one target per box, with all its labels (rows repeated per class)
            targets, multihot = merge_multilabel_targets(targets, self.nc, self.groups)
        tcls, tbox, indices, anchors = self.build_targets(p, targets)
        for i, pi in enumerate(p):
            b, a, gj, gi = indices[i]
            tobj = torch.zeros(pi.shape[:4], device=device, dtype=pi.dtype)
            if b.shape[0]:
                ps = pi[b, a, gj, gi]  # (n, 5 + nc) predictions at the assigned cells
                pxy = ps[:, :2].sigmoid() * 2 - 0.5
                pwh = (ps[:, 2:4].sigmoid() * 2) ** 2 * anchors[i]
                iou = bbox_iou(torch.cat((pxy, pwh), 1), tbox[i], kind=self.box_loss)
                lbox = lbox + (1.0 - iou).mean()
                score = iou.detach().clamp(min=0).to(tobj.dtype)
                keep = _last_occurrence(b, a, gj, gi, tobj.shape)  # several targets on one cell: last one wins
                tobj[b[keep], a[keep], gj[keep], gi[keep]] = (1.0 - self.gr) + self.gr * score[keep]
                if self.nc > 1:
                    labels = tcls[i] if multihot is None else multihot[tcls[i]]
                    lcls = lcls + self.cls_criterion(ps[:, 5:], labels)
            obji = self.BCEobj(pi[..., 4], tobj)
            lobj = lobj + obji * self.balance[i]
            if self.autobalance:
                self.balance[i] = self.balance[i] * 0.9999 + 0.0001 / obji.detach().item()
        if self.autobalance:
            self.balance = [x / self.balance[self.ssi] for x in self.balance]
        lbox, lobj, lcls = lbox * self.gains["box"], lobj * self.gains["obj"], lcls * self.gains["cls"]
        loss = lbox + lobj + lcls
        return loss * p[0].shape[0], torch.cat((lbox, lobj, lcls, loss)).detach()

    def build_targets(self, p: Sequence[torch.Tensor], targets: torch.Tensor):
        """Assign targets to (image, anchor, cell) per level, vectorised over targets, anchors and offsets.

        Returns per level: class ids, boxes (x, y offset from the cell corner, w, h) in grid units, indices
        ``(b, a, gj, gi)`` and the matched anchors (grid units). Order: offset (own cell, left, up, right,
        down), then anchor, then target.
        """
        na, nt = self.na, targets.shape[0]
        dtype, device = targets.dtype, targets.device
        anchor_idx = torch.arange(na, device=device, dtype=dtype).view(na, 1, 1).expand(na, nt, 1)
        per_anchor = torch.cat((targets[None].expand(na, nt, 6), anchor_idx), 2)  # (na, nt, 7)
        offsets = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], device=device, dtype=dtype) * NEIGHBOUR_G

        tcls, tbox, indices, anch = [], [], [], []
        for i in range(self.nl):
            anchors = self.anchors[i].to(device=device, dtype=dtype)
            ny, nx = p[i].shape[2:4]
            scale = torch.tensor([1, 1, nx, ny, nx, ny, 1], device=device, dtype=dtype)
            t = per_anchor * scale  # xywh in grid units

            ratio = t[..., 4:6] / anchors[:, None]  # (na, nt, 2)
            t = t[torch.max(ratio, 1 / ratio).amax(2) < self.anchor_t]  # (m, 7), anchor-major

            gxy = t[:, 2:4]
            gxy_inv = torch.tensor([nx, ny], device=device, dtype=dtype) - gxy
            low = (gxy % 1 < NEIGHBOUR_G) & (gxy > 1)  # left (x) / upper (y) neighbour
            high = (gxy_inv % 1 < NEIGHBOUR_G) & (gxy_inv > 1)  # right / lower neighbour
            use = torch.stack((torch.ones_like(low[:, 0]), low[:, 0], low[:, 1], high[:, 0], high[:, 1]))  # (5, m)
            t = t[None].expand(5, -1, -1)[use]
            off = offsets[:, None].expand(-1, use.shape[1], -1)[use]

            gxy, gwh = t[:, 2:4], t[:, 4:6]
            gij = (gxy - off).floor().long()
            gi = gij[:, 0].clamp(0, nx - 1)
            gj = gij[:, 1].clamp(0, ny - 1)
            a = t[:, 6].long()
            indices.append((t[:, 0].long(), a, gj, gi))
            tbox.append(torch.cat((gxy - torch.stack((gi, gj), 1).to(dtype), gwh), 1))
            anch.append(anchors[a])
            tcls.append(t[:, 1].long())
        return tcls, tbox, indices, anch


def _last_occurrence(b: torch.Tensor, a: torch.Tensor, gj: torch.Tensor, gi: torch.Tensor,
                     shape: Sequence[int]) -> torch.Tensor:
    """Indices of the last assignment to each distinct cell, so duplicate writes resolve the same on any device."""
    _, na, ny, nx = shape
    cell = ((b * na + a) * ny + gj) * nx + gi
    sorted_cell, order = torch.sort(cell, stable=True)
    last = torch.ones_like(sorted_cell, dtype=torch.bool)
    last[:-1] = sorted_cell[1:] != sorted_cell[:-1]
    return order[last]


# --------------------------------------------------------------------------------------------------------
# multi-label guard for softmax CE
# --------------------------------------------------------------------------------------------------------
def find_multilabel_boxes(labels: Sequence[np.ndarray], files: Sequence[str], decimals: int = 5) -> Dict[str, int]:
    """Files whose labels give one box several different classes -> number of such boxes.

    ``labels`` are (n, 5) [cls, x, y, w, h] arrays (normalised); boxes count as the same when their
    coordinates agree to ``decimals`` decimal places (YOLOv5 expresses multi-label boxes as repeated rows).
    """
    if len(labels) != len(files):
        raise ValueError(f"find_multilabel_boxes: {len(labels)} label arrays for {len(files)} files")
    found: Dict[str, int] = {}
    for lb, f in zip(labels, files):
        lb = np.asarray(lb, dtype=np.float64).reshape(-1, 5) if len(lb) else np.zeros((0, 5))
        if len(lb) < 2:
            continue
        keys = np.round(lb[:, 1:5] * 10 ** decimals).astype(np.int64)
        _, box_id = np.unique(keys, axis=0, return_inverse=True)
        pairs = np.unique(np.stack((box_id.reshape(-1), lb[:, 0].astype(np.int64)), 1), axis=0)
        _, classes_per_box = np.unique(pairs[:, 0], return_counts=True)
        n = int((classes_per_box > 1).sum())
        if n:
            found[str(f)] = n
    return found


def warn_multilabel(labels: Sequence[np.ndarray], files: Sequence[str], cls_loss: str,
                    max_listed: int = 10) -> List[str]:
    """With ``cls_loss='ce'``, warn about (and return) the files holding multi-label boxes; [] for 'bce'."""
    if get_cls_loss({"cls_loss": cls_loss}) != "ce":
        return []
    found = find_multilabel_boxes(labels, files)
    warn_multilabel_files(found, max_listed)
    return list(found)


def warn_multilabel_files(found: Mapping[str, int], max_listed: int = 10) -> None:
    """The CE warning for ``found`` (label file -> boxes with several classes, as :func:`find_multilabel_boxes`
    or ``data.diagnosis.ClassStructure.multilabel_files`` give it); nothing when it is empty."""
    if not found:
        return
    listed = ", ".join(f"{f} ({n})" for f, n in list(found.items())[:max_listed])
    more = f" and {len(found) - max_listed} more files" if len(found) > max_listed else ""
    LOGGER.warning(f"WARNING: cls_loss=ce (softmax cross-entropy) cannot learn multi-label boxes, but "
                   f"{sum(found.values())} boxes in {len(found)} label files carry several classes: "
                   f"{listed}{more}. Use --cls-loss bce for multi-label data, or keep one class per box.")
