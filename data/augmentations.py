"""Image + label augmentations used by the training loader, and the inference ``letterbox``.

Conventions: images are OpenCV BGR ``uint8`` arrays (H, W, 3). Label arrays handed to the geometric
transforms are ``(n, 5)`` float ``[cls, x1, y1, x2, y2]`` in pixels of the image they belong to; segments
are lists of ``(k, 2)`` pixel polygons aligned with the label rows. Random draws come from the global
``random`` / ``np.random`` states, which the dataloader seeds per worker.
"""
from __future__ import annotations

import math
import random
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from utils.boxes import resample_segments, segment2box, xyn2xy, xywhn2xyxy

PAD_VALUE = 114  # grey used for every padded / uncovered pixel


def letterbox(im: np.ndarray, new_shape: Union[int, Tuple[int, int]] = (640, 640),
              color: Tuple[int, int, int] = (PAD_VALUE, PAD_VALUE, PAD_VALUE), auto: bool = True,
              scaleFill: bool = False, scaleup: bool = True, stride: int = 32):
    """Resize keeping the aspect ratio, then pad to ``new_shape`` (h, w).

    ``auto`` pads only up to the next multiple of ``stride`` (minimum rectangle, used for inference);
    ``scaleFill`` stretches to ``new_shape`` without padding; ``scaleup=False`` never enlarges the image.
    Returns ``(image, (ratio_w, ratio_h), (pad_w, pad_h))`` where the pads are per side (may be x.5).
    """
    h0, w0 = im.shape[:2]
    if isinstance(new_shape, int):
        new_shape = (new_shape, new_shape)
    r = min(new_shape[0] / h0, new_shape[1] / w0)
    if not scaleup:
        r = min(r, 1.0)
    ratio = (r, r)
    w1, h1 = int(round(w0 * r)), int(round(h0 * r))
    dw, dh = new_shape[1] - w1, new_shape[0] - h1
    if auto:
        dw, dh = dw % stride, dh % stride
    elif scaleFill:
        dw, dh = 0, 0
        w1, h1 = new_shape[1], new_shape[0]
        ratio = (new_shape[1] / w0, new_shape[0] / h0)
    dw, dh = dw / 2, dh / 2
    if (w0, h0) != (w1, h1):
        im = cv2.resize(im, (w1, h1), interpolation=cv2.INTER_LINEAR)
    # split an odd padding so that the extra pixel goes to the bottom / right
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    if top or bottom or left or right:
        im = cv2.copyMakeBorder(im, top, bottom, left, right, cv2.BORDER_CONSTANT, value=color)
    return im, ratio, (dw, dh)


def augment_hsv(im: np.ndarray, hgain: float = 0.5, sgain: float = 0.5, vgain: float = 0.5) -> None:
    """Random hue / saturation / value gains applied in place to a BGR image via lookup tables."""
    if not (hgain or sgain or vgain):
        return
    gains = np.random.uniform(-1, 1, 3) * np.array([hgain, sgain, vgain]) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(im, cv2.COLOR_BGR2HSV))
    x = np.arange(256, dtype=np.float32)
    lut_h = ((x * gains[0]) % 180).astype(np.uint8)  # OpenCV hue range is 0..179
    lut_s = np.clip(x * gains[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * gains[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
    cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR, dst=im)


def box_candidates(box1: np.ndarray, box2: np.ndarray, wh_thr: float = 2, ar_thr: float = 20,
                   area_thr: float = 0.1, eps: float = 1e-16) -> np.ndarray:
    """Mask of boxes worth keeping after a warp: ``box1`` (4, n) before, ``box2`` (4, n) after, xyxy pixels.

    Kept when the warped box is wider and taller than ``wh_thr`` px, keeps more than ``area_thr`` of its
    (scaled) area and has an aspect ratio below ``ar_thr``.
    """
    w1, h1 = box1[2] - box1[0], box1[3] - box1[1]
    w2, h2 = box2[2] - box2[0], box2[3] - box2[1]
    aspect = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + eps) > area_thr) & (aspect < ar_thr)


def _perspective_matrix(height: int, width: int, out_h: int, out_w: int, degrees: float, translate: float,
                        scale: float, shear: float, perspective: float) -> Tuple[np.ndarray, float]:
    """Random 3x3 warp: centre -> perspective -> rotate/scale -> shear -> translate into the output."""
    centre = np.eye(3)
    centre[0, 2], centre[1, 2] = -width / 2, -height / 2
    persp = np.eye(3)
    persp[2, 0], persp[2, 1] = random.uniform(-perspective, perspective), random.uniform(-perspective, perspective)
    angle = random.uniform(-degrees, degrees)
    s = random.uniform(1 - scale, 1 + scale)
    rot = np.eye(3)
    rot[:2] = cv2.getRotationMatrix2D(center=(0, 0), angle=angle, scale=s)
    shr = np.eye(3)
    shr[0, 1] = math.tan(math.radians(random.uniform(-shear, shear)))
    shr[1, 0] = math.tan(math.radians(random.uniform(-shear, shear)))
    move = np.eye(3)
    move[0, 2] = random.uniform(0.5 - translate, 0.5 + translate) * out_w
    move[1, 2] = random.uniform(0.5 - translate, 0.5 + translate) * out_h
    return move @ shr @ rot @ persp @ centre, s


def _apply_h(points: np.ndarray, m: np.ndarray, projective: bool) -> np.ndarray:
    """Apply a 3x3 matrix to (k, 2) points."""
    xy = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ m.T
    return xy[:, :2] / xy[:, 2:3] if projective else xy[:, :2]


def random_perspective(im: np.ndarray, targets: Optional[np.ndarray] = None, segments: Sequence = (),
                       degrees: float = 10, translate: float = 0.1, scale: float = 0.1, shear: float = 10,
                       perspective: float = 0.0, border: Tuple[int, int] = (0, 0)):
    """Random rotation / scale / shear / translation / perspective of an image and its boxes.

    ``border`` (h, w) grows (positive) or crops (negative, e.g. ``-s // 2`` after a 2s mosaic) the output.
    With ``segments`` the new boxes are the extents of the warped polygons (tighter under rotation);
    otherwise the four box corners are warped. Boxes that become too small are dropped
    (:func:`box_candidates`). Returns ``(image, targets)``.
    """
    targets = np.zeros((0, 5), np.float32) if targets is None else targets
    height, width = im.shape[0] + border[0] * 2, im.shape[1] + border[1] * 2
    m, s = _perspective_matrix(im.shape[0], im.shape[1], height, width, degrees, translate, scale, shear,
                               perspective)
    if border[0] != 0 or border[1] != 0 or (m != np.eye(3)).any():
        fill = (PAD_VALUE, PAD_VALUE, PAD_VALUE)
        if perspective:
            im = cv2.warpPerspective(im, m, dsize=(width, height), borderValue=fill)
        else:
            im = cv2.warpAffine(im, m[:2], dsize=(width, height), borderValue=fill)

    n = len(targets)
    if n:
        use_segments = len(segments) == n and n > 0
        if use_segments:
            new = np.zeros((n, 4))
            for i, seg in enumerate(resample_segments(segments)):
                new[i] = segment2box(_apply_h(seg, m, bool(perspective)), width, height)
        else:
            corners = targets[:, [1, 2, 3, 4, 1, 4, 3, 2]].reshape(n * 4, 2)  # x1y1, x2y2, x1y2, x2y1
            xy = _apply_h(corners, m, bool(perspective)).reshape(n, 8)
            x, y = xy[:, 0::2], xy[:, 1::2]
            new = np.stack([x.min(1), y.min(1), x.max(1), y.max(1)], axis=1)
            new[:, [0, 2]] = new[:, [0, 2]].clip(0, width)
            new[:, [1, 3]] = new[:, [1, 3]].clip(0, height)
        keep = box_candidates(targets[:, 1:5].T * s, new.T, area_thr=0.01 if use_segments else 0.10)
        targets = targets[keep]
        targets[:, 1:5] = new[keep]
    return im, targets


def mosaic4(images: Sequence[np.ndarray], labels: Sequence[np.ndarray], segments: Sequence[Sequence[np.ndarray]],
            s: int, centre: Tuple[int, int]):
    """Tile 4 images on a (2s, 2s) grey canvas around ``centre`` (xc, yc).

    Image 0 ends at the centre from the top-left, 1 from the top-right, 2 bottom-left, 3 bottom-right; parts
    falling outside the canvas are cut. ``labels[i]`` are (n, 5) ``[cls, x, y, w, h]`` normalised to image i and
    ``segments[i]`` its normalised polygons. Returns ``(canvas, labels (n, 5) [cls, x1, y1, x2, y2] px, segments
    px)`` with boxes and polygons clipped to the canvas.
    """
    xc, yc = centre
    canvas = np.full((2 * s, 2 * s, images[0].shape[2]), PAD_VALUE, dtype=np.uint8)
    out_labels, out_segments = [], []
    for i, (img, lab, segs) in enumerate(zip(images, labels, segments)):
        h, w = img.shape[:2]
        ox = xc - w if i in (0, 2) else xc  # top-left corner of image i in canvas coordinates
        oy = yc - h if i in (0, 1) else yc
        x1, y1, x2, y2 = max(ox, 0), max(oy, 0), min(ox + w, 2 * s), min(oy + h, 2 * s)
        if x2 > x1 and y2 > y1:
            canvas[y1:y2, x1:x2] = img[y1 - oy:y2 - oy, x1 - ox:x2 - ox]
        lab = np.array(lab, dtype=np.float32).reshape(-1, 5).copy()
        if len(lab):
            lab[:, 1:] = xywhn2xyxy(lab[:, 1:], w, h, ox, oy)
        out_labels.append(lab)
        out_segments.extend(xyn2xy(np.asarray(x, dtype=np.float32), w, h, ox, oy) for x in segs)
    labels4 = np.concatenate(out_labels, 0) if out_labels else np.zeros((0, 5), np.float32)
    np.clip(labels4[:, 1:], 0, 2 * s, out=labels4[:, 1:])
    for x in out_segments:
        np.clip(x, 0, 2 * s, out=x)
    return canvas, labels4, out_segments


def mixup(im: np.ndarray, labels: np.ndarray, im2: np.ndarray, labels2: np.ndarray,
          alpha: float = 8.0) -> Tuple[np.ndarray, np.ndarray]:
    """Blend two same-size images with a Beta(alpha, alpha) ratio and keep the labels of both."""
    r = np.random.beta(alpha, alpha)
    blended = (im.astype(np.float32) * r + im2.astype(np.float32) * (1 - r)).astype(np.uint8)
    return blended, np.concatenate((labels, labels2), 0)


def hist_equalize(im: np.ndarray, clahe: bool = True, bgr: bool = True) -> np.ndarray:
    """Equalise the luma channel (CLAHE or global) of a BGR / RGB image; returns a new image."""
    yuv = cv2.cvtColor(im, cv2.COLOR_BGR2YUV if bgr else cv2.COLOR_RGB2YUV)
    if clahe:
        yuv[:, :, 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(yuv[:, :, 0])
    else:
        yuv[:, :, 0] = cv2.equalizeHist(yuv[:, :, 0])
    return cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR if bgr else cv2.COLOR_YUV2RGB)


def flip_labels(labels: np.ndarray, axis: str) -> np.ndarray:
    """Mirror normalised xywh labels (n, 5) in place: ``axis='lr'`` mirrors x, ``'ud'`` mirrors y."""
    col = 1 if axis == "lr" else 2
    labels[:, col] = 1 - labels[:, col]
    return labels


__all__: List[str] = ["letterbox", "augment_hsv", "box_candidates", "random_perspective", "mosaic4", "mixup",
                      "hist_equalize", "flip_labels", "PAD_VALUE"]
