"""CPU inference latency: the project's fast path vs a straightforward eval forward of the same weights.

    python benchmarks/bench_inference.py                      # yolov5s @640, batch 1
    python benchmarks/bench_inference.py --runs 20 --bf16     # + a bf16-autocast row (max abs diff vs fp32)
    python benchmarks/bench_inference.py --all-configs        # fused fast-path latency of every shipped config

Baseline: ``model.eval()`` unfused, the SPP pools run separately (upstream's computation), ``torch.no_grad()``,
contiguous NCHW input. Fast path: ``utils.torch_utils.prepare_for_inference`` (BN folded, eval, channels_last
weights), cascaded SPP pools, ``torch.inference_mode()``, channels_last input. Both use the same weights; the
two paths are timed alternately (so load changes on a shared machine hit both) and the median is reported.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from contextlib import contextmanager
from copy import deepcopy
from pathlib import Path
from typing import Callable, Dict, List

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from models.blocks.pooling import SPP  # noqa: E402
from models.model import Model  # noqa: E402
from utils.log import LOGGER  # noqa: E402
from utils.torch_utils import count_flops, prepare_for_inference  # noqa: E402

CONFIGS = ["yolov5-shufflenetv2.yaml", "yolov5-mobilenetv3small.yaml", "yolov5-mobilenetv3large.yaml",
           "yolov5s.yaml", "yolov5m.yaml", "yolov5l.yaml", "yolov5x.yaml",
           "yolov5s6.yaml", "yolov5m6.yaml", "yolov5l6.yaml", "yolov5x6.yaml"]


@contextmanager
def spp_cascade(enabled: bool):
    old = SPP.cascade
    SPP.cascade = enabled
    try:
        yield
    finally:
        SPP.cascade = old


def _randomize_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics, as in a trained model (fresh ones would make folding an identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) - 0.5)


def _time_ms(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def compare(cfg: str, img: int, runs: int, warmup: int, bf16: bool) -> Dict[str, float]:
    torch.manual_seed(0)
    model = Model(cfg).eval()
    _randomize_bn(model)
    baseline = deepcopy(model).eval()
    fast = prepare_for_inference(deepcopy(model), "cpu")
    x = torch.rand(1, 3, img, img)
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def run_baseline():
        with spp_cascade(False), torch.no_grad():
            return baseline(x)[0]

    def run_fast():
        with torch.inference_mode():
            return fast(x_cl)[0]

    def run_bf16():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return fast(x_cl)[0]

    paths = {"baseline": run_baseline, "fast": run_fast}
    if bf16:
        paths["fast+bf16"] = run_bf16
    for fn in paths.values():
        for _ in range(warmup):
            fn()
    times: Dict[str, List[float]] = {k: [] for k in paths}
    for _ in range(runs):  # interleaved so that background load affects every path alike
        for k, fn in paths.items():
            times[k].append(_time_ms(fn))

    ref = run_baseline()
    out = {"baseline_ms": statistics.median(times["baseline"]), "fast_ms": statistics.median(times["fast"]),
           "fast_max_abs_diff": (run_fast() - ref).abs().max().item(), "max_abs_output": ref.abs().max().item()}
    if bf16:
        out["bf16_ms"] = statistics.median(times["fast+bf16"])
        out["bf16_max_abs_diff"] = (run_bf16().float() - run_fast()).abs().max().item()
    return out


def latency_table(img: int, runs: int, warmup: int) -> None:
    print(f"| config | params (fused) | GFLOPs @{img} (fused) | CPU ms @{img} b1 (fused fast path) |")
    print("|---|---|---|---|")
    for cfg in CONFIGS:
        torch.manual_seed(0)
        model = Model(cfg).eval()
        params = sum(p.numel() for p in model.parameters())
        fast = prepare_for_inference(model, "cpu")
        fused_params = sum(p.numel() for p in fast.parameters())
        s = max(int(fast.stride.max()), 32)
        gflops = count_flops(fast, torch.zeros(1, 3, s, s)) / 1e9 * (img / s) ** 2
        x = torch.rand(1, 3, img, img).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            for _ in range(warmup):
                fast(x)
            ms = statistics.median(_time_ms(lambda: fast(x)) for _ in range(runs))
        print(f"| {Path(cfg).stem} | {params:,} ({fused_params:,}) | {gflops:.1f} | {ms:.0f} |", flush=True)
        del model, fast


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cfg", default="yolov5s.yaml")
    ap.add_argument("--img", type=int, default=640)
    ap.add_argument("--runs", type=int, default=10, help="timed runs per path (median reported)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--bf16", action="store_true", help="also time the fast path under bf16 autocast")
    ap.add_argument("--all-configs", action="store_true", help="latency table of every shipped config")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    opt = ap.parse_args(argv)
    LOGGER.setLevel(logging.WARNING)  # keep the build tables out of the report
    if opt.threads:
        torch.set_num_threads(opt.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}")
    if opt.all_configs:
        latency_table(opt.img, opt.runs, opt.warmup)
        return
    r = compare(opt.cfg, opt.img, opt.runs, opt.warmup, opt.bf16)
    name = Path(opt.cfg).stem
    print(f"| path ({name} @{opt.img}, batch 1, CPU) | median ms | max abs diff vs baseline |")
    print("|---|---|---|")
    print(f"| baseline: eval, unfused, no_grad, NCHW | {r['baseline_ms']:.1f} | - |")
    print(f"| fast: fused, channels_last, inference_mode | {r['fast_ms']:.1f} | {r['fast_max_abs_diff']:.2e} |")
    if "bf16_ms" in r:
        print(f"| fast + bf16 autocast | {r['bf16_ms']:.1f} | {r['bf16_max_abs_diff']:.2e} (vs fast fp32) |")
    print(f"speed-up fast / baseline: {r['baseline_ms'] / r['fast_ms']:.2f}x "
          f"(outputs up to {r['max_abs_output']:.0f} px)")


if __name__ == "__main__":
    main()
