"""What a validation run accumulates image by image, and the metrics computed from it at the end."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
import torch

from engine.val.matching import process_batch
from utils.calibration import MIN_CONF, CalibrationStats
from utils.metrics import ConfusionMatrix, ap_per_class


@dataclass
class Metrics:
    """Per-class results over the classes that have labels (``ap_class``) and their class means.

    ``p``, ``r`` at the confidence of best mean F1; ``ap50`` AP@0.5, ``ap`` AP@0.5:0.95; ``nt`` labels per class
    (all ``nc`` classes). ``map50`` / ``map`` may be replaced by pycocotools' numbers (``--save-json``).
    """

    p: np.ndarray
    r: np.ndarray
    ap50: np.ndarray
    ap: np.ndarray
    ap_class: np.ndarray
    nt: np.ndarray
    mp: float = 0.0
    mr: float = 0.0
    map50: float = 0.0
    map: float = 0.0

    @property
    def fitness(self) -> float:
        """utils.metrics.fitness of the four numbers: 0.1 * mAP@0.5 + 0.9 * mAP@0.5:0.95."""
        return 0.1 * self.map50 + 0.9 * self.map

    def maps(self, nc: int) -> np.ndarray:
        """Per-class mAP@0.5:0.95 (nc,); classes without labels get the overall mAP (upstream's rule)."""
        maps = np.zeros(nc) + self.map
        for i, c in enumerate(self.ap_class):
            maps[c] = self.ap[i]
        return maps

    def per_class(self, names: Sequence[str]) -> List[dict]:
        """metrics.json rows: ``{class, name, labels, P, R, AP50, AP}`` for every class with labels."""
        return [{"class": int(c), "name": names[c] if c < len(names) else str(c), "labels": int(self.nt[c]),
                 "P": _number(self.p[i]), "R": _number(self.r[i]), "AP50": _number(self.ap50[i]),
                 "AP": _number(self.ap[i])}
                for i, c in enumerate(self.ap_class)]


class DetectionStats:
    """Per-image TP flags for mAP, the confusion matrix and the calibration statistics of one run.

    Every image goes through :meth:`update` with its detections and labels in original-image pixels; the TP
    flags computed there (IoU 0.5:0.95, same class, :func:`process_batch`) feed both mAP and calibration, so the
    two always agree on what a correct detection is.
    """

    def __init__(self, nc: int, iouv: torch.Tensor, calib_conf: float = MIN_CONF):
        self.nc, self.iouv = nc, iouv
        self.confusion = ConfusionMatrix(nc=nc)
        self.calibration = CalibrationStats(min_conf=calib_conf)
        self.seen = 0
        self._records: List[tuple] = []  # (correct, conf, pred_cls, label_cls) of every image with either

    def update(self, predn: torch.Tensor, labelsn: torch.Tensor) -> torch.Tensor:
        """Add one image: ``predn`` (n, 6) [x1, y1, x2, y2, conf, cls], ``labelsn`` (m, 5) [cls, x1, y1, x2, y2].
        Returns its TP flags (n, 10)."""
        self.seen += 1
        if len(labelsn):
            correct = process_batch(predn, labelsn, self.iouv)
            self.confusion.process_batch(predn if len(predn) else None, labelsn)
        else:
            correct = torch.zeros(len(predn), self.iouv.numel(), dtype=torch.bool, device=self.iouv.device)
            if len(predn):  # every detection on a label-free image is a background false positive
                self.confusion.process_batch(predn, labelsn)
        self.calibration.update(predn, labelsn, correct)
        if len(predn) or len(labelsn):
            self._records.append((correct.cpu(), predn[:, 4].float().cpu(), predn[:, 5].float().cpu(),
                                  labelsn[:, 0].cpu().long()))
        return correct

    def _arrays(self):
        if not self._records:
            return np.zeros((0, self.iouv.numel()), bool), np.zeros(0), np.zeros(0), np.zeros(0, np.int64)
        return tuple(torch.cat([x[k] for x in self._records], 0).numpy() for k in range(4))

    def compute(self, plot: bool = False, save_dir: Union[str, Path] = ".",
                names: Optional[Sequence[str]] = None) -> Metrics:
        """mAP and friends over everything seen (``plot``: PR / F1 / P / R curves into ``save_dir``)."""
        tp, conf, pcls, tcls = self._arrays()
        tcls = tcls.astype(np.int64)
        empty = np.zeros(0)
        m = Metrics(empty, empty, empty, empty, np.zeros(0, np.int32), np.bincount(tcls, minlength=self.nc))
        if len(tcls):
            p, r, ap_all, _, ap_class = ap_per_class(tp, conf, pcls, tcls, plot=plot, save_dir=save_dir,
                                                     names=list(names or []))
            m = Metrics(p, r, ap_all[:, 0], ap_all.mean(1), ap_class, m.nt, float(p.mean()), float(r.mean()),
                        float(ap_all[:, 0].mean()), float(ap_all.mean(1).mean()))
        return m


def _number(x) -> Optional[float]:
    x = float(x)
    return None if np.isnan(x) else x
