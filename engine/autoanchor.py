"""AutoAnchor: check that a model's anchors fit a dataset's boxes, and recompute them when they do not.

Fit is measured with the wh-ratio metric of the loss: a label matches an anchor when both its width and height
are within a factor ``thr`` (hyp ``anchor_t``) of the anchor's. Best possible recall (BPR) = fraction of labels
that match at least one anchor. Below 0.98, new anchors come from k-means on the label sizes (whitened) refined
by a genetic search, and replace the model's only when they give a higher BPR.
"""
from __future__ import annotations

import logging
from typing import Optional, Tuple, Union

import numpy as np
import torch

from data.config import check_dataset
from data.datasets import LoadImagesAndLabels
from models.detect import check_anchor_order
from utils.torch_utils import detect_head

LOGGER = logging.getLogger("yolov5")
PREFIX = "autoanchor: "
BPR_TARGET = 0.98


def _label_wh(dataset, img_size: int, rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """(n, 2) label widths/heights in pixels at ``img_size`` (long side), optionally randomly rescaled +/-10%."""
    shapes = img_size * dataset.shapes / dataset.shapes.max(1, keepdims=True)
    if rng is not None:
        shapes = shapes * rng.uniform(0.9, 1.1, size=(shapes.shape[0], 1))  # mimic scale augmentation
    parts = [lb[:, 3:5] * s for s, lb in zip(shapes, dataset.labels) if len(lb)]
    return np.concatenate(parts, 0).astype(np.float32) if parts else np.zeros((0, 2), np.float32)


def _ratio_metric(wh: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """(n, m) worst-side ratio (<= 1) between every label wh and every anchor."""
    r = wh[:, None] / k[None]
    return torch.min(r, 1 / r).min(2)[0]


def anchor_metrics(wh: Union[np.ndarray, torch.Tensor], anchors: Union[np.ndarray, torch.Tensor],
                   thr: float = 4.0) -> Tuple[float, float]:
    """-> (best possible recall, mean number of anchors above threshold per label)."""
    wh, k = torch.as_tensor(wh, dtype=torch.float32), torch.as_tensor(anchors, dtype=torch.float32).view(-1, 2)
    x = _ratio_metric(wh, k)
    best = x.max(1)[0]
    return float((best > 1 / thr).float().mean()), float((x > 1 / thr).float().sum(1).mean())


def _fitness(wh: torch.Tensor, k: torch.Tensor, thr: float) -> float:
    best = _ratio_metric(wh, k).max(1)[0]
    return float((best * (best > 1 / thr).float()).mean())


def kmeans_np(x: np.ndarray, k: int, iters: int = 30, rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Plain Lloyd k-means with k-means++ seeding -> (k, d) centroids (numpy, no scipy needed)."""
    rng = rng or np.random.default_rng(0)
    n = len(x)
    if n < k:
        raise ValueError(f"k-means needs at least {k} points, got {n}")
    centres = [x[rng.integers(n)]]
    for _ in range(1, k):  # k-means++: next centre drawn proportionally to squared distance
        d2 = ((x[:, None] - np.array(centres)[None]) ** 2).sum(-1).min(1)
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(n, 1 / n)
        centres.append(x[rng.choice(n, p=p)])
    c = np.array(centres, dtype=np.float64)
    for _ in range(iters):
        assign = ((x[:, None] - c[None]) ** 2).sum(-1).argmin(1)
        new = np.array([x[assign == j].mean(0) if (assign == j).any() else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    return c


def kmean_anchors(path="./data/coco128.yaml", n: int = 9, img_size: int = 640, thr: float = 4.0,
                  gen: int = 1000, verbose: bool = True, seed: int = 0) -> np.ndarray:
    """Anchors (n, 2) in pixels, sorted by area, fitted to a dataset's labels.

    ``path``: a data yaml (its train split is read) or a dataset object with ``shapes`` and ``labels``.
    k-means on whitened label wh gives the start; ``gen`` generations of multiplicative mutations keep the
    candidate whenever the fitness (mean best ratio of matched labels) improves. Deterministic for ``seed``.
    """
    rng = np.random.default_rng(seed)
    if isinstance(path, (str,)) or hasattr(path, "__fspath__"):
        dataset = LoadImagesAndLabels(check_dataset(path)["train"], img_size=img_size, rect=True)
    else:
        dataset = path
    wh0 = _label_wh(dataset, img_size)
    tiny = int((wh0 < 3.0).any(1).sum())
    if tiny:
        LOGGER.warning(f"{PREFIX}WARNING: extremely small objects found: {tiny} of {len(wh0)} labels are < 3 pixels")
    wh = wh0[(wh0 >= 2.0).any(1)]
    if len(wh) < n:
        raise ValueError(f"{PREFIX}{n} anchors need at least {n} labels of 2+ pixels, the dataset has {len(wh)}")

    LOGGER.info(f"{PREFIX}Running k-means for {n} anchors on {len(wh)} points...")
    std = wh.std(0)
    std[std == 0] = 1
    k = kmeans_np(wh / std, n, rng=rng) * std
    wh_t = torch.from_numpy(wh)
    k = k[np.argsort(k.prod(1))]

    f = _fitness(wh_t, torch.from_numpy(k).float(), thr)
    mp, sigma = 0.9, 0.1  # mutation probability, sigma
    for _ in range(gen):
        v = np.ones(k.shape)
        while (v == 1).all():  # mutate until something changes
            v = ((rng.random(k.shape) < mp) * rng.random() * rng.standard_normal(k.shape) * sigma + 1).clip(0.3, 3.0)
        kg = (k * v).clip(min=2.0)
        fg = _fitness(wh_t, torch.from_numpy(kg).float(), thr)
        if fg > f:
            f, k = fg, kg
    k = k[np.argsort(k.prod(1))]
    bpr, aat = anchor_metrics(wh0, k, thr)
    if verbose:
        LOGGER.info(f"{PREFIX}thr={1 / thr:.2f}: {bpr:.4f} best possible recall, {aat:.2f} anchors past thr; "
                    f"n={n}, img_size={img_size}, fitness={f:.4f}; anchors: "
                    + ", ".join(f"{round(a)},{round(b)}" for a, b in k))
    return k.astype(np.float32)


def check_anchors(dataset, model, thr: float = 4.0, imgsz: int = 640) -> float:
    """Log the BPR of the model's anchors on ``dataset``; below 0.98 try k-means anchors and adopt them if
    better (both Detect buffers: ``anchor_grid`` in pixels, ``anchors`` in grid units). Returns the final BPR."""
    m = detect_head(model, required=True)
    wh = _label_wh(dataset, imgsz, np.random.default_rng(0))
    if not len(wh):
        LOGGER.warning(f"{PREFIX}WARNING: no labels, anchors left unchanged")
        return 0.0
    anchors = m.anchor_grid.detach().clone().cpu().view(-1, 2)
    bpr, aat = anchor_metrics(wh, anchors, thr)
    LOGGER.info(f"{PREFIX}Analyzing anchors... anchors/target = {aat:.2f}, Best Possible Recall (BPR) = {bpr:.4f}")
    if bpr >= BPR_TARGET:
        return bpr
    LOGGER.info(f"{PREFIX}Attempting to improve anchors, please wait...")
    na = m.anchor_grid.numel() // 2
    try:
        new = kmean_anchors(dataset, n=na, img_size=imgsz, thr=thr, gen=1000, verbose=False)
    except ValueError as e:
        LOGGER.warning(f"{PREFIX}WARNING: {e}; original anchors kept")
        return bpr
    new_bpr = anchor_metrics(wh, new, thr)[0]
    if new_bpr > bpr:
        new_t = torch.tensor(new, device=m.anchors.device, dtype=m.anchors.dtype)
        m.anchor_grid[:] = new_t.view_as(m.anchor_grid)
        m.anchors[:] = new_t.view_as(m.anchors) / m.stride.to(m.anchors.device).view(-1, 1, 1)
        check_anchor_order(m)
        LOGGER.info(f"{PREFIX}New anchors saved to model (BPR {bpr:.4f} -> {new_bpr:.4f}). "
                    f"Update model *.yaml to use these anchors in the future.")
        return new_bpr
    LOGGER.info(f"{PREFIX}Original anchors better than new anchors. Proceeding with original anchors.")
    return bpr
