"""CPU cost of one training item (mosaic + random_perspective + HSV + flips), this checkout against a baseline.

    python benchmarks/bench_dataloader.py                              # shapes, 640, against main's f5e98d3
    python benchmarks/bench_dataloader.py --data coco128.yaml --runs 9  # a dataset yaml (absolute ``path:``)
    python benchmarks/bench_dataloader.py --baseline ../other-checkout # any other checkout
    python benchmarks/bench_dataloader.py --loader --workers 2         # images/s of the real loader, this checkout

Each run is one fresh process per checkout, alternately (A B, B A, ...): it builds the training dataset of the
yaml's ``train`` split, draws ``--warmup`` items, then ``--items`` items whose process CPU time is summed (OpenCV
single-threaded and one torch thread, as in a dataloader worker). Both checkouts draw the same items with the same
seed, so they do the same work; their outputs are hashed and must be identical. Reported: the median ms per item
of each checkout and the median of the per-run ratios baseline / this. CPU time is what an item costs whatever
else the machine is doing; the wall clock of a shared machine is not.

The default baseline is a temporary ``git worktree`` of commit f5e98d3 (main before the cheaper pipeline),
removed at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import yaml  # noqa: E402
from data.config import check_dataset  # noqa: E402
from data.datasets import create_dataloader  # noqa: E402
from engine.baseline import baseline_checkout  # noqa: E402
from engine.cli import run_cli  # noqa: E402
from utils.log import set_logging  # noqa: E402

BASELINE_COMMIT = "f5e98d3"

# Run by `python -c` inside the checkout being measured (its own `data` package); argv[1] is a JSON dict.
ITEM_COST = r'''
import hashlib, json, random, sys, time
a = json.loads(sys.argv[1])
sys.path.insert(0, a["root"])
import cv2, numpy as np, torch
cv2.setNumThreads(a["cv2_threads"])  # what a dataloader worker does
torch.set_num_threads(1)
from data.datasets import LoadImagesAndLabels
ds = LoadImagesAndLabels(a["train"], a["img"], 16, augment=True, hyp=a["hyp"], progress=False)
random.seed(a["seed"])
np.random.seed(a["seed"])
order = random.Random(a["seed"]).choices(range(len(ds)), k=a["warmup"] + a["items"])
for i in order[:a["warmup"]]:
    ds[i]
digest, cpu = hashlib.sha256(), 0.0
for i in order[a["warmup"]:]:
    c = time.process_time()
    img, labels, _, _ = ds[i]
    cpu += time.process_time() - c
    digest.update(img.numpy().tobytes())
    digest.update(labels.numpy().tobytes())
print(json.dumps({"ms": cpu / a["items"] * 1e3, "digest": digest.hexdigest()}))
'''


def item_cost(root: Path, args: Dict, env: Dict[str, str]) -> Dict:
    """ms per item and output digest of one fresh process running ITEM_COST in checkout ``root``."""
    payload = json.dumps({**args, "root": str(root)})
    out = subprocess.run([sys.executable, "-c", ITEM_COST, payload], cwd=root, env=env, capture_output=True,
                         text=True)
    if out.returncode:
        raise SystemExit(f"ERROR: the item-cost run in {root} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(a) -> None:
    hyp = yaml.safe_load(Path(a.hyp).read_text())
    train = check_dataset(a.data)["train"]
    env = dict(os.environ)
    env.update(dict(kv.split("=", 1) for kv in a.env))
    job = dict(train=train, img=a.img, hyp=hyp, items=a.items, warmup=a.warmup, cv2_threads=a.cv2_threads)
    with baseline_checkout(a.baseline, a.commit) as base:
        names = {"this": ROOT, "baseline": base}
        ms: Dict[str, List[float]] = {k: [] for k in names}
        digests: Dict[str, List[str]] = {k: [] for k in names}
        for r in range(a.runs):
            order = ["baseline", "this"] if r % 2 == 0 else ["this", "baseline"]
            for name in order:
                res = item_cost(names[name], {**job, "seed": a.seed + r}, env)
                ms[name].append(res["ms"])
                digests[name].append(res["digest"])
            print(f"run {r + 1}/{a.runs}: this {ms['this'][-1]:.2f} ms/item, baseline {ms['baseline'][-1]:.2f} "
                  f"ms/item", flush=True)
    ratios = [b / t for b, t in zip(ms["baseline"], ms["this"])]
    same = digests["this"] == digests["baseline"]
    print(f"data={Path(a.data).name} img={a.img} hyp={Path(a.hyp).name} (mosaic {hyp['mosaic']}, mixup "
          f"{hyp['mixup']}) items={a.items} runs={a.runs} cv2 threads={a.cv2_threads}"
          + (f" env={' '.join(a.env)}" if a.env else ""))
    print(f"  this checkout      {statistics.median(ms['this']):6.2f} ms/item CPU (median; "
          f"{min(ms['this']):.2f}-{max(ms['this']):.2f})")
    print(f"  baseline {a.baseline or a.commit:<9} {statistics.median(ms['baseline']):6.2f} ms/item CPU "
          f"(median; {min(ms['baseline']):.2f}-{max(ms['baseline']):.2f})")
    print(f"  baseline / this    {statistics.median(ratios):6.2f}x cheaper (median of per-run ratios; "
          f"{min(ratios):.2f}-{max(ratios):.2f})")
    print(f"  outputs (images + labels of every item) identical: {'yes' if same else 'NO'}")
    if not same:
        raise SystemExit("ERROR: the two checkouts produced different items for the same seed")


def loader_rate(a) -> None:
    """images/s of create_dataloader with workers (this checkout): median of ``--runs`` cold-started loaders."""
    torch.set_num_threads(1)
    hyp = yaml.safe_load(Path(a.hyp).read_text())
    train = check_dataset(a.data)["train"]
    rates = []
    for r in range(a.runs):
        loader, _ = create_dataloader(train, a.img, a.batch, 32, hyp=hyp, augment=True, workers=a.workers,
                                      shuffle=True, seed=r, prefix="")
        it = iter(loader)
        for _ in range(2):
            next(it)
        n, t = 0, time.perf_counter()
        while n < a.batches:
            try:
                next(it)
            except StopIteration:  # small dataset: start another epoch (persistent workers)
                it = iter(loader)
                continue
            n += 1
        rates.append(a.batches * a.batch / (time.perf_counter() - t))
        del it, loader
    print(f"data={Path(a.data).name} img={a.img} batch={a.batch} workers={a.workers}: "
          f"{statistics.median(rates):.0f} images/s (median of {a.runs} runs: {', '.join(f'{r:.0f}' for r in rates)})")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT / "data" / "shapes.yaml"))
    ap.add_argument("--hyp", default=str(ROOT / "data" / "hyp.scratch.yaml"))
    ap.add_argument("--img", type=int, default=640)
    ap.add_argument("--runs", type=int, default=5, help="runs per checkout (alternating)")
    ap.add_argument("--items", type=int, default=64, help="timed items per run")
    ap.add_argument("--warmup", type=int, default=8, help="untimed items at the start of each run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cv2-threads", type=int, default=0, help="cv2.setNumThreads in the measured processes")
    ap.add_argument("--baseline", default="", help="checkout to compare with (default: a worktree of --commit)")
    ap.add_argument("--commit", default=BASELINE_COMMIT, help="baseline commit when --baseline is not given")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="environment of both measured processes (repeatable), e.g. MALLOC_TRIM_THRESHOLD_=...")
    ap.add_argument("--loader", action="store_true", help="instead: images/s of the dataloader with workers")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--batches", type=int, default=20)
    a = ap.parse_args(argv)
    bad = [kv for kv in a.env if "=" not in kv]
    if bad:
        ap.error(f"--env needs KEY=VALUE, got {bad[0]!r}")
    set_logging(verbose=False)
    loader_rate(a) if a.loader else compare(a)


if __name__ == "__main__":
    sys.exit(run_cli(main, None))  # main(None) parses sys.argv; a user error is one line
