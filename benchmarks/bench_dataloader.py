"""Training dataloader throughput (images/s): mosaic + random_perspective + HSV + flips, as train.py uses it.

    python benchmarks/bench_dataloader.py                      # shapes dataset, 640, 2 workers, batch 16
    python benchmarks/bench_dataloader.py --data /work/shared/datasets/coco128/data.yaml --img 640

Each run builds a fresh loader (workers start cold), skips ``--warmup`` batches, then times ``--batches`` batches;
the median over ``--runs`` runs is reported, plus the single-process cost of one item (wall and CPU time; the
CPU figure does not depend on how busy the machine is).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import yaml  # noqa: E402
from data.config import check_dataset  # noqa: E402
from data.datasets import LoadImagesAndLabels  # noqa: E402
from data.datasets import create_dataloader  # noqa: E402
from utils.log import set_logging  # noqa: E402


def run_once(path, img: int, batch: int, workers: int, hyp: dict, warmup: int, batches: int, seed: int) -> float:
    loader, _ = create_dataloader(path, img, batch, 32, hyp=hyp, augment=True, workers=workers, shuffle=True,
                                  seed=seed, prefix="")
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    n, t = 0, time.perf_counter()
    while n < batches:
        try:
            imgs, *_ = next(it)
        except StopIteration:  # small dataset: start another epoch (persistent workers)
            it = iter(loader)
            continue
        n += 1
    dt = time.perf_counter() - t
    del it, loader
    return batches * batch / dt


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT / "data" / "shapes.yaml"))
    ap.add_argument("--hyp", default=str(ROOT / "data" / "hyp.scratch.yaml"))
    ap.add_argument("--img", type=int, default=640)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batches", type=int, default=20)
    a = ap.parse_args(argv)

    set_logging(verbose=False)
    torch.set_num_threads(1)
    hyp = yaml.safe_load(Path(a.hyp).read_text())
    train = check_dataset(a.data)["train"]

    # single-process cost of one mosaic item, no worker overhead
    ds = LoadImagesAndLabels(train, a.img, a.batch, augment=True, hyp=hyp, progress=False)
    for i in range(3):
        ds[i]
    t, c, k = time.perf_counter(), time.process_time(), 0
    while time.perf_counter() - t < 3:
        ds[k % ds.n]
        k += 1
    per_item = (time.perf_counter() - t) / k
    cpu_item = (time.process_time() - c) / k  # CPU time: what the item costs, however busy the machine is

    rates = [run_once(train, a.img, a.batch, a.workers, hyp, a.warmup, a.batches, seed=r) for r in range(a.runs)]
    med = statistics.median(rates)
    print(f"data={Path(a.data).name} img={a.img} batch={a.batch} workers={a.workers} mosaic={hyp['mosaic']}: "
          f"{med:.0f} images/s (median of {a.runs} runs: {', '.join(f'{r:.0f}' for r in rates)}); "
          f"single process {per_item * 1e3:.1f} ms/item wall, {cpu_item * 1e3:.1f} ms/item CPU "
          f"(= {1 / cpu_item:.0f} images/s per free core)")


if __name__ == "__main__":
    main()
