"""ONNX (``<w>.onnx``, int8: ``<w>.int8.onnx``), run by ONNX Runtime (or OpenCV DNN with ``--dnn``).

float: the detector's own decode traced by ``torch.onnx.export`` (legacy exporter), fixed shape unless
``--dynamic`` (batch, height, width axes), optionally simplified. int8 (``--int8``): the fixed-shape
converter-friendly graph (engine/export/graph.FlatDecode) at opset >= 13, statically quantised by
``onnxruntime.quantization`` on calibration images: QDQ, per-channel int8 weights, uint8 activations, MinMax,
``reduce_range`` (7-bit weights: AVX2 CPUs without VNNI saturate the u8 x s8 pair sums otherwise). Only the nodes
of the network up to the head (``/features/...``) are quantised: the head convs and the decode (pixel boxes next
to 0-1 scores in one tensor: one 8-bit scale ruins the scores) stay float.
Metadata: ``metadata_props`` (values JSON, strings as they are).
"""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
import torch
import torch.nn as nn

from engine.formats import base
from engine.formats.base import ExportError, Runner, Settings, decode_value, encode_values, require
from utils.log import LOGGER

NAME, TITLE, RUNTIME = "onnx", "ONNX:", "onnxruntime"
SUFFIX, INT8_SUFFIX = ".onnx", ".int8.onnx"
GRAPH = "detect"  # float; int8 files use the flat graph
INT8 = True
INT8_OPSET = 13  # per-channel DequantizeLinear needs the 'axis' attribute
QUANTIZED_SCOPE = "/features/"  # node-name prefix of the layers int8 quantises (engine/export/graph.py names)
# op types the int8 study found to tolerate 8 bits (anything else inside the scope stays float too)
INT8_OPS = ("Conv", "Add", "Mul", "Concat", "MaxPool", "Resize", "Sigmoid", "Relu", "Clip", "HardSigmoid",
            "HardSwish", "GlobalAveragePool", "Split", "Transpose", "Reshape", "Slice")


def file_for(weights: Path, int8: bool = False) -> Path:
    return weights.with_suffix(INT8_SUFFIX if int8 else SUFFIX)


def export(graph: nn.Module, im: torch.Tensor, file: Path, metadata: Dict[str, Any], settings: Settings,
           prefix: str = TITLE) -> Dict[str, Any]:
    if settings.int8:
        return export_int8(graph, im, file, metadata, settings, prefix)
    onnx = require("onnx", "onnx", "ONNX export")
    LOGGER.info(f"{prefix} exporting with onnx {onnx.__version__} (opset {settings.opset})...")
    write_graph(graph, im, file, settings.opset, len(metadata["strides"]) if metadata["output"] == "raw" else 1,
                settings.dynamic)
    model = onnx.load(str(file))
    onnx.checker.check_model(model)
    if settings.simplify:
        model = simplify(model, prefix)
    set_metadata(model, metadata)
    onnx.save(model, str(file))
    return metadata


def write_graph(graph: nn.Module, im: torch.Tensor, file: Path, opset: int, n_out: int, dynamic: bool) -> None:
    output_names = ["output"] + [f"output{i}" for i in range(1, n_out)]
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {"images": {0: "batch", 2: "height", 3: "width"}}
        for name in output_names:
            dynamic_axes[name] = {0: "batch", 2: "y", 3: "x"} if n_out > 1 else {0: "batch", 1: "anchors"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation notice and tracer warnings
        torch.onnx.export(graph, (im,), str(file), dynamo=False, opset_version=opset, input_names=["images"],
                          output_names=output_names, dynamic_axes=dynamic_axes, do_constant_folding=True)


def simplify(model, prefix: str):
    """onnxslim, else onnx-simplifier, else a warning (the unsimplified model is kept)."""
    import onnx
    try:
        import onnxslim
        LOGGER.info(f"{prefix} simplifying with onnxslim {getattr(onnxslim, '__version__', '')}...")
        model = onnxslim.slim(model)
    except ImportError:
        try:
            import onnxsim
            LOGGER.info(f"{prefix} simplifying with onnx-simplifier {getattr(onnxsim, '__version__', '')}...")
            model, ok = onnxsim.simplify(model)
            if not ok:
                raise ExportError("onnx-simplifier could not validate the simplified model") from None
        except ImportError:
            LOGGER.warning(f"{prefix} WARNING: --simplify needs 'onnxslim' or 'onnxsim' (pip install onnxslim); "
                           f"keeping the unsimplified model")
            return model
    onnx.checker.check_model(model)
    return model


def set_metadata(model, metadata: Dict[str, Any]) -> None:
    del model.metadata_props[:]
    for k, v in encode_values(metadata).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v


def read_metadata(file: Path) -> Dict[str, Any]:
    import onnx
    model = onnx.load(str(file), load_external_data=False)
    return {p.key: decode_value(p.value) for p in model.metadata_props}


# -------------------------------------------------------------------------------------------------------- int8
class _Calibration:
    """onnxruntime CalibrationDataReader over the calibration images."""

    def __init__(self, images: Sequence[torch.Tensor]):
        self.images, self.i = [np.ascontiguousarray(x.cpu().numpy(), dtype=np.float32) for x in images], 0

    def get_next(self):
        if self.i >= len(self.images):
            return None
        self.i += 1
        return {"images": self.images[self.i - 1]}

    def rewind(self) -> None:
        self.i = 0


def export_int8(graph: nn.Module, im: torch.Tensor, file: Path, metadata: Dict[str, Any], settings: Settings,
                prefix: str) -> Dict[str, Any]:
    onnx = require("onnx", "onnx", "ONNX export")
    q = require("onnxruntime.quantization", "onnxruntime", "ONNX int8 quantisation")
    from onnxruntime.quantization.shape_inference import quant_pre_process
    opset = max(settings.opset, INT8_OPSET)
    LOGGER.info(f"{prefix} int8: float graph at opset {opset}, calibrating on {len(settings.calibration)} "
                f"images...")
    with tempfile.TemporaryDirectory() as tmp:
        fp32, pre = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx"
        write_graph(graph, im, fp32, opset, 1, dynamic=False)
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        nodes = onnx.load(str(pre)).graph.node
        keep_float = [n.name for n in nodes if not n.name.startswith(QUANTIZED_SCOPE)]
        q.quantize_static(str(pre), str(file), _Calibration(settings.calibration), quant_format=q.QuantFormat.QDQ,
                          op_types_to_quantize=list(INT8_OPS), per_channel=True, reduce_range=True,
                          activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                          nodes_to_exclude=keep_float, calibrate_method=q.CalibrationMethod.MinMax,
                          extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    metadata = {**metadata, "int8": {"tool": "onnxruntime.quantization", "format": "QDQ", "weights":
                                     "int8 per-channel, reduce_range", "activations": "uint8", "method": "MinMax",
                                     "calibration_images": len(settings.calibration),
                                     "float": "head convs and decode"}}
    model = onnx.load(str(file))
    set_metadata(model, metadata)
    onnx.save(model, str(file))
    return metadata


# ------------------------------------------------------------------------------------------------------ runners
def load_errors() -> tuple:
    """What reading a damaged file raises here: protobuf's DecodeError, onnxruntime's own exception types."""
    errors = list(base.load_errors())
    try:
        from google.protobuf.message import DecodeError
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidGraph, InvalidProtobuf
        errors += [DecodeError, Fail, InvalidGraph, InvalidProtobuf]
    except ImportError:
        pass
    return tuple(errors)


def session_options(threads: int):
    """onnxruntime options with ``threads`` intra-op threads."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return options


class OrtRunner(Runner):
    format = NAME

    def __init__(self, file: Path, device: torch.device = torch.device("cpu"), threads: int = 0,
                 half: bool = False):
        super().__init__(file, device, threads)
        ort = require("onnxruntime", "onnxruntime", "Running ONNX models")
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.metadata = read_metadata(file)
        self.session = ort.InferenceSession(str(file), sess_options=session_options(self.threads),
                                            providers=providers)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = list(inp.shape)  # ints for fixed axes, names (str) / None for dynamic ones
        self.fp16 = inp.type == "tensor(float16)"
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.output_width = self.session.get_outputs()[0].shape[-1]

    def __call__(self, im: torch.Tensor) -> List[torch.Tensor]:
        x = self.numpy_input(im, np.float16 if self.fp16 else np.float32)
        return [torch.from_numpy(o) for o in self.session.run(None, {self.input_name: x})]


class DnnRunner(Runner):
    """OpenCV DNN (``--dnn``): no metadata API of its own, so the file's metadata_props are read with onnx."""

    format = NAME

    def __init__(self, file: Path, device: torch.device = torch.device("cpu"), threads: int = 0,
                 half: bool = False):
        super().__init__(file, device, threads)
        import cv2
        self.metadata = read_metadata(file)
        self.net = cv2.dnn.readNetFromONNX(str(file))

    def __call__(self, im: torch.Tensor) -> List[torch.Tensor]:
        self.net.setInput(self.numpy_input(im))
        names = self.net.getUnconnectedOutLayersNames()
        return [torch.from_numpy(np.ascontiguousarray(o)) for o in self.net.forward(names)]


RUNNER = OrtRunner
