"""CoreML (``<w>.mlpackage``, an ML Program): converted by coremltools from ``torch.export``; runs on macOS / iOS.

The fixed-shape converter-friendly graph (FlatDecode; RawHead for ``--train``); the TorchScript path of
coremltools fails on ShuffleNet's channel shuffle, torch.export converts every model. Compute precision FLOAT32
(parity with the other formats; the Neural Engine runs FLOAT16). Input ``images`` (b, 3, h, w) float in [0, 1],
output ``output`` (raw: ``output``, ``output1``, ...). Metadata: ``user_defined_metadata["yolo_metadata"]``.
Prediction needs Core ML (macOS): elsewhere export verifies the saved package by reloading its spec (input and
output names and shapes, metadata), and running it raises :class:`BackendError`.
"""
from __future__ import annotations

import json
import platform
import warnings
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch
import torch.nn as nn

from engine.formats.base import BackendError, ExportError, Runner, Settings, require

NAME, TITLE, RUNTIME = "coreml", "CoreML:", "Core ML"
SUFFIX = ".mlpackage"
GRAPH = "flat"
METADATA_KEY = "yolo_metadata"


def file_for(weights: Path, int8: bool = False) -> Path:
    return weights.with_suffix(SUFFIX)


def output_names(metadata: Dict[str, Any]) -> List[str]:
    n = len(metadata["strides"]) if metadata.get("output") == "raw" else 1
    return ["output"] + [f"output{i}" for i in range(1, n)]


def export(graph: nn.Module, im: torch.Tensor, file: Path, metadata: Dict[str, Any], settings: Settings,
           prefix: str = TITLE) -> Dict[str, Any]:
    ct = require("coremltools", "coremltools", "CoreML export")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "torch version not tested" and tracer notices
        program = torch.export.export(graph.eval(), (im,), strict=False).run_decompositions({})
        model = ct.convert(program, inputs=[ct.TensorType(name="images", shape=tuple(im.shape))],
                           outputs=[ct.TensorType(name=n) for n in output_names(metadata)],
                           convert_to="mlprogram", compute_precision=ct.precision.FLOAT32,
                           minimum_deployment_target=ct.target.iOS16)
    model.user_defined_metadata[METADATA_KEY] = json.dumps(metadata)
    model.short_description = f"YOLOv5 detector: {metadata['nc']} classes, class activation {metadata['cls_act']}"
    model.save(str(file))
    return metadata


def _spec_model(file: Path):
    ct = require("coremltools", "coremltools", "Reading CoreML models")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ct.models.MLModel(str(file), skip_model_load=True)


def read_metadata(file: Path) -> Dict[str, Any]:
    text = _spec_model(file).user_defined_metadata.get(METADATA_KEY)
    return json.loads(text) if text else {}


def check_package(file: Path, shape: List[int], metadata: Dict[str, Any]) -> str:
    """Reload the saved package's spec: input ``images`` of ``shape``, the expected outputs, the metadata."""
    spec = _spec_model(file).get_spec()
    inputs = {i.name: list(i.type.multiArrayType.shape) for i in spec.description.input}
    outputs = [o.name for o in spec.description.output]
    if inputs != {"images": list(shape)}:
        raise ExportError(f"{file}: inputs {inputs}, expected {{'images': {list(shape)}}}")
    if outputs != output_names(metadata):
        raise ExportError(f"{file}: outputs {outputs}, expected {output_names(metadata)}")
    return f"spec checked (input images {list(shape)}, outputs {', '.join(outputs)}); Core ML prediction needs macOS"


class CoreMLRunner(Runner):
    format = NAME

    def __init__(self, file: Path, device: torch.device = torch.device("cpu"), threads: int = 0,
                 half: bool = False):
        super().__init__(file, device, threads)
        if platform.system() != "Darwin":
            raise BackendError(f"'{file}': CoreML models run on macOS / iOS only (Core ML); on this machine use "
                               f"another export (.onnx, .tflite, .ncnn.param, .pte, _openvino_model)")
        ct = require("coremltools", "coremltools", "Running CoreML models")
        self.metadata = read_metadata(file)
        self.model = ct.models.MLModel(str(file), compute_units=ct.ComputeUnit.CPU_ONLY)
        self.input_shape = [self.metadata.get("batch", 1), 3, *self.metadata.get("imgsz", [None, None])]
        self.names = output_names(self.metadata)

    def __call__(self, im: torch.Tensor) -> List[torch.Tensor]:
        result = self.model.predict({"images": self.numpy_input(im)})
        return self.tensors([np.asarray(result[n]) for n in self.names])


RUNNER = CoreMLRunner
