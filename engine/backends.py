"""Run a detector from any weights format this project writes: ``.pt``, TorchScript, lite interpreter, ONNX, ncnn,
ExecuTorch, TFLite, OpenVINO (and CoreML on macOS).

:class:`DetectMultiBackend` hides the format: every backend returns the decoded ``(bs, N, 5 + nc)`` tensor
(xywh in input pixels, objectness, class probabilities) that :func:`utils.nms.non_max_suppression` expects. The
format is picked from the file name (``weights_kind``); exported files are run by their format's runner
(engine/formats/*.py, the same code export.py verifies them with).

Exports made by ``export.py`` carry their metadata (stride, names, class activation and groups, image size,
output kind, anchors), each format in its own way. Raw-head exports (``export.py --train``) are decoded here with
the anchors and class activation recorded in that metadata, so a softmax-CE or grouped model decoded from raw
heads gives the same numbers as its decoded export.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from engine.checkpoint import attempt_load
from engine.formats import FORMATS
from engine.formats import onnx as onnx_format
from engine.formats.base import BackendError, MissingPackageError, Runner, first_line, load_errors
from engine.formats.torchscript import CONFIG_FILE
from models.detect import decode_level, make_grid
from utils.class_activation import check_activation
from utils.class_groups import ClassGroups, GroupedActivation
from utils.errors import MissingFileError
from utils.log import LOGGER
from utils.names import class_names
from utils.precision import Precision, inference_precision
from utils.text import YamlFileError, load_yaml
from utils.torch_utils import prepare_for_inference

PathLike = Union[str, Path]

# Suffix rules, most specific first ('.torchscript.pt' must win over '.pt'); kind -> engine/formats module below.
_SUFFIXES: Tuple[Tuple[str, str], ...] = (
    (".torchscript.ptl", "ptl"),
    (".torchscript.pt", "jit"),
    (".torchscript", "jit"),
    (".ptl", "ptl"),
    (".onnx", "onnx"),
    (".ncnn.param", "ncnn"),
    ("_ncnn_model", "ncnn"),
    (".pte", "executorch"),
    (".tflite", "tflite"),
    ("_openvino_model", "openvino"),
    (".xml", "openvino"),
    (".mlpackage", "coreml"),
    (".pt", "pt"),
)
SUPPORTED_SUFFIXES = tuple(s for s, _ in _SUFFIXES)
FOLDER_SUFFIXES = ("_openvino_model", "_ncnn_model", ".mlpackage")  # exports that are folders
FORMAT_OF_KIND = {"jit": "torchscript", **{k: k for _, k in _SUFFIXES if k not in ("jit", "pt")}}
KIND_NAMES = {"pt": "PyTorch", "jit": "TorchScript", "ptl": "TorchScript-Lite", "onnx": "ONNX", "ncnn": "ncnn",
              "executorch": "ExecuTorch", "tflite": "TFLite", "openvino": "OpenVINO", "coreml": "CoreML"}
__all__ = ["DetectMultiBackend", "BackendError", "weights_kind", "read_metadata", "decode_raw_outputs",
           "ort_session_options", "CONFIG_FILE", "SUPPORTED_SUFFIXES", "FOLDER_SUFFIXES"]


def weights_kind(weights: PathLike) -> str:
    """'pt' | 'jit' | 'ptl' | 'onnx' | 'ncnn' | 'executorch' | 'tflite' | 'openvino' | 'coreml' from the file
    name; :class:`BackendError` for anything else."""
    name = Path(str(weights)).name.lower()
    for suffix, kind in _SUFFIXES:
        if name.endswith(suffix):
            return kind
    raise BackendError(f"unsupported weights '{weights}': the suffix must be one of {', '.join(SUPPORTED_SUFFIXES)}")


def read_metadata(weights: PathLike) -> Dict[str, Any]:
    """Metadata recorded in an exported file ({} when it has none, e.g. a third-party export)."""
    kind = weights_kind(weights)
    if kind == "pt":
        return {}
    return FORMATS[FORMAT_OF_KIND[kind]].read_metadata(Path(weights))


# ----------------------------------------------------------------------------------------------------------------
# raw heads -> decoded output
# ----------------------------------------------------------------------------------------------------------------
def decode_raw_outputs(raw: Sequence[torch.Tensor], anchors: Sequence[Sequence[float]], strides: Sequence[float],
                       cls_act: str = "sigmoid", cls_groups: Optional[list] = None) -> torch.Tensor:
    """Decode raw per-level head maps ``(bs, na, ny, nx, no)`` into ``(bs, N, no)`` exactly like ``Detect``.

    ``anchors[i]`` lists the level-i anchors in pixels as ``[w0, h0, w1, h1, ...]``. Box and objectness channels
    use a sigmoid; the class channels use ``cls_act`` ('sigmoid' per class, or 'softmax' over the classes).
    """
    try:
        check_activation(cls_act, "export metadata cls_act")
        nc = raw[0].shape[-1] - 5
        grouped = GroupedActivation(ClassGroups.from_spec(cls_groups, nc)) if cls_act == "grouped" else None
    except ValueError as e:
        raise BackendError(f"export metadata: {e}") from None
    if len(raw) != len(strides) or len(raw) != len(anchors):
        raise BackendError(f"{len(raw)} raw output levels but metadata has {len(strides)} strides / "
                           f"{len(anchors)} anchor levels")
    out = []
    for p, a, s in zip(raw, anchors, strides):
        bs, na, ny, nx, no = p.shape
        p = p.float()
        anchor_wh = torch.tensor(a, dtype=torch.float32, device=p.device).view(1, na, 1, 1, 2)
        out.append(decode_level(p, make_grid(nx, ny, p), s, anchor_wh, cls_act, grouped=grouped).view(bs, -1, no))
    return torch.cat(out, 1)


def ort_session_options():
    """onnxruntime options using as many intra-op threads as torch does (one knob for both runtimes)."""
    return onnx_format.session_options(torch.get_num_threads())


# ----------------------------------------------------------------------------------------------------------------
# the backend
# ----------------------------------------------------------------------------------------------------------------
class DetectMultiBackend(nn.Module):
    """One detector interface over ``.pt`` weights and every exported format (engine/formats).

    Attributes read by detect.py / val.py: ``pt``, ``jit``, ``ptl``, ``onnx``, ``ncnn``, ``executorch``, ``tflite``,
    ``openvino``, ``coreml``, ``dnn`` (format flags; ``format`` names the kind), ``stride`` (int, max stride),
    ``names`` (list), ``nc``, ``cls_act``, ``fp16``, ``device``, ``imgsz`` ((h, w) the export was made at, None for
    .pt), ``batch_size`` (export batch, None for .pt and batch-generic files), ``dynamic``, ``raw`` (export holds
    raw heads), ``fixed_shape`` ((h, w) every input must have, or None), ``metadata`` (dict), ``model`` (the torch
    module for .pt / TorchScript), ``runner`` (the format's runner for exports), ``precision``
    (utils.precision.Precision of the .pt forward).

    ``.pt`` models run in ``precision`` (default: :func:`utils.precision.inference_precision` for the device and
    ``fp16``: bf16 autocast on CPUs with native bf16, fp16 weights on CUDA with ``fp16``, else fp32). An exported
    file that cannot be read (damaged, foreign, its runtime missing) is a :class:`BackendError` /
    :class:`MissingPackageError` with one line naming it.
    """

    def __init__(self, weights: Union[PathLike, Sequence[PathLike]] = "yolov5s.pt",
                 device: Union[torch.device, str, None] = None, dnn: bool = False, data: Optional[PathLike] = None,
                 fp16: bool = False, fuse: bool = True, precision: Optional[Precision] = None):
        super().__init__()
        paths = [str(w) for w in (weights if isinstance(weights, (list, tuple)) else [weights])]
        if not paths:
            raise BackendError("no weights given")
        kinds = [weights_kind(w) for w in paths]  # suffix errors before anything is loaded
        if len(paths) > 1 and any(k != "pt" for k in kinds):
            raise BackendError(f"an ensemble of several weights needs .pt files, got {paths}")
        kind = kinds[0]
        self.format = kind
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        for k in KIND_NAMES:
            setattr(self, k, kind == k)  # self.pt, self.jit, self.onnx, self.tflite, ...
        self.dnn = bool(dnn and self.onnx)
        self.engine = False  # TensorRT is not supported; kept because upstream scripts read it
        self.precision = precision or inference_precision(self.device, half=fp16)
        self.fp16 = bool(self.precision.half)  # fp16 weights and inputs (CUDA --half)
        self.weights = paths if len(paths) > 1 else paths[0]
        if not self.pt and not Path(paths[0]).exists():  # .pt: attempt_load reports (or downloads) it
            raise MissingFileError(f"weights not found: '{paths[0]}'")

        self.model: Optional[nn.Module] = None
        self.runner: Optional[Runner] = None
        self._warned_augment = False
        self.metadata: Dict[str, Any] = {}
        if self.pt:
            self._load_pt(paths, fuse)
        else:
            self._load_export(paths[0], kind)
        if not self.names and data:
            self.names = _names_from_data(data)
        if not self.names:
            self.names = [f"class{i}" for i in range(self.nc)] if self.nc else []
        self.nc = self.nc or len(self.names)

    @property
    def kind_name(self) -> str:
        """'ONNX', 'TFLite', ... for messages."""
        return KIND_NAMES[self.format]

    # -- loading ----------------------------------------------------------------------------------------------
    def _load_pt(self, paths: List[str], fuse: bool) -> None:
        model = attempt_load(paths if len(paths) > 1 else paths[0], map_location=self.device, fuse=fuse)
        if fuse:
            model = prepare_for_inference(model, self.device)  # the CPU fast path: fused, eval, channels_last
        model = model.to(self.device).eval()
        if self.fp16:
            model.half()
        self.model = model
        strides = getattr(model, "stride", None)
        self.strides = [float(s) for s in strides] if strides is not None else [32.0]
        self.stride = int(max(self.strides))
        self.names = class_names(getattr(model, "names", None))
        self.nc = len(self.names)
        self.cls_act = str(getattr(model, "cls_act", "sigmoid"))
        self.raw, self.dynamic = False, True
        self.imgsz, self.batch_size = None, None
        self.output_names = ["output"]

    def _open_runner(self, w: str, kind: str) -> Runner:
        """The format's runner; a damaged or foreign file is one BackendError line naming it."""
        fmt = FORMATS[FORMAT_OF_KIND[kind]]
        cls = onnx_format.DnnRunner if self.dnn else fmt.RUNNER
        errors = getattr(fmt, "load_errors", load_errors)()
        try:
            return cls(Path(w), device=self.device, half=self.fp16)
        except (BackendError, MissingPackageError):
            raise
        except errors as e:
            raise BackendError(f"'{w}' is not a readable {KIND_NAMES[kind]} model ({first_line(e)})") from None

    def _load_export(self, w: str, kind: str) -> None:
        self.runner = self._open_runner(w, kind)
        meta = self.metadata = self.runner.metadata
        self.model = getattr(self.runner, "model", None)
        self.fp16 = bool(self.runner.fp16)
        self.output_names = list(getattr(self.runner, "output_names", ["output"]))
        self.strides = [float(s) for s in meta.get("strides", [])] or [float(meta.get("stride", 32))]
        self.stride = int(meta.get("stride", max(self.strides)))
        self.names = class_names(meta.get("names"), meta.get("nc"))
        self.nc = int(meta.get("nc", len(self.names)))
        width = getattr(self.runner, "output_width", None)
        if not self.nc and isinstance(width, int) and width > 5:  # no metadata: 5 + nc columns in the output
            self.nc = width - 5
        self.cls_act = str(meta.get("cls_act", "sigmoid"))
        self.raw = meta.get("output", "decoded") == "raw"
        self._set_geometry(meta, self.runner.input_shape)
        if self.raw and ("anchors" not in meta or "strides" not in meta):
            raise BackendError(f"'{w}' holds raw head outputs but no anchors/strides metadata to decode them; "
                               f"re-export it with export.py (the default decoded output needs no metadata)")
        if not meta:
            LOGGER.warning(f"WARNING: '{w}' has no export metadata: assuming stride 32, sigmoid classes, "
                           f"generic class names (pass --data for names)")

    def _set_geometry(self, meta: Dict[str, Any], input_shape: Optional[List[Any]]) -> None:
        """``imgsz``, ``batch_size`` (None = any batch) and ``dynamic`` (any stride-multiple h, w).

        When the runtime reports the graph's input shape (ONNX Runtime, TFLite, OpenVINO, ExecuTorch) it is the
        truth (this also covers files without our metadata); TorchScript and OpenCV DNN rely on the metadata
        ('imgsz' / 'batch' here, 'shape' in upstream v7 files).
        """
        if input_shape is not None:
            b, _, h, w = input_shape
            fixed_hw = isinstance(h, int) and isinstance(w, int)
            self.dynamic = not fixed_hw
            self.imgsz = (h, w) if fixed_hw else (tuple(meta["imgsz"]) if meta.get("imgsz") else None)
            self.batch_size = b if isinstance(b, int) else None
            return
        shape = meta.get("shape") or [None] * 4
        imgsz = meta.get("imgsz") or shape[2:4]
        self.imgsz = tuple(int(x) for x in imgsz) if all(isinstance(x, int) for x in imgsz) else None
        batch = meta.get("batch", shape[0])
        self.dynamic = bool(meta.get("dynamic", False))  # TorchScript: export.py verified it at a second shape
        self.batch_size = int(batch) if isinstance(batch, int) and not self.dynamic else None

    # -- properties -------------------------------------------------------------------------------------------
    @property
    def fixed_shape(self) -> Optional[Tuple[int, int]]:
        """(h, w) every input must have (fixed-shape exports), None when any stride-multiple shape is accepted."""
        if self.pt or self.dynamic:
            return None
        return self.imgsz

    # -- inference --------------------------------------------------------------------------------------------
    def forward(self, im: torch.Tensor, augment: bool = False, visualize: bool = False, val: bool = False):
        """``im`` (bs, 3, h, w) float in [0, 1] -> decoded (bs, N, 5 + nc); ``val=True`` returns ``(pred, [])``."""
        if self.pt:
            x = im.half() if self.fp16 else im.float()
            if self.device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)  # matches prepare_for_inference's layout
            with self.precision.autocast():
                y = self.model(x, augment=augment) if augment else self.model(x)
            y = y[0] if isinstance(y, (tuple, list)) else y
        else:
            if augment and not self._warned_augment:
                LOGGER.warning("WARNING: --augment (TTA) needs .pt weights, ignored for exported models")
                self._warned_augment = True
            self._check_shape(im)
            y = self._forward_fixed_batch(im)
        y = y.float() if y.dtype != torch.float32 else y
        return (y, []) if val else y

    def _check_shape(self, im: torch.Tensor) -> None:
        fixed = self.fixed_shape
        if fixed is not None and tuple(im.shape[2:]) != tuple(fixed):
            raise BackendError(f"'{self.weights}' was exported for {fixed[0]}x{fixed[1]} inputs, got "
                               f"{im.shape[2]}x{im.shape[3]}: use --imgsz {fixed[0]} {fixed[1]} or re-export "
                               f"with --dynamic (ONNX)")

    def _forward_fixed_batch(self, im: torch.Tensor) -> torch.Tensor:
        """Run in chunks of the export batch size, zero-padding the last chunk (fixed-batch exports)."""
        b = self.batch_size
        if b is None or im.shape[0] == b:
            return self._run_export(im)
        outs = []
        for i in range(0, im.shape[0], b):
            chunk = im[i:i + b]
            n = chunk.shape[0]
            if n < b:
                chunk = torch.cat((chunk, chunk.new_zeros((b - n, *chunk.shape[1:]))), 0)
            outs.append(self._run_export(chunk)[:n])
        return torch.cat(outs, 0)

    def _run_export(self, im: torch.Tensor) -> torch.Tensor:
        outputs = [o.to(self.device) for o in self.runner(im)]
        if self.raw:
            return decode_raw_outputs(outputs, self.metadata["anchors"], self.metadata["strides"], self.cls_act,
                                      self.metadata.get("cls_groups"))
        # decoded exports have one output; v5.0 '--grid' files list the raw maps after the decoded tensor
        return next(o for o in outputs if o.ndim == 3)

    def warmup(self, imgsz: Tuple[int, int, int, int] = (1, 3, 640, 640)) -> None:
        """One forward pass on zeros so the first real image is timed fairly (lazy init, graph set-up)."""
        if self.fixed_shape is not None:
            imgsz = (self.batch_size or imgsz[0], 3, *self.fixed_shape)
        im = torch.zeros(imgsz, dtype=torch.half if (self.fp16 and self.pt) else torch.float, device=self.device)
        with torch.no_grad():
            self.forward(im)


def _names_from_data(data: PathLike) -> List[str]:
    """Class names from a dataset yaml (``names`` list or dict; ``nc`` alone gives '0', '1', ...)."""
    path = Path(data)
    if not path.is_file():
        raise FileNotFoundError(f"--data '{data}' not found")
    d = load_yaml(path, what="--data ") or {}
    if not isinstance(d, dict):
        raise YamlFileError(f"--data {path}: expected a mapping of keys (names, nc, ...), got {type(d).__name__}")
    return class_names(d.get("names"), d.get("nc"))
