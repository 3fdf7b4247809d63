"""The model side of detection: the device, the weights in any supported format (DetectMultiBackend) run in the
precision of utils/precision.py, the inference size, and the optional feature-map dumper (``--visualize``)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import torch

from engine.backends import DetectMultiBackend
from engine.cli import FlagError
from utils.checks import check_img_size
from utils.log import LOGGER
from utils.plots import feature_visualization
from utils.precision import Precision, inference_precision
from utils.torch_utils import select_device


def pick_device(device: str) -> torch.device:
    """``--device`` -> torch.device; an impossible request (bad spelling, CUDA without a GPU) is a flag error."""
    try:
        return select_device(device)
    except (ValueError, RuntimeError) as e:
        raise FlagError(str(e)) from None


def pick_precision(device: torch.device, half: bool, fp32: bool) -> Precision:
    try:
        return inference_precision(device, half=half, fp32=fp32)
    except ValueError as e:  # --half with --fp32
        raise FlagError(str(e)) from None


def load_model(weights: Sequence[str], device: torch.device, precision: Precision, dnn: bool = False,
               data: Optional[str] = None) -> DetectMultiBackend:
    """DetectMultiBackend over ``weights`` (an exported file that cannot be read is its BackendError)."""
    return DetectMultiBackend(list(weights), device=device, dnn=dnn, data=data, precision=precision)


def precision_line(model: DetectMultiBackend, half: bool, fp32: bool) -> str:
    """The start-up line naming the precision the model runs in, and why."""
    if not model.pt:
        return f"Precision: {'fp16' if model.fp16 else 'fp32'} ({model.kind_name} weights run as exported)"
    p = model.precision
    if half or fp32:
        why = "--half" if half else "--fp32"
    elif p.device_type == "cpu":  # the default is bf16 exactly when the CPU runs it natively
        why = "default: this CPU " + ("runs bf16 natively; --fp32 for exact fp32" if p.dtype is not None else
                                      "has no native bf16; --half forces bf16 autocast")
    else:
        why = "default"
    return f"Precision: {p.describe()} ({why})"


def inference_size(model: DetectMultiBackend, imgsz: Union[int, Sequence[int]]) -> Tuple[List[int], bool]:
    """``([h, w], auto)``: ``imgsz`` rounded to the model's stride, or the shape a fixed-shape export needs;
    ``auto`` (minimal letterbox padding) only when the model takes any shape."""
    imgsz = list(imgsz) if isinstance(imgsz, (list, tuple)) else [imgsz]
    imgsz = check_img_size(imgsz * 2 if len(imgsz) == 1 else imgsz, s=model.stride)
    fixed = model.fixed_shape
    if fixed is not None and tuple(imgsz) != tuple(fixed):
        LOGGER.warning(f"WARNING: {model.weights} was exported for {fixed[0]}x{fixed[1]} inputs, using "
                       f"--imgsz {fixed[0]} {fixed[1]}")
        imgsz = list(fixed)
    return list(imgsz), fixed is None


class FeatureDumper:
    """Forward hooks that save each layer's feature maps (utils.plots.feature_visualization) of .pt models.

    Only armed while an image is being processed, and each layer is saved once per image (TTA runs the layers
    at three scales: only the first, full-scale pass is kept), to ``<save_dir>/<image stem>/``.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.target: Optional[Path] = None
        self.done: set = set()
        layers = getattr(model, "model", None)
        if not isinstance(layers, torch.nn.Sequential):
            raise ValueError("--visualize works with a single .pt model only")
        self.handles = [m.register_forward_hook(self._hook) for m in layers]

    def _hook(self, m: torch.nn.Module, _inputs, output) -> None:
        i = getattr(m, "i", None)
        if self.target is None or i in self.done or not isinstance(output, torch.Tensor):
            return
        self.done.add(i)
        feature_visualization(output, getattr(m, "type", type(m).__name__), i, save_dir=self.target)

    def arm(self, target: Optional[Path]) -> None:
        self.target, self.done = target, set()
        if target is not None:
            target.mkdir(parents=True, exist_ok=True)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def feature_dumper(model: DetectMultiBackend, visualize: bool) -> Optional[FeatureDumper]:
    """A dumper for ``--visualize`` (a single .pt model only; otherwise a warning and None)."""
    if not visualize:
        return None
    if not model.pt or isinstance(model.weights, list):
        LOGGER.warning("WARNING: --visualize works with a single .pt model only, ignored")
        return None
    return FeatureDumper(model.model)
