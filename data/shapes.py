"""The embedded synthetic "shapes" detection dataset, generated offline and deterministically on first use.

Eight mutually exclusive classes, each one shape in one colour, drawn 2-8 per image at 8-50 % of the image
side on textured backgrounds (gradients, stripes, blotches, grain, clutter lines), later objects partially
covering earlier ones.

The ``groups`` scheme (``data/shapes-groups.yaml``) draws the same scenes with shape and colour chosen
independently and labels every object in two exclusive groups plus a subclass, the way YOLOv5 writes multi-label
boxes (one label row per class on the same box): a kind (circle, square, triangle, star), a colour (red, green,
blue, yellow), and ``ring`` for hollow circles, a subclass of circle. Its classes suit ``--cls-loss grouped``
(or ``bce``); ``ce`` cannot learn them. Layout (YOLO format)::

    <root>/images/{train,val}/000000.jpg   <root>/labels/{train,val}/000000.txt   <root>/shapes.json

``shapes.json`` records the generation parameters; it is written last, so its presence marks a complete
dataset. Every image has its own RNG stream derived from ``(seed, split, index)``: the bytes depend only on
the parameters (and the OpenCV JPEG encoder), not on threading or generation order.
Run ``python -m data.shapes --root datasets/shapes [--scheme groups]`` to generate by hand.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import List, Tuple, Union

import cv2
import numpy as np

GENERATOR_VERSION = 2
NAMES = ["red circle", "green square", "blue triangle", "yellow star", "magenta hexagon", "cyan cross",
         "orange diamond", "white ring"]
COLORS_BGR = [(40, 40, 215), (60, 175, 40), (215, 90, 30), (30, 215, 225), (200, 50, 200), (215, 210, 40),
              (20, 140, 250), (240, 240, 240)]
# the "groups" scheme: kind x colour (+ ring as a subclass of circle)
GROUP_NAMES = ["circle", "square", "triangle", "star", "red", "green", "blue", "yellow", "ring"]
GROUP_COLORS_BGR = [(40, 40, 215), (60, 175, 40), (215, 90, 30), (30, 215, 225)]  # red, green, blue, yellow
CLS_GROUPS = [["circle", "square", "triangle", "star"], ["red", "green", "blue", "yellow"],
              {"classes": ["ring"], "parent": "circle"}]
SCHEMES = ("shapes", "groups")
_SPLITS = {"train": 0, "val": 1}
DEFAULTS = {"n_train": 800, "n_val": 160, "img_size": 320, "seed": 0}  # what data/shapes.yaml generates
MIN_SIZE, MAX_SIZE = 0.08, 0.50  # object extent as a fraction of the image's short side
_SHIFT = 4  # sub-pixel bits for cv2 polygon drawing


# ---------------------------------------------------------------------------------------------------------
# backgrounds (vectorised numpy / OpenCV, no per-pixel Python)
def _muted_color(rng: np.random.Generator) -> np.ndarray:
    grey = rng.uniform(60, 190)
    return np.clip(grey + rng.uniform(-45, 45, 3), 0, 255)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    kind = rng.integers(0, 4)
    c1, c2 = _muted_color(rng).astype(np.float32), _muted_color(rng).astype(np.float32)
    yy, xx = np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]  # broadcast grid
    if kind == 0:  # linear gradient in a random direction
        a = rng.uniform(0, 2 * math.pi)
        t = xx * math.cos(a) + yy * math.sin(a)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    elif kind == 1:  # stripes
        a = rng.uniform(0, math.pi)
        period = rng.uniform(6, 40)
        t = 0.5 + 0.5 * np.sin((xx * math.cos(a) + yy * math.sin(a)) * (2 * math.pi / period))
    elif kind == 2:  # smooth blotches: upsampled low-resolution noise
        g = int(rng.integers(3, 10))
        t = cv2.resize(rng.random((g, g)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    else:  # grain around one colour
        t = rng.random((h, w), dtype=np.float32) * 0.35
    t = np.broadcast_to(t, (h, w))[..., None]
    img = c1 + (c2 - c1) * t
    img += rng.standard_normal((h, w, 1), dtype=np.float32) * np.float32(rng.uniform(2, 10))  # luminance noise
    out = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 6))):  # clutter lines (not objects)
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(out, p1, p2, tuple(int(v) for v in _muted_color(rng)), int(rng.integers(1, 4)), cv2.LINE_AA)
    return out


# ---------------------------------------------------------------------------------------------------------
# shapes: each returns polygons (list of (k, 2) float arrays, first = outer) centred at 0 with extent ~ d
def _regular(n: int, r: float, rot: float) -> np.ndarray:
    a = rot + np.arange(n) * 2 * math.pi / n
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


def _rotate(p: np.ndarray, rot: float) -> np.ndarray:
    c, s = math.cos(rot), math.sin(rot)
    return p @ np.array([[c, s], [-s, c]])


def _shape_polygons(cls: int, d: float, rng: np.random.Generator) -> List[np.ndarray]:
    r = d / 2
    if cls in (0, 7):  # circle / ring
        outer = _regular(64, r, 0.0)
        return [outer, _regular(64, r * 0.55, 0.0)] if cls == 7 else [outer]
    if cls == 1:  # square, slightly rotated
        return [_regular(4, r, math.pi / 4 + rng.uniform(-0.35, 0.35))]
    if cls == 2:  # equilateral triangle, any rotation
        return [_regular(3, r, rng.uniform(0, 2 * math.pi))]
    if cls == 3:  # five-pointed star
        a = rng.uniform(0, 2 * math.pi) + np.arange(10) * math.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        return [np.stack([rad * np.cos(a), rad * np.sin(a)], 1)]
    if cls == 4:  # hexagon
        return [_regular(6, r, rng.uniform(0, math.pi / 3))]
    if cls == 5:  # plus-shaped cross, arms one third wide
        t = r / 3
        pts = np.array([[-t, -r], [t, -r], [t, -t], [r, -t], [r, t], [t, t], [t, r], [-t, r], [-t, t], [-r, t],
                        [-r, -t], [-t, -t]])
        return [_rotate(pts, rng.uniform(-0.35, 0.35))]
    # 6: diamond (rhombus), taller than wide
    pts = np.array([[0, -r], [0.6 * r, 0], [0, r], [-0.6 * r, 0]])
    return [_rotate(pts, rng.uniform(-0.25, 0.25))]


def _draw(img: np.ndarray, polys: List[np.ndarray], color: Tuple[int, int, int]) -> None:
    scaled = [np.round(p * (1 << _SHIFT)).astype(np.int32) for p in polys]
    if len(polys) == 1:
        cv2.fillPoly(img, scaled[:1], color, cv2.LINE_AA, _SHIFT)
    else:  # ring: the hole shows what was underneath
        mask = np.zeros(img.shape[:2], np.uint8)
        cv2.fillPoly(mask, scaled[:1], 255, cv2.LINE_AA, _SHIFT)
        cv2.fillPoly(mask, scaled[1:], 0, cv2.LINE_AA, _SHIFT)
        a = (mask.astype(np.float32) / 255)[..., None]
        img[:] = (img * (1 - a) + np.array(color, np.float32) * a).astype(np.uint8)


def _box_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection area of two xyxy boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(w, 0.0) * max(h, 0.0)


def _object(scheme: str, rng: np.random.Generator) -> Tuple[int, Tuple[int, int, int], List[int]]:
    """(shape id for _shape_polygons, BGR colour, label classes) of one object of ``scheme``."""
    if scheme == "shapes":
        cls = int(rng.integers(0, len(NAMES)))
        return cls, COLORS_BGR[cls], [cls]
    kind, colour = int(rng.integers(0, 4)), int(rng.integers(0, 4))
    ring = kind == 0 and rng.random() < 0.5
    return (7 if ring else kind), GROUP_COLORS_BGR[colour], [kind, 4 + colour] + ([8] if ring else [])


def render_image(seed: int, split: int, index: int, img_size: int = 320,
                 scheme: str = "shapes") -> Tuple[np.ndarray, np.ndarray]:
    """One image (BGR uint8) and its labels (n, 5) ``[cls, x, y, w, h]`` normalised (``groups`` scheme: one row
    per class of each object, same box)."""
    rng = np.random.default_rng([seed, split, index])
    orient = rng.choice(3, p=[0.6, 0.2, 0.2])  # square / landscape 4:3 / portrait 3:4
    short = int(round(img_size * 0.75))
    h, w = [(img_size, img_size), (short, img_size), (img_size, short)][orient]
    img = _background(rng, h, w)
    side = min(h, w)
    boxes, covered, labels = [], [], []
    for _ in range(int(rng.integers(2, 9))):
        for _attempt in range(25):
            cls, base_color, classes = _object(scheme, rng)
            d = side * math.exp(rng.uniform(math.log(MIN_SIZE), math.log(MAX_SIZE)))
            polys = _shape_polygons(cls, d, rng)
            lo, hi = polys[0].min(0), polys[0].max(0)
            cx = rng.uniform(-lo[0] + 1, w - hi[0] - 1)
            cy = rng.uniform(-lo[1] + 1, h - hi[1] - 1)
            box = np.array([cx + lo[0], cy + lo[1], cx + hi[0], cy + hi[1]])
            # partial occlusion only: no earlier object may end up more than 40 % covered (box area)
            extra = [_box_overlap(b, box) / ((b[2] - b[0]) * (b[3] - b[1])) for b in boxes]
            if all(c + e <= 0.4 for c, e in zip(covered, extra)):
                covered = [c + e for c, e in zip(covered, extra)]
                break
        else:
            continue
        color = np.clip(np.array(base_color) + rng.integers(-20, 21, 3), 0, 255)
        _draw(img, [p + (cx, cy) for p in polys], tuple(int(v) for v in color))
        boxes.append(box)
        covered.append(0.0)
        xywh = [(box[0] + box[2]) / 2 / w, (box[1] + box[3]) / 2 / h, (box[2] - box[0]) / w, (box[3] - box[1]) / h]
        labels += [[c, *xywh] for c in classes]
    # shared lighting / sensor noise over objects and background alike
    light = np.float32(rng.uniform(0.85, 1.15))
    noise = rng.standard_normal(img.shape[:2] + (1,), dtype=np.float32) * np.float32(4)
    img = np.clip(img.astype(np.float32) * light + noise, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (3, 3), 0)
    return img, np.array(labels, dtype=np.float64).reshape(-1, 5)


def _write_one(args) -> None:
    root, split, index, seed, img_size, scheme = args
    img, labels = render_image(seed, _SPLITS[split], index, img_size, scheme)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for shapes image {split}/{index}")
    (root / "images" / split / f"{index:06d}.jpg").write_bytes(buf.tobytes())
    text = "".join(f"{int(c)} {x:.6f} {y:.6f} {bw:.6f} {bh:.6f}\n" for c, x, y, bw, bh in labels)
    (root / "labels" / split / f"{index:06d}.txt").write_text(text, encoding="utf-8")


def _params(n_train: int, n_val: int, img_size: int, seed: int, scheme: str = "shapes") -> dict:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown shapes scheme '{scheme}', expected one of {', '.join(SCHEMES)}")
    params = {"generator": "shapes", "version": GENERATOR_VERSION, "n_train": n_train, "n_val": n_val,
              "img_size": img_size, "seed": seed, "names": NAMES}
    if scheme != "shapes":  # the default scheme keeps the marker of datasets generated before schemes existed
        params.update(scheme=scheme, names=GROUP_NAMES)
    return params


def is_generated(root: Union[str, Path], **params) -> bool:
    """True when ``root`` holds a complete shapes dataset generated with these parameters."""
    marker = Path(root) / "shapes.json"
    try:
        return json.loads(marker.read_text(encoding="utf-8")) == _params(**params)
    except (OSError, ValueError):
        return False


def generate_shapes(root: Union[str, Path], n_train: int = 800, n_val: int = 160, img_size: int = 320,
                    seed: int = 0, workers: int = 4, scheme: str = "shapes") -> Path:
    """Generate (or reuse) the shapes dataset at ``root``; returns ``root``.

    Reuses an existing dataset with the same parameters. Builds in a temporary sibling directory and renames
    it into place, so concurrent callers (DDP ranks, parallel tests) never see a half-written dataset. An
    existing ``root`` that is not a shapes dataset is never overwritten (``FileExistsError``).
    """
    root = Path(root).expanduser().resolve()
    params = dict(n_train=n_train, n_val=n_val, img_size=img_size, seed=seed, scheme=scheme)
    if is_generated(root, **params):
        return root
    marker = root / "shapes.json"
    if root.exists() and any(root.iterdir()) and not marker.exists():
        raise FileExistsError(f"{root} exists and is not a generated shapes dataset; not overwriting it")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for split in _SPLITS:
        (tmp / "images" / split).mkdir(parents=True)
        (tmp / "labels" / split).mkdir(parents=True)
    jobs = [(tmp, "train", i, seed, img_size, scheme) for i in range(n_train)]
    jobs += [(tmp, "val", i, seed, img_size, scheme) for i in range(n_val)]
    with ThreadPool(max(1, workers)) as pool:
        list(pool.imap_unordered(_write_one, jobs, chunksize=16))
    (tmp / "shapes.json").write_text(json.dumps(_params(**params)), encoding="utf-8")
    if is_generated(root, **params):  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        return root
    if root.exists():  # a shapes dataset with other parameters (or an empty dir): replace it
        old = root.parent / f".{root.name}.old-{os.getpid()}"
        os.replace(root, old)
        shutil.rmtree(old, ignore_errors=True)
    try:
        os.replace(tmp, root)
    except OSError:
        if not is_generated(root, **params):
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # lost a race against an identical generation
    return root


def main(argv=None) -> None:
    import argparse
    ap = argparse.ArgumentParser(description="Generate the synthetic shapes dataset")
    ap.add_argument("--root", default="datasets/shapes")
    ap.add_argument("--n-train", type=int, default=800)
    ap.add_argument("--n-val", type=int, default=160)
    ap.add_argument("--img-size", type=int, default=320)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scheme", choices=SCHEMES, default="shapes", help="'groups': kind x colour (+ ring) labels")
    a = ap.parse_args(argv)
    print(generate_shapes(a.root, a.n_train, a.n_val, a.img_size, a.seed, scheme=a.scheme))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
