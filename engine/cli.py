"""What every command-line script shares: the exit-code contract and the flags common to several scripts.

Exit codes: 0 success; 1 bad input (a :class:`utils.errors.UserError`, printed as one ``ERROR:`` line, no
traceback); 2 argparse usage errors; 130 interrupted (Ctrl-C), 143 stopped by SIGTERM
(128 + the signal, :class:`Interrupted`). Any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import atexit
import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence, Union

from utils.errors import UserError
from utils.log import LOGGER, colorstr


class FlagError(UserError, ValueError):
    """A command-line flag with a value it cannot take; the message names the flag."""


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal at a safe point (what was saved is already reported); exit 128 + signal."""

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message)
        self.signum = signum

EXIT_OK, EXIT_USER_ERROR, EXIT_INTERRUPTED = 0, 1, 130


def run_cli(main: Callable[[argparse.Namespace], Any], opt: argparse.Namespace) -> int:
    """Run ``main(opt)`` and return the process exit code (see the module docstring)."""
    try:
        main(opt)
    except UserError as e:
        LOGGER.error(f"{colorstr('red', 'bold', 'ERROR:')} {e}")
        return EXIT_USER_ERROR
    except Interrupted as e:
        LOGGER.error(f"{colorstr('red', 'bold', 'Interrupted')}{f': {e}' if str(e) else ''}")
        return 128 + e.signum
    except KeyboardInterrupt:
        LOGGER.error(f"\n{colorstr('red', 'bold', 'Interrupted')} (Ctrl-C)")
        return EXIT_INTERRUPTED
    return EXIT_OK


def exit_process(code: int, script: str) -> NoReturn:
    """End the process of ``script`` (its ``__file__``) with ``code`` as the interpreter would, minus tearing
    down its modules.

    Unloading torch, OpenCV and the rest took ~1.3 s after every run (longer than stripping the checkpoints),
    and nothing in it writes a result. What a normal exit does that matters still happens, in its order:
    non-daemon threads are joined, the atexit handlers run (logging, multiprocessing children, TensorBoard),
    stdout and stderr are flushed. When the script is not the program itself or is observed (``python -m
    cProfile train.py`` writes its profile after the script returns; a tracer or profiler is active) this is
    a plain ``sys.exit``. Callers in the same process (tests, notebooks) use ``cli()``'s return value instead.
    """
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    observed = sys.gettrace() is not None or sys.getprofile() is not None
    if observed or main_file is None or os.path.abspath(main_file) != os.path.abspath(script):
        sys.exit(code)
    main = threading.main_thread()
    for t in threading.enumerate():
        if t is not main and not t.daemon:
            t.join()
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # closed, or a broken pipe: nothing more can be written anyway
                pass
        os._exit(code)


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
    """``--half`` (fp16 on CUDA, bf16 autocast on CPU) and ``--fp32`` (exact fp32); see utils/precision.py."""
    p.add_argument("--half", action="store_true", help="half precision: FP16 on CUDA, bf16 autocast on CPU")
    p.add_argument("--fp32", action="store_true",
                   help="exact FP32 (default on CPU: bf16 autocast where the CPU runs bf16 natively)")


def add_dnn(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dnn", action="store_true", help="use OpenCV DNN for ONNX inference")


def add_output(p: argparse.ArgumentParser, project: Union[str, Path]) -> None:
    p.add_argument("--project", default=str(project), help="save results to project/name")
    p.add_argument("--name", default="exp", help="save results to project/name")
    p.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")


# ---------------------------------------------------------------------------------------------- flag checks
def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_at_least(opt: argparse.Namespace, name: str, low: int) -> None:
    """``opt.<name>`` (an int or a list of ints) must be >= ``low``; FlagError naming the flag otherwise."""
    value = getattr(opt, name)
    for v in value if isinstance(value, (list, tuple)) else [value]:
        if v is None or v < low:
            raise FlagError(f"{_flag(name)} {v}: must be >= {low}")


def check_fraction(opt: argparse.Namespace, *names: str) -> None:
    """Each ``opt.<name>`` must lie in [0, 1] (confidence and IoU thresholds)."""
    for name in names:
        v = getattr(opt, name)
        if v is None or not 0.0 <= v <= 1.0:
            raise FlagError(f"{_flag(name)} {v}: must be between 0 and 1")


def check_classes(classes, nc: int, names=None) -> None:
    """A ``--classes`` filter must name classes the model has (once the model is known)."""
    bad = [c for c in (classes or []) if not 0 <= int(c) < nc]
    if bad:
        known = f" ({', '.join(f'{i}: {n}' for i, n in enumerate(names))})" if names and nc <= 20 else ""
        raise FlagError(f"--classes {' '.join(map(str, bad))}: the model has {nc} classes, 0-{nc - 1}{known}")
