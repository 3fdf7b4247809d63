"""Box format conversions and coordinate rescaling.

Formats: ``xyxy`` = (x1, y1, x2, y2) corners, ``xywh`` = (x_center, y_center, width, height);
a trailing ``n`` means normalised to [0, 1] by the image width / height. Every function accepts a torch
tensor or a numpy array of shape (..., 4) and returns the same type; inputs are never modified.
"""
from __future__ import annotations

from typing import Sequence, Tuple, Union

import numpy as np
import torch

Array = Union[torch.Tensor, np.ndarray]


def _empty_like(x: Array) -> Array:
    return x.clone() if isinstance(x, torch.Tensor) else np.copy(x)


def xyxy2xywh(x: Array) -> Array:
    """(x1, y1, x2, y2) -> (x_center, y_center, w, h)."""
    y = _empty_like(x)
    y[..., 0] = (x[..., 0] + x[..., 2]) / 2
    y[..., 1] = (x[..., 1] + x[..., 3]) / 2
    y[..., 2] = x[..., 2] - x[..., 0]
    y[..., 3] = x[..., 3] - x[..., 1]
    return y


def xywh2xyxy(x: Array) -> Array:
    """(x_center, y_center, w, h) -> (x1, y1, x2, y2)."""
    y = _empty_like(x)
    y[..., 0] = x[..., 0] - x[..., 2] / 2
    y[..., 1] = x[..., 1] - x[..., 3] / 2
    y[..., 2] = x[..., 0] + x[..., 2] / 2
    y[..., 3] = x[..., 1] + x[..., 3] / 2
    return y


def xywhn2xyxy(x: Array, w: float = 640, h: float = 640, padw: float = 0, padh: float = 0) -> Array:
    """Normalised xywh -> pixel xyxy in an image of size (w, h), shifted by a (padw, padh) offset."""
    y = _empty_like(x)
    y[..., 0] = w * (x[..., 0] - x[..., 2] / 2) + padw
    y[..., 1] = h * (x[..., 1] - x[..., 3] / 2) + padh
    y[..., 2] = w * (x[..., 0] + x[..., 2] / 2) + padw
    y[..., 3] = h * (x[..., 1] + x[..., 3] / 2) + padh
    return y


def xyxy2xywhn(x: Array, w: float = 640, h: float = 640, clip: bool = False, eps: float = 0.0) -> Array:
    """Pixel xyxy -> normalised xywh; ``clip`` first clips the boxes to (w - eps, h - eps)."""
    if clip:
        x = _empty_like(x)
        clip_coords(x, (h - eps, w - eps))
    y = _empty_like(x)
    y[..., 0] = ((x[..., 0] + x[..., 2]) / 2) / w
    y[..., 1] = ((x[..., 1] + x[..., 3]) / 2) / h
    y[..., 2] = (x[..., 2] - x[..., 0]) / w
    y[..., 3] = (x[..., 3] - x[..., 1]) / h
    return y


def xyn2xy(x: Array, w: float = 640, h: float = 640, padw: float = 0, padh: float = 0) -> Array:
    """Normalised polygon points (n, 2) -> pixel points."""
    y = _empty_like(x)
    y[..., 0] = w * x[..., 0] + padw
    y[..., 1] = h * x[..., 1] + padh
    return y


def segment2box(segment: np.ndarray, width: float = 640, height: float = 640) -> np.ndarray:
    """Bounding box (x1, y1, x2, y2) of the polygon points that lie inside the image; zeros if none do."""
    x, y = segment.T
    inside = (x >= 0) & (y >= 0) & (x <= width) & (y <= height)
    x, y = x[inside], y[inside]
    if not len(x):
        return np.zeros(4, dtype=segment.dtype)
    return np.array([x.min(), y.min(), x.max(), y.max()], dtype=segment.dtype)


def segments2boxes(segments: Sequence[np.ndarray]) -> np.ndarray:
    """Polygons (each (k, 2)) -> (n, 4) xywh boxes of their extents."""
    boxes = [np.array([s[:, 0].min(), s[:, 1].min(), s[:, 0].max(), s[:, 1].max()]) for s in segments]
    return xyxy2xywh(np.array(boxes, dtype=np.float32).reshape(-1, 4))


def resample_segments(segments: Sequence[np.ndarray], n: int = 1000) -> list:
    """Resample each closed polygon to ``n`` points evenly spaced along its vertex index."""
    out = []
    for s in segments:
        s = np.concatenate((s, s[:1]), axis=0)
        x = np.linspace(0, len(s) - 1, n)
        xp = np.arange(len(s))
        out.append(np.stack([np.interp(x, xp, s[:, i]) for i in range(2)], axis=1).astype(np.float32))
    return out


def clip_coords(boxes: Array, shape: Tuple[float, float]) -> Array:
    """Clip xyxy boxes in place to an image of shape (height, width); returns ``boxes``."""
    h, w = shape[0], shape[1]
    if isinstance(boxes, torch.Tensor):
        boxes[..., 0].clamp_(0, w)
        boxes[..., 1].clamp_(0, h)
        boxes[..., 2].clamp_(0, w)
        boxes[..., 3].clamp_(0, h)
    else:
        boxes[..., [0, 2]] = boxes[..., [0, 2]].clip(0, w)
        boxes[..., [1, 3]] = boxes[..., [1, 3]].clip(0, h)
    return boxes


def scale_coords(img1_shape: Sequence[int], coords: Array, img0_shape: Sequence[int], ratio_pad=None) -> Array:
    """Map xyxy boxes in place from a letterboxed image of shape ``img1_shape`` back to ``img0_shape``.

    ``ratio_pad`` is ``((gain_h, gain_w), (pad_w, pad_h))`` as returned by the loaders; when None it is
    recomputed assuming a centred letterbox.
    """
    if ratio_pad is None:
        gain = min(img1_shape[0] / img0_shape[0], img1_shape[1] / img0_shape[1])
        pad = (img1_shape[1] - img0_shape[1] * gain) / 2, (img1_shape[0] - img0_shape[0] * gain) / 2
    else:
        gain = ratio_pad[0][0]
        pad = ratio_pad[1]
    coords[..., [0, 2]] -= pad[0]
    coords[..., [1, 3]] -= pad[1]
    coords[..., :4] /= gain
    clip_coords(coords, img0_shape)
    return coords


# v7.0 names
clip_boxes = clip_coords
scale_boxes = scale_coords
