"""Export a YOLOv5 checkpoint to TorchScript, the lite interpreter, ONNX, ncnn, ExecuTorch, TFLite, OpenVINO, CoreML.

Usage:
    python export.py --weights yolov5s.pt --include torchscript onnx ptl --imgsz 640 --batch-size 1
    python export.py --weights yolov5s.pt --include ncnn executorch tflite openvino coreml --img 320
    python export.py --weights yolov5s.pt --include onnx tflite --int8 --data coco128.yaml --img 320
    python models/export.py --weights yolov5s.pt --img 640 --batch 1          # v5.0 command line

Outputs, next to the weights (v5.0 naming: the ``.pt`` suffix replaced):
    yolov5s.torchscript.pt                       TorchScript (torch.jit.load)
    yolov5s.torchscript.ptl                      TorchScript lite interpreter (PyTorch Mobile)
    yolov5s.onnx, yolov5s.int8.onnx              ONNX Runtime; input ``images``, output ``output``
    yolov5s.ncnn.param / .ncnn.bin / .ncnn.json  ncnn (+ metadata sidecar)
    yolov5s.pte                                  ExecuTorch (XNNPACK)
    yolov5s.tflite, yolov5s.int8.tflite          TFLite / LiteRT
    yolov5s_openvino_model/yolov5s.xml / .bin    OpenVINO
    yolov5s.mlpackage                            CoreML (runs on macOS / iOS)

Every file returns the decoded ``(batch, boxes, 5 + nc)`` tensor with the class activation of the model inside it
(sigmoid, softmax or grouped) unless ``--train`` (the raw per-level head maps), records its metadata (names,
strides, class activation and groups, size, output kind, anchors), and is checked in its own runtime against the
PyTorch model on a real image before it gets its final name. The formats ncnn, ExecuTorch, TFLite, OpenVINO and
CoreML need the optional packages of requirements-export.txt. The work is done by :mod:`engine.export`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.cli import add_device, add_imgsz, add_weights, run_cli  # noqa: E402
from engine.export import CALIBRATION_IMAGES, FORMATS, run, synthetic_image  # noqa: E402,F401  (export.run: the v6+ Python entry)
from utils.log import LOGGER, colorstr  # noqa: E402


def parse_opt(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Export YOLOv5 checkpoints (see the module docstring)")
    add_weights(parser, help="checkpoint path(s) (.pt)")
    add_imgsz(parser, [640, 640])
    parser.add_argument("--batch-size", type=int, default=1, help="batch size")
    add_device(parser, "cpu")
    parser.add_argument("--half", action="store_true", help="FP16 half-precision export (CUDA only)")
    parser.add_argument("--inplace", action="store_true", help="v5.0 flag: set Detect() inplace=True (no effect)")
    parser.add_argument("--train", action="store_true", help="export the raw per-level head maps (no decoding)")
    parser.add_argument("--optimize", action="store_true", help="TorchScript: optimize_for_mobile (needs XNNPACK)")
    parser.add_argument("--dynamic", action="store_true",
                        help="ONNX: dynamic batch / height / width axes (TorchScript is checked for it by itself)")
    parser.add_argument("--simplify", action="store_true", help="ONNX: simplify the graph (onnxslim / onnxsim)")
    parser.add_argument("--opset", type=int, default=12, help="ONNX opset version (int8: at least 13)")
    parser.add_argument("--grid", action="store_true", help="v5.0 flag: decoded output (already the default)")
    parser.add_argument("--include", nargs="+", default=["torchscript", "onnx"],
                        help=f"formats to export, any of: {', '.join(FORMATS)}")
    parser.add_argument("--int8", action="store_true",
                        help="static int8 ONNX / TFLite (<w>.int8.onnx, <w>.int8.tflite), calibrated on --data")
    parser.add_argument("--data", type=str, default=None,
                        help="dataset yaml whose train images calibrate --int8")
    parser.add_argument("--int8-images", type=int, default=CALIBRATION_IMAGES,
                        help="--int8: how many train images (evenly spaced) calibrate the quantisation")
    opt = parser.parse_args(argv)
    opt.imgsz = opt.imgsz * 2 if len(opt.imgsz) == 1 else opt.imgsz
    return opt


def main(opt: argparse.Namespace) -> List[Path]:
    return run(**vars(opt))


def cli(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry: 0 on success, 1 with one clear message on bad input or a failed export."""
    opt = parse_opt(argv)
    LOGGER.info(colorstr("export: ") + ", ".join(f"{k}={v}" for k, v in vars(opt).items()))
    return run_cli(main, opt)


if __name__ == "__main__":
    sys.exit(cli())
