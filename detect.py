"""Run detection on images, directories, globs, list files, videos, webcams and streams.

Usage:
    python detect.py --weights yolov5s.pt --source data/images          # directory
    python detect.py --weights yolov5s.onnx --source img.jpg             # exported model (also .torchscript.pt, .ptl)
    python detect.py --source vid.mp4 --save-txt --save-conf --save-crop
    python detect.py --source 0                                          # webcam; rtsp:// rtmp:// http(s):// streams
    python detect.py --source list.txt                                   # one image / video / directory per line

Results go to ``runs/detect/exp{N}``: annotated images (same name) and videos (mp4v at the source fps and size),
``labels/<stem>.txt`` (``class x y w h [conf]`` normalised, ``--save-txt``), ``crops/<class>/<stem>.jpg``
(``--save-crop``). The work is done by :mod:`engine.predict`; this script only reads the command line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.cli import (add_device, add_dnn, add_imgsz, add_output, add_precision, add_thresholds,  # noqa: E402
                        add_weights, exit_process, run_cli)
from engine.predict import run  # noqa: E402,F401  (detect.run: the v6+ Python entry point)
from utils.allocator import keep_freed_memory  # noqa: E402
from utils.log import LOGGER, colorstr  # noqa: E402


def parse_opt(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="YOLOv5 detection")
    add_weights(parser)
    parser.add_argument("--source", type=str, default="data/images",
                        help="file/dir/glob/.txt list/video, 0 (webcam), rtsp:// rtmp:// http(s):// stream")
    parser.add_argument("--data", type=str, default=None, help="dataset yaml (class names for exports without them)")
    add_imgsz(parser, 640)
    add_thresholds(parser, conf=0.25, iou=0.45, max_det=1000)
    add_device(parser)
    parser.add_argument("--view-img", action="store_true", help="display results")
    parser.add_argument("--save-txt", action="store_true", help="save results to *.txt")
    parser.add_argument("--save-conf", action="store_true", help="save confidences in --save-txt labels")
    parser.add_argument("--save-crop", action="store_true", help="save cropped prediction boxes")
    parser.add_argument("--nosave", action="store_true", help="do not save images/videos")
    parser.add_argument("--classes", nargs="+", type=int, help="filter by class: --classes 0, or --classes 0 2 3")
    parser.add_argument("--agnostic-nms", action="store_true", help="class-agnostic NMS")
    parser.add_argument("--augment", action="store_true", help="augmented inference (TTA, .pt only)")
    parser.add_argument("--visualize", action="store_true", help="save feature maps (.pt only)")
    parser.add_argument("--update", action="store_true", help="re-save the given .pt weights stripped")
    add_output(parser, "runs/detect")
    parser.add_argument("--line-thickness", default=3, type=int, help="bounding box thickness (pixels)")
    parser.add_argument("--hide-labels", action="store_true", help="hide labels")
    parser.add_argument("--hide-conf", action="store_true", help="hide confidences")
    add_precision(parser)
    add_dnn(parser)
    parser.add_argument("--vid-stride", type=int, default=1, help="video frame-rate stride")
    opt = parser.parse_args(argv)
    opt.imgsz = opt.imgsz * 2 if len(opt.imgsz) == 1 else opt.imgsz
    return opt


def main(opt: argparse.Namespace) -> Path:
    keep_freed_memory()  # glibc: no page-fault churn (utils/allocator.py)
    return run(**vars(opt))


def cli(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry: 0 on success, 1 with one clear message on bad input (engine.cli.run_cli)."""
    opt = parse_opt(argv)
    LOGGER.info(colorstr("detect: ") + ", ".join(f"{k}={v}" for k, v in vars(opt).items()))
    return run_cli(main, opt)


if __name__ == "__main__":
    exit_process(cli(), __file__)
