"""Per-image CPU latency of one detector run four ways: PyTorch eager, fused, TorchScript, ONNX Runtime.

    python benchmarks/bench_export.py                      # yolov5s @640 and the ShuffleNetV2 config @320
    python benchmarks/bench_export.py --runs 50 --cfg models/yolov5s.yaml --imgsz 640

Models are built from their yaml with random weights (latency does not depend on the values), saved as a
project checkpoint and exported with ``export.py`` (so the TorchScript / ONNX files are exactly what users get),
then loaded back through ``engine.backends.DetectMultiBackend``. Each backend runs ``--warmup`` passes, then
``--runs`` timed single-image passes, the backends taking turns (round-robin, so a change in machine load hits
them all alike). Reported: median wall time and median process CPU time per image, and their ratios to eager
(higher = faster). ONNX Runtime's intra-op threads follow ``torch.get_num_threads()``.

* eager:       the unfused model (Conv + BatchNorm), eval mode, contiguous NCHW input
* fused:       BN folded into the convolutions, channels_last (``utils.torch_utils.prepare_for_inference``)
* TorchScript: the traced ``<w>.torchscript.pt`` (loaded with torch.jit.load)
* ONNX Runtime: ``<w>.onnx`` on the CPU execution provider
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from engine.backends import DetectMultiBackend  # noqa: E402
from engine.checkpoint import save_checkpoint  # noqa: E402
from models.model import Model  # noqa: E402
from utils.torch_utils import prepare_for_inference  # noqa: E402
import export  # noqa: E402

DEFAULT_CASES = (("models/yolov5s.yaml", 640), ("models/yolov5-shufflenetv2.yaml", 320))


def interleaved_latency_ms(cases: Dict[str, Callable[[], object]], runs: int, warmup: int
                           ) -> Dict[str, Tuple[float, float]]:
    """{name: (median wall ms, median process-CPU ms)} per call, the cases timed round-robin.

    Interleaving spreads any change in machine load evenly over the backends (on a shared machine a block of
    runs per backend can land in a busy or a quiet period); CPU time is the less load-sensitive figure.
    """
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    wall: Dict[str, List[float]] = {k: [] for k in cases}
    cpu: Dict[str, List[float]] = {k: [] for k in cases}
    for _ in range(runs):
        for name, fn in cases.items():
            t, c = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    return {k: (1e3 * statistics.median(wall[k]), 1e3 * statistics.median(cpu[k])) for k in cases}


def bench_case(cfg: str, imgsz: int, runs: int, warmup: int, workdir: Path) -> Dict[str, float]:
    """{backend: median ms} for one model config at one square size."""

    torch.manual_seed(0)
    model = Model(str(ROOT / cfg) if not Path(cfg).is_file() else cfg).eval()
    weights = workdir / f"{Path(cfg).stem}.pt"
    save_checkpoint({"epoch": -1, "model": model}, weights)
    export.run(weights=[str(weights)], imgsz=(imgsz, imgsz), include=("torchscript", "onnx"))

    im = torch.rand(1, 3, imgsz, imgsz)
    im_cl = im.contiguous(memory_format=torch.channels_last)
    fused = prepare_for_inference(copy.deepcopy(model), "cpu")
    jit = DetectMultiBackend(weights.with_suffix(".torchscript.pt"))
    ort = DetectMultiBackend(weights.with_suffix(".onnx"))
    cases = {
        "eager": lambda: model(im),
        "fused": lambda: fused(im_cl),
        "TorchScript": lambda: jit(im),
        "ONNX Runtime": lambda: ort(im),
    }
    with torch.inference_mode():
        return interleaved_latency_ms(cases, runs, warmup)


def format_table(rows: Sequence[tuple]) -> str:
    lines = ["| model | size | backend | median ms / image | speed-up vs eager | CPU ms / image | CPU speed-up |",
             "|---|---|---|---|---|---|---|"]
    for cfg, size, results in rows:
        eager_wall, eager_cpu = results["eager"]
        for name, (wall, cpu) in results.items():
            lines.append(f"| {Path(cfg).stem} | {size} | {name} | {wall:.1f} | {eager_wall / wall:.2f}x | "
                         f"{cpu:.1f} | {eager_cpu / cpu:.2f}x |")
    return "\n".join(lines)


def parse_opt(argv: List[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cfg", nargs="+", default=None, help="model yaml(s); default: yolov5s and ShuffleNetV2")
    p.add_argument("--imgsz", nargs="+", type=int, default=None, help="one size per --cfg")
    p.add_argument("--runs", type=int, default=30, help="timed passes per backend")
    p.add_argument("--warmup", type=int, default=5, help="untimed passes per backend")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    return p.parse_args(argv)


def main(opt: argparse.Namespace) -> str:
    if opt.threads:
        torch.set_num_threads(opt.threads)
    cases = list(DEFAULT_CASES) if not opt.cfg else list(zip(opt.cfg, opt.imgsz or [640] * len(opt.cfg)))
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for cfg, size in cases:
            rows.append((cfg, size, bench_case(cfg, size, opt.runs, opt.warmup, Path(d))))
    import onnxruntime
    table = format_table(rows)
    print(f"\ntorch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {onnxruntime.__version__}, "
          f"batch 1, median of {opt.runs} interleaved runs after {opt.warmup} warm-up\n")
    print(table)
    return table


if __name__ == "__main__":
    main(parse_opt())
