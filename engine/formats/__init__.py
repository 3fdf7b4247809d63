"""One module per exported file format, each holding both its exporter and its runtime runner (base.py):

    torchscript  <w>.torchscript.pt                 torch.jit.load
    ptl          <w>.torchscript.ptl                PyTorch lite interpreter
    onnx         <w>.onnx, <w>.int8.onnx            ONNX Runtime (OpenCV DNN with --dnn)
    ncnn         <w>.ncnn.param / .bin / .json      ncnn (converted by pnnx)
    executorch   <w>.pte                            ExecuTorch runtime, XNNPACK delegate
    tflite       <w>.tflite, <w>.int8.tflite        LiteRT (TFLite) interpreter
    openvino     <w>_openvino_model/<w>.xml / .bin  OpenVINO CPU plugin
    coreml       <w>.mlpackage                      Core ML (macOS / iOS only)

Third-party packages are imported inside functions: a format whose optional package is missing fails with
:class:`~engine.formats.base.MissingPackageError` only when it is used.
"""
from types import ModuleType
from typing import Dict

from engine.formats import coreml, executorch, ncnn, onnx, openvino, ptl, tflite, torchscript
from engine.formats.base import BackendError, ExportError, MissingPackageError, Runner, Settings

FORMATS: Dict[str, ModuleType] = {m.NAME: m for m in (torchscript, onnx, ptl, ncnn, executorch, tflite, openvino,
                                                       coreml)}
INT8_FORMATS = tuple(name for name, m in FORMATS.items() if getattr(m, "INT8", False))

__all__ = ["FORMATS", "INT8_FORMATS", "BackendError", "ExportError", "MissingPackageError", "Runner", "Settings"]
