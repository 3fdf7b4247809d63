"""Box overlap measures and detection metrics (v5.0 path ``utils.metrics``).

``bbox_iou`` variants (``kind``), for box 1 = prediction and box 2 = target. Notation: ``I`` intersection area,
``U`` union area, ``IoU = I / U``; ``cw, ch`` width / height of the smallest box enclosing both, ``C = cw * ch``,
``c2 = cw^2 + ch^2`` its squared diagonal; ``dx, dy`` the offset between the two centres, ``rho2 = dx^2 + dy^2``;
``w1, h1, w2, h2`` the box sizes. Every kind returns an IoU-like value (1 for identical boxes), so the box
loss is always ``1 - value``.

* ``iou``  : ``IoU``
* ``giou`` : ``IoU - (C - U) / C``                                            (Rezatofighi et al. 2019)
* ``diou`` : ``IoU - rho2 / c2``                                              (Zheng et al. 2020)
* ``ciou`` : ``IoU - rho2 / c2 - alpha * v`` with
  ``v = 4 / pi^2 * (atan(w2 / h2) - atan(w1 / h1))^2`` and ``alpha = v / (1 - IoU + v)`` (alpha is a constant
  for back-propagation, as in the paper and upstream YOLOv5)                  (Zheng et al. 2020)
* ``eiou`` : ``IoU - rho2 / c2 - (w1 - w2)^2 / cw^2 - (h1 - h2)^2 / ch^2``     (Zhang et al. 2021)
* ``siou`` : ``IoU - (Delta + Omega) / 2``                                    (Gevorgyan 2022) with
  - angle cost ``Lambda = 1 - 2 sin^2(arcsin(|dy| / sigma) - pi/4)``, ``sigma = sqrt(rho2)``; this equals
    ``sin(2 alpha) = 2 |dx| |dy| / rho2`` (alpha the angle of the centre line to the x axis), which is also
    unchanged when the paper swaps alpha for beta = pi/2 - alpha above 45 degrees;
  - distance cost ``Delta = sum_{t in x, y} (1 - exp(-gamma * rho_t))``, ``rho_x = (dx / cw)^2``,
    ``rho_y = (dy / ch)^2``, ``gamma = 2 - Lambda``;
  - shape cost ``Omega = sum_{t in w, h} (1 - exp(-omega_t))^theta``, ``omega_w = |w1 - w2| / max(w1, w2)``,
    ``omega_h = |h1 - h2| / max(h1, h2)``, ``theta = 4``.

A small ``eps`` keeps every division finite (degenerate boxes, identical centres).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from utils.figures import try_plot

IOU_KINDS = ("iou", "giou", "diou", "ciou", "eiou", "siou")
SIOU_THETA = 4.0

Names = Union[Sequence[str], Dict[int, str]]


# --------------------------------------------------------------------------------------------------------
# box overlap
# --------------------------------------------------------------------------------------------------------
def _kind_from_flags(kind: str, flags: Dict[str, bool]) -> str:
    """Resolve the upstream boolean flags (GIoU=True, ...) into one ``kind``; conflicting requests are errors."""
    chosen = [name.lower() for name, on in flags.items() if on]
    if len(chosen) > 1:
        raise ValueError(f"bbox_iou: choose one IoU variant, got flags {chosen}")
    if chosen:
        if kind.lower() not in ("iou", chosen[0]):
            raise ValueError(f"bbox_iou: kind='{kind}' conflicts with flag {chosen[0]}=True")
        return chosen[0]
    kind = kind.lower()
    if kind not in IOU_KINDS:
        raise ValueError(f"bbox_iou: unknown kind '{kind}', expected one of {', '.join(IOU_KINDS)}")
    return kind


def _box_geometry(box: torch.Tensor, xywh: bool) -> Tuple[torch.Tensor, ...]:
    """(..., 4) boxes, xywh or xyxy -> their x1, y1, x2, y2, centre x, centre y, width, height."""
    if xywh:
        cx, cy, w, h = box.unbind(-1)
        return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, cx, cy, w, h
    x1, y1, x2, y2 = box.unbind(-1)
    w, h = x2 - x1, y2 - y1  # before the centres: autograd then sums gradients in the same order (bit-identical)
    return x1, y1, x2, y2, (x1 + x2) / 2, (y1 + y2) / 2, w, h


def bbox_iou(box1: torch.Tensor, box2: torch.Tensor, xywh: bool = True, kind: str = "iou", eps: float = 1e-7,
             *, x1y1x2y2: Optional[bool] = None, GIoU: bool = False, DIoU: bool = False, CIoU: bool = False,
             EIoU: bool = False, SIoU: bool = False) -> torch.Tensor:
    """IoU or one of its variants (see module docstring) between ``box1`` (..., 4) and ``box2`` (..., 4).

    Leading dimensions broadcast; the result has the broadcast leading shape (no trailing 1).
    ``xywh`` selects (x_center, y_center, w, h) coordinates, else (x1, y1, x2, y2).

    Upstream compatibility: ``GIoU= / DIoU= / CIoU=`` select the kind. Passing the v5.0 keyword ``x1y1x2y2``
    also selects the v5.0 layout, where ``box1`` is coordinate-first ((4,) or (4, n)) and ``box2`` is (n, 4),
    e.g. ``bbox_iou(pbox.T, tbox, x1y1x2y2=False, CIoU=True)``.
    """
    kind = _kind_from_flags(kind, {"GIoU": GIoU, "DIoU": DIoU, "CIoU": CIoU, "EIoU": EIoU, "SIoU": SIoU})
    if x1y1x2y2 is not None:  # v5.0 call convention
        xywh = not x1y1x2y2
        box1 = box1.movedim(0, -1) if box1.dim() > 1 else box1
    if box1.shape[-1] != 4 or box2.shape[-1] != 4:
        raise ValueError(f"bbox_iou: boxes must have 4 coordinates in the last dimension, "
                         f"got shapes {tuple(box1.shape)} and {tuple(box2.shape)}")

    ax1, ay1, ax2, ay2, cx1, cy1, w1, h1 = _box_geometry(box1, xywh)
    bx1, by1, bx2, by2, cx2, cy2, w2, h2 = _box_geometry(box2, xywh)
    inter = (torch.min(ax2, bx2) - torch.max(ax1, bx1)).clamp(min=0) * \
            (torch.min(ay2, by2) - torch.max(ay1, by1)).clamp(min=0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    if kind == "iou":
        return iou

    cw = torch.max(ax2, bx2) - torch.min(ax1, bx1)  # enclosing box
    ch = torch.max(ay2, by2) - torch.min(ay1, by1)
    if kind == "giou":
        c_area = cw * ch + eps
        return iou - (c_area - union) / c_area

    dx, dy = cx2 - cx1, cy2 - cy1
    rho2 = dx ** 2 + dy ** 2
    c2 = cw ** 2 + ch ** 2 + eps
    if kind == "diou":
        return iou - rho2 / c2
    if kind == "ciou":
        v = (4 / math.pi ** 2) * (torch.atan(w2 / (h2 + eps)) - torch.atan(w1 / (h1 + eps))) ** 2
        with torch.no_grad():  # the paper treats alpha as a trade-off constant
            # clamp: in float32 IoU of identical boxes can round above 1, which would give 0 / 0
            alpha = v / (v - iou + (1 + eps)).clamp(min=eps)
        return iou - (rho2 / c2 + v * alpha)
    if kind == "eiou":
        return iou - (rho2 / c2 + (w1 - w2) ** 2 / (cw ** 2 + eps) + (h1 - h2) ** 2 / (ch ** 2 + eps))
    # siou
    angle = 2 * dx.abs() * dy.abs() / (rho2 + eps)  # Lambda = sin(2 alpha)
    gamma = 2 - angle
    distance = 2 - torch.exp(-gamma * (dx / (cw + eps)) ** 2) - torch.exp(-gamma * (dy / (ch + eps)) ** 2)
    omega_w = (w1 - w2).abs() / (torch.max(w1, w2) + eps)
    omega_h = (h1 - h2).abs() / (torch.max(h1, h2) + eps)
    shape = (1 - torch.exp(-omega_w)) ** SIOU_THETA + (1 - torch.exp(-omega_h)) ** SIOU_THETA
    return iou - 0.5 * (distance + shape)


def box_iou(box1: torch.Tensor, box2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Pairwise IoU of xyxy boxes: (n, 4) x (m, 4) -> (n, m)."""
    top_left = torch.max(box1[:, None, :2], box2[None, :, :2])
    bottom_right = torch.min(box1[:, None, 2:], box2[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(2)
    area1 = (box1[:, 2] - box1[:, 0]) * (box1[:, 3] - box1[:, 1])
    area2 = (box2[:, 2] - box2[:, 0]) * (box2[:, 3] - box2[:, 1])
    return inter / (area1[:, None] + area2[None, :] - inter + eps)


def bbox_ioa(box1: np.ndarray, box2: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Intersection of one xyxy box (4,) with each of (n, 4) boxes, over the area of those boxes -> (n,)."""
    iw = (np.minimum(box1[2], box2[:, 2]) - np.maximum(box1[0], box2[:, 0])).clip(0)
    ih = (np.minimum(box1[3], box2[:, 3]) - np.maximum(box1[1], box2[:, 1])).clip(0)
    return iw * ih / ((box2[:, 2] - box2[:, 0]) * (box2[:, 3] - box2[:, 1]) + eps)


# --------------------------------------------------------------------------------------------------------
# average precision
# --------------------------------------------------------------------------------------------------------
_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy >= 2.0 renamed trapz


def fitness(x: np.ndarray) -> np.ndarray:
    """Model fitness per row of [P, R, mAP@0.5, mAP@0.5:0.95, ...]: 0.1 * mAP@0.5 + 0.9 * mAP@0.5:0.95."""
    weights = np.array([0.0, 0.0, 0.1, 0.9])
    return (np.asarray(x)[:, :4] * weights).sum(1)


def compute_ap(recall: np.ndarray, precision: np.ndarray) -> Tuple[float, np.ndarray, np.ndarray]:
    """Area under the precision envelope, sampled at 101 recall points (COCO style).

    Returns ``(ap, envelope_precision, padded_recall)``; recall is padded with 0 in front and last + 0.01 at
    the end, precision with 1 and 0.
    """
    mrec = np.concatenate(([0.0], recall, [recall[-1] + 0.01]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # monotone non-increasing envelope
    x = np.linspace(0, 1, 101)
    ap = float(_trapezoid(np.interp(x, mrec, mpre), x))
    return ap, mpre, mrec


def _class_names(names: Optional[Names], classes: np.ndarray) -> list:
    """Names of ``classes`` from a list or {id: name} dict; the id itself when unknown."""
    lookup = dict(names) if isinstance(names, dict) else dict(enumerate(names if names is not None else ()))
    return [str(lookup.get(int(c), int(c))) for c in classes]


def ap_per_class(tp: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray, target_cls: np.ndarray,
                 plot: bool = False, save_dir: Union[str, Path] = ".", names: Names = (),
                 eps: float = 1e-16) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall, AP and F1.

    Args:
        tp: (n, t) true-positive flags of each prediction at t IoU thresholds (or (n,) for one threshold).
        conf, pred_cls: (n,) confidence and class of each prediction.
        target_cls: (m,) class of every ground-truth label.
        plot: write PR_curve.png, F1_curve.png, P_curve.png, R_curve.png to ``save_dir`` (a curve that fails
            to draw is logged as a warning by ``utils.figures.try_plot``).
    Returns:
        ``(p, r, ap, f1, classes)``: p, r, f1 (k,) at the confidence maximising the class-mean F1; ap (k, t);
        classes (k,) int32, the classes present in ``target_cls``.
    """
    tp = np.asarray(tp, dtype=np.float64)
    tp = tp[:, None] if tp.ndim == 1 else tp
    conf, pred_cls = np.asarray(conf, dtype=np.float64), np.asarray(pred_cls)
    order = np.argsort(-conf, kind="stable")
    tp, conf, pred_cls = tp[order], conf[order], pred_cls[order]

    classes, n_labels = np.unique(np.asarray(target_cls), return_counts=True)
    px = np.linspace(0, 1, 1000)  # confidence grid for the P / R / F1 curves
    ap = np.zeros((len(classes), tp.shape[1]))
    p, r = np.zeros((len(classes), px.size)), np.zeros((len(classes), px.size))
    pr_curves = np.zeros((len(classes), px.size))
    for ci, c in enumerate(classes):
        sel = pred_cls == c
        if not sel.any():
            continue
        tp_cum = tp[sel].cumsum(0)
        fp_cum = (1 - tp[sel]).cumsum(0)
        recall = tp_cum / (n_labels[ci] + eps)
        precision = tp_cum / (tp_cum + fp_cum)
        # curves against confidence (np.interp needs increasing x, hence the negations)
        r[ci] = np.interp(-px, -conf[sel], recall[:, 0], left=0)
        p[ci] = np.interp(-px, -conf[sel], precision[:, 0], left=1)
        for j in range(tp.shape[1]):
            ap[ci, j], mpre, mrec = compute_ap(recall[:, j], precision[:, j])
            if j == 0:
                pr_curves[ci] = np.interp(px, mrec, mpre)

    f1 = 2 * p * r / (p + r + eps)
    if plot:  # a curve that cannot be drawn is a warning: the metrics are still returned

        save_dir = Path(save_dir)
        labels = _class_names(names, classes)
        try_plot("PR_curve.png", plot_pr_curve, px, pr_curves, ap, save_dir / "PR_curve.png", labels)
        for curve, ylabel, name in ((f1, "F1", "F1_curve.png"), (p, "Precision", "P_curve.png"),
                                    (r, "Recall", "R_curve.png")):
            try_plot(name, plot_mc_curve, px, curve, save_dir / name, labels, ylabel=ylabel)
    best = int(f1.mean(0).argmax()) if len(classes) else 0
    return p[:, best], r[:, best], ap, f1[:, best], classes.astype(np.int32)


# --------------------------------------------------------------------------------------------------------
# confusion matrix
# --------------------------------------------------------------------------------------------------------
class ConfusionMatrix:
    """Detection confusion matrix: rows = predicted class, columns = true class, index ``nc`` = background.

    ``matrix[p, nc]`` counts predictions of class p matching no label (background FP), ``matrix[nc, t]``
    labels of class t that no prediction matched (background FN).
    """

    def __init__(self, nc: int, conf: float = 0.25, iou_thres: float = 0.45):
        self.matrix = np.zeros((nc + 1, nc + 1))
        self.nc = nc
        self.conf = conf
        self.iou_thres = iou_thres

    def process_batch(self, detections: Optional[torch.Tensor], labels: torch.Tensor) -> None:
        """Add one image: ``detections`` (n, 6) [x1, y1, x2, y2, conf, cls], ``labels`` (m, 5) [cls, x1, y1, x2, y2]."""
        gt_cls = labels[:, 0].long().tolist()
        if detections is None or not len(detections):
            for gc in gt_cls:
                self.matrix[self.nc, gc] += 1
            return
        detections = detections[detections[:, 4] > self.conf]
        det_cls = detections[:, 5].long().tolist()
        matches = np.zeros((0, 3))
        if len(labels) and len(detections):
            iou = box_iou(labels[:, 1:], detections[:, :4])
            li, di = torch.nonzero(iou > self.iou_thres, as_tuple=True)
            if li.numel():
                matches = torch.stack((li.float(), di.float(), iou[li, di].float()), 1).cpu().numpy()
                # one-to-one: best IoU first, then each detection and each label used at most once
                matches = matches[np.argsort(-matches[:, 2], kind="stable")]
                matches = matches[np.unique(matches[:, 1], return_index=True)[1]]
                matches = matches[np.argsort(-matches[:, 2], kind="stable")]
                matches = matches[np.unique(matches[:, 0], return_index=True)[1]]
        label_to_det = {int(m[0]): int(m[1]) for m in matches}
        for li_, gc in enumerate(gt_cls):
            if li_ in label_to_det:
                self.matrix[det_cls[label_to_det[li_]], gc] += 1
            else:
                self.matrix[self.nc, gc] += 1
        matched_dets = set(label_to_det.values())
        for di_, dc in enumerate(det_cls):
            if di_ not in matched_dets:
                self.matrix[dc, self.nc] += 1

    def tp_fp(self) -> Tuple[np.ndarray, np.ndarray]:
        """Per-class true positives and false positives (background column excluded)."""
        tp = self.matrix.diagonal()[:-1]
        fp = self.matrix.sum(1)[:-1] - tp
        return tp, fp

    def plot(self, save_dir: Union[str, Path] = "", names: Names = (), *, normalize: bool = True) -> Path:
        """Write ``confusion_matrix.png`` to ``save_dir`` (columns normalised to 1 unless ``normalize=False``,
        then raw counts); returns its path."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        if normalize:
            norm = self.matrix / (self.matrix.sum(0, keepdims=True) + 1e-9)
            norm[norm < 0.005] = np.nan  # leave near-empty cells blank
        else:
            norm = np.where(self.matrix > 0, self.matrix, np.nan)
        vmax = 1.0 if normalize else max(float(self.matrix.max()), 1.0)
        n = self.nc + 1
        labels = _class_names(names, np.arange(self.nc)) if names is not None and 0 < len(names) == self.nc else None
        fig = Figure(figsize=(12, 9), tight_layout=True)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=vmax)
        fig.colorbar(image, ax=ax)
        if n < 31:  # annotate cells only when they stay readable
            for i in range(n):
                for j in range(n):
                    if not np.isnan(norm[i, j]):
                        ax.text(j, i, f"{norm[i, j]:.2f}" if normalize else f"{norm[i, j]:.0f}", ha="center",
                                va="center", fontsize=8, color="white" if norm[i, j] > 0.5 * vmax else "black")
        if labels is not None:
            ticks = labels + ["background FN"], labels + ["background FP"]
            ax.set_xticks(range(n), ticks[1], rotation=90)
            ax.set_yticks(range(n), ticks[0])
        ax.set_xlabel("True")
        ax.set_ylabel("Predicted")
        path = Path(save_dir) / "confusion_matrix.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=250)
        return path

    def print(self) -> None:
        for row in self.matrix:
            print(" ".join(str(v) for v in row))


# --------------------------------------------------------------------------------------------------------
# curves
# --------------------------------------------------------------------------------------------------------
def _finish_curve(fig, ax, save_dir: Union[str, Path], xlabel: str, ylabel: str) -> None:
    """Unit axes, a legend when something is labelled (no classes: nothing is), saved at 250 dpi."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.04, 1))
    Path(save_dir).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(Path(save_dir), dpi=250)


def _new_axes():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 6), tight_layout=True)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def plot_pr_curve(px: np.ndarray, py: np.ndarray, ap: np.ndarray, save_dir: Union[str, Path] = "pr_curve.png",
                  names: Sequence[str] = ()) -> None:
    """Precision-recall curve per class (legend when fewer than 21 classes) and their mean."""
    fig, ax = _new_axes()
    py = np.asarray(py).reshape(-1, len(px))
    if 0 < len(py) < 21:
        for i, curve in enumerate(py):
            label = names[i] if i < len(names) else str(i)
            ax.plot(px, curve, linewidth=1, label=f"{label} {ap[i, 0]:.3f}")
    else:
        ax.plot(px, py.T, linewidth=1, color="grey")
    if len(py):
        ax.plot(px, py.mean(0), linewidth=3, color="blue", label=f"all classes {ap[:, 0].mean():.3f} mAP@0.5")
    _finish_curve(fig, ax, save_dir, "Recall", "Precision")


def plot_mc_curve(px: np.ndarray, py: np.ndarray, save_dir: Union[str, Path] = "mc_curve.png",
                  names: Sequence[str] = (), xlabel: str = "Confidence", ylabel: str = "Metric") -> None:
    """Metric-vs-confidence curve per class and their mean (legend shows the mean's best value)."""
    fig, ax = _new_axes()
    py = np.asarray(py).reshape(-1, len(px))
    if 0 < len(py) < 21:
        for i, curve in enumerate(py):
            ax.plot(px, curve, linewidth=1, label=names[i] if i < len(names) else str(i))
    else:
        ax.plot(px, py.T, linewidth=1, color="grey")
    if len(py):
        mean = py.mean(0)
        best = int(mean.argmax())
        ax.plot(px, mean, linewidth=3, color="blue", label=f"all classes {mean[best]:.2f} at {px[best]:.3f}")
    _finish_curve(fig, ax, save_dir, xlabel, ylabel)
