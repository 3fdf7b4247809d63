"""Checkpoints: the project format, atomic saving, loading (also of upstream YOLOv5 ``.pt`` files) and
``attempt_load``.

Project format (see docs/architecture.md): ``torch.save`` of a dict holding only tensors and plain Python data, so it
loads with ``torch.load(weights_only=True)``. Models are stored as *records* (yaml dict + state_dict + metadata, incl.
the class activation ``cls_act``) and rebuilt from their yaml on load, never unpickled as objects. Upstream files
(pickled module trees) are read by the allow-list loader of engine/safe_load.py and upgraded to the current layout.
"""
from __future__ import annotations

import contextlib
import copy
import errno
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from engine.downloads import attempt_download
from engine.safe_load import CheckpointError, UnsafeCheckpointError, torch_load_safe  # noqa: F401 (re-exported)
from models.detect import Detect
from models.model import Ensemble, Model
from utils.class_activation import CLS_ACTIVATIONS
from utils.errors import MissingFileError, UserError
from utils.log import LOGGER
from utils.names import class_names
from utils.torch_utils import de_parallel, detect_head

PathLike = Union[str, Path]

FORMAT_NAME = "yolov5-fork"
FORMAT_VERSION = 1
RECORD_KEYS = ("yaml", "state_dict", "names", "nc", "stride", "hyp", "cls_act")
_ACTIVATIONS = (nn.Hardswish, nn.LeakyReLU, nn.ReLU, nn.ReLU6, nn.SiLU)

_UMASK = os.umask(0)  # read once at import (os.umask can only be read by setting it)
os.umask(_UMASK)


# --------------------------------------------------------------------------------------------------------------
# model records
# --------------------------------------------------------------------------------------------------------------
def _to_plain(obj: Any, where: str) -> Any:
    """``obj`` rebuilt from types ``torch.load(weights_only=True)`` accepts (tensors shared, numpy -> Python,
    Path -> str); TypeError naming the entry ``where`` for anything else."""
    if obj is None or isinstance(obj, (bool, int, float, str, bytes, torch.dtype, torch.device, torch.Size)):
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):  # also OrderedDict / defaultdict -> dict (plain, weights_only safe)
        return {k: _to_plain(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        items = [_to_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return tuple(items) if isinstance(obj, tuple) else set(items) if isinstance(obj, set) else items
    raise TypeError(f"checkpoint entry {where} is a {type(obj).__module__}.{type(obj).__qualname__}; only tensors "
                    f"and plain Python data can be saved (weights_only-loadable format)")


@contextlib.contextmanager
def _quiet_logs():
    """Rebuilding a model from a record is an implementation detail: no layer table (warnings still shown)."""
    level = LOGGER.level
    LOGGER.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        LOGGER.setLevel(level)


def model_record(model: nn.Module, half: bool = False) -> Dict[str, Any]:
    """Project record of a YOLOv5 ``Model``: {yaml, state_dict, names, nc, stride, hyp, cls_act, cls_groups} and,
    for a model started from torchvision weights, ``backbone`` (source, model name, file, sha256, tensor count).

    Tensors are copied to the CPU (fp16 for floating tensors when ``half``; dtypes kept otherwise), so the record
    does not alias the live model.
    """
    model = de_parallel(model)
    head = detect_head(model, required=True)
    nc = int(getattr(model, "nc", head.nc))
    yaml = _to_plain(getattr(model, "yaml", None), "model.yaml")
    if not isinstance(yaml, dict):
        raise TypeError("model has no yaml dict; records rebuild the model from it")
    yaml["nc"] = nc  # the record's nc is the truth (v5.0 writes nc overrides into model.yaml too)
    state_dict = {}
    for k, v in model.state_dict().items():
        v = v.detach().to("cpu", copy=True)
        state_dict[k] = v.half() if half and v.is_floating_point() else v
    stride = getattr(model, "stride", None)
    if stride is None:
        stride = head.stride
    hyp = getattr(model, "hyp", None)
    cls_act = str(getattr(model, "cls_act", getattr(head, "cls_act", "sigmoid")))
    return {
        "yaml": yaml,
        "state_dict": state_dict,
        "names": class_names(getattr(model, "names", None), nc),
        "nc": nc,
        "stride": [float(s) for s in torch.as_tensor(stride).flatten()],
        "hyp": _to_plain(hyp, "model.hyp") if hyp is not None else None,
        "cls_act": cls_act,
        "cls_groups": _to_plain(getattr(head, "cls_groups", None), "cls_groups"),  # 'grouped' heads only
        **_backbone_entry(model),
    }


def _backbone_entry(model: nn.Module) -> Dict[str, Any]:
    """{'backbone': where the backbone weights came from} for models started from torchvision weights, else {}."""
    source = getattr(model, "backbone_source", None)
    return {"backbone": _to_plain(source, "backbone_source")} if isinstance(source, dict) else {}


def is_model_record(obj: Any) -> bool:
    return isinstance(obj, dict) and all(k in obj for k in RECORD_KEYS)


def model_from_record(record: Dict[str, Any]) -> nn.Module:
    """Rebuild a float ``Model`` from a record: yaml -> Model(nc=record nc), strict state_dict, metadata, cls_act."""
    if not is_model_record(record):
        missing = [k for k in RECORD_KEYS if not isinstance(record, dict) or k not in record]
        raise CheckpointError(f"not a model record, missing keys {missing}")
    if record["cls_act"] not in CLS_ACTIVATIONS:
        raise CheckpointError(f"model record has cls_act={record['cls_act']!r}, expected one of {CLS_ACTIVATIONS}")
    yaml = copy.deepcopy(record["yaml"])
    nc = int(record["nc"])
    yaml["nc"] = nc
    # Building runs random weight init: keep the caller's RNG stream untouched (loading must not change seeds).
    with torch.random.fork_rng(devices=[]), _quiet_logs():
        model = Model(yaml, ch=int(yaml.get("ch", 3)), nc=nc)
    try:
        model.load_state_dict(record["state_dict"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"model record state_dict does not match the model built from its yaml: {e}") from e
    model.names = list(record["names"])
    model.nc = nc
    # one tensor shared by Model and Detect, as after Model.__init__
    model.stride = detect_head(model).stride = torch.tensor(record["stride"], dtype=torch.float32)
    if record["hyp"] is not None:
        model.hyp = copy.deepcopy(record["hyp"])
    if isinstance(record.get("backbone"), dict):
        model.backbone_source = copy.deepcopy(record["backbone"])
    try:
        model.set_class_activation(record["cls_act"], record.get("cls_groups"))
    except ValueError as e:  # 'grouped' without (valid) groups
        raise CheckpointError(f"model record: {e}") from e
    return model.float()


# --------------------------------------------------------------------------------------------------------------
# saving
# --------------------------------------------------------------------------------------------------------------
def _plain_checkpoint(ckpt: Dict[str, Any]) -> Dict[str, Any]:
    """The dict actually written: nn.Module values of 'model'/'ema' become records, the rest plain data."""
    if not isinstance(ckpt, dict):
        raise TypeError(f"a checkpoint is a dict, got {type(ckpt).__name__}")
    out = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION}
    for key, value in ckpt.items():
        if key in ("model", "ema") and isinstance(value, nn.Module):
            value = model_record(value)
        elif key == "best_fitness" and isinstance(value, (np.ndarray, np.generic, torch.Tensor)):
            value = float(np.asarray(value).reshape(-1)[0])  # v5.0 keeps a (1,) array; the format says float
        elif isinstance(value, nn.Module):
            raise TypeError(f"checkpoint entry [{key!r}] is an nn.Module; only 'model' and 'ema' may hold models")
        else:
            value = _to_plain(value, f"[{key!r}]")
        out[key] = value
    return out


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself (POSIX); directories cannot be opened this way on Windows."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointSaveError(UserError, OSError):
    """A checkpoint could not be written (no space left, no permission, ...); the previous file is intact."""


_SAVE_REASONS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                 errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
                 errno.EROFS: "read-only file system"}


def _save_error(path: Path, e: BaseException) -> CheckpointSaveError:
    """One line naming the path and the real cause (torch's zip writer buries the OSError in a RuntimeError)."""
    cause, err = e, None
    while cause is not None and err is None:
        err = cause if isinstance(cause, OSError) and cause.errno else None
        cause = cause.__cause__ or cause.__context__
    if err is not None:
        reason = _SAVE_REASONS.get(err.errno, err.strerror)
    else:  # torch's zip writer reports "file write failed" without the OSError behind it: look at the disk
        free = shutil.disk_usage(path.parent).free
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        reason = "no space left on the device" if free < (1 << 20) else f"write failed ({first})"
    kept = "the previous file is kept" if path.exists() else "nothing was written"
    return CheckpointSaveError(f"cannot save {path}: {reason} ({kept})")


def save_checkpoint(ckpt: Dict[str, Any], path: PathLike) -> Path:
    """Atomically write ``ckpt`` in the project format: a crash mid-save leaves any previous ``path`` intact.

    Written to a temp file in the same directory, flushed and fsynced, then ``os.replace``d onto ``path``; the temp
    file never survives a failure. nn.Module values of 'model' / 'ema' are converted to records (dtypes kept, e.g.
    fp16 after ``.half()``). An I/O failure (full disk, permissions) raises :class:`CheckpointSaveError`.
    """
    path = Path(path)
    data = _plain_checkpoint(ckpt)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise _save_error(path, e) from e
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600 files; give the checkpoint the permissions a normal open() would
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, (OSError, RuntimeError)) and _is_io_error(e):
            raise _save_error(path, e) from e
        raise
    _fsync_dir(path.parent)
    return path


def _is_io_error(e: BaseException) -> bool:
    """An OSError with an errno, directly or as the cause of torch's writer error, or torch's own zip-writer
    failure ("PytorchStreamWriter failed writing file ...: file write failed")."""
    while e is not None:
        if isinstance(e, OSError) and e.errno:
            return True
        if isinstance(e, RuntimeError) and "write failed" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


# --------------------------------------------------------------------------------------------------------------
# safe loading
# --------------------------------------------------------------------------------------------------------------
def _locate(path: PathLike) -> Path:
    """Existing checkpoint path; a missing official weights name is downloaded (``engine.downloads``)."""
    path = Path(path)
    if not path.exists():
        path = Path(attempt_download(path))  # raises, naming the file (and the URL for official names)
    if not path.is_file():
        raise MissingFileError(f"checkpoint not found: '{path}'")
    return path


def load_checkpoint(path: PathLike, map_location: Any = "cpu") -> Dict[str, Any]:
    """Load a checkpoint dict safely (project format, or an upstream v5.0/v6/v7 file via the allow-list).

    Raises FileNotFoundError naming a missing file, :class:`UnsafeCheckpointError` naming any global outside the
    allow-list, :class:`CheckpointError` (a ValueError) for files that are not checkpoints. Pickled upstream
    models in 'model' / 'ema' get the legacy fix-ups of :func:`upgrade_legacy_model`.
    """
    path = _locate(path)
    ckpt = torch_load_safe(path, map_location)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"'{path}' is not a checkpoint: it holds a {type(ckpt).__name__}, not a dict")
    for key in ("model", "ema"):
        if isinstance(ckpt.get(key), nn.Module):
            upgrade_legacy_model(ckpt[key])
    return ckpt


# --------------------------------------------------------------------------------------------------------------
# legacy (pickled upstream module) fix-ups
# --------------------------------------------------------------------------------------------------------------
def _upgrade_detect(head: nn.Module) -> None:
    """v6/v7 Detect (anchor_grid a list, anchors in grid units) -> the v5.0 buffer layout of this project."""
    nl, na = int(head.nl), int(head.na)
    if "anchor_grid" not in head._buffers:
        stride = getattr(head, "stride", None)
        if stride is None:
            raise CheckpointError("pickled Detect layer has no stride; cannot rebuild its pixel anchor_grid")
        anchors = head._buffers["anchors"]
        grid = anchors * torch.as_tensor(stride, dtype=anchors.dtype, device=anchors.device).view(-1, 1, 1)
        head.__dict__.pop("anchor_grid", None)  # v6/v7: plain list attribute of (expanded) grids
        head.register_buffer("anchor_grid", grid.view(nl, 1, na, 1, 1, 2).clone())
    # Cached grids are dropped: v7 pre-offsets them by -0.5, and they are rebuilt lazily anyway.
    head.grid = [torch.zeros(1) for _ in range(nl)]
    # Attributes this project's Detect sets in __init__ but an older pickle lacks get the fresh-instance value.
    fresh_anchors = (head._buffers["anchor_grid"].float().view(nl, -1)).tolist()
    ch = [conv.in_channels for conv in head.m]
    with torch.random.fork_rng(devices=[]):
        fresh = type(head)(nc=int(head.nc), anchors=fresh_anchors, ch=ch)
    for key, value in fresh.__dict__.items():
        if key not in head.__dict__:
            setattr(head, key, copy.deepcopy(value))


def upgrade_legacy_model(model: nn.Module, inplace: bool = True) -> nn.Module:
    """Make an unpickled upstream model run with this project's code (contract 10.2 / 10.3). Idempotent."""
    for m in model.modules():
        if "_non_persistent_buffers_set" not in m.__dict__:  # torch < 1.6 pickles
            m._non_persistent_buffers_set = set()
        if isinstance(m, nn.Upsample) and "recompute_scale_factor" not in m.__dict__:
            m.recompute_scale_factor = None  # torch >= 1.11 forward reads it
        elif isinstance(m, _ACTIVATIONS):
            m.inplace = inplace
        elif isinstance(m, Detect):
            _upgrade_detect(m)
    layers = getattr(model, "model", None)
    if isinstance(layers, nn.Sequential) and isinstance(layers[-1], Detect):
        model.names = class_names(getattr(model, "names", None), int(layers[-1].nc))  # v7: dict -> list
        if getattr(model, "stride", None) is None:
            model.stride = layers[-1].stride
    return model


# --------------------------------------------------------------------------------------------------------------
# users of checkpoints
# --------------------------------------------------------------------------------------------------------------
def _model_entry(ckpt: Dict[str, Any], path: PathLike) -> Any:
    entry = ckpt.get("ema") or ckpt.get("model")  # ema if truthy (v5.0 attempt_load)
    if entry is None:
        raise CheckpointError(f"'{path}' has no 'model' or 'ema' entry (keys: {sorted(ckpt)})")
    return entry


def _load_one(path: PathLike, map_location: Any, inplace: bool, fuse: bool) -> nn.Module:
    ckpt = load_checkpoint(path, map_location="cpu")
    entry = _model_entry(ckpt, path)
    if isinstance(entry, nn.Module):
        model = upgrade_legacy_model(entry, inplace=inplace)
    elif is_model_record(entry):
        model = model_from_record(entry)
        for m in model.modules():
            if isinstance(m, _ACTIVATIONS):
                m.inplace = inplace
    else:
        raise CheckpointError(f"'{path}': 'model' entry is a {type(entry).__name__}, neither a model nor a record")
    model = model.float()
    if fuse and hasattr(model, "fuse"):
        model = model.fuse()
    model = model.eval()
    if map_location is not None:
        if not isinstance(map_location, (str, torch.device)):
            raise TypeError(f"attempt_load: map_location must be a device or device string, got {map_location!r}")
        model = model.to(map_location)
    return model


def attempt_load(weights: Union[PathLike, Sequence[PathLike]], map_location: Any = None, inplace: bool = True,
                 fuse: bool = True) -> nn.Module:
    """Float, eval (fused unless ``fuse=False``) model from one checkpoint, or an ``Ensemble`` from a list.

    The model keeps its checkpoint's ``names``, ``stride`` and ``cls_act`` (upstream files: sigmoid, the class
    default). Ensemble members must agree on nc and on the class activation.
    """
    paths = list(weights) if isinstance(weights, (list, tuple)) else [weights]
    if not paths:
        raise ValueError("attempt_load: no weights given")
    models = [_load_one(w, map_location, inplace, fuse) for w in paths]
    if len(models) == 1:
        return models[0]

    acts = {str(w): (getattr(m, "cls_act", "sigmoid"), str(getattr(m, "cls_groups", None)))
            for w, m in zip(paths, models)}
    if len(set(acts.values())) > 1:
        raise CheckpointError(f"cannot ensemble models with different class activations: {acts}")
    ncs = {str(w): int(getattr(m, "nc", detect_head(m).nc)) for w, m in zip(paths, models)}
    if len(set(ncs.values())) > 1:
        raise CheckpointError(f"cannot ensemble models with different numbers of classes: {ncs}")
    ensemble = Ensemble()
    for m in models:
        ensemble.append(m)
    LOGGER.info(f"Ensemble created with {[str(w) for w in paths]}")
    ensemble.names = models[-1].names
    ensemble.stride = max((m.stride for m in models), key=lambda s: float(torch.as_tensor(s).max()))
    ensemble.nc = next(iter(ncs.values()))
    if not isinstance(getattr(type(ensemble), "cls_act", None), property):
        ensemble.cls_act = models[-1].cls_act
    return ensemble


def checkpoint_state_dict(ckpt: Dict[str, Any], key: str = "model"
                          ) -> Tuple[Dict[str, torch.Tensor], Optional[Dict[str, Any]], Optional[List[str]]]:
    """(float state_dict, model yaml dict or None, names or None) of ``ckpt[key]`` for ``--weights`` transfer.

    Works for project records and pickled upstream models. v5.0 train.py transfers from 'model' (after
    strip_optimizer that is the EMA); falls back to 'ema' when 'model' is empty.
    """
    entry = ckpt.get(key)
    if entry is None and key == "model":
        entry = ckpt.get("ema")
    if entry is None:
        raise CheckpointError(f"checkpoint has no '{key}' model (keys: {sorted(ckpt)})")
    if isinstance(entry, nn.Module):
        entry = de_parallel(entry)
        state_dict, yaml, names = entry.state_dict(), getattr(entry, "yaml", None), getattr(entry, "names", None)
    elif is_model_record(entry):
        state_dict, yaml, names = entry["state_dict"], entry["yaml"], entry["names"]
    else:
        raise CheckpointError(f"checkpoint '{key}' entry is a {type(entry).__name__}, neither a model nor a record")
    state_dict = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
    if isinstance(names, dict):
        names = class_names(names, len(names))
    return state_dict, copy.deepcopy(yaml), (list(names) if names is not None else None)


def strip_optimizer(f: PathLike = "best.pt", s: PathLike = "") -> None:
    """Finalise a training checkpoint (v5.0 semantics): model <- ema, drop optimizer/ema/updates, epoch -1, fp16.

    Saves ``f`` in place, or to ``s`` when given (atomic either way); upstream files come out in project format.
    """
    x = load_checkpoint(f)
    if x.get("ema"):
        x["model"] = x["ema"]
    for k in ("optimizer", "ema", "updates"):
        x[k] = None
    for k in ("training_results", "wandb_id"):  # v5.0 keys, present in upstream files only
        if k in x:
            x[k] = None
    x["epoch"] = -1
    entry = _model_entry(x, f)
    if isinstance(entry, nn.Module):
        x["model"] = model_record(entry, half=True)
    else:
        x["model"] = dict(entry, state_dict={k: v.half() if v.is_floating_point() else v
                                             for k, v in entry["state_dict"].items()})
    out = save_checkpoint(x, s or f)
    mb = os.path.getsize(out) / 1e6
    LOGGER.info(f"Optimizer stripped from {f},{f' saved as {s},' if s else ''} {mb:.1f}MB")
