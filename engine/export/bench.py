"""Latency of the exported files (``benchmarks/bench_export.py``): each model exported with :func:`run` to every
runnable format (+ int8), loaded back through its format's runner, timed on one image against PyTorch eager.

Per (model, size, thread count) every backend gets ``warmup`` untimed passes, then ``runs`` timed passes taken
round-robin (one pass of each backend in turn, so a change in the load of a shared machine hits them all alike);
reported: median and minimum wall time per image, and the ratio to PyTorch eager (higher = faster). Models are
built from their yaml (random weights: latency does not depend on the values) unless a checkpoint is given.
"""
from __future__ import annotations

import copy
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from engine.backends import DetectMultiBackend
from engine.checkpoint import attempt_load, save_checkpoint
from engine.export.images import CALIBRATION_IMAGES, sample_images
from engine.export.pipeline import run as export_run
from engine.export.pipeline import size_mb
from engine.formats import INT8_FORMATS
from models.model import Model
from utils.files import ROOT
from utils.log import LOGGER
from utils.torch_utils import prepare_for_inference

MODELS = {"shufflenetv2": "models/yolov5-shufflenetv2.yaml", "mobilenetv3s": "models/yolov5-mobilenetv3small.yaml",
          "yolov5s": "models/yolov5s.yaml"}
FORMATS = ("onnx", "ncnn", "executorch", "tflite", "openvino")  # the files a CPU here can run (CoreML: macOS)
LABELS = {"onnx": "ONNX Runtime", "ncnn": "ncnn", "executorch": "ExecuTorch (XNNPACK)", "tflite": "TFLite (LiteRT)",
          "openvino": "OpenVINO", "onnx int8": "ONNX Runtime int8", "tflite int8": "TFLite int8"}


@dataclass
class Row:
    """One backend of one (model, size, threads) case."""

    model: str
    size: int
    threads: int
    backend: str
    file: str
    mb: float
    median_ms: float
    min_ms: float
    ratio: float  # eager median / this median


def model_weights(name: str, source: str, workdir: Path, nc: int = 8) -> Path:
    """A checkpoint for ``source``: copied when it is one (.pt), else built from the yaml with random weights."""
    weights = workdir / f"{name}.pt"
    if source.endswith(".pt"):
        model = attempt_load(source, map_location="cpu", fuse=False)
    else:
        torch.manual_seed(0)
        model = Model(str(ROOT / source) if not Path(source).is_file() else source, nc=nc)
        model.names = [f"class{i}" for i in range(nc)]
    save_checkpoint({"epoch": -1, "model": model.float().eval()}, weights)
    return weights


def export_files(weights: Path, size: int, formats: Sequence[str], int8: bool, data: Optional[str],
                 int8_images: int) -> Dict[str, Path]:
    """{backend key: exported file}: the float formats, then (``int8``) the int8 ones."""
    files = dict(zip(formats, export_run(weights=[str(weights)], imgsz=[size], include=list(formats))))
    if int8:
        chosen = [f for f in INT8_FORMATS if f in formats]
        written = export_run(weights=[str(weights)], imgsz=[size], include=chosen, int8=True, data=data,
                             int8_images=int8_images)
        files.update({f"{f} int8": p for f, p in zip(chosen, written)})
    return files


def companions_mb(file: Path) -> float:
    """Size of everything a runtime loads for ``file`` (ncnn: .param + .bin)."""
    if file.name.endswith(".ncnn.param"):
        return size_mb(file) + size_mb(file.with_name(file.name.replace(".param", ".bin")))
    return size_mb(file)


def cases_for(weights: Path, files: Dict[str, Path], im: torch.Tensor) -> Dict[str, Callable[[], object]]:
    """{backend: one-image call} made at the current torch thread count (every runner reads it when built)."""
    eager = attempt_load(str(weights), map_location="cpu", fuse=False).eval()
    fused = prepare_for_inference(copy.deepcopy(eager), "cpu")
    im_cl = im.contiguous(memory_format=torch.channels_last)
    cases: Dict[str, Callable[[], object]] = {"PyTorch eager": lambda: eager(im),
                                              "PyTorch fused": lambda: fused(im_cl)}
    for key, f in files.items():
        runner = DetectMultiBackend(f).runner
        cases[LABELS.get(key, key)] = (lambda r: lambda: r(im))(runner)
    return cases


def interleaved_ms(cases: Dict[str, Callable[[], object]], runs: int, warmup: int
                   ) -> Dict[str, Tuple[float, float]]:
    """{name: (median ms, min ms)} per call, the cases timed round-robin after ``warmup`` passes each."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    times: Dict[str, List[float]] = {k: [] for k in cases}
    for _ in range(runs):
        for name, fn in cases.items():
            t = time.perf_counter()
            fn()
            times[name].append(1e3 * (time.perf_counter() - t))
    return {k: (statistics.median(v), min(v)) for k, v in times.items()}


def bench_case(name: str, weights: Path, size: int, threads: Sequence[int], files: Dict[str, Path], runs: int,
               warmup: int) -> List[Row]:
    """Rows of one model at one size, for each thread count."""
    im = sample_images((size, size), 1)[0]
    rows = []
    for n in threads:
        torch.set_num_threads(n)
        with torch.inference_mode():
            timings = interleaved_ms(cases_for(weights, files, im), runs, warmup)
        base = timings["PyTorch eager"][0]
        by_label = {LABELS.get(k, k): p for k, p in files.items()}
        for backend, (med, low) in timings.items():
            f = by_label.get(backend, weights)
            rows.append(Row(name, size, n, backend, f.name, round(companions_mb(f), 3), round(med, 2),
                            round(low, 2), round(base / med, 2)))
        LOGGER.info("\n".join(f"{r.model} @{r.size} {r.threads} thr  {r.backend:<22} {r.median_ms:8.1f} ms  "
                              f"x{r.ratio:.2f}" for r in rows[-len(timings):]))
    return rows


def run(models: Sequence[str] = tuple(MODELS), sizes: Sequence[int] = (256, 320), threads: Sequence[int] = (1, 2),
        runs: int = 20, warmup: int = 3, formats: Sequence[str] = FORMATS, int8: bool = True,
        data: Optional[str] = "data/shapes.yaml", int8_images: int = CALIBRATION_IMAGES,
        workdir: Optional[Path] = None) -> List[Row]:
    """Export and time every (model, size); ``models`` are keys of :data:`MODELS`, yaml files or checkpoints
    (``name=path`` names one). Returns the rows (see :func:`format_table`)."""
    rows: List[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(workdir or tmp)
        for spec in models:
            name, source = spec.split("=", 1) if "=" in spec else (Path(spec).stem, MODELS.get(spec, spec))
            weights = model_weights(name, source, folder)
            for size in sizes:
                files = export_files(weights, size, formats, int8, data, int8_images)
                rows += bench_case(name, weights, size, threads, files, runs, warmup)
    return rows


def format_table(rows: Sequence[Row]) -> str:
    """Markdown: one line per (model, size, backend), a column pair per thread count."""
    threads = sorted({r.threads for r in rows})
    head = "| model | size | backend | file | MB | " + " | ".join(f"{t} thread{'s' * (t > 1)}: median ms (min), "
                                                                    f"x eager" for t in threads) + " |"
    lines = [head, "|" + "---|" * (5 + len(threads))]
    keys = list(dict.fromkeys((r.model, r.size, r.backend) for r in rows))
    for model, size, backend in keys:
        same = {r.threads: r for r in rows if (r.model, r.size, r.backend) == (model, size, backend)}
        first = next(iter(same.values()))
        cells = [f"{same[t].median_ms:.1f} ({same[t].min_ms:.1f}), {same[t].ratio:.2f}x" if t in same else "-"
                 for t in threads]
        lines.append(f"| {model} | {size} | {backend} | {first.file} | {first.mb:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def as_dicts(rows: Sequence[Row]) -> List[dict]:
    return [asdict(r) for r in rows]
