"""TorchScript (``<w>.torchscript.pt``): a trace of the detector's own decode, run by ``torch.jit.load``.

The trace usually stays shape-generic (Detect builds its grid from the input shape); export checks it at a second
shape (``Settings.shape_check``) and records the answer as metadata ``dynamic``. Metadata: the JSON extra file
``config.txt`` inside the archive (v7.0 name), read back without loading the model.
"""
from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path
from typing import Any, Dict, List

import torch
import torch.nn as nn

from engine.formats.base import Runner, Settings
from utils.log import LOGGER

NAME, TITLE, RUNTIME = "torchscript", "TorchScript:", "torch.jit.load"
SUFFIX = ".torchscript.pt"
GRAPH = "detect"  # the model's own decode, shape-generic
CONFIG_FILE = "config.txt"  # metadata entry inside TorchScript archives


def file_for(weights: Path, int8: bool = False) -> Path:
    return weights.with_suffix(SUFFIX)


def trace(graph: nn.Module, im: torch.Tensor) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about python-side shape checks are expected
        return torch.jit.trace(graph, im, strict=False, check_trace=False)


def xnnpack_enabled() -> bool:
    try:
        import torch.backends.xnnpack
        return bool(torch.backends.xnnpack.enabled)
    except (ImportError, AttributeError):
        return False


def mobile_optimize(ts: torch.jit.ScriptModule, prefix: str) -> torch.jit.ScriptModule:
    """optimize_for_mobile when this torch build has XNNPACK (the pass requires it), else the module unchanged."""
    if not xnnpack_enabled():
        LOGGER.warning(f"{prefix} WARNING: this torch build has no XNNPACK, optimize_for_mobile skipped; "
                       f"the model is saved unoptimized")
        return ts
    from torch.utils.mobile_optimizer import optimize_for_mobile
    return optimize_for_mobile(ts)


def traced_for_file(graph: nn.Module, im: torch.Tensor, metadata: Dict[str, Any], settings: Settings,
                    mobile: bool, prefix: str):
    """(trace, metadata with 'dynamic' as measured): optimised for mobile if asked, checked at a second shape."""
    ts = trace(graph, im)
    if mobile:
        ts = mobile_optimize(ts, prefix)
    dynamic = bool(settings.shape_check(ts)) if settings.shape_check is not None else False
    if not dynamic:
        LOGGER.info(f"{prefix} the traced graph is specific to {tuple(im.shape)} inputs (recorded as fixed-shape)")
    return ts, {**metadata, "dynamic": dynamic}


def export(graph: nn.Module, im: torch.Tensor, file: Path, metadata: Dict[str, Any], settings: Settings,
           prefix: str = TITLE) -> Dict[str, Any]:
    ts, metadata = traced_for_file(graph, im, metadata, settings, settings.optimize, prefix)
    ts.save(str(file), _extra_files={CONFIG_FILE: json.dumps(metadata)})
    return metadata


def read_metadata(file: Path) -> Dict[str, Any]:
    """The archive's ``extra/config.txt`` (a zip entry; works for lite-interpreter files too)."""
    with zipfile.ZipFile(file) as z:
        entries = [n for n in z.namelist() if n.endswith(f"extra/{CONFIG_FILE}")]
        if not entries:
            return {}
        text = z.read(entries[0]).decode("utf-8")
    return json.loads(text) if text.strip() else {}


class JitRunner(Runner):
    format = NAME

    def __init__(self, file: Path, device: torch.device = torch.device("cpu"), threads: int = 0,
                 half: bool = False):
        super().__init__(file, device, threads)
        self.metadata = read_metadata(file)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's deprecation notice for torch.jit.load
            model = torch.jit.load(str(file), map_location=device)
        self.fp16 = half
        self.model = (model.half() if half else model.float()).eval()

    def __call__(self, im: torch.Tensor) -> List[torch.Tensor]:
        y = self.model(im.half() if self.fp16 else im.float())
        return list(y) if isinstance(y, (tuple, list)) else [y]


RUNNER = JitRunner
