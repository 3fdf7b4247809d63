"""Class / image weights computed from dataset labels (re-exported from ``utils.general`` as in v5.0).

Kept free of project imports so that ``utils.general`` can re-export it without an import cycle.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch


def _class_counts(labels: np.ndarray, nc: int) -> np.ndarray:
    classes = np.asarray(labels)[:, 0].astype(int) if len(labels) else np.zeros(0, dtype=int)
    return np.bincount(classes, minlength=nc)[:nc]


def labels_to_class_weights(labels: Sequence[np.ndarray], nc: int = 80) -> torch.Tensor:
    """Inverse-frequency class weights (sum 1) from a list of (n, 5) ``[cls, x, y, w, h]`` label arrays.

    Classes without any label count as seen once, so their weight stays finite.
    """
    if not len(labels) or labels[0] is None:
        return torch.Tensor()
    counts = _class_counts(np.concatenate([np.asarray(x).reshape(-1, 5) for x in labels], 0), nc).astype(float)
    counts[counts == 0] = 1
    weights = 1 / counts
    return torch.from_numpy(weights / weights.sum()).float()


def labels_to_image_weights(labels: Sequence[np.ndarray], nc: int = 80,
                            class_weights: Optional[np.ndarray] = None) -> np.ndarray:
    """Per-image sampling weight = sum over its labels of the class weight (``class_weights`` default 1)."""
    cw = np.ones(nc) if class_weights is None else np.asarray(class_weights, dtype=float).reshape(-1)[:nc]
    counts = np.array([_class_counts(np.asarray(x).reshape(-1, 5), nc) for x in labels]).reshape(-1, nc)
    return (counts * cw.reshape(1, nc)).sum(1)
