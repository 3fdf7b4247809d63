"""CPU inference: latency of each precision / memory-layout path, val's speed task, and fp32-vs-bf16 detections.

    python benchmarks/bench_inference.py                      # yolov5s @640 b1: the paths below, medians
    python benchmarks/bench_inference.py --runs 20 --no-bf16  # fp32 paths only
    python benchmarks/bench_inference.py --all-configs        # fused fast-path latency of every shipped config
    python benchmarks/bench_inference.py --all-configs --configs 'yolov5-tv-*,yolov5s.yaml' --img 320  # some
    python benchmarks/bench_inference.py --val-speed --weights W.pt --data D.yaml --img 640 --repeat 3
                                                              # `val.py --task speed` fp32 vs --half (bf16), medians
    python benchmarks/bench_inference.py --compare --weights W.pt --source data/images --img 256
                                                              # detections box by box, fp32 vs bf16

Paths (same weights, timed alternately so load changes on a shared machine hit all of them, medians reported,
each as a speed-up over the plain fp32 path of the same run):

* plain fp32 eager = the upstream v5.0 path: BatchNorm folded (v5.0's attempt_load fuses), ``eval()``,
  ``torch.no_grad()``, contiguous NCHW input, SPP pools run separately;
* fast path fp32 = ``utils.torch_utils.prepare_for_inference`` (fused, channels_last weights, in-place
  activations), cascaded SPP pools, ``torch.inference_mode()``, channels_last input (what detect / val run);
* fast path + bf16 autocast = the default of detect / val on CPUs with native bf16 (AMX / AVX512-BF16). On a
  CPU without it (``cpu_bf16_native() == False``) the row is printed as *emulated*: a measure of accuracy, not
  of the speed a native CPU gets.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
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

import numpy as np  # noqa: E402
import torch  # noqa: E402

from data.loaders import LoadImages  # noqa: E402
from engine.backends import DetectMultiBackend  # noqa: E402
from engine.val import run as val_run  # noqa: E402
from models.blocks.pooling import SPP  # noqa: E402
from models.model import Model  # noqa: E402
from utils.log import LOGGER  # noqa: E402
from utils.metrics import box_iou  # noqa: E402
from utils.nms import non_max_suppression  # noqa: E402
from utils.precision import cpu_bf16_native, inference_precision  # noqa: E402
from utils.torch_utils import count_flops, prepare_for_inference  # noqa: E402

CONFIGS = ["yolov5-shufflenetv2.yaml", "yolov5-mobilenetv3small.yaml", "yolov5-mobilenetv3large.yaml",
           "yolov5-tv-shufflenetv2-x0_5.yaml", "yolov5-tv-shufflenetv2-x1_0.yaml", "yolov5-tv-shufflenetv2-x1_5.yaml",
           "yolov5-tv-shufflenetv2-x2_0.yaml", "yolov5-tv-mobilenetv3-small.yaml", "yolov5-tv-mobilenetv3-large.yaml",
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


# ---------------------------------------------------------------------------------------------- latency paths
def inference_paths(cfg: str, img: int, bf16: bool) -> Dict[str, Callable[[], torch.Tensor]]:
    """name -> a forward pass of one random image, every path on copies of the same weights."""
    torch.manual_seed(0)
    model = Model(cfg).eval()
    _randomize_bn(model)
    plain = deepcopy(model).fuse().eval()
    fast = prepare_for_inference(deepcopy(model), "cpu")
    x = torch.rand(1, 3, img, img)
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def run_plain():
        with spp_cascade(False), torch.no_grad():
            return plain(x)[0]

    def run_fast():
        with torch.inference_mode():
            return fast(x_cl)[0]

    def run_bf16():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return fast(x_cl)[0]

    paths = {"plain": run_plain, "fast": run_fast}
    if bf16:
        paths["bf16"] = run_bf16
    return paths


def compare(cfg: str, img: int, runs: int, warmup: int, bf16: bool) -> Dict[str, Dict[str, float]]:
    """Median ms of every path, its speed-up over the plain path and its largest output difference to it."""
    paths = inference_paths(cfg, img, bf16)
    for fn in paths.values():
        for _ in range(warmup):
            fn()
    times: Dict[str, List[float]] = {k: [] for k in paths}
    for _ in range(runs):  # interleaved so that background load affects every path alike
        for k, fn in paths.items():
            times[k].append(_time_ms(fn))
    ref = paths["plain"]()
    out = {}
    for k, fn in paths.items():
        ms = statistics.median(times[k])
        out[k] = {"ms": ms, "speedup": statistics.median(times["plain"]) / ms,
                  "max_abs_diff": (fn().float() - ref).abs().max().item(), "max_abs_output": ref.abs().max().item()}
    return out


def print_compare(r: Dict[str, Dict[str, float]], cfg: str, img: int) -> None:
    native = cpu_bf16_native()
    labels = {"plain": "plain fp32 eager (upstream v5.0 path: fused, NCHW, no_grad)",
              "fast": "fast path fp32 (prepare_for_inference: fused, channels_last, inference_mode)",
              "bf16": "fast path + bf16 autocast" + ("" if native else " (EMULATED: this CPU has no native bf16)")}
    print(f"| path ({Path(cfg).stem} @{img}, batch 1, CPU) | median ms | speed-up vs plain fp32 | "
          f"max abs diff vs plain (px / score) |")
    print("|---|---|---|---|")
    for k, row in r.items():
        diff = "-" if k == "plain" else f"{row['max_abs_diff']:.2e}"
        print(f"| {labels[k]} | {row['ms']:.1f} | {row['speedup']:.2f}x | {diff} |")
    print(f"(outputs up to {r['plain']['max_abs_output']:.0f} px)")


def latency_table(img: int, runs: int, warmup: int, pattern: str = "*") -> None:
    """Params, GFLOPs and fused fast-path latency of the shipped configs matching ``pattern`` (comma-separated
    shell patterns). The models are timed
    in turn, one forward each per round (so a change of machine load hits all of them), medians of ``runs`` rounds:
    wall ms and process CPU ms (the CPU time is the steadier figure on a shared machine)."""
    rows = []
    patterns = pattern.split(",")
    for cfg in (c for c in CONFIGS if any(fnmatch.fnmatch(c, x) for x in patterns)):
        torch.manual_seed(0)
        model = Model(cfg).eval()
        params = sum(p.numel() for p in model.parameters())
        s = max(int(model.stride.max()), 32)
        gflops = count_flops(model, torch.zeros(1, 3, s, s)) / 1e9 * (640 / s) ** 2  # as the Model summary prints
        fast = prepare_for_inference(model, "cpu")
        rows.append({"cfg": cfg, "params": params, "fused": sum(p.numel() for p in fast.parameters()),
                     "gflops": gflops, "model": fast, "wall": [], "cpu": []})
    x = torch.rand(1, 3, img, img).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for r in rows:
            for _ in range(warmup):
                r["model"](x)
        for _ in range(runs):
            for r in rows:
                w, c = time.perf_counter(), time.process_time()
                r["model"](x)
                r["wall"].append((time.perf_counter() - w) * 1000)
                r["cpu"].append((time.process_time() - c) * 1000)
    print(f"| config | params (fused) | GFLOPs @640 | ms @{img} b1 (fused fast path), wall | process CPU ms |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {Path(r['cfg']).stem} | {r['params']:,} ({r['fused']:,}) | {r['gflops']:.1f} | "
              f"{statistics.median(r['wall']):.1f} | {statistics.median(r['cpu']):.1f} |")


# ---------------------------------------------------------------------------------------------- val --task speed
def val_speed(weights: str, data: str, img: int, repeat: int, workers: int) -> Dict[str, List[dict]]:
    """``val.py --task speed`` (batch 1, conf 0.25, iou 0.45) ``repeat`` times in fp32 and with --half,
    alternately; -> per mode the speed_ms dicts of every run."""
    out: Dict[str, List[dict]] = {"fp32": [], "half": []}
    project = ROOT / "runs" / "bench_val_speed"
    for _ in range(repeat):
        for mode in out:
            val_run(data, weights=weights, batch_size=1, imgsz=img, conf_thres=0.25, iou_thres=0.45, task="speed",
                    device="cpu", workers=workers, plots=False, project=project, name=mode, exist_ok=True,
                    half=mode == "half", fp32=mode == "fp32")
            out[mode].append(json.loads((project / mode / "metrics.json").read_text())["speed_ms"])
    return out


def print_val_speed(r: Dict[str, List[dict]], weights: str, img: int) -> None:
    base = statistics.median(s["inference"] for s in r["fp32"])
    print(f"| val.py --task speed, {Path(weights).name} @{img} b1 | pre-process ms | inference ms | NMS ms | "
          f"inference vs fp32 |")
    print("|---|---|---|---|---|")
    for mode, label in (("fp32", "--fp32"), ("half", "--half (bf16 autocast" +
                                               ("" if cpu_bf16_native() else ", EMULATED") + ")")):
        med = {k: statistics.median(s[k] for s in r[mode]) for k in ("preprocess", "inference", "nms")}
        print(f"| {label} | {med['preprocess']:.1f} | {med['inference']:.1f} | {med['nms']:.1f} | "
              f"{med['inference'] / base:.2f}x time |")
    print(f"(medians of {len(r['fp32'])} runs each)")


# ---------------------------------------------------------------------------------------------- detections
def _detect(model: DetectMultiBackend, im: np.ndarray, conf: float) -> torch.Tensor:
    x = torch.from_numpy(im).float()[None] / 255.0
    with torch.inference_mode():
        return non_max_suppression(model(x), conf, 0.45, max_det=1000)[0]  # detect.py's IoU and max-det


def compare_detections(weights: str, source: str, img: int, conf: float = 0.25, iou_min: float = 0.99
                       ) -> Dict[str, float]:
    """fp32 vs (forced) bf16 detections of every image (NMS at ``conf``, detect.py's 0.25 by default): pairs
    matched greedily by IoU ignoring class; a pair agrees when IoU >= ``iou_min`` and the classes are equal."""
    fp32 = DetectMultiBackend(weights, device="cpu", precision=inference_precision("cpu", fp32=True))
    bf16 = DetectMultiBackend(weights, device="cpu", precision=inference_precision("cpu", half=True))
    n = {"images": 0, "fp32": 0, "bf16": 0, "matched": 0, "iou_ok": 0, "same_class": 0, "agree": 0, "iou>=0.95": 0,
         "iou>=0.9": 0}
    worst_iou, conf_diff = 1.0, 0.0
    for _, im, _, _ in LoadImages(source, img_size=img, stride=fp32.stride):
        a, b = _detect(fp32, im, conf), _detect(bf16, im, conf)
        n["images"] += 1
        n["fp32"] += len(a)
        n["bf16"] += len(b)
        if not len(a) or not len(b):
            continue
        iou = box_iou(a[:, :4], b[:, :4])
        while iou.numel() and iou.max() > 0.5:  # greedy one-to-one by IoU
            i, j = divmod(int(iou.argmax()), iou.shape[1])
            close, same = bool(iou[i, j] >= iou_min), bool(a[i, 5] == b[j, 5])
            n["matched"] += 1
            n["iou_ok"] += close
            n["same_class"] += same
            n["agree"] += close and same
            n["iou>=0.95"] += bool(iou[i, j] >= 0.95)
            n["iou>=0.9"] += bool(iou[i, j] >= 0.9)
            worst_iou = min(worst_iou, float(iou[i, j]))
            conf_diff = max(conf_diff, float((a[i, 4] - b[j, 4]).abs()))
            iou[i, :], iou[:, j] = -1, -1
    return {**n, "min_iou": worst_iou, "max_conf_diff": conf_diff}


# ---------------------------------------------------------------------------------------------- main
def parse_opt(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cfg", default="yolov5s.yaml")
    ap.add_argument("--img", type=int, default=640)
    ap.add_argument("--runs", type=int, default=10, help="timed runs per path (median reported)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-bf16", dest="bf16", action="store_false", help="skip the bf16-autocast row")
    ap.add_argument("--bf16", dest="bf16", action="store_true", help="(default) time the bf16-autocast row too")
    ap.add_argument("--all-configs", action="store_true", help="latency table of every shipped config")
    ap.add_argument("--configs", default="*",
                    help="--all-configs: only the configs matching these comma-separated patterns")
    ap.add_argument("--val-speed", action="store_true", help="val.py --task speed, fp32 vs --half")
    ap.add_argument("--compare", action="store_true", help="fp32 vs bf16 detections on --source")
    ap.add_argument("--weights", default="yolov5s.pt", help="weights for --val-speed / --compare")
    ap.add_argument("--data", default="data/coco128.yaml", help="dataset yaml for --val-speed")
    ap.add_argument("--source", default="data/images", help="images for --compare")
    ap.add_argument("--conf", type=float, default=0.25, help="--compare NMS confidence threshold")
    ap.add_argument("--repeat", type=int, default=3, help="--val-speed runs per mode (median reported)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    return ap.parse_args(argv)


def main(argv=None) -> None:
    opt = parse_opt(argv)
    if opt.threads:
        torch.set_num_threads(opt.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {cpu_bf16_native()}")
    LOGGER.setLevel(logging.WARNING)  # keep the build tables and val's own report out of the output
    if opt.all_configs:
        latency_table(opt.img, opt.runs, opt.warmup, opt.configs)
    elif opt.val_speed:
        print_val_speed(val_speed(opt.weights, opt.data, opt.img, opt.repeat, opt.workers), opt.weights, opt.img)
    elif opt.compare:
        print(json.dumps(compare_detections(opt.weights, opt.source, opt.img, opt.conf)))
    else:
        print_compare(compare(opt.cfg, opt.img, opt.runs, opt.warmup, opt.bf16), opt.cfg, opt.img)


if __name__ == "__main__":
    main()
