"""Non-maximum suppression on decoded detector output (re-exported by ``utils.general``).

The input rows are ``[x, y, w, h, obj, p_0 .. p_{nc-1}]`` with probabilities already produced by the Detect
head, whichever activation it uses (per-class sigmoid for BCE-trained heads, softmax over the class channels
for CE-trained ones). This function never applies an activation: the score of class c is ``obj * p_c``.
"""
from __future__ import annotations

import logging
import time
from typing import List, Optional, Sequence, Union

import torch

from utils.boxes import xywh2xyxy
from utils.nms_kernel import nms as nms_kernel

LOGGER = logging.getLogger("yolov5")  # same logger as utils.general (not imported: general re-exports us)

MAX_NMS = 30000  # candidates kept (by confidence) before torchvision NMS
TIME_LIMIT = 10.0  # seconds for the whole batch (v5.0)


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"non_max_suppression: {name}={value} is invalid, it must be between 0.0 and 1.0")


def non_max_suppression(prediction: Union[torch.Tensor, Sequence], conf_thres: float = 0.25,
                        iou_thres: float = 0.45, classes: Optional[Sequence[int]] = None, agnostic: bool = False,
                        multi_label: bool = False, labels: Sequence[torch.Tensor] = (),
                        max_det: int = 300) -> List[torch.Tensor]:
    """Per-image NMS over decoded predictions (bs, N, 5 + nc); a ``(pred, raw)`` tuple is accepted too.

    Args:
        conf_thres: minimum objectness, and minimum ``obj * class probability`` of a kept row.
        iou_thres: IoU above which the lower-scored box of the same class is suppressed.
        classes: keep only these class ids.
        agnostic: suppress across classes.
        multi_label: one row per (box, class) above ``conf_thres`` instead of the best class only
            (ignored when nc == 1).
        labels: per image, (n, 5) [cls, x, y, w, h] pixel rows added as candidates with obj 1 and a
            one-hot class (autolabelling).
        max_det: at most this many detections per image.
    Returns:
        one (n, 6) tensor ``[x1, y1, x2, y2, conf, cls]`` per image, sorted by decreasing conf.
    """
    _check_fraction("conf_thres", conf_thres)
    _check_fraction("iou_thres", iou_thres)
    if isinstance(prediction, (list, tuple)):  # eval-mode model output (decoded, raw maps)
        prediction = prediction[0]
    if prediction.dim() != 3 or prediction.shape[2] < 6:
        raise ValueError(f"non_max_suppression: expected predictions of shape (bs, N, 5 + nc), "
                         f"got {tuple(prediction.shape)}")

    nc = prediction.shape[2] - 5
    multi_label = multi_label and nc > 1
    class_filter = None if classes is None else torch.tensor(classes, device=prediction.device).float()
    start = time.time()
    output = [torch.zeros((0, 6), device=prediction.device, dtype=prediction.dtype)] * prediction.shape[0]
    for xi, x in enumerate(prediction):
        x = x[x[:, 4] > conf_thres]
        if labels and len(labels[xi]):
            x = torch.cat((x, _label_rows(labels[xi].to(x), nc)), 0)
        if not x.shape[0]:
            continue
        det = _candidates(x, conf_thres, multi_label)
        if class_filter is not None:
            det = det[(det[:, 5:6] == class_filter).any(1)]
        if not det.shape[0]:
            continue
        det = det[det[:, 4].argsort(descending=True)[:MAX_NMS]]
        output[xi] = det[_batched_nms(det, iou_thres, agnostic)[:max_det]]
        if time.time() - start > TIME_LIMIT:
            LOGGER.warning(f"WARNING: NMS time limit {TIME_LIMIT}s exceeded")
            break
    return output


def _label_rows(lb: torch.Tensor, nc: int) -> torch.Tensor:
    """(n, 5) [cls, x, y, w, h] labels as prediction rows: objectness 1 and a one-hot class (autolabelling)."""
    rows = torch.zeros((len(lb), nc + 5), device=lb.device, dtype=lb.dtype)
    rows[:, :4] = lb[:, 1:5]
    rows[:, 4] = 1.0
    rows[torch.arange(len(lb), device=lb.device), lb[:, 0].long() + 5] = 1.0
    return rows


def _candidates(x: torch.Tensor, conf_thres: float, multi_label: bool) -> torch.Tensor:
    """Prediction rows -> (n, 6) ``[x1, y1, x2, y2, conf, cls]`` above ``conf_thres``: the best class of each box,
    or with ``multi_label`` every class that passes."""
    scores = x[:, 5:] * x[:, 4:5]  # conf = obj * class probability (activation applied by the head)
    box = xywh2xyxy(x[:, :4])
    if multi_label:
        i, j = torch.nonzero(scores > conf_thres, as_tuple=True)
        return torch.cat((box[i], scores[i, j, None], j[:, None].to(x.dtype)), 1)
    conf, j = scores.max(1, keepdim=True)
    return torch.cat((box, conf, j.to(x.dtype)), 1)[conf.view(-1) > conf_thres]


def _batched_nms(det: torch.Tensor, iou_thres: float, agnostic: bool) -> torch.Tensor:
    """Indices of the rows of ``det`` kept by NMS, per class unless ``agnostic``: each class is shifted to its
    own region, so boxes of different classes never overlap."""
    if agnostic:
        shifted = det[:, :4]
    else:
        span = float((det[:, :4].max() - det[:, :4].min()).clamp(min=0)) + 1.0
        shifted = det[:, :4] + det[:, 5:6] * span
    return nms_kernel(shifted.float(), det[:, 4].float(), iou_thres)
