"""The training / validation item of commit f5e98d3, before the cheaper pipeline, written plainly as a reference.

Fresh arrays everywhere, the whole (2s, 2s) canvas painted, every tile decoded with ``cv2.imread``, HSV through
new planes, flips as numpy views and one ``ascontiguousarray`` at the end. It draws the same random numbers in
the same order, so for one RNG state it must give exactly the item that ``LoadImagesAndLabels[i]`` gives.
Only the dataset's lists (files, labels, segments, shapes, batch shapes) and its settings are read.
"""
from __future__ import annotations

import math
import random

import cv2
import numpy as np
import torch

from utils.boxes import resample_segments, segment2box, xyn2xy, xywhn2xyxy, xyxy2xywhn

GREY = 114


def letterbox(im, new_shape, scaleup):
    """letterbox(..., auto=False): resize keeping the aspect ratio, pad to new_shape (h, w)."""
    h0, w0 = im.shape[:2]
    new_shape = (new_shape, new_shape) if isinstance(new_shape, int) else tuple(new_shape)
    r = min(new_shape[0] / h0, new_shape[1] / w0)
    r = r if scaleup else min(r, 1.0)
    w1, h1 = int(round(w0 * r)), int(round(h0 * r))
    dw, dh = (new_shape[1] - w1) / 2, (new_shape[0] - h1) / 2
    if (w0, h0) != (w1, h1):
        im = cv2.resize(im, (w1, h1), interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    if top or bottom or left or right:
        im = cv2.copyMakeBorder(im, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(GREY, GREY, GREY))
    return im, (r, r), (dw, dh)


def load_image(ds, i):
    if ds.imgs[i] is not None:
        return ds.imgs[i].copy(), ds.img_hw0[i], ds.img_hw[i]
    im = cv2.imread(ds.img_files[i])
    h0, w0 = im.shape[:2]
    r = ds.img_size / max(h0, w0)
    if r != 1:
        interp = cv2.INTER_AREA if r < 1 and not ds.augment else cv2.INTER_LINEAR
        im = cv2.resize(im, (max(1, round(w0 * r)), max(1, round(h0 * r))), interpolation=interp)
    return im, (h0, w0), im.shape[:2]


def random_perspective(im, targets, segments, degrees, translate, scale, shear, perspective, border=(0, 0)):
    height, width = im.shape[0] + border[0] * 2, im.shape[1] + border[1] * 2
    c = np.eye(3)
    c[0, 2], c[1, 2] = -im.shape[1] / 2, -im.shape[0] / 2
    p = np.eye(3)
    p[2, 0], p[2, 1] = random.uniform(-perspective, perspective), random.uniform(-perspective, perspective)
    angle = random.uniform(-degrees, degrees)
    s = random.uniform(1 - scale, 1 + scale)
    r = np.eye(3)
    r[:2] = cv2.getRotationMatrix2D(center=(0, 0), angle=angle, scale=s)
    sh = np.eye(3)
    sh[0, 1] = math.tan(math.radians(random.uniform(-shear, shear)))
    sh[1, 0] = math.tan(math.radians(random.uniform(-shear, shear)))
    t = np.eye(3)
    t[0, 2] = random.uniform(0.5 - translate, 0.5 + translate) * width
    t[1, 2] = random.uniform(0.5 - translate, 0.5 + translate) * height
    m = t @ sh @ r @ p @ c
    if border[0] != 0 or border[1] != 0 or (m != np.eye(3)).any():
        if perspective:
            im = cv2.warpPerspective(im, m, dsize=(width, height), borderValue=(GREY, GREY, GREY))
        else:
            im = cv2.warpAffine(im, m[:2], dsize=(width, height), borderValue=(GREY, GREY, GREY))

    def apply(points):
        xy = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ m.T
        return xy[:, :2] / xy[:, 2:3] if perspective else xy[:, :2]

    n = len(targets)
    if n:
        use_segments = len(segments) == n
        if use_segments:
            new = np.zeros((n, 4))
            for i, seg in enumerate(resample_segments(segments)):
                new[i] = segment2box(apply(seg), width, height)
        else:
            xy = apply(targets[:, [1, 2, 3, 4, 1, 4, 3, 2]].reshape(n * 4, 2)).reshape(n, 8)
            x, y = xy[:, 0::2], xy[:, 1::2]
            new = np.stack([x.min(1), y.min(1), x.max(1), y.max(1)], axis=1)
            new[:, [0, 2]] = new[:, [0, 2]].clip(0, width)
            new[:, [1, 3]] = new[:, [1, 3]].clip(0, height)
        box1, box2 = targets[:, 1:5].T * s, new.T
        w1, h1, w2, h2 = box1[2] - box1[0], box1[3] - box1[1], box2[2] - box2[0], box2[3] - box2[1]
        ar = np.maximum(w2 / (h2 + 1e-16), h2 / (w2 + 1e-16))
        area_thr = 0.01 if use_segments else 0.10
        keep = (w2 > 2) & (h2 > 2) & (w2 * h2 / (w1 * h1 + 1e-16) > area_thr) & (ar < 20)
        targets = targets[keep]
        targets[:, 1:5] = new[keep]
    return im, targets


def load_mosaic(ds, index):
    s = ds.img_size
    xc, yc = (int(random.uniform(-b, 2 * s + b)) for b in ds.mosaic_border)
    ids = [index] + random.choices(ds.indices, k=3)
    canvas = np.full((2 * s, 2 * s, 3), GREY, dtype=np.uint8)
    labels, segments = [], []
    for k, i in enumerate(ids):
        img = load_image(ds, i)[0]
        h, w = img.shape[:2]
        ox = xc - w if k in (0, 2) else xc
        oy = yc - h if k in (0, 1) else yc
        x1, y1, x2, y2 = max(ox, 0), max(oy, 0), min(ox + w, 2 * s), min(oy + h, 2 * s)
        if x2 > x1 and y2 > y1:
            canvas[y1:y2, x1:x2] = img[y1 - oy:y2 - oy, x1 - ox:x2 - ox]
        lab = ds.labels[i].copy()
        if len(lab):
            lab[:, 1:] = xywhn2xyxy(lab[:, 1:], w, h, ox, oy)
        labels.append(lab)
        segments += [xyn2xy(np.asarray(x, dtype=np.float32), w, h, ox, oy) for x in ds.segments[i]]
    labels = np.concatenate(labels, 0)
    np.clip(labels[:, 1:], 0, 2 * s, out=labels[:, 1:])
    for x in segments:
        np.clip(x, 0, 2 * s, out=x)
    hyp = ds.hyp
    return random_perspective(canvas, labels, segments, hyp["degrees"], hyp["translate"], hyp["scale"],
                              hyp["shear"], hyp["perspective"], border=tuple(ds.mosaic_border))


def augment_hsv(im, hgain, sgain, vgain):
    if not (hgain or sgain or vgain):
        return
    r = np.random.uniform(-1, 1, 3) * np.array([hgain, sgain, vgain]) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(im, cv2.COLOR_BGR2HSV))
    x = np.arange(256, dtype=np.float32)
    lut_h = ((x * r[0]) % 180).astype(np.uint8)
    lut_s = np.clip(x * r[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * r[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
    cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR, dst=im)


def item(ds, index):
    """What ``ds[index]`` was at f5e98d3: ``(img (3, H, W) uint8 RGB, labels (n, 6), path, shapes)``."""
    hyp = ds.hyp
    if ds.mosaic and random.random() < hyp["mosaic"]:
        img, labels = load_mosaic(ds, index)
        shapes = None
        if random.random() < hyp["mixup"]:
            img2, labels2 = load_mosaic(ds, random.randint(0, ds.n - 1))
            r = np.random.beta(8.0, 8.0)
            img = (img.astype(np.float32) * r + img2.astype(np.float32) * (1 - r)).astype(np.uint8)
            labels = np.concatenate((labels, labels2), 0)
    else:
        img, (h0, w0), (h, w) = load_image(ds, index)
        shape = ds.batch_shapes[ds.batch[index]] if ds.rect else ds.img_size
        img, ratio, pad = letterbox(img, shape, scaleup=ds.augment)
        shapes = (h0, w0), ((h / h0, w / w0), (float(pad[0]), float(pad[1])))
        labels = ds.labels[index].copy()
        if labels.size:
            labels[:, 1:] = xywhn2xyxy(labels[:, 1:], ratio[0] * w, ratio[1] * h, pad[0], pad[1])
        if ds.augment:
            img, labels = random_perspective(img, labels, (), hyp["degrees"], hyp["translate"], hyp["scale"],
                                             hyp["shear"], hyp["perspective"])
    labels = np.asarray(labels, dtype=np.float32).reshape(-1, 5)
    nl = len(labels)
    if nl:
        labels[:, 1:5] = xyxy2xywhn(labels[:, 1:5], w=img.shape[1], h=img.shape[0], clip=True, eps=1e-3)
    if ds.augment:
        augment_hsv(img, hyp["hsv_h"], hyp["hsv_s"], hyp["hsv_v"])
        if random.random() < hyp["flipud"]:
            img = np.flipud(img)
            labels[:, 2] = 1 - labels[:, 2]
        if random.random() < hyp["fliplr"]:
            img = np.fliplr(img)
            labels[:, 1] = 1 - labels[:, 1]
    labels_out = torch.zeros((nl, 6))
    if nl:
        labels_out[:, 1:] = torch.from_numpy(labels)
    img = np.ascontiguousarray(img.transpose(2, 0, 1)[::-1])
    return torch.from_numpy(img), labels_out, ds.img_files[index], shapes
