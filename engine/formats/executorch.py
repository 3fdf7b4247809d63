"""ExecuTorch (``<w>.pte``): ``torch.export`` lowered to the XNNPACK delegate, run by the ExecuTorch runtime.

The fixed-shape converter-friendly graph (FlatDecode; RawHead for ``--train``). The metadata lives inside the
program as a constant method ``metadata`` returning the JSON text, readable wherever the program loads (Python,
Android ``Module.execute("metadata")``, iOS) without a side file. Threads: the runtime's XNNPACK threadpool is
process-wide; it is resized to the requested count when a runner is made.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Dict, List

import torch
import torch.nn as nn

from engine.formats.base import Runner, Settings, require

NAME, TITLE, RUNTIME = "executorch", "ExecuTorch:", "the ExecuTorch runtime (XNNPACK)"
SUFFIX = ".pte"
GRAPH = "flat"
METADATA_METHOD = "metadata"


def file_for(weights: Path, int8: bool = False) -> Path:
    return weights.with_suffix(SUFFIX)


def export(graph: nn.Module, im: torch.Tensor, file: Path, metadata: Dict[str, Any], settings: Settings,
           prefix: str = TITLE) -> Dict[str, Any]:
    exir = require("executorch.exir", "executorch", "ExecuTorch export")
    xnnpack = require("executorch.backends.xnnpack.partition.xnnpack_partitioner", "executorch",
                      "ExecuTorch export")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.export / pytree deprecation notices
        program = torch.export.export(graph.eval(), (im,), strict=False)
        edge = exir.to_edge_transform_and_lower(program, partitioner=[xnnpack.XnnpackPartitioner()],
                                                constant_methods={METADATA_METHOD: json.dumps(metadata)})
        Path(file).write_bytes(edge.to_executorch().buffer)
    return metadata


def _program(file: Path):
    runtime = require("executorch.runtime", "executorch", "Running ExecuTorch programs")
    return runtime.Runtime.get().load_program(Path(file))


def _metadata(program) -> Dict[str, Any]:
    if METADATA_METHOD not in program.method_names:
        return {}
    return json.loads(program.load_method(METADATA_METHOD).execute([])[0])


def read_metadata(file: Path) -> Dict[str, Any]:
    return _metadata(_program(file))


def set_threads(n: int) -> None:
    """Resize the (process-wide) XNNPACK threadpool of the pybindings; a private API in executorch 1.5."""
    try:
        from executorch.extension.pybindings import portable_lib
        portable_lib._unsafe_reset_threadpool(int(n))
    except (ImportError, AttributeError):  # other versions: keep the runtime's default (one per core)
        pass


class ExecuTorchRunner(Runner):
    format = NAME

    def __init__(self, file: Path, device: torch.device = torch.device("cpu"), threads: int = 0,
                 half: bool = False):
        super().__init__(file, device, threads)
        program = _program(file)
        set_threads(self.threads)
        self.metadata = _metadata(program)
        self.method = program.load_method("forward")
        meta = self.method.metadata
        self.input_shape = list(meta.input_tensor_meta(0).sizes()) if meta is not None else None

    def __call__(self, im: torch.Tensor) -> List[torch.Tensor]:
        x = im.detach().float().cpu().contiguous()
        return [o.clone() for o in self.method.execute([x])]


RUNNER = ExecuTorchRunner
