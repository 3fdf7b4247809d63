"""The export run: check the flags, load each checkpoint, then per format build the graph that runtime handles
best, write it under a temporary name, verify it in its own runtime and only then move it to its final name.

Graph per format (engine/export/graph.py; engine/formats/*.py ``GRAPH``):

    torchscript, ptl, onnx                        the model's own decode (shape-generic trace; ONNX --dynamic)
    ncnn, executorch, tflite, openvino, coreml    FlatDecode: fixed shape, converter-friendly decode
    --int8 (onnx, tflite)                         FlatDecode, quantised up to the head
    --train (any format)                          the raw level maps (decoded in Python by the runners' users)
"""
from __future__ import annotations

import copy
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from engine.checkpoint import attempt_load
from engine.cli import FlagError
from engine.export.graph import ExportModel, FlatDecode, RawHead
from engine.export.images import CALIBRATION_IMAGES, MAX_CALIBRATION_IMAGES, calibration_images, sample_images
from engine.export.metadata import export_metadata
from engine.export.verify import shape_check, verify_file, verify_second_shape
from engine.formats import FORMATS, INT8_FORMATS
from engine.formats.base import ExportError, Settings, require
from utils.checks import make_divisible
from utils.errors import MissingFileError, UserError
from utils.log import LOGGER, colorstr
from utils.torch_utils import detect_head, select_device

# optional packages per format (module, pip package): checked before anything is loaded or written
PACKAGES = {
    "onnx": [("onnx", "onnx"), ("onnxruntime", "onnxruntime")],
    "ncnn": [("pnnx", "pnnx"), ("ncnn", "ncnn")],
    "executorch": [("executorch.exir", "executorch"), ("executorch.runtime", "executorch")],
    "tflite": [("litert_torch", "litert-torch"), ("ai_edge_litert.interpreter", "ai-edge-litert")],
    "openvino": [("openvino", "openvino")],
    "coreml": [("coremltools", "coremltools")],
}
INT8_PACKAGES = {"onnx": [("onnxruntime.quantization", "onnxruntime")],
                 "tflite": [("ai_edge_quantizer", "ai-edge-quantizer")]}


@dataclass
class Job:
    """One checkpoint being exported: the model, its input, the reference it is verified against."""

    weights: Path
    model: nn.Module  # fused float (or fp16) eval model
    im: torch.Tensor  # the sample batch: traced and compared
    what: str  # where the sample images came from
    metadata: Dict[str, Any]
    half: bool
    cpu_copy: Optional["Job"] = field(default=None, repr=False)


@dataclass
class Result:
    fmt: str
    file: Path
    mb: float
    check: str


# -------------------------------------------------------------------------------------------------------- flags
def check_flags(include: Sequence[str], imgsz: Sequence[int], batch_size: int, device: torch.device, half: bool,
                dynamic: bool, train: bool, int8: bool, data: Optional[str]) -> None:
    """FlagError naming the flag for every combination export cannot honour."""
    unknown = [x for x in include if x not in FORMATS]
    if unknown or not include:
        raise FlagError(f"--include {' '.join(unknown)}: unsupported format(s); choose from {', '.join(FORMATS)}")
    if len(imgsz) != 2 or min(imgsz) < 1:
        raise FlagError(f"--imgsz {' '.join(map(str, imgsz))}: give one or two positive sizes (h w)")
    if batch_size < 1:
        raise FlagError(f"--batch-size {batch_size}: must be >= 1")
    if half and device.type == "cpu":
        raise FlagError("--half (FP16) export needs a CUDA device, e.g. --device 0; FP16 is not supported on CPU")
    if half and dynamic:
        raise FlagError("--half is not compatible with --dynamic: use one or the other")
    if int8:
        other = [x for x in include if x not in INT8_FORMATS]
        if other:
            raise FlagError(f"--int8 exports {', '.join(INT8_FORMATS)} only; export {', '.join(other)} in a "
                            f"separate run without --int8")
        if train or half:
            raise FlagError(f"--int8 quantises the decoded float graph: drop {'--train' if train else '--half'}")
        if not data:
            raise FlagError("--int8 needs --data (a dataset yaml): its train images calibrate the quantisation")


def check_packages(include: Sequence[str], int8: bool) -> None:
    """MissingPackageError (naming the package and the pip command) before anything is exported."""
    for fmt in include:
        for module, package in (INT8_PACKAGES.get(fmt, []) if int8 else []) + PACKAGES.get(fmt, []):
            require(module, package, f"export --include {fmt}{' --int8' if int8 else ''}")


def pick_device(device: str) -> torch.device:
    try:
        return select_device(device)
    except (ValueError, RuntimeError) as e:
        raise FlagError(str(e)) from None


# -------------------------------------------------------------------------------------------------------- model
def load_model(weights: str, device: torch.device) -> nn.Module:
    """Fused float eval model from a checkpoint, with a clear error naming the file otherwise."""
    path = Path(weights)
    if path.suffix != ".pt":
        raise ExportError(f"export needs a PyTorch checkpoint (.pt), got '{weights}'")
    if not path.is_file():
        raise MissingFileError(f"weights not found: '{weights}'")
    try:
        model = attempt_load(str(path), map_location=device, inplace=False, fuse=True)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure here means "not a usable checkpoint"; say which file
        msg = str(e) if str(path) in str(e) else f"'{weights}' is not a loadable YOLOv5 checkpoint: {e}"
        raise ExportError(msg) from None
    if isinstance(model, nn.ModuleList):
        raise ExportError(f"'{weights}' loaded as an ensemble; export one checkpoint at a time")
    return model.float().eval()


def prepare(weights: str, imgsz: Sequence[int], batch: int, device: torch.device, half: bool, train: bool,
            dynamic: bool) -> Job:
    """Load a checkpoint, round the size to its stride, pick the sample batch, record the metadata."""
    model = load_model(weights, device)
    head = detect_head(model, required=True)
    gs = int(max(head.stride))
    size = [max(make_divisible(x, gs), gs) for x in imgsz]
    if size != list(imgsz):
        LOGGER.warning(f"WARNING: --imgsz {list(imgsz)} must be a multiple of max stride {gs}, using {size}")
    im, what = sample_images(size, batch)
    im = im.to(device)
    if half:
        model, im = model.half(), im.half()
    metadata = export_metadata(model, size, batch, raw=train, dynamic=dynamic, half=half)
    job = Job(Path(weights), model, im, what, metadata, half)
    reference = reference_model(job)
    with torch.no_grad():
        y = reference(im)
    shape = [tuple(t.shape) for t in y] if train else tuple(y.shape)
    LOGGER.info(f"\n{colorstr('PyTorch:')} starting from {weights} with output "
                f"{'raw head maps ' if train else 'decoded '}{shape} (class activation {metadata['cls_act']}, "
                f"{Path(weights).stat().st_size / 1e6:.1f} MB)")
    return job


def reference_model(job: Job) -> nn.Module:
    """The PyTorch model every file is compared with: Detect's own decode (or its raw maps)."""
    raw = job.metadata["output"] == "raw"
    model = job.model
    if not raw:
        model = copy.deepcopy(model)
        detect_head(model).export = True  # instance attribute: only the decoded tensor
    return ExportModel(model, raw=raw).eval()


def cpu_float(job: Job) -> Job:
    """The job as a float CPU copy: phone / edge formats are exported from it (they run in float on CPUs)."""
    if not job.half and job.im.device.type == "cpu":
        return job
    if job.cpu_copy is None:
        job.cpu_copy = Job(job.weights, copy.deepcopy(job.model).float().cpu(), job.im.float().cpu(), job.what,
                           {**job.metadata, "half": False}, False)
    return job.cpu_copy


# ------------------------------------------------------------------------------------------------------- formats
def graph_inputs(job: Job, fmt: ModuleType, settings: Settings) -> Tuple[nn.Module, torch.Tensor, Dict[str, Any]]:
    """(graph to export, its input, the metadata to record) for one format (module docstring)."""
    raw = job.metadata["output"] == "raw"
    if fmt.GRAPH == "detect" and not settings.int8:
        if fmt.NAME == "ptl":
            job = cpu_float(job)
        return reference_model(job), job.im, {**job.metadata, "dynamic": settings.dynamic and fmt.NAME == "onnx"}
    job = cpu_float(job)
    im, metadata = job.im, {**job.metadata, "dynamic": False}
    batch = getattr(fmt, "BATCH", None)
    if batch is not None and im.shape[0] != batch:
        LOGGER.warning(f"{colorstr(fmt.TITLE)} WARNING: {fmt.NAME} models take batch {batch}; exporting batch "
                       f"{batch} instead of --batch-size {im.shape[0]}")
        im, metadata = im[:batch], {**metadata, "batch": batch}
    graph = RawHead(job.model) if raw else FlatDecode(job.model, im.shape[2:])
    return graph.eval(), im, metadata


def export_one(job: Job, name: str, settings: Settings) -> Result:
    """Write one format under a temporary name next to its final one, verify it, then move it into place."""
    fmt = FORMATS[name]
    prefix = colorstr(fmt.TITLE)
    final = fmt.file_for(job.weights, settings.int8)
    graph, im, metadata = graph_inputs(job, fmt, settings)
    ref_job = job if fmt.GRAPH == "detect" and name != "ptl" and not settings.int8 else cpu_float(job)
    reference = reference_model(ref_job)
    settings = Settings(**{**settings.__dict__, "shape_check": shape_check(reference, metadata, im)})
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    t0 = time.time()
    try:
        LOGGER.info(f"\n{prefix} starting export{' (int8)' if settings.int8 else ''}...")
        staged = staging / final.name
        with torch.no_grad():
            metadata = fmt.export(graph, im, staged, metadata, settings, prefix)
        half = bool(metadata.get("half"))
        check = verify_file(fmt, staged, reference, im, metadata, ref_job.what, prefix, half)
        verify_second_shape(fmt, staged, reference, metadata, im, prefix, half)
        publish(staging, final.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    mb = size_mb(final) + sum(size_mb(p) for p in companions(fmt, final))
    LOGGER.info(f"{prefix} export success ({time.time() - t0:.1f}s), saved as {final} ({mb:.1f} MB)")
    return Result(name + (" int8" if settings.int8 else ""), final, mb, check)


def companions(fmt: ModuleType, final: Path) -> List[Path]:
    """Files written next to the main one (ncnn's .bin and metadata sidecar)."""
    if fmt.NAME == "ncnn":
        return [fmt.bin_file(final), fmt.sidecar(final)]
    return []


def publish(staging: Path, folder: Path) -> None:
    """Move everything staged into ``folder``, replacing older files of the same names."""
    for entry in sorted(staging.iterdir()):
        dest = folder / entry.name
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        elif dest.exists() or dest.is_symlink():
            dest.unlink()
        os.replace(entry, dest)


def size_mb(path: Path) -> float:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
    return path.stat().st_size / 1e6 if path.exists() else 0.0


# ----------------------------------------------------------------------------------------------------------- run
def run(weights: Union[Sequence[str], str] = ("yolov5s.pt",), imgsz: Sequence[int] = (640, 640),
        batch_size: int = 1, device: str = "cpu", include: Sequence[str] = ("torchscript", "onnx"),
        half: bool = False, inplace: bool = False, train: bool = False, optimize: bool = False,
        dynamic: bool = False, simplify: bool = False, opset: int = 12, grid: bool = False, int8: bool = False,
        data: Optional[str] = None, int8_images: int = CALIBRATION_IMAGES) -> List[Path]:
    """Export each weights file to each format. Returns the written files; ExportError if any export failed."""
    t0 = time.time()
    include = [x.lower() for x in include]
    weights = [weights] if isinstance(weights, (str, Path)) else list(weights)
    imgsz = list(imgsz) * 2 if len(imgsz) == 1 else list(imgsz)
    dev = pick_device(device)
    check_flags(include, imgsz, batch_size, dev, half, dynamic, train, int8, data)
    if int8 and not 1 <= int8_images <= MAX_CALIBRATION_IMAGES:
        raise FlagError(f"--int8-images {int8_images}: give 1 to {MAX_CALIBRATION_IMAGES} calibration images")
    check_packages(include, int8)
    if grid:
        LOGGER.info("--grid: the decoded output (grid inside the graph) is already the default")
    settings = Settings(opset=opset, dynamic=dynamic, simplify=simplify, optimize=optimize, int8=int8)
    results, failures = [], []
    for w in weights:
        job = prepare(w, imgsz, batch_size, dev, half, train, dynamic)
        if int8:
            settings.calibration = calibration_images(data, job.metadata["imgsz"], int8_images)
        for name in include:
            try:
                results.append(export_one(job, name, settings))
            except Exception as e:  # noqa: BLE001 - each format is attempted on its own (v5.0 behaviour)
                if not isinstance(e, UserError):
                    LOGGER.exception(e)  # a converter crash: keep its traceback for the report
                LOGGER.error(f"{colorstr(FORMATS[name].TITLE)} export failure: {e}")
                failures.append(f"{FORMATS[name].file_for(Path(w), int8).name}: {e}")
    summarise(results, time.time() - t0)
    if failures:
        raise ExportError(f"{len(failures)} export(s) failed: " + "; ".join(failures))
    return [r.file for r in results]


def summarise(results: List[Result], seconds: float) -> None:
    LOGGER.info(f"\nExport complete ({seconds:.1f}s), {len(results)} file(s):")
    for r in results:
        LOGGER.info(f"  {r.fmt:<16} {str(r.file):<60} {r.mb:7.2f} MB  {r.check}")
    runnable = [r for r in results if r.fmt != "coreml"]  # Core ML runs on macOS / iOS only
    if runnable:
        last = runnable[-1].file
        LOGGER.info(f"Detect:   python detect.py --weights {last}\nValidate: python val.py --weights {last}")
