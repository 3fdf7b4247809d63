"""What every command-line script shares: the exit-code contract and the flags common to several scripts.

Exit codes: 0 success; 1 bad input (a :class:`utils.errors.UserError`, printed as one ``ERROR:`` line, no
traceback); 2 argparse usage errors; 130 interrupted (Ctrl-C). Any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, Sequence, Union

from utils.errors import UserError
from utils.log import LOGGER, colorstr

EXIT_OK, EXIT_USER_ERROR, EXIT_INTERRUPTED = 0, 1, 130


def run_cli(main: Callable[[argparse.Namespace], Any], opt: argparse.Namespace) -> int:
    """Run ``main(opt)`` and return the process exit code (see the module docstring)."""
    try:
        main(opt)
    except UserError as e:
        LOGGER.error(f"{colorstr('red', 'bold', 'ERROR:')} {e}")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        LOGGER.error(f"\n{colorstr('red', 'bold', 'Interrupted')} (Ctrl-C)")
        return EXIT_INTERRUPTED
    return EXIT_OK


# ---------------------------------------------------------------------------------------------- shared flags
def add_weights(p: argparse.ArgumentParser, default: Sequence[str] = ("yolov5s.pt",), help: str = "") -> None:
    p.add_argument("--weights", nargs="+", type=str, default=list(default),
                   help=help or "model path(s): .pt (several = ensemble), .torchscript(.pt), .ptl, .onnx")


def add_imgsz(p: argparse.ArgumentParser, default: Union[int, Sequence[int]] = 640, pair: bool = True) -> None:
    """``--imgsz`` with the upstream spellings ``--img`` and ``--img-size``; ``pair``: one or two values (h w)."""
    if pair:
        p.add_argument("--imgsz", "--img", "--img-size", nargs="+", type=int, dest="imgsz",
                       default=list(default) if isinstance(default, (list, tuple)) else [default],
                       help="inference size h w (one value = square)")
    else:
        p.add_argument("--imgsz", "--img", "--img-size", type=int, dest="imgsz", default=default,
                       help="inference size (pixels)")


def add_thresholds(p: argparse.ArgumentParser, conf: float, iou: float, max_det: int) -> None:
    p.add_argument("--conf-thres", type=float, default=conf, help="confidence threshold")
    p.add_argument("--iou-thres", type=float, default=iou, help="NMS IoU threshold")
    p.add_argument("--max-det", type=int, default=max_det, help="maximum detections per image")


def add_device(p: argparse.ArgumentParser, default: str = "") -> None:
    p.add_argument("--device", default=default, help="cuda device, i.e. 0 or 0,1,2,3 or cpu")


def add_precision(p: argparse.ArgumentParser) -> None:
    p.add_argument("--half", action="store_true", help="FP16 half-precision inference (CUDA)")
    p.add_argument("--dnn", action="store_true", help="use OpenCV DNN for ONNX inference")


def add_output(p: argparse.ArgumentParser, project: Union[str, Path]) -> None:
    p.add_argument("--project", default=str(project), help="save results to project/name")
    p.add_argument("--name", default="exp", help="save results to project/name")
    p.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
