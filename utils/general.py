"""General helpers shared by every script (v5.0 path ``utils.general``).

Box conversions live in :mod:`utils.boxes` and NMS in :mod:`utils.nms`; both are re-exported here so that
upstream imports such as ``from utils.general import non_max_suppression, xyxy2xywh`` keep working.
"""
from __future__ import annotations

import glob
import logging
import math
import os
import random
import re
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch

from utils.boxes import (clip_boxes, clip_coords, resample_segments, scale_boxes, scale_coords,  # noqa: F401
                         segment2box, segments2boxes, xyn2xy, xywh2xyxy, xywhn2xyxy, xyxy2xywh, xyxy2xywhn)

ROOT = Path(__file__).resolve().parents[1]  # repository root
NUM_THREADS = min(8, max(1, os.cpu_count() or 1))
LOGGER = logging.getLogger("yolov5")


def set_logging(rank: int = -1, verbose: bool = True) -> logging.Logger:
    """Plain-message logging on rank 0 (or single process); warnings only on other DDP ranks."""
    level = logging.INFO if verbose and rank in (-1, 0) else logging.WARNING
    if not LOGGER.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        LOGGER.addHandler(handler)
        LOGGER.propagate = False
    LOGGER.setLevel(level)
    return LOGGER


set_logging()

_COLORS = {
    "black": "\033[30m", "red": "\033[31m", "green": "\033[32m", "yellow": "\033[33m", "blue": "\033[34m",
    "magenta": "\033[35m", "cyan": "\033[36m", "white": "\033[37m", "bright_black": "\033[90m",
    "bright_red": "\033[91m", "bright_green": "\033[92m", "bright_yellow": "\033[93m", "bright_blue": "\033[94m",
    "bright_magenta": "\033[95m", "bright_cyan": "\033[96m", "bright_white": "\033[97m",
    "end": "\033[0m", "bold": "\033[1m", "underline": "\033[4m",
}


def colorstr(*args: str) -> str:
    """``colorstr('blue', 'bold', 'text')`` -> text wrapped in ANSI codes (one argument = blue bold)."""
    *styles, text = args if len(args) > 1 else ("blue", "bold", args[0])
    return "".join(_COLORS[s] for s in styles) + f"{text}" + _COLORS["end"]


def make_divisible(x: float, divisor: Union[int, torch.Tensor]) -> int:
    """Smallest multiple of ``divisor`` that is >= x."""
    if isinstance(divisor, torch.Tensor):
        divisor = int(divisor.max())
    return math.ceil(x / divisor) * divisor


def check_img_size(img_size: Union[int, Sequence[int]], s: int = 32, floor: int = 0):
    """Round an image size (int or list) up to a multiple of stride ``s``, warning when it changes."""
    if isinstance(img_size, int):
        new_size = max(make_divisible(img_size, int(s)), floor)
    else:
        new_size = [max(make_divisible(x, int(s)), floor) for x in img_size]
    if new_size != img_size:
        LOGGER.warning(f"WARNING: --img-size {img_size} must be multiple of max stride {s}, updating to {new_size}")
    return new_size


def increment_path(path: Union[str, Path], exist_ok: bool = False, sep: str = "", mkdir: bool = False) -> Path:
    """``runs/exp`` -> ``runs/exp2``, ``runs/exp3``, ... (max existing suffix + 1) unless ``exist_ok``."""
    path = Path(path)
    if path.exists() and not exist_ok:
        suffix = path.suffix if path.is_file() else ""
        stem = path.with_suffix("") if suffix else path
        pattern = re.compile(rf"{re.escape(stem.name)}{re.escape(sep)}(\d+)$")
        numbers = [int(m.group(1)) for p in glob.glob(f"{glob.escape(str(stem))}{sep}*")
                   if (m := pattern.match(Path(p).with_suffix("").name if suffix else Path(p).name))]
        n = max(numbers) + 1 if numbers else 2
        path = Path(f"{stem}{sep}{n}{suffix}")
    if mkdir:
        path.mkdir(parents=True, exist_ok=True)
    return path


def init_seeds(seed: int = 0, deterministic: bool = False) -> None:
    """Seed python, numpy and torch; ``deterministic`` also asks torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
        os.environ["PYTHONHASHSEED"] = str(seed)


def one_cycle(y1: float = 0.0, y2: float = 1.0, steps: int = 100):
    """Cosine ramp from y1 to y2 over ``steps`` (the v5.0 one-cycle LR lambda)."""
    return lambda x: ((1 - math.cos(x * math.pi / steps)) / 2) * (y2 - y1) + y1


def check_file(file: Union[str, Path], what: str = "file") -> str:
    """Return ``file`` if it exists, else the unique match found under the repository; raise naming it otherwise."""
    file = str(file)
    if not file or Path(file).is_file():
        return file
    matches = [m for m in glob.glob(str(ROOT / "**" / file), recursive=True) if Path(m).is_file()]
    if not matches:
        raise FileNotFoundError(f"{what} not found: '{file}'")
    if len(matches) > 1:
        raise FileNotFoundError(f"{what} '{file}' is ambiguous, it matches: {matches}")
    return matches[0]


def count_noun(n: int, name: str) -> str:
    """'1 bus', '2 buses', '3 persons', '2 cyan crosses': a count and an English plural of a class name."""
    if n == 1:
        return f"{n} {name}"
    return f"{n} {name}{'es' if name.endswith(('s', 'x', 'z', 'ch', 'sh')) else 's'}"

# --- re-exports kept for upstream import paths; each lives in its own module ------------------------------
from utils.nms import non_max_suppression  # noqa: E402
from utils.metrics import bbox_iou, box_iou  # noqa: E402  (v5.0 path)
from utils.checkpoint import strip_optimizer  # noqa: E402
from utils.data_config import check_dataset  # noqa: E402
from utils.label_stats import labels_to_class_weights, labels_to_image_weights  # noqa: E402
