"""Images for export: the sample batch that is traced and compared with PyTorch, and int8 calibration images."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch

from data.augmentations import letterbox
from data.config import check_dataset
from data.datasets import img_files_from
from utils.files import ROOT, walk_files

IMG_FORMATS = (".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp")
CALIBRATION_IMAGES = 64  # the int8 study: 16, 64 or 256 images give the same mAP within 0.002
MAX_CALIBRATION_IMAGES = 1000  # MinMax calibration gains nothing from more; it only gets slower


def synthetic_image(h: int = 480, w: int = 640, seed: int = 0) -> np.ndarray:
    """A deterministic BGR test scene (filled rectangles and circles on a gradient) when no image is at hand."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(60, 200, w, dtype=np.float32)[None, :, None]
    im = np.broadcast_to(ramp, (h, w, 3)).astype(np.uint8).copy()
    for _ in range(8):
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        x1, y1 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        x2, y2 = min(w - 1, x1 + int(rng.integers(20, w // 2))), min(h - 1, y1 + int(rng.integers(20, h // 2)))
        if rng.random() < 0.5:
            cv2.rectangle(im, (x1, y1), (x2, y2), color, -1)
        else:
            cv2.circle(im, ((x1 + x2) // 2, (y1 + y2) // 2), max(5, (x2 - x1) // 3), color, -1)
    return im


def to_input(im: np.ndarray, imgsz: Sequence[int]) -> torch.Tensor:
    """BGR image -> (3, h, w) float RGB in [0, 1], letterboxed to exactly ``imgsz`` (what detect / val feed)."""
    im = letterbox(im, (int(imgsz[0]), int(imgsz[1])), auto=False)[0]
    return torch.from_numpy(np.ascontiguousarray(im[:, :, ::-1].transpose(2, 0, 1))).float() / 255


def sample_images(imgsz: Sequence[int], batch: int, source: Optional[Path] = None) -> Tuple[torch.Tensor, str]:
    """(batch, 3, h, w) from data/images (or ``source``), generated scenes when there are too few; and their names."""
    folder = source or ROOT / "data" / "images"
    files = walk_files(folder, recursive=False, suffixes=IMG_FORMATS) if folder.is_dir() else []
    images, used = [], []
    for f in files:
        im = cv2.imread(f)
        if im is not None:
            images.append(im)
            used.append(Path(f).name)
        if len(images) == batch:
            break
    while len(images) < batch:
        images.append(synthetic_image(seed=len(images)))
        used.append("generated")
    return torch.stack([to_input(im, imgsz) for im in images]), ",".join(sorted(set(used)))


def calibration_images(data: Union[str, Path, dict], imgsz: Sequence[int], n: int = CALIBRATION_IMAGES,
                       split: str = "train") -> List[torch.Tensor]:
    """``n`` images of the dataset's ``split``, evenly spaced over its sorted file list, as (1, 3, h, w) tensors."""
    d = check_dataset(data)
    files = img_files_from(d[split] if d.get(split) else d["val"], prefix=f"--data {split}: ")
    step = max(1, len(files) // n)
    out = []
    for f in files[::step][:n]:
        im = cv2.imread(f)
        if im is not None:
            out.append(to_input(im, imgsz)[None])
    return out
