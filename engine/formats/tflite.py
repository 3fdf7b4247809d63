"""TFLite / LiteRT (``<w>.tflite``, int8: ``<w>.int8.tflite``): converted by litert-torch, run by the ai-edge-litert
Interpreter (XNNPACK delegate).

The fixed-shape converter-friendly graph (FlatDecode; RawHead for ``--train``): the model's own decode does not
convert (``tfl.pow`` of ``(2s)**2`` cannot be legalised). Input stays NCHW float32 ``(b, 3, h, w)``. int8
(``--int8``): ai-edge-quantizer, static, int8 per-channel weights and int8 activations calibrated on the
calibration images, only within the ``Features_features/`` scope (litert-torch names every op after its torch
module path; engine/export/graph.py puts the network up to the head there): the head convs and the decode stay
float. Input and output stay float32 (quantize / dequantize ops inside).
Metadata: a TFLite ``Model.metadata`` entry ``yolo_metadata`` (JSON bytes in a buffer of the flatbuffer), written
with the schema's object API; on a device read it from the flatbuffer's ``metadata`` list (the entry's buffer
holds the JSON text; TFLite Support's ``MetadataExtractor`` reads only its own ``TFLITE_METADATA`` entry).
"""
from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch
import torch.nn as nn

from engine.formats.base import Runner, Settings, require
from utils.log import LOGGER

NAME, TITLE, RUNTIME = "tflite", "TFLite:", "the LiteRT interpreter"
SUFFIX, INT8_SUFFIX = ".tflite", ".int8.tflite"
GRAPH = "flat"
INT8 = True
METADATA_NAME = "yolo_metadata"
QUANTIZED_SCOPE = "Features_features/"


def file_for(weights: Path, int8: bool = False) -> Path:
    return weights.with_suffix(INT8_SUFFIX if int8 else SUFFIX)


def convert(graph: nn.Module, im: torch.Tensor, file: Path) -> None:
    litert_torch = require("litert_torch", "litert-torch", "TFLite export")
    require("ai_edge_litert.interpreter", "ai-edge-litert", "TFLite export (verification)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        litert_torch.convert(graph.eval(), (im,)).export(str(file))


def export(graph: nn.Module, im: torch.Tensor, file: Path, metadata: Dict[str, Any], settings: Settings,
           prefix: str = TITLE) -> Dict[str, Any]:
    if not settings.int8:
        convert(graph, im, file)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            float_file = Path(tmp) / "float.tflite"
            convert(graph, im, float_file)
            quantize(float_file, file, settings, prefix)
        metadata = {**metadata, "int8": {"tool": "ai-edge-quantizer", "weights": "int8 per-channel",
                                         "activations": "int8", "calibration_images": len(settings.calibration),
                                         "float": "head convs and decode"}}
    write_metadata(file, metadata)
    return metadata


def quantize(float_file: Path, file: Path, settings: Settings, prefix: str) -> None:
    """Static int8 of ``float_file`` within :data:`QUANTIZED_SCOPE`, calibrated on ``settings.calibration``."""
    aiq = require("ai_edge_quantizer", "ai-edge-quantizer", "TFLite int8 quantisation")
    from ai_edge_quantizer import qtyping, quantizer, recipe_manager
    LOGGER.info(f"{prefix} int8: calibrating on {len(settings.calibration)} images "
                f"(ai-edge-quantizer {getattr(aiq, '__version__', '')})...")
    recipe = recipe_manager.RecipeManager()
    recipe.add_static_config(regex=QUANTIZED_SCOPE, operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                             activation_num_bits=8, weight_num_bits=8)
    q = quantizer.Quantizer(str(float_file), recipe.get_quantization_recipe())
    name = _interpreter(float_file).get_signature_list()["serving_default"]["inputs"][0]
    samples = [{name: np.ascontiguousarray(x.cpu().numpy(), dtype=np.float32)} for x in settings.calibration]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = q.quantize(q.calibrate({"serving_default": samples}), enable_progress_report=False)
    result.export_model(str(file), overwrite=True)


def _interpreter(file: Path, threads: int = 0):
    litert = require("ai_edge_litert.interpreter", "ai-edge-litert", "Running TFLite models")
    return litert.Interpreter(model_path=str(file), num_threads=threads or None)


def write_metadata(file: Path, metadata: Dict[str, Any]) -> None:
    """Store ``metadata`` as the flatbuffer's ``yolo_metadata`` entry (replacing an older one)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb
    buf = Path(file).read_bytes()
    model = fb.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    for b in model.buffers or []:
        # ai-edge-quantizer stores large buffers after the flatbuffer (offset / size); re-packing moves what those
        # offsets point at, so inline them first
        if b.offset and b.offset > 1:
            b.data = np.frombuffer(buf[b.offset:b.offset + b.size], dtype=np.uint8)
            b.offset, b.size = 0, 0
    data = fb.BufferT()
    data.data = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
    model.buffers = list(model.buffers or []) + [data]
    entry = fb.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = [e for e in (model.metadata or []) if _entry_name(e) != METADATA_NAME] + [entry]
    builder = flatbuffers.Builder(len(buf) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    Path(file).write_bytes(bytes(builder.Output()))


def _entry_name(entry) -> str:
    return entry.name.decode() if isinstance(entry.name, bytes) else str(entry.name)


def read_metadata(file: Path) -> Dict[str, Any]:
    from ai_edge_litert import schema_py_generated as fb
    model = fb.Model.GetRootAs(bytearray(Path(file).read_bytes()), 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name().decode() == METADATA_NAME:
            return json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes().decode())
    return {}


class TFLiteRunner(Runner):
    format = NAME

    def __init__(self, file: Path, device: torch.device = torch.device("cpu"), threads: int = 0,
                 half: bool = False):
        super().__init__(file, device, threads)
        self.interpreter = _interpreter(file, self.threads)
        self.interpreter.allocate_tensors()
        self.metadata = read_metadata(file)
        self.input = self.interpreter.get_input_details()[0]
        self.input_shape = [int(v) for v in self.input["shape"]]
        # outputs in signature order (output_0, output_1, ...): the raw levels' order
        signature = self.interpreter.get_signature_list()["serving_default"]["outputs"]
        runner = self.interpreter.get_signature_runner("serving_default")
        by_name = runner.get_output_details()
        self.outputs = [by_name[n]["index"] for n in sorted(signature, key=_natural)]

    def __call__(self, im: torch.Tensor) -> List[torch.Tensor]:
        self.interpreter.set_tensor(self.input["index"], self.numpy_input(im))
        self.interpreter.invoke()
        return self.tensors([self.interpreter.get_tensor(i) for i in self.outputs])


def _natural(name: str):
    """'output_10' after 'output_2'."""
    digits = "".join(c for c in name if c.isdigit())
    return (len(digits), digits, name)


RUNNER = TFLiteRunner
