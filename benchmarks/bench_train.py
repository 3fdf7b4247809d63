"""Training throughput (images/s) of model configs on this machine: forward + loss + backward + optimizer step,
for each precision path of the trainer, as ratios to the plain fp32 path measured in the same run.

    python benchmarks/bench_train.py --img 320 --batch 16 --iters 5 --runs 3
    python benchmarks/bench_train.py --cfg models/yolov5s.yaml --img 320 --data data/shapes.yaml

Paths (``--paths``): ``fp32`` (contiguous tensors: the upstream-like baseline), ``fp32-cl`` (channels_last model
and batches), ``bf16`` / ``bf16-cl`` (bf16 autocast; emulated, i.e. slow, on a CPU without native bf16).
The paths are timed interleaved (run 1 of every path, then run 2, ...) so that load from other processes on a
shared machine hits them alike.

Without ``--data`` the batches are synthetic (random pixels, 4 random boxes per image), so the figure is the
model's training speed alone; with ``--data`` batches come from the real training dataloader (mosaic and
augmentation included). Each run times ``--iters`` iterations after ``--warmup`` untimed ones; the median of
``--runs`` runs is reported.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from models.model import Model  # noqa: E402
from utils.checks import check_img_size  # noqa: E402
from utils.loss import ComputeLoss  # noqa: E402
from data.config import check_dataset  # noqa: E402
from data.datasets import create_dataloader  # noqa: E402
from utils.precision import cpu_bf16_native  # noqa: E402

DEFAULT_CFGS = ("models/yolov5s.yaml", "models/yolov5-shufflenetv2.yaml")


def synthetic_batches(batch: int, imgsz: int, nc: int, seed: int = 0):
    """Endless (imgs uint8 (B, 3, S, S), targets (B*4, 6)) batches with random boxes."""
    g = torch.Generator().manual_seed(seed)
    while True:
        imgs = torch.randint(0, 256, (batch, 3, imgsz, imgsz), generator=g, dtype=torch.uint8)
        n = batch * 4
        wh = torch.rand(n, 2, generator=g) * 0.3 + 0.05
        xy = torch.rand(n, 2, generator=g) * (1 - wh) + wh / 2
        targets = torch.cat([torch.arange(batch).repeat_interleave(4)[:, None].float(),
                             torch.randint(0, nc, (n, 1), generator=g).float(), xy, wh], 1)
        yield imgs, targets


def loader_batches(data: str, imgsz: int, batch: int, stride: int, hyp: dict, workers: int):
    """Endless batches from the training dataloader of a dataset yaml."""
    d = check_dataset(data)
    loader, _ = create_dataloader(d["train"], imgsz, batch, stride, hyp=hyp, augment=True, workers=workers,
                                  shuffle=True)
    while True:
        for imgs, targets, _, _ in loader:
            yield imgs, targets


PATHS = {  # name -> (autocast dtype or None, channels_last)
    "fp32": (None, False), "fp32-cl": (None, True), "bf16": (torch.bfloat16, False), "bf16-cl": (torch.bfloat16, True),
}


def make_step(cfg: str, imgsz: int, nc: int, hyp: dict, path: str, batches):
    """A training-step closure of one precision path (same initial weights for every path)."""
    dtype, channels_last = PATHS[path]
    torch.manual_seed(0)
    model = Model(cfg, ch=3, nc=nc).train()
    nl = model.model[-1].nl
    h = dict(hyp)
    h.update(box=h["box"] * 3 / nl, cls=h["cls"] * nc / 80 * 3 / nl, obj=h["obj"] * (imgsz / 640) ** 2 * 3 / nl,
             label_smoothing=0.0)
    model.nc, model.hyp, model.gr = nc, h, 1.0
    compute_loss = ComputeLoss(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True)

    def step() -> int:
        imgs, targets = next(batches)
        x = imgs.float() / 255
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss, _ = compute_loss(model(x), targets)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return imgs.shape[0]
    return model, step


def bench(cfg: str, imgsz: int, batch: int, iters: int, runs: int, warmup: int, hyp: dict, nc: int,
          data: str = "", workers: int = 2, paths=("fp32",)) -> list:
    """One row per precision path: images/s (median of ``runs``) and the ratio to the first path."""
    stride = max(int(Model(cfg, ch=3, nc=nc).stride.max()), 32)
    imgsz = check_img_size(imgsz, stride)
    batches = loader_batches(data, imgsz, batch, stride, hyp, workers) if data else synthetic_batches(batch, imgsz, nc)
    steps = {}
    for p in paths:
        model, steps[p] = make_step(cfg, imgsz, nc, hyp, p, batches)
        for _ in range(warmup):
            steps[p]()
    speeds = {p: [] for p in paths}
    for _ in range(runs):
        for p in paths:
            t, n = time.perf_counter(), 0
            for _ in range(iters):
                n += steps[p]()
            speeds[p].append(n / (time.perf_counter() - t))
    params = sum(q.numel() for q in model.parameters())
    base = statistics.median(speeds[paths[0]])
    return [dict(cfg=cfg, path=p, params=params, img=imgsz, batch=batch, ips=statistics.median(speeds[p]),
                 ratio=statistics.median(speeds[p]) / base, runs=speeds[p]) for p in paths]


def parse_opt(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cfg", nargs="+", default=list(DEFAULT_CFGS), help="model yaml(s)")
    p.add_argument("--img", "--imgsz", "--img-size", dest="imgsz", type=int, default=320)
    p.add_argument("--batch", "--batch-size", dest="batch", type=int, default=16)
    p.add_argument("--iters", type=int, default=5, help="timed iterations per run")
    p.add_argument("--runs", type=int, default=3, help="runs; the median is reported")
    p.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    p.add_argument("--nc", type=int, default=80, help="number of classes of the built models")
    p.add_argument("--hyp", default=str(ROOT / "data/hyps/hyp.scratch.yaml"))
    p.add_argument("--data", default="", help="time real dataloader batches of this dataset yaml")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS),
                   help="precision paths to time; ratios are to the first one")
    return p.parse_args(argv)


def main(opt) -> list:
    if opt.threads:
        torch.set_num_threads(opt.threads)
    with open(opt.hyp) as f:
        hyp = yaml.safe_load(f)
    src = f"batches from {opt.data}" if opt.data else "synthetic batches"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; {src}; median of {opt.runs} runs "
          f"of {opt.iters} iterations")
    native = cpu_bf16_native()
    print(f"bf16: {'native' if native else 'EMULATED (this CPU has no AVX512-BF16 / AMX): expect it slower'}")
    print(f"{'model':32s} {'path':>8s} {'params':>10s} {'img':>5s} {'batch':>6s} {'images/s':>9s} {'ratio':>6s}")
    rows = []
    for cfg in opt.cfg:
        for r in bench(cfg, opt.imgsz, opt.batch, opt.iters, opt.runs, opt.warmup, hyp, opt.nc, opt.data,
                       opt.workers, tuple(opt.paths)):
            rows.append(r)
            print(f"{Path(cfg).stem:32s} {r['path']:>8s} {r['params']:>10,d} {r['img']:>5d} {r['batch']:>6d} "
                  f"{r['ips']:>9.2f} {r['ratio']:>6.2f}", flush=True)
    return rows


if __name__ == "__main__":
    main(parse_opt())
