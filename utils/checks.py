"""Checks of user-given sizes: rounding an image size to the model stride."""
from __future__ import annotations

import math
from typing import Sequence, Union

import torch

from utils.log import LOGGER


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
