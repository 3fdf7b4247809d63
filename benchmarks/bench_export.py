"""CPU latency of every exported format against PyTorch eager, batch 1 (the work is engine/export/bench.py).

    python benchmarks/bench_export.py                                   # 3 models x @256, @320 x 1, 2 threads
    python benchmarks/bench_export.py --models shufflenetv2=weights/demo-shufflenetv2-shapes.pt --sizes 256
    python benchmarks/bench_export.py --models yolov5s --threads 1 --no-int8 --runs 10 --json bench.json

Each model (a key of engine.export.bench.MODELS, a yaml, or name=checkpoint) is exported with export.py's engine
to ONNX, ncnn, ExecuTorch, TFLite, OpenVINO (+ int8 ONNX / TFLite calibrated on --data), each file loaded by its
runner (the code detect.py / val.py run), then all backends are timed round-robin on one real image: median and
minimum ms per image, ratio to PyTorch eager (unfused, eval) = 1.0. On a shared machine read the minimums too.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from engine.export import bench  # noqa: E402


def parse_opt(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(bench.MODELS),
                   help=f"any of {', '.join(bench.MODELS)}, a model yaml, or name=checkpoint.pt")
    p.add_argument("--sizes", nargs="+", type=int, default=[256, 320], help="square input sizes")
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="thread counts (every runtime)")
    p.add_argument("--formats", nargs="+", default=list(bench.FORMATS), help="exported formats to time")
    p.add_argument("--no-int8", action="store_true", help="skip the int8 ONNX / TFLite rows")
    p.add_argument("--data", default="data/shapes.yaml", help="dataset yaml calibrating the int8 files")
    p.add_argument("--int8-images", type=int, default=bench.CALIBRATION_IMAGES, help="int8 calibration images")
    p.add_argument("--runs", type=int, default=20, help="timed passes per backend")
    p.add_argument("--warmup", type=int, default=3, help="untimed passes per backend")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    return p.parse_args(argv)


def main(opt: argparse.Namespace) -> str:
    rows = bench.run(models=opt.models, sizes=opt.sizes, threads=opt.threads, runs=opt.runs, warmup=opt.warmup,
                     formats=opt.formats, int8=not opt.no_int8, data=opt.data, int8_images=opt.int8_images)
    table = bench.format_table(rows)
    print(f"\nbatch 1, median (min) of {opt.runs} round-robin runs after {opt.warmup} warm-up passes\n\n{table}")
    if opt.json:
        opt.json.write_text(json.dumps(bench.as_dicts(rows), indent=1))
    return table


if __name__ == "__main__":
    main(parse_opt())
