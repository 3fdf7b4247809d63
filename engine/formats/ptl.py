"""TorchScript lite interpreter (``<w>.torchscript.ptl``): PyTorch Mobile (Android / iOS ``LiteModuleLoader``).

The same trace as TorchScript, passed through ``optimize_for_mobile`` when this torch build has XNNPACK, saved
for the lite interpreter with the metadata as the ``config.txt`` extra file. Always float32 on the CPU (phones
run it there): an FP16 / CUDA export traces a float CPU copy for it.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Dict, List

import torch
import torch.nn as nn

from engine.formats import torchscript
from engine.formats.base import Runner, Settings

NAME, TITLE, RUNTIME = "ptl", "TorchScript-Lite:", "the lite interpreter"
SUFFIX = ".torchscript.ptl"
GRAPH = "detect"
read_metadata = torchscript.read_metadata


def file_for(weights: Path, int8: bool = False) -> Path:
    return weights.with_suffix(SUFFIX)


def export(graph: nn.Module, im: torch.Tensor, file: Path, metadata: Dict[str, Any], settings: Settings,
           prefix: str = TITLE) -> Dict[str, Any]:
    ts, metadata = torchscript.traced_for_file(graph, im, metadata, settings, True, prefix)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Lite Interpreter is deprecated" notice
        ts._save_for_lite_interpreter(str(file), _extra_files={torchscript.CONFIG_FILE: json.dumps(metadata)})
    return metadata


class LiteRunner(Runner):
    format = NAME

    def __init__(self, file: Path, device: torch.device = torch.device("cpu"), threads: int = 0,
                 half: bool = False):
        super().__init__(file, device, threads)
        self.metadata = read_metadata(file)
        from torch.jit.mobile import _load_for_lite_interpreter
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = _load_for_lite_interpreter(str(file), map_location=device)

    def __call__(self, im: torch.Tensor) -> List[torch.Tensor]:
        y = self.model(im.float())
        return list(y) if isinstance(y, (tuple, list)) else [y]


RUNNER = LiteRunner
