"""Export a YOLOv5 checkpoint to TorchScript, TorchScript lite interpreter (mobile) and ONNX.

Usage:
    python export.py --weights yolov5s.pt --include torchscript onnx ptl --imgsz 640 --batch-size 1
    python models/export.py --weights yolov5s.pt --img 640 --batch 1          # v5.0 command line

Outputs, written next to the weights by replacing the ``.pt`` suffix (v5.0 naming):
    yolov5s.torchscript.pt    TorchScript (torch.jit.load)
    yolov5s.onnx              ONNX (onnxruntime), input ``images``, output ``output``
    yolov5s.torchscript.ptl   TorchScript lite interpreter (torch.jit.mobile._load_for_lite_interpreter)

By default the graph returns the decoded ``(batch, boxes, 5 + nc)`` tensor with the grid, the anchors and the
class activation (sigmoid, or softmax for softmax-CE models) inside it; ``--train`` exports the raw per-level
head maps instead. Every file carries metadata (stride, class names, class activation, image size, output kind,
anchors), and every export is loaded back and checked against the PyTorch model on a real image.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.backends import CONFIG_FILE, BackendError, ort_session_options, read_metadata  # noqa: E402
from utils.checks import make_divisible  # noqa: E402
from utils.log import LOGGER, colorstr  # noqa: E402

FORMATS = ("torchscript", "onnx", "ptl")
SUFFIX = {"torchscript": ".torchscript.pt", "onnx": ".onnx", "ptl": ".torchscript.ptl"}
PREFIX = {"torchscript": "TorchScript:", "onnx": "ONNX:", "ptl": "TorchScript-Lite:"}
IMG_FORMATS = (".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp")

# Verification tolerances: boxes relative to the largest input side (px / side), scores/logits absolute.
TOL = {"fp32": {"box": 2e-4, "score": 1e-3}, "fp16": {"box": 1e-2, "score": 2e-2}}


class ExportError(RuntimeError):
    """An export that cannot be made or that does not reproduce the PyTorch model."""


# ----------------------------------------------------------------------------------------------------------------
# model preparation
# ----------------------------------------------------------------------------------------------------------------
class ExportModel(nn.Module):
    """What gets traced: the detector returning only the decoded tensor, or (``raw``) the tuple of level maps."""

    def __init__(self, model: nn.Module, raw: bool = False):
        super().__init__()
        self.model = model
        self.raw = raw

    def forward(self, x: torch.Tensor):
        y = self.model(x)
        if self.raw:  # eval-mode Model returns (decoded, [raw level maps])
            return tuple(y[1])
        return y[0] if isinstance(y, (tuple, list)) else y


def detect_layer(model: nn.Module) -> nn.Module:
    """The (last) Detect head of a model."""
    from models.detect import Detect
    heads = [m for m in model.modules() if isinstance(m, Detect)]
    if not heads:
        raise ExportError("the model has no Detect layer")
    return heads[-1]


def load_model(weights: str, device: torch.device, inplace: bool = False) -> nn.Module:
    """Fused float eval model from a checkpoint, with a clear error naming the file otherwise."""
    path = Path(weights)
    if not path.suffix == ".pt":
        raise ExportError(f"export needs a PyTorch checkpoint (.pt), got '{weights}'")
    if not path.is_file():
        raise FileNotFoundError(f"weights not found: '{weights}'")
    from engine.checkpoint import attempt_load
    try:
        model = attempt_load(str(path), map_location=device, inplace=inplace, fuse=True)
    except Exception as e:  # noqa: BLE001 - any failure here means "not a usable checkpoint"; say which file
        msg = str(e) if str(path) in str(e) else f"'{weights}' is not a loadable YOLOv5 checkpoint: {e}"
        raise ExportError(msg) from e
    if isinstance(model, nn.ModuleList):
        raise ExportError(f"'{weights}' loaded as an ensemble; export one checkpoint at a time")
    return model.float().eval()


def export_metadata(model: nn.Module, imgsz: Sequence[int], batch: int, raw: bool, dynamic: bool,
                    half: bool) -> Dict[str, Any]:
    """What a consumer needs to run the export without the repository's model code."""
    m = detect_layer(model)
    strides = [float(s) for s in m.stride]
    anchors_px = (m.anchors.detach().float().cpu() * m.stride.float().cpu().view(-1, 1, 1)).view(m.nl, -1)
    names = [str(n) for n in getattr(model, "names", [str(i) for i in range(m.nc)])]
    return {
        "stride": int(max(strides)),
        "strides": strides,
        "names": names,
        "nc": int(m.nc),
        "cls_act": str(getattr(model, "cls_act", getattr(m, "cls_act", "sigmoid"))),
        "cls_groups": getattr(m, "cls_groups", None),
        "imgsz": [int(imgsz[0]), int(imgsz[1])],
        "batch": int(batch),
        "output": "raw" if raw else "decoded",
        "dynamic": bool(dynamic),
        "half": bool(half),
        "anchors": [[round(float(v), 4) for v in row] for row in anchors_px.tolist()],
    }


# ----------------------------------------------------------------------------------------------------------------
# sample input used for tracing and verification
# ----------------------------------------------------------------------------------------------------------------
def synthetic_image(h: int = 480, w: int = 640, seed: int = 0) -> np.ndarray:
    """A deterministic BGR test scene (filled rectangles and circles on a gradient) when no image is at hand."""
    import cv2
    rng = np.random.default_rng(seed)
    ramp = np.linspace(60, 200, w, dtype=np.float32)[None, :, None]
    im = np.broadcast_to(ramp, (h, w, 3)).astype(np.uint8).copy()
    for _ in range(8):
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        x1, y1 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        x2, y2 = min(w - 1, x1 + int(rng.integers(20, w // 2))), min(h - 1, y1 + int(rng.integers(20, h // 2)))
        if rng.random() < 0.5:
            cv2.rectangle(im, (x1, y1), (x2, y2), color, -1)
        else:
            cv2.circle(im, ((x1 + x2) // 2, (y1 + y2) // 2), max(5, (x2 - x1) // 3), color, -1)
    return im


def sample_images(imgsz: Sequence[int], batch: int, source: Optional[Path] = None) -> Tuple[torch.Tensor, str]:
    """(batch, 3, h, w) float [0, 1] RGB from data/images (letterboxed to exactly ``imgsz``) or generated scenes."""
    import cv2
    from data.augmentations import letterbox
    folder = source or ROOT / "data" / "images"
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMG_FORMATS) if folder.is_dir() else []
    images, used = [], []
    for f in files:
        im = cv2.imread(str(f))
        if im is not None:
            images.append(im)
            used.append(f.name)
        if len(images) == batch:
            break
    while len(images) < batch:
        images.append(synthetic_image(seed=len(images)))
        used.append("generated")
    tensors = []
    for im in images:
        im = letterbox(im, (int(imgsz[0]), int(imgsz[1])), auto=False)[0]
        tensors.append(torch.from_numpy(np.ascontiguousarray(im[:, :, ::-1].transpose(2, 0, 1))))
    x = torch.stack(tensors).float() / 255
    return x, ",".join(sorted(set(used)))


# ----------------------------------------------------------------------------------------------------------------
# exporters
# ----------------------------------------------------------------------------------------------------------------
def _xnnpack_enabled() -> bool:
    try:
        import torch.backends.xnnpack
        return bool(torch.backends.xnnpack.enabled)
    except (ImportError, AttributeError):
        return False


def _mobile_optimize(ts: torch.jit.ScriptModule, prefix: str) -> torch.jit.ScriptModule:
    """optimize_for_mobile when this torch build has XNNPACK (the pass requires it), else the module unchanged."""
    if not _xnnpack_enabled():
        LOGGER.warning(f"{prefix} WARNING: this torch build has no XNNPACK, optimize_for_mobile skipped; "
                       f"the model is saved unoptimized")
        return ts
    from torch.utils.mobile_optimizer import optimize_for_mobile
    return optimize_for_mobile(ts)


def trace(model: nn.Module, im: torch.Tensor) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about python-side shape checks are expected
        return torch.jit.trace(model, im, strict=False, check_trace=False)


def second_shape(metadata: Dict[str, Any]) -> Tuple[int, int, int]:
    """(batch, h, w) unlike the export shape, used to check that a graph is really shape-generic."""
    gs, (h, w) = metadata["stride"], metadata["imgsz"]
    return metadata["batch"] + 1, max(gs, h - gs), w + gs


def shape_generic(ts: torch.jit.ScriptModule, model: nn.Module, metadata: Dict[str, Any], device: torch.device,
                  dtype: torch.dtype) -> bool:
    """Does the traced module reproduce the PyTorch model at another batch size and image shape?

    Tracing records shapes as graph values when the model reads them from its tensors (the export-mode Detect
    builds its grid that way), so the trace usually generalises; this checks it rather than assuming it.
    """
    b, h, w = second_shape(metadata)
    im2 = sample_images((h, w), b)[0].to(device).type(dtype)
    try:
        with torch.no_grad():
            ref, out = model(im2), ts(im2)
    except RuntimeError:
        return False
    ref = list(ref) if isinstance(ref, (tuple, list)) else [ref]
    out = [t.float().cpu() for t in (out if isinstance(out, (tuple, list)) else [out])]
    return compare_outputs(ref, out, metadata["output"] == "raw", max(h, w), half=metadata["half"])[0]


def _traced_for_file(model: nn.Module, im: torch.Tensor, metadata: Dict[str, Any], mobile: bool,
                     prefix: str) -> Tuple[torch.jit.ScriptModule, Dict[str, Any]]:
    """Trace (+ optimize_for_mobile), then record whether the result accepts any input shape."""
    ts = trace(model, im)
    if mobile:
        ts = _mobile_optimize(ts, prefix)
    dynamic = shape_generic(ts, model, metadata, im.device, im.dtype)
    if not dynamic:
        LOGGER.info(f"{prefix} the traced graph is specific to {tuple(im.shape)} inputs (recorded as fixed-shape)")
    return ts, {**metadata, "dynamic": dynamic}


def export_torchscript(model: nn.Module, im: torch.Tensor, file: Path, metadata: Dict[str, Any],
                       optimize: bool = False, prefix: str = colorstr("TorchScript:")) -> Dict[str, Any]:
    """Write ``file``; returns the metadata stored in it (``dynamic`` as measured on the trace)."""
    LOGGER.info(f"\n{prefix} starting export with torch {torch.__version__}...")
    ts, metadata = _traced_for_file(model, im, metadata, optimize, prefix)
    ts.save(str(file), _extra_files={CONFIG_FILE: json.dumps(metadata)})
    return metadata


def export_ptl(model: nn.Module, im: torch.Tensor, file: Path, metadata: Dict[str, Any],
               prefix: str = colorstr("TorchScript-Lite:")) -> Dict[str, Any]:
    """Write a lite-interpreter ``file`` (optimize_for_mobile applied when XNNPACK is available)."""
    LOGGER.info(f"\n{prefix} starting export with torch {torch.__version__}...")
    ts, metadata = _traced_for_file(model, im, metadata, True, prefix)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Lite Interpreter is deprecated" notice
        ts._save_for_lite_interpreter(str(file), _extra_files={CONFIG_FILE: json.dumps(metadata)})
    return metadata


def export_onnx(model: nn.Module, im: torch.Tensor, file: Path, metadata: Dict[str, Any], opset: int = 12,
                dynamic: bool = False, simplify: bool = False, prefix: str = colorstr("ONNX:")) -> Path:
    import onnx
    LOGGER.info(f"\n{prefix} starting export with onnx {onnx.__version__} (opset {opset})...")
    raw = metadata["output"] == "raw"
    n_out = len(metadata["strides"]) if raw else 1
    output_names = ["output"] + [f"output{i}" for i in range(1, n_out)]
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {"images": {0: "batch", 2: "height", 3: "width"}}
        for name in output_names:
            dynamic_axes[name] = {0: "batch", 2: "y", 3: "x"} if raw else {0: "batch", 1: "anchors"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation notice and tracer warnings
        torch.onnx.export(model, (im,), str(file), dynamo=False, opset_version=opset, input_names=["images"],
                          output_names=output_names, dynamic_axes=dynamic_axes, do_constant_folding=True)
    model_onnx = onnx.load(str(file))
    onnx.checker.check_model(model_onnx)
    if simplify:
        model_onnx = _simplify_onnx(model_onnx, prefix)
    del model_onnx.metadata_props[:]
    for k, v in metadata.items():
        entry = model_onnx.metadata_props.add()
        entry.key, entry.value = k, v if isinstance(v, str) else json.dumps(v)
    onnx.save(model_onnx, str(file))
    return file


def _simplify_onnx(model_onnx, prefix: str):
    """onnxslim, else onnx-simplifier, else a warning (the unsimplified model is kept)."""
    import onnx
    try:
        import onnxslim
        LOGGER.info(f"{prefix} simplifying with onnxslim {getattr(onnxslim, '__version__', '')}...")
        model_onnx = onnxslim.slim(model_onnx)
    except ImportError:
        try:
            import onnxsim
            LOGGER.info(f"{prefix} simplifying with onnx-simplifier {getattr(onnxsim, '__version__', '')}...")
            model_onnx, ok = onnxsim.simplify(model_onnx)
            if not ok:
                raise ExportError("onnx-simplifier could not validate the simplified model")
        except ImportError:
            LOGGER.warning(f"{prefix} WARNING: --simplify needs 'onnxslim' or 'onnxsim' (pip install onnxslim); "
                           f"keeping the unsimplified model")
            return model_onnx
    onnx.checker.check_model(model_onnx)
    return model_onnx


# ----------------------------------------------------------------------------------------------------------------
# verification
# ----------------------------------------------------------------------------------------------------------------
def run_exported(file: Path, fmt: str, im: torch.Tensor) -> List[torch.Tensor]:
    """Outputs of an exported file loaded back with its own runtime (onnxruntime / torch.jit / lite interpreter)."""
    if fmt == "onnx":
        import onnxruntime as ort
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if im.is_cuda else ["CPUExecutionProvider"]
        providers = [p for p in providers if p in ort.get_available_providers()]
        session = ort.InferenceSession(str(file), sess_options=ort_session_options(), providers=providers)
        x = im.cpu().numpy()
        return [torch.from_numpy(o).float() for o in session.run(None, {session.get_inputs()[0].name: x})]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation notices for torch.jit.load / the lite interpreter
        if fmt == "torchscript":
            ts = torch.jit.load(str(file), map_location=im.device)
        else:
            from torch.jit.mobile import _load_for_lite_interpreter
            ts = _load_for_lite_interpreter(str(file), map_location=im.device)
    with torch.no_grad():
        y = ts(im)
    return [t.float().cpu() for t in (y if isinstance(y, (tuple, list)) else [y])]


def compare_outputs(ref: Sequence[torch.Tensor], out: Sequence[torch.Tensor], raw: bool, side: int,
                    half: bool = False) -> Tuple[bool, str]:
    """(within tolerance, description). Decoded: boxes relative to ``side`` px, scores absolute; raw: logits."""
    tol = TOL["fp16" if half else "fp32"]
    if len(ref) != len(out):
        return False, f"{len(out)} outputs, expected {len(ref)}"
    for r, o in zip(ref, out):
        if tuple(r.shape) != tuple(o.shape):
            return False, f"output shape {tuple(o.shape)}, expected {tuple(r.shape)}"
    if raw:
        diff = max(float((r.float().cpu() - o).abs().max()) for r, o in zip(ref, out))
        scale = max(1.0, max(float(r.abs().max()) for r in ref))
        return diff <= tol["score"] * scale, f"max abs diff {diff:.2e} (raw logits)"
    r, o = ref[0].float().cpu(), out[0]
    box = float((r[..., :4] - o[..., :4]).abs().max())
    score = float((r[..., 4:] - o[..., 4:]).abs().max())
    ok = box <= tol["box"] * side and score <= tol["score"]
    return ok, f"max abs diff {box:.2e} px (boxes), {score:.2e} (objectness / class scores)"


def verify_export(file: Path, fmt: str, model: nn.Module, im: torch.Tensor, metadata: Dict[str, Any],
                  what: str, prefix: str) -> str:
    """Load ``file`` back, compare its outputs and metadata with the PyTorch model; ExportError on mismatch."""
    raw = metadata["output"] == "raw"
    with torch.no_grad():
        ref = model(im)
    ref = list(ref) if isinstance(ref, (tuple, list)) else [ref]
    out = run_exported(file, fmt, im)
    ok, msg = compare_outputs(ref, out, raw, max(im.shape[2:]), half=metadata["half"])
    if not ok:
        raise ExportError(f"{file} does not reproduce the PyTorch model on {what} {tuple(im.shape)}: {msg}")
    stored = read_metadata(file)
    if stored != metadata:
        raise ExportError(f"{file}: metadata read back {stored} differs from the metadata written {metadata}")
    runtime = {"onnx": "onnxruntime", "torchscript": "torch.jit.load", "ptl": "the lite interpreter"}[fmt]
    line = f"{prefix} verified with {runtime} on {what} {tuple(im.shape)}: {msg}"
    LOGGER.info(line)
    return msg


# ----------------------------------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------------------------------
def _file_size_mb(f: Path) -> float:
    return f.stat().st_size / 1e6


def run(weights: Sequence[str] | str = ("yolov5s.pt",), imgsz: Sequence[int] = (640, 640), batch_size: int = 1,
        device: str = "cpu", include: Sequence[str] = ("torchscript", "onnx"), half: bool = False,
        inplace: bool = False, train: bool = False, optimize: bool = False, dynamic: bool = False,
        simplify: bool = False, opset: int = 12, grid: bool = False) -> List[Path]:
    """Export each weights file to each format. Returns the written files; ExportError if any export failed."""
    from utils.torch_utils import select_device

    t0 = time.time()
    include = [x.lower() for x in include]
    unknown = [x for x in include if x not in FORMATS]
    if unknown:
        raise ExportError(f"--include {' '.join(unknown)}: unsupported format(s); choose from {', '.join(FORMATS)}")
    weights = [weights] if isinstance(weights, (str, Path)) else list(weights)
    imgsz = list(imgsz) * 2 if len(imgsz) == 1 else list(imgsz)
    if len(imgsz) != 2:
        raise ExportError(f"--imgsz takes one or two values (h w), got {imgsz}")
    device = select_device(device)
    if half and device.type == "cpu":
        raise ExportError("--half (FP16) export needs a CUDA device, e.g. --device 0; FP16 is not supported on CPU")
    if half and dynamic:
        raise ExportError("--half is not compatible with --dynamic: use one or the other")
    if grid:
        LOGGER.info("--grid: the decoded output (grid inside the graph) is already the default")

    written, failures = [], []
    for w in weights:
        model = load_model(w, device, inplace=inplace)
        m = detect_layer(model)
        gs = int(max(m.stride))
        size = [max(make_divisible(x, gs), gs) for x in imgsz]
        if size != imgsz:
            LOGGER.warning(f"WARNING: --imgsz {imgsz} must be a multiple of max stride {gs}, using {size}")
        if hasattr(m, "inplace"):
            m.inplace = inplace
        if not train:
            m.export = True  # instance attribute: only the decoded tensor, without touching the class default
        exportable = ExportModel(model, raw=train).eval()
        im, what = sample_images(size, batch_size)
        im = im.to(device)
        if half:
            exportable, im = exportable.half(), im.half()
        metadata = export_metadata(model, size, batch_size, raw=train, dynamic=dynamic, half=half)
        with torch.no_grad():
            exportable(im)  # dry runs build the grids the trace records
            y = exportable(im)
        shape = [tuple(t.shape) for t in y] if train else tuple(y.shape)
        LOGGER.info(f"\n{colorstr('PyTorch:')} starting from {w} with output "
                    f"{'raw head maps ' if train else 'decoded '}{shape} (class activation {metadata['cls_act']}, "
                    f"{_file_size_mb(Path(w)):.1f} MB)")
        for fmt in include:
            f = Path(w).with_suffix(SUFFIX[fmt])
            prefix = colorstr(PREFIX[fmt])
            try:
                export_and_verify(fmt, exportable, im, f, metadata, what, optimize=optimize, opset=opset,
                                  simplify=simplify, prefix=prefix)
                LOGGER.info(f"{prefix} export success, saved as {f} ({_file_size_mb(f):.1f} MB)")
                written.append(f)
            except Exception as e:  # noqa: BLE001 - each format is attempted independently (v5.0 behaviour)
                if f.exists() and isinstance(e, ExportError):
                    f.unlink()  # never leave behind a file that does not reproduce the model
                LOGGER.error(f"{prefix} export failure: {e}")
                failures.append(f"{f.name}: {e}")

    LOGGER.info(f"\nExport complete ({time.time() - t0:.1f}s), {len(written)} file(s): "
                f"{', '.join(str(f) for f in written)}")
    if written:
        LOGGER.info(f"Detect:   python detect.py --weights {written[-1]}\n"
                    f"Validate: python val.py --weights {written[-1]}")
    if failures:
        raise ExportError(f"{len(failures)} export(s) failed: " + "; ".join(failures))
    return written


def export_and_verify(fmt: str, exportable: nn.Module, im: torch.Tensor, f: Path, metadata: Dict[str, Any],
                      what: str, optimize: bool = False, opset: int = 12, simplify: bool = False,
                      prefix: str = "") -> Path:
    """Write one format and check it against the PyTorch model (dynamic files also at a second shape)."""
    if fmt == "torchscript":
        metadata = export_torchscript(exportable, im, f, metadata, optimize=optimize, prefix=prefix)
    elif fmt == "onnx":
        export_onnx(exportable, im, f, metadata, opset=opset, dynamic=metadata["dynamic"], simplify=simplify,
                    prefix=prefix)
    else:
        if metadata["half"] or im.device.type != "cpu":
            # lite-interpreter models run on mobile CPUs: an FP16 / CUDA export traces a float CPU copy for them
            exportable, im = copy.deepcopy(exportable).float().cpu(), im.float().cpu()
            metadata = {**metadata, "half": False}
        metadata = export_ptl(exportable, im, f, metadata, prefix=prefix)
    verify_export(f, fmt, exportable, im, metadata, what, prefix)
    if metadata["dynamic"]:  # a shape-generic file must also be right at a shape it was not traced at
        b, h, w = second_shape(metadata)
        im2, what2 = sample_images((h, w), b)
        verify_export(f, fmt, exportable, im2.to(im.device).type_as(im), metadata, what2, prefix)
    return f


def parse_opt(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Export YOLOv5 checkpoints to TorchScript / ONNX / lite")
    parser.add_argument("--weights", nargs="+", type=str, default=["yolov5s.pt"], help="checkpoint path(s)")
    parser.add_argument("--imgsz", "--img", "--img-size", nargs="+", type=int, default=[640, 640],
                        dest="imgsz", help="image size h w (one value = square)")
    parser.add_argument("--batch-size", type=int, default=1, help="batch size")
    parser.add_argument("--device", default="cpu", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    parser.add_argument("--half", action="store_true", help="FP16 half-precision export (CUDA only)")
    parser.add_argument("--inplace", action="store_true", help="set Detect() inplace=True")
    parser.add_argument("--train", action="store_true", help="export the raw per-level head maps (no decoding)")
    parser.add_argument("--optimize", action="store_true", help="TorchScript: optimize_for_mobile (needs XNNPACK)")
    parser.add_argument("--dynamic", action="store_true",
                        help="ONNX: dynamic batch / height / width axes (TorchScript is checked for it by itself)")
    parser.add_argument("--simplify", action="store_true", help="ONNX: simplify the graph (onnxslim / onnxsim)")
    parser.add_argument("--opset", type=int, default=12, help="ONNX opset version")
    parser.add_argument("--grid", action="store_true", help="v5.0 flag: decoded output (already the default)")
    parser.add_argument("--include", nargs="+", default=["torchscript", "onnx"],
                        help=f"formats to export, any of: {', '.join(FORMATS)}")
    opt = parser.parse_args(argv)
    opt.imgsz = opt.imgsz * 2 if len(opt.imgsz) == 1 else opt.imgsz
    return opt


def main(opt: argparse.Namespace) -> List[Path]:
    return run(**vars(opt))


def cli(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry: 0 on success, 1 with one clear message on bad input or a failed export."""
    opt = parse_opt(argv)
    LOGGER.info(colorstr("export: ") + ", ".join(f"{k}={v}" for k, v in vars(opt).items()))
    try:
        main(opt)
    except (ExportError, BackendError, FileNotFoundError) as e:
        LOGGER.error(f"ERROR: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli())
