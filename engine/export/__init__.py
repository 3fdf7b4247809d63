"""Export (``export.py``): a checkpoint to TorchScript, the lite interpreter, ONNX, ncnn, ExecuTorch, TFLite,
OpenVINO and CoreML files (int8 ONNX / TFLite with ``--int8``), each verified in its own runtime.

    graph.py      what each runtime is handed: the model's own decode, FlatDecode (fixed shape), RawHead
    metadata.py   the metadata every file records (names, strides, class activation, size, output kind, anchors)
    images.py     the sample batch that is traced and compared, int8 calibration images
    verify.py     running a written file in its runtime against PyTorch; the metadata round trip
    pipeline.py   the run: flags, packages, per format graph -> temporary file -> verification -> final name
The formats themselves (exporter + runner each) are engine/formats/*.py.
"""
from engine.export.graph import ExportModel, FlatDecode, RawHead, focus_to_conv
from engine.export.images import CALIBRATION_IMAGES, calibration_images, sample_images, synthetic_image
from engine.export.metadata import export_metadata
from engine.export.pipeline import PACKAGES, run
from engine.export.verify import TOL, compare_outputs, verify_file
from engine.formats import FORMATS, INT8_FORMATS
from engine.formats.base import ExportError, MissingPackageError

__all__ = ["run", "FORMATS", "INT8_FORMATS", "PACKAGES", "ExportError", "MissingPackageError", "ExportModel",
           "FlatDecode", "RawHead", "focus_to_conv", "export_metadata", "sample_images", "synthetic_image",
           "calibration_images", "CALIBRATION_IMAGES", "TOL", "compare_outputs", "verify_file"]
