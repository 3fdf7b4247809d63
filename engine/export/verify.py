"""Checking a written file against the PyTorch model: its own runtime on a real image, outputs and metadata.

Decoded outputs: max abs difference of the boxes (px, tolerance relative to the input side) and of the
objectness / class scores. Raw outputs: of the logits. int8 files cannot meet float tolerances; they are held to
looser ones on the rows NMS would keep (confidence > 0.25), and their accuracy is measured by val.py (mAP).
"""
from __future__ import annotations

import platform
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from engine.export.images import sample_images
from engine.export.metadata import metadata_differences
from engine.formats import coreml
from engine.formats.base import ExportError
from utils.log import LOGGER

# boxes relative to the largest input side (px / side), scores / logits absolute
TOL = {"fp32": {"box": 2e-4, "score": 1e-3}, "fp16": {"box": 1e-2, "score": 2e-2},
       "int8": {"box": 0.05, "score": 0.25}}
CONFIDENT = 0.25  # int8: rows whose reference obj * max(class) exceeds this are compared


def as_list(y: Any) -> List[torch.Tensor]:
    return [t.detach().float().cpu() for t in (y if isinstance(y, (tuple, list)) else [y])]


def _shapes_match(ref: Sequence[torch.Tensor], out: Sequence[torch.Tensor]) -> str:
    if len(ref) != len(out):
        return f"{len(out)} outputs, expected {len(ref)}"
    for r, o in zip(ref, out):
        if tuple(r.shape) != tuple(o.shape):
            return f"output shape {tuple(o.shape)}, expected {tuple(r.shape)}"
    return ""


def _box_score_diff(r: torch.Tensor, o: torch.Tensor) -> Tuple[float, float]:
    if r.numel() == 0:
        return 0.0, 0.0
    return float((r[..., :4] - o[..., :4]).abs().max()), float((r[..., 4:] - o[..., 4:]).abs().max())


def compare_outputs(ref: Sequence[torch.Tensor], out: Sequence[torch.Tensor], raw: bool, side: int,
                    precision: str = "fp32") -> Tuple[bool, str]:
    """(within tolerance, description); ``precision`` 'fp32' | 'fp16' | 'int8' picks the tolerance."""
    ref, out = as_list(ref), as_list(out)
    problem = _shapes_match(ref, out)
    if problem:
        return False, problem
    tol = TOL[precision]
    if raw:
        diff = max(float((r - o).abs().max()) for r, o in zip(ref, out))
        scale = max(1.0, max(float(r.abs().max()) for r in ref))
        return diff <= tol["score"] * scale, f"max abs diff {diff:.2e} (raw logits)"
    r, o = ref[0], out[0]
    box, score = _box_score_diff(r, o)
    msg = f"max abs diff {box:.2e} px (boxes), {score:.2e} (objectness / class scores)"
    if precision != "int8":
        return box <= tol["box"] * side and score <= tol["score"], msg
    keep = r[..., 4] * r[..., 5:].max(-1).values > CONFIDENT
    cbox, cscore = _box_score_diff(r[keep], o[keep])
    msg += f"; on the {int(keep.sum())} confident rows {cbox:.2f} px, {cscore:.3f}"
    return bool(torch.isfinite(o).all()) and cbox <= tol["box"] * side and cscore <= tol["score"], msg


def verify_file(fmt: ModuleType, file: Path, reference: nn.Module, im: torch.Tensor, metadata: Dict[str, Any],
                what: str, prefix: str, half: bool = False) -> str:
    """Run ``file`` in its runtime on ``im`` and compare with ``reference`` (ExportError on a mismatch); check the
    metadata read back. CoreML off macOS: the package's spec is checked instead. Returns the comparison line."""
    if fmt is coreml and platform.system() != "Darwin":
        msg = coreml.check_package(file, list(im.shape), metadata)
    else:
        with torch.no_grad():
            ref, out = reference(im), fmt.RUNNER(file, device=im.device, half=half)(im)
        precision = "int8" if "int8" in metadata else "fp16" if metadata.get("half") else "fp32"
        ok, msg = compare_outputs(as_list(ref), out, metadata["output"] == "raw", max(im.shape[2:]), precision)
        if not ok:
            raise ExportError(f"{file} does not reproduce the PyTorch model on {what} {tuple(im.shape)}: {msg}")
        msg = f"verified with {fmt.RUNTIME} on {what} {tuple(im.shape)}: {msg}"
    problem = metadata_differences(metadata, fmt.read_metadata(file))
    if problem:
        raise ExportError(f"{file}: metadata read back differs from what was written: {problem}")
    LOGGER.info(f"{prefix} {msg}")
    return msg


def second_shape(metadata: Dict[str, Any]) -> Tuple[int, int, int]:
    """(batch, h, w) unlike the export shape, used to check that a graph is really shape-generic."""
    gs, (h, w) = metadata["stride"], metadata["imgsz"]
    return metadata["batch"] + 1, max(gs, h - gs), w + gs


def shape_check(reference: nn.Module, metadata: Dict[str, Any], like: torch.Tensor
                ) -> Callable[[Callable], bool]:
    """A test of a traced module: does it reproduce ``reference`` at :func:`second_shape`?

    Tracing records shapes as graph values when the model reads them from its tensors (the export-mode Detect
    builds its grid that way), so a trace usually generalises; this checks it rather than assuming it.
    """
    def check(traced: Callable) -> bool:
        b, h, w = second_shape(metadata)
        im2 = sample_images((h, w), b)[0].to(like.device).type(like.dtype)
        try:
            with torch.no_grad():
                ref, out = reference(im2), traced(im2)
        except RuntimeError:
            return False
        precision = "fp16" if metadata["half"] else "fp32"
        return compare_outputs(as_list(ref), as_list(out), metadata["output"] == "raw", max(h, w), precision)[0]
    return check


def verify_second_shape(fmt: ModuleType, file: Path, reference: nn.Module, metadata: Dict[str, Any],
                        like: torch.Tensor, prefix: str, half: bool = False) -> Optional[str]:
    """A shape-generic file must also be right at a shape it was not traced at."""
    if not metadata.get("dynamic"):
        return None
    b, h, w = second_shape(metadata)
    im2, what = sample_images((h, w), b)
    return verify_file(fmt, file, reference, im2.to(like.device).type(like.dtype), metadata, what, prefix, half)
