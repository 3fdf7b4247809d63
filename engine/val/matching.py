"""Which detections of one image are true positives, at each IoU threshold of mAP@0.5:0.95."""
from __future__ import annotations

import numpy as np
import torch

from utils.metrics import box_iou

MATCH_RULES = ("coco", "iou")


def process_batch(detections: torch.Tensor, labels: torch.Tensor, iouv: torch.Tensor, match: str = "coco"
                  ) -> torch.Tensor:
    """True-positive flags (n_det, n_iou) of one image's detections at each IoU threshold.

    ``detections`` (n, 6) [x1, y1, x2, y2, conf, cls], ``labels`` (m, 5) [cls, x1, y1, x2, y2], same pixel space.
    At each threshold t a detection can only match a label of its own class with IoU >= t, and every label
    is matched at most once. Which pairs win:

    * ``match="coco"`` (default): detections in decreasing confidence each take the still unmatched label with
      the highest IoU, the rule of pycocotools, so mAP agrees with it even when near-duplicate detections
      compete for one label;
    * ``match="iou"``: upstream v6+ order, highest-IoU pairs first (each detection keeps its best label, then
      each label its best detection), whatever their confidences.
    """
    n, m = detections.shape[0], labels.shape[0]
    if match not in MATCH_RULES:
        raise ValueError(f"process_batch: match must be 'coco' or 'iou', got '{match}'")
    correct = np.zeros((n, iouv.numel()), dtype=bool)
    if n and m:
        iou = box_iou(detections[:, :4].float(), labels[:, 1:].float()).cpu().numpy()  # (n, m)
        same_cls = detections[:, 5:6].cpu().numpy() == labels[:, 0].cpu().numpy()[None]
        iou = np.where(same_cls, iou, -1.0)
        thr = iouv.cpu().numpy()
        if match == "coco":
            _match_by_confidence(iou, detections[:, 4].float().cpu().numpy(), thr, correct)
        else:
            _match_by_iou(iou, thr, correct)
    return torch.from_numpy(correct).to(iouv.device)


def _match_by_confidence(iou: np.ndarray, conf: np.ndarray, thr: np.ndarray, correct: np.ndarray) -> None:
    """Greedy in decreasing confidence, all thresholds at once: ``used[k, j]`` = label j taken at threshold k."""
    rows = np.arange(len(thr))
    used = np.zeros((len(thr), iou.shape[1]), dtype=bool)
    order = np.argsort(-conf, kind="stable")
    for d in order[(iou[order] >= thr[0]).any(1)]:  # only detections that can match anything
        cand = np.where((iou[d][None] >= thr[:, None]) & ~used, iou[d][None], -1.0)  # (n_thr, m)
        j = cand.argmax(1)
        hit = cand[rows, j] >= 0
        used[rows[hit], j[hit]] = True
        correct[d] = hit
        if used.all():
            break  # every label is taken at every threshold: the rest are false positives


def _match_by_iou(iou: np.ndarray, thr: np.ndarray, correct: np.ndarray) -> None:
    """Upstream v6+ order, vectorised per threshold."""
    for k, t in enumerate(thr):
        cand = np.where(iou >= t, iou, -1.0)
        best_label = cand.argmax(1)  # each detection's best label at this threshold
        best_iou = cand[np.arange(len(cand)), best_label]
        det = np.nonzero(best_iou >= 0)[0]
        if not len(det):
            break  # higher thresholds cannot match either
        det = det[np.argsort(-best_iou[det], kind="stable")]
        _, first = np.unique(best_label[det], return_index=True)  # highest-IoU detection of every label
        correct[det[first], k] = True
