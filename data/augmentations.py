"""Image + label augmentations used by the training loader, and the inference ``letterbox``.

Conventions: images are OpenCV BGR ``uint8`` arrays (H, W, 3). Label arrays handed to the geometric
transforms are ``(n, 5)`` float ``[cls, x1, y1, x2, y2]`` in pixels of the image they belong to; segments
are lists of ``(k, 2)`` pixel polygons aligned with the label rows. Random draws come from the global
``random`` / ``np.random`` states, which the dataloader seeds per worker. Temporaries (HSV planes, flips) live in
the per-thread arrays of :mod:`data.scratch`; what a function returns is never one of them unless it takes a ``dst``.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from data.scratch import WORKSPACE
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
    x = np.arange(256, dtype=np.float32)
    lut = np.stack([((x * gains[0]) % 180).astype(np.uint8),  # OpenCV hue range is 0..179
                    np.clip(x * gains[1], 0, 255).astype(np.uint8),
                    np.clip(x * gains[2], 0, 255).astype(np.uint8)], -1).reshape(256, 1, 3)
    # the HSV image lives in this thread's workspace (no fresh pages per item); one 3-channel table maps H, S and
    # V at once (the same values as splitting the planes, mapping each and merging them back, without the copies)
    hsv = cv2.cvtColor(im, cv2.COLOR_BGR2HSV, dst=WORKSPACE.array("hsv", im.shape))
    cv2.LUT(hsv, lut, dst=hsv)
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


@dataclass(eq=False)  # holds an array: no field-wise ==
class Warp:
    """One draw of :func:`random_perspective`: ``m`` maps input pixels to output pixels of ``size`` (w, h)."""

    m: np.ndarray
    scale: float
    size: Tuple[int, int]
    projective: bool
    moves: bool  # False: the identity without a border, the image is left as it is

    def source_box(self, in_h: int, in_w: int, margin: int = 2) -> Tuple[int, int, int, int]:
        """``(x1, y1, x2, y2)``: the input pixels the warped image is interpolated from, with ``margin`` to spare.

        Input pixels outside the box do not reach the output, so they need not hold anything. A projective
        warp is not bounded by its corners' images in general, and an image that is not warped is used whole:
        the box is then the whole input.
        """
        if self.projective or not self.moves:
            return 0, 0, in_w, in_h
        inv = cv2.invertAffineTransform(self.m[:2])  # all zeros when the matrix is singular
        if not inv.any():
            return 0, 0, in_w, in_h
        w, h = self.size
        corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], dtype=np.float64)
        xy = _apply_h(corners, inv, False)
        x1, y1 = np.floor(xy.min(0)).astype(int) - margin
        x2, y2 = np.ceil(xy.max(0)).astype(int) + margin + 1
        x1, x2 = min(max(x1, 0), in_w), min(max(x2, 0), in_w)
        y1, y2 = min(max(y1, 0), in_h), min(max(y2, 0), in_h)
        return int(x1), int(y1), int(max(x1, x2)), int(max(y1, y2))

    def image(self, im: np.ndarray, dst: Optional[np.ndarray] = None) -> np.ndarray:
        """The warped image (grey where nothing maps), written into ``dst`` when it has the output's shape."""
        if not self.moves:
            return im
        fill = (PAD_VALUE, PAD_VALUE, PAD_VALUE)
        if self.projective:
            return cv2.warpPerspective(im, self.m, dsize=self.size, dst=dst, borderValue=fill)
        return cv2.warpAffine(im, self.m[:2], dsize=self.size, dst=dst, borderValue=fill)

    def labels(self, targets: np.ndarray, segments: Sequence = ()) -> np.ndarray:
        """Warped ``[cls, x1, y1, x2, y2]`` rows, without the boxes that became too small (box_candidates)."""
        n = len(targets)
        if not n:
            return targets
        width, height = self.size
        use_segments = len(segments) == n
        if use_segments:
            new = np.zeros((n, 4))
            for i, seg in enumerate(resample_segments(segments)):
                new[i] = segment2box(_apply_h(seg, self.m, self.projective), width, height)
        else:
            corners = targets[:, [1, 2, 3, 4, 1, 4, 3, 2]].reshape(n * 4, 2)  # x1y1, x2y2, x1y2, x2y1
            xy = _apply_h(corners, self.m, self.projective).reshape(n, 8)
            x, y = xy[:, 0::2], xy[:, 1::2]
            new = np.stack([x.min(1), y.min(1), x.max(1), y.max(1)], axis=1)
            new[:, [0, 2]] = new[:, [0, 2]].clip(0, width)
            new[:, [1, 3]] = new[:, [1, 3]].clip(0, height)
        keep = box_candidates(targets[:, 1:5].T * self.scale, new.T, area_thr=0.01 if use_segments else 0.10)
        targets = targets[keep]
        targets[:, 1:5] = new[keep]
        return targets


def draw_warp(in_h: int, in_w: int, degrees: float = 10, translate: float = 0.1, scale: float = 0.1,
              shear: float = 10, perspective: float = 0.0, border: Tuple[int, int] = (0, 0)) -> Warp:
    """Draw the random warp of :func:`random_perspective` for an ``(in_h, in_w)`` image (same random draws)."""
    height, width = in_h + border[0] * 2, in_w + border[1] * 2
    m, s = _perspective_matrix(in_h, in_w, height, width, degrees, translate, scale, shear, perspective)
    moves = border[0] != 0 or border[1] != 0 or bool((m != np.eye(3)).any())
    return Warp(m, s, (width, height), bool(perspective), moves)


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
    warp = draw_warp(im.shape[0], im.shape[1], degrees, translate, scale, shear, perspective, border)
    return warp.image(im), warp.labels(targets, segments)


def mosaic_origins(shapes: Sequence[Tuple[int, ...]], centre: Tuple[int, int]) -> List[Tuple[int, int]]:
    """Top-left corners (x, y) of the 4 mosaic tiles: image 0 ends at the centre from the top-left, 1 from the
    top-right, 2 bottom-left, 3 bottom-right (each tile stays in its quadrant of the canvas)."""
    xc, yc = centre
    return [(xc - w if i in (0, 2) else xc, yc - h if i in (0, 1) else yc)
            for i, (h, w) in enumerate(shape[:2] for shape in shapes)]


def _tile_part(shape: Tuple[int, ...], origin: Tuple[int, int], box: Tuple[int, int, int, int]):
    """``(x1, y1, x2, y2)`` of a tile of ``shape`` at ``origin`` inside ``box``, in canvas pixels (may be empty)."""
    (ox, oy), (h, w) = origin, shape[:2]
    return max(ox, box[0]), max(oy, box[1]), min(ox + w, box[2]), min(oy + h, box[3])


def tile_in_box(shape: Tuple[int, ...], origin: Tuple[int, int], box: Tuple[int, int, int, int]) -> bool:
    """Whether any pixel of a tile of ``shape`` placed at ``origin`` falls inside ``box`` (x1, y1, x2, y2)."""
    x1, y1, x2, y2 = _tile_part(shape, origin, box)
    return x2 > x1 and y2 > y1


def paint_mosaic(canvas: np.ndarray, images: Sequence[np.ndarray], origins: Sequence[Tuple[int, int]],
                 box: Optional[Tuple[int, int, int, int]] = None) -> np.ndarray:
    """Paint the tiles at ``origins`` on a grey ``canvas``, only inside ``box`` (x1, y1, x2, y2; default: all).

    Pixels outside ``box`` are left untouched; parts of tiles falling outside the canvas are cut.
    """
    box = (0, 0, canvas.shape[1], canvas.shape[0]) if box is None else box
    canvas[box[1]:box[3], box[0]:box[2]] = PAD_VALUE
    for img, (ox, oy) in zip(images, origins):
        x1, y1, x2, y2 = _tile_part(img.shape, (ox, oy), box)
        if x2 > x1 and y2 > y1:
            canvas[y1:y2, x1:x2] = img[y1 - oy:y2 - oy, x1 - ox:x2 - ox]
    return canvas


def mosaic_labels(labels: Sequence[np.ndarray], segments: Sequence[Sequence[np.ndarray]],
                  shapes: Sequence[Tuple[int, ...]], origins: Sequence[Tuple[int, int]], s: int):
    """Labels of the 4 tiles in canvas pixels: ``(labels (n, 5) [cls, x1, y1, x2, y2], segments)`` clipped to the
    (2s, 2s) canvas; ``labels[i]`` are (n, 5) ``[cls, x, y, w, h]`` normalised to tile i, ``segments[i]`` its
    normalised polygons."""
    out_labels, out_segments = [], []
    for lab, segs, shape, (ox, oy) in zip(labels, segments, shapes, origins):
        h, w = shape[:2]
        lab = np.array(lab, dtype=np.float32).reshape(-1, 5).copy()
        if len(lab):
            lab[:, 1:] = xywhn2xyxy(lab[:, 1:], w, h, ox, oy)
        out_labels.append(lab)
        out_segments.extend(xyn2xy(np.asarray(x, dtype=np.float32), w, h, ox, oy) for x in segs)
    labels4 = np.concatenate(out_labels, 0) if out_labels else np.zeros((0, 5), np.float32)
    np.clip(labels4[:, 1:], 0, 2 * s, out=labels4[:, 1:])
    for x in out_segments:
        np.clip(x, 0, 2 * s, out=x)
    return labels4, out_segments


def mosaic4(images: Sequence[np.ndarray], labels: Sequence[np.ndarray], segments: Sequence[Sequence[np.ndarray]],
            s: int, centre: Tuple[int, int]):
    """Tile 4 images on a (2s, 2s) grey canvas around ``centre`` (xc, yc) (see :func:`mosaic_origins`).

    Parts falling outside the canvas are cut. ``labels[i]`` are (n, 5) ``[cls, x, y, w, h]`` normalised to image
    i and ``segments[i]`` its normalised polygons. Returns ``(canvas, labels (n, 5) [cls, x1, y1, x2, y2] px,
    segments px)`` with boxes and polygons clipped to the canvas.
    """
    shapes = [im.shape for im in images]
    origins = mosaic_origins(shapes, centre)
    canvas = paint_mosaic(np.empty((2 * s, 2 * s, images[0].shape[2]), np.uint8), images, origins)
    return (canvas, *mosaic_labels(labels, segments, shapes, origins, s))


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


def chw_rgb(im: np.ndarray, flip: Optional[int] = None) -> np.ndarray:
    """A new contiguous (3, H, W) RGB array from an (H, W, 3) BGR image, optionally flipped on the way.

    ``flip`` is OpenCV's flip code: 0 up-down, 1 left-right, -1 both, None none.
    """
    if flip is not None:
        im = cv2.flip(im, flip, dst=WORKSPACE.array("flip", im.shape))
    out = np.empty((3, *im.shape[:2]), np.uint8)
    planes = cv2.split(im, [out[2], out[1], out[0]])  # BGR -> RGB, each plane written in place
    if not all(np.may_share_memory(p, out) for p in planes):  # this OpenCV made new arrays instead
        out[:] = im.transpose(2, 0, 1)[::-1]
    return out


def flip_labels(labels: np.ndarray, axis: str) -> np.ndarray:
    """Mirror normalised xywh labels (n, 5) in place: ``axis='lr'`` mirrors x, ``'ud'`` mirrors y."""
    col = 1 if axis == "lr" else 2
    labels[:, col] = 1 - labels[:, col]
    return labels


__all__: List[str] = ["letterbox", "augment_hsv", "box_candidates", "random_perspective", "draw_warp", "Warp",
                      "mosaic4", "mosaic_origins", "mosaic_labels", "paint_mosaic", "tile_in_box", "mixup", "hist_equalize",
                      "chw_rgb", "flip_labels", "PAD_VALUE"]
