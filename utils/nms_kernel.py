"""torchvision's NMS kernel without importing the torchvision package.

``import torchvision`` takes about 2 s of CPU on current releases (its ``ops`` package imports ``torch._dynamo``),
more than torch itself, and training, val and detect need nothing from it but the compiled NMS. The kernel lives
in torchvision's C++ extension, which registers ``torch.ops.torchvision.nms`` when loaded; loading that one file
takes milliseconds. The result is the same op ``torchvision.ops.nms`` calls (a test compares them).

When torchvision is imported anyway (export, the torchvision backbones) or its extension cannot be found on its
own (an unusual build, Windows' DLL search paths), the public ``torchvision.ops.nms`` is used.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional

import torch

EXTENSIONS = ("_C_stable", "_C")  # the extension's name in torchvision >= 0.26, and before


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices of the kept ``boxes`` (N, 4) xyxy, by decreasing ``scores``: ``torchvision.ops.nms``."""
    return kernel()(boxes, scores, iou_threshold)


@lru_cache(maxsize=None)
def kernel() -> Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]:
    if "torchvision" not in sys.modules and os.name != "nt":
        library = extension_file()
        if library is not None:
            try:
                torch.ops.load_library(str(library))
                return torch.ops.torchvision.nms
            except (OSError, RuntimeError, AttributeError):
                pass  # not loadable on its own: the package knows how
    import torchvision
    return torchvision.ops.nms


def extension_file() -> Optional[Path]:
    """torchvision's compiled extension in the installed package, found without importing it."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for name in EXTENSIONS:
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                f = Path(folder) / f"{name}{suffix}"
                if f.is_file():
                    return f
    return None
