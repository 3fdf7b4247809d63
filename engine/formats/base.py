"""What every format module shares: the errors, the optional-package check, the runner interface, JSON metadata.

A format module (engine/formats/<name>.py) holds both sides of one file format:

* ``export(graph, im, file, metadata, ...)`` writes the file(s) for the traced ``graph`` and input ``im``;
* ``read_metadata(file)`` returns the dict recorded in it ({} when there is none);
* a :class:`Runner` subclass loads the file in its own runtime and maps a ``(b, 3, h, w)`` float tensor to the
  list of output tensors the file holds (decoded ``(b, N, 5 + nc)``, or the raw level maps). export.py verifies
  every file with it and :class:`engine.backends.DetectMultiBackend` runs detection / validation with it.
"""
from __future__ import annotations

import importlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type

import torch

from utils.errors import UserError

REQUIREMENTS = "requirements-export.txt"


class ExportError(UserError, RuntimeError):
    """An export that cannot be made, or a written file that does not reproduce the PyTorch model."""


class BackendError(UserError, ValueError):
    """Weights that cannot be run: unsupported suffix, damaged file, missing metadata, an input shape the export
    cannot take."""


class MissingPackageError(UserError, ImportError):
    """An optional exporter / runtime package is not installed; the message names it and the pip command."""


def require(module: str, package: str, purpose: str):
    """``import module``, or :class:`MissingPackageError` naming ``package`` and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingPackageError(
            f"{purpose} needs the '{package}' package ({type(e).__name__}: {e}): pip install -r {REQUIREMENTS} "
            f"(all exporters) or pip install {package}") from None


def load_errors() -> Tuple[Type[BaseException], ...]:
    """Exceptions that loading a damaged or foreign file raises in the runtimes (not bugs of this code)."""
    return (RuntimeError, ValueError, OSError, EOFError, KeyError, IndexError, zipfile.BadZipFile)


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else 'damaged file'}"


@dataclass
class Settings:
    """The export flags a format may use (each format reads the ones that apply to it)."""

    opset: int = 12  # ONNX opset (int8 ONNX uses at least 13)
    dynamic: bool = False  # ONNX: dynamic batch / height / width axes
    simplify: bool = False  # ONNX: onnxslim / onnx-simplifier
    optimize: bool = False  # TorchScript: optimize_for_mobile
    int8: bool = False  # static int8 (ONNX, TFLite), calibrated on ``calibration``
    calibration: Sequence[torch.Tensor] = ()  # (1, 3, h, w) float images from the train split
    # TorchScript: does a traced module reproduce the model at another input shape? (sets metadata 'dynamic')
    shape_check: Optional[Callable[[Callable], bool]] = None


# ---------------------------------------------------------------------------------------------------- metadata
def encode_values(metadata: Dict[str, Any]) -> Dict[str, str]:
    """String values for key/value stores (ONNX metadata_props): JSON, except plain strings kept as they are."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}


def decode_value(text: str) -> Any:
    """Inverse of :func:`encode_values` for one value (JSON, else the plain string)."""
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return text


# ---------------------------------------------------------------------------------------------------- runners
class Runner:
    """An exported file loaded in its runtime. Subclasses set ``metadata`` and, when the runtime knows it, the
    graph's ``input_shape`` [b, 3, h, w] (ints for fixed axes, anything else for dynamic ones)."""

    format = ""
    fp16 = False  # the file takes fp16 inputs

    def __init__(self, file: Path, device: torch.device = torch.device("cpu"), threads: int = 0):
        self.file = Path(file)
        self.device = device
        self.threads = threads or torch.get_num_threads()  # one knob for torch and every runtime
        self.metadata: Dict[str, Any] = {}
        self.input_shape: Optional[List[Any]] = None

    def __call__(self, im: torch.Tensor) -> List[torch.Tensor]:
        raise NotImplementedError

    @staticmethod
    def numpy_input(im: torch.Tensor, dtype: Any = None):
        """Contiguous float32 (or ``dtype``) numpy copy of a batch on the CPU."""
        import numpy as np
        x = im.detach().cpu().numpy()
        return np.ascontiguousarray(x, dtype=dtype or np.float32)

    @staticmethod
    def tensors(outputs: Sequence[Any]) -> List[torch.Tensor]:
        """Runtime outputs (numpy arrays) as float torch tensors."""
        import numpy as np
        return [torch.from_numpy(np.array(o, dtype=np.float32, copy=True)) for o in outputs]
