"""OpenVINO IR (``<w>_openvino_model/<w>.xml`` + ``.bin``): converted from torch by ``openvino.convert_model``,
run by the OpenVINO CPU plugin.

The fixed-shape converter-friendly graph (FlatDecode; RawHead for ``--train``), weights kept in fp32
(``save_model`` compresses them to fp16 by default: 0.07 px off). Runs with ``INFERENCE_PRECISION_HINT=f32``:
the CPU plugin's default is bf16 on AMX / AVX512-BF16 CPUs. Metadata: the model's ``rt_info``
(``<rt_info><model_info><yolo_metadata value="{json}"/>``), read without compiling the model.
Detection takes the folder or the .xml as ``--weights``.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Dict, List

import torch
import torch.nn as nn

from engine.formats.base import BackendError, Runner, Settings, require

NAME, TITLE, RUNTIME = "openvino", "OpenVINO:", "the OpenVINO CPU plugin"
SUFFIX = "_openvino_model"  # a folder
GRAPH = "flat"
RT_KEY = ["model_info", "yolo_metadata"]


def file_for(weights: Path, int8: bool = False) -> Path:
    """The folder ``<w>_openvino_model`` (holding ``<w>.xml`` and ``<w>.bin``)."""
    return weights.parent / f"{weights.stem}{SUFFIX}"


def xml_file(path: Path) -> Path:
    """The .xml of an OpenVINO folder (or the .xml itself)."""
    path = Path(path)
    if path.suffix.lower() == ".xml":
        return path
    if path.is_dir():
        stem = path.name[:-len(SUFFIX)] if path.name.endswith(SUFFIX) else path.name
        candidates = [path / f"{stem}.xml"] + sorted(path.glob("*.xml"))
        for c in candidates:
            if c.is_file():
                return c
    raise BackendError(f"'{path}': no OpenVINO model (.xml) found in it")


def export(graph: nn.Module, im: torch.Tensor, file: Path, metadata: Dict[str, Any], settings: Settings,
           prefix: str = TITLE) -> Dict[str, Any]:
    ov = require("openvino", "openvino", "OpenVINO export")
    folder = Path(file)
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder.name[:-len(SUFFIX)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ov.convert_model(graph.eval(), example_input=im, input=[tuple(im.shape)])
    model.set_rt_info(json.dumps(metadata), RT_KEY)
    ov.save_model(model, str(folder / f"{stem}.xml"), compress_to_fp16=False)
    return metadata


def _metadata(model) -> Dict[str, Any]:
    return json.loads(model.get_rt_info(RT_KEY).astype(str)) if model.has_rt_info(RT_KEY) else {}


def read_metadata(file: Path) -> Dict[str, Any]:
    ov = require("openvino", "openvino", "Reading OpenVINO models")
    return _metadata(ov.Core().read_model(str(xml_file(file))))


class OpenVINORunner(Runner):
    format = NAME

    def __init__(self, file: Path, device: torch.device = torch.device("cpu"), threads: int = 0,
                 half: bool = False):
        super().__init__(file, device, threads)
        ov = require("openvino", "openvino", "Running OpenVINO models")
        core = ov.Core()
        model = core.read_model(str(xml_file(file)))
        self.metadata = _metadata(model)
        shape = model.inputs[0].get_partial_shape()
        self.input_shape = [d.get_length() if d.is_static else None for d in shape]
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                  "INFERENCE_NUM_THREADS": self.threads}
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()

    def __call__(self, im: torch.Tensor) -> List[torch.Tensor]:
        result = self.request.infer({0: self.numpy_input(im)})
        return self.tensors([result[o] for o in self.compiled.outputs])


RUNNER = OpenVINORunner
