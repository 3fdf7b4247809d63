"""Safe reading of ``.pt`` files: torch's restricted (``weights_only``) unpickler plus an explicit allow-list.

Project checkpoints hold only tensors and plain Python data and load with ``weights_only=True`` as they are.
Upstream v5.0 / v6 / v7 checkpoints pickle whole ``nn.Module`` trees; they load when every global they reference
is on the allow-list: the registered blocks under their upstream pickle paths (models/registry.py), the model
classes, ``torch.nn.modules.*`` layers, and the numpy helpers that rebuild ``best_fitness`` arrays. Anything else
is refused before any object is built, with an error naming the global; nothing from the file is ever executed.
"""
from __future__ import annotations

import pickle
import re
import sys
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from models import registry
from models.model import Ensemble, Model
from utils.errors import UserError

PathLike = Union[str, Path]

# numpy reconstruction helpers used by pickled arrays / scalars (``best_fitness``); numpy 1.x pickles say
# ``numpy.core``, numpy 2.x pickles say ``numpy._core``. They only build arrays from raw bytes.
_NUMPY_HELPERS = {
    "numpy.core.multiarray._reconstruct": "_reconstruct",
    "numpy._core.multiarray._reconstruct": "_reconstruct",
    "numpy.core.multiarray.scalar": "scalar",
    "numpy._core.multiarray.scalar": "scalar",
    "numpy.ndarray": "ndarray",
    "numpy.dtype": "dtype",
}
# The model classes themselves (contract 10.1), under the paths upstream pickled them.
_MODEL_CLASSES = {"models.yolo.Model": Model, "models.yolo.DetectionModel": Model,
                  "models.experimental.Ensemble": Ensemble, "models.model.Model": Model,
                  "models.model.Ensemble": Ensemble}


class CheckpointError(UserError, ValueError):
    """The file exists but is not a usable checkpoint (not a torch file, corrupt, or unexpected content)."""


class UnsafeCheckpointError(CheckpointError):
    """The pickle references a global outside the allow-list; nothing from it was executed."""

    def __init__(self, path: PathLike, names: Sequence[str]):
        self.path, self.names = str(path), list(names)
        super().__init__(
            f"refusing to load '{path}': it references {', '.join(self.names)}, outside the checkpoint allow-list "
            f"(tensors, plain Python data, numpy arrays/scalars, torch.nn layers and the YOLOv5 model classes "
            f"under models.common / models.experimental / models.yolo). No code from the file was run.")


def project_classes() -> Dict[str, type]:
    """Pickle path -> class for every YOLOv5 class an upstream checkpoint may reference."""
    return {**registry.pickle_classes(), **_MODEL_CLASSES}


def _numpy_helper(full_name: str) -> Any:
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray
    attr = _NUMPY_HELPERS[full_name]
    return getattr(np, attr) if attr in ("ndarray", "dtype") else getattr(multiarray, attr)


def resolve_allowed(full_name: str) -> Tuple[Optional[Any], str]:
    """Object for an allow-listed pickle global, or (None, reason)."""
    if full_name in _NUMPY_HELPERS:
        return _numpy_helper(full_name), ""
    project = project_classes()
    if full_name in project:
        return project[full_name], ""
    module_name, _, attr = full_name.rpartition(".")
    if module_name.split(".")[0] in ("models", "utils"):
        return None, "not a YOLOv5 model class"
    if not module_name.startswith("torch.nn.modules."):
        return None, "module not allow-listed"
    obj = getattr(sys.modules.get(module_name), attr, None)  # torch.nn imports all of its layer modules
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        return None, "not a torch.nn layer class"
    return obj, ""


def _numpy_dtype_classes() -> List[Tuple[Any, str]]:
    """numpy >= 1.25 dtype instances are of per-kind classes; torch's BUILD step checks the instance's type."""
    import numpy.dtypes
    return [(c, f"numpy.dtypes.{k}") for k, c in vars(numpy.dtypes).items()
            if isinstance(c, type) and issubclass(c, np.dtype)]


def _all_allowed() -> List[Tuple[Any, str]]:
    """Every allow-listed global under its pickle name (for old non-zip files, which cannot be pre-scanned)."""
    allowed = [(_numpy_helper(n), n) for n in _NUMPY_HELPERS] + _numpy_dtype_classes()
    allowed += [(cls, name) for name, cls in project_classes().items()]
    for module_name, module in list(sys.modules.items()):
        if module_name.startswith("torch.nn.modules.") and module is not None:
            allowed += [(obj, f"{module_name}.{k}") for k, obj in vars(module).items()
                        if isinstance(obj, type) and issubclass(obj, nn.Module)]
    return allowed


def _scanned_allowed(path: Path) -> List[Tuple[Any, str]]:
    """The allow-list entries a zip checkpoint needs (static scan, builds nothing); refuses anything else."""
    try:
        scanned = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as e:  # a zip that is not a torch.save archive, a TorchScript file, ...
        raise CheckpointError(f"'{path}' is not a checkpoint (not a torch.save archive: {e})") from e
    allowed, refused = [], []
    for name in sorted(scanned):
        obj, reason = resolve_allowed(name)
        if obj is None:
            refused.append(f"{name} ({reason})")
        else:
            allowed.append((obj, name))
    if refused:
        raise UnsafeCheckpointError(path, refused)
    if any(name == "numpy.dtype" for _, name in allowed):
        allowed += _numpy_dtype_classes()
    return allowed


def torch_load_safe(path: PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` widened only by the allow-list; errors name the file."""
    path = Path(path)
    allowed = _scanned_allowed(path) if zipfile.is_zipfile(path) else _all_allowed()
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch wraps the reason in advice to retry with weights_only=False, which must not be passed on
        detail = re.search(r"WeightsUnpickler error:\s*(.*?)\s*(\n\n|$)", str(e), re.S)
        detail = detail.group(1) if detail else str(e)
        refused = re.search(r"GLOBAL (\S+)", detail)
        if refused:
            raise UnsafeCheckpointError(path, [refused.group(1).rstrip(".")]) from None
        if "persistent_load" in detail:  # torch < 1.6 non-zip files embed module source code: never trusted
            detail = "pre-torch-1.6 serialization of whole modules, which the safe loader does not support"
        raise CheckpointError(f"'{path}' is not a checkpoint (unpickling failed: {detail})") from None
    except (RuntimeError, EOFError, ValueError, TypeError, AttributeError, KeyError, IndexError,
            zipfile.BadZipFile) as e:
        raise CheckpointError(f"'{path}' is not a checkpoint (torch.load failed: {type(e).__name__}: {e})") from e
