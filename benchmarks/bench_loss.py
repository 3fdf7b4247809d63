"""Time ComputeLoss forward + backward with the BCE and the softmax-CE class loss on yolov5s-shaped outputs.

    python benchmarks/bench_loss.py                      # batch 16, 640 px, 200 targets, nc 80, CPU
    python benchmarks/bench_loss.py --runs 30 --device 0

The raw head outputs are random tensors of the shapes yolov5s produces (bs, 3, 640/s, 640/s, 85) for strides
8 / 16 / 32, with requires_grad, so only the loss is timed. BCE and CE runs are interleaved (so machine load
affects both alike); the medians are reported with the ratio CE / BCE, the median of the per-iteration ratios
(target: at most 1.1).
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

from models.model import Model  # noqa: E402
from utils.log import set_logging  # noqa: E402
from utils.loss import ComputeLoss  # noqa: E402
from utils.torch_utils import select_device  # noqa: E402

HYP = {"box": 0.05, "cls": 0.5, "cls_pw": 1.0, "obj": 1.0, "obj_pw": 1.0, "anchor_t": 4.0, "fl_gamma": 0.0,
       "label_smoothing": 0.0}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_inputs(model: Model, batch: int, img: int, n_targets: int, device: torch.device, seed: int = 0):
    """Random raw outputs of the model's head shape, and n_targets random targets spread over the batch."""
    g = torch.Generator().manual_seed(seed)
    det = model.model[-1]
    outputs = [torch.randn(batch, det.na, img // int(s), img // int(s), det.no, generator=g).to(device)
               for s in det.stride]
    img_idx = torch.randint(0, batch, (n_targets, 1), generator=g).float()
    cls = torch.randint(0, det.nc, (n_targets, 1), generator=g).float()
    xy = torch.rand(n_targets, 2, generator=g) * 0.9 + 0.05
    wh = torch.rand(n_targets, 2, generator=g) * 0.4 + 0.01
    return outputs, torch.cat((img_idx, cls, xy, wh), 1).to(device)


def time_step(compute_loss: ComputeLoss, outputs, targets, device: torch.device) -> float:
    """(wall seconds, process CPU seconds) of one forward + backward."""
    p = [o.detach().requires_grad_(True) for o in outputs]
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    loss, _ = compute_loss(p, targets)
    loss.backward()
    _sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", default=str(ROOT / "models" / "yolov5s.yaml"))
    parser.add_argument("--nc", type=int, default=80)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--img", type=int, default=640)
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    opt = parser.parse_args(argv)
    if opt.threads:
        torch.set_num_threads(opt.threads)

    set_logging(verbose=False)
    device = select_device(opt.device)
    model = Model(opt.cfg, nc=opt.nc).to(device)
    model.gr = 1.0
    outputs, targets = make_inputs(model, opt.batch, opt.img, opt.targets, device)
    losses = {}
    for mode in ("bce", "ce"):
        model.hyp = dict(HYP, cls_loss=mode)
        losses[mode] = ComputeLoss(model)
    times = {mode: [] for mode in losses}
    cpu = {mode: [] for mode in losses}
    for i in range(opt.warmup + opt.runs):
        for mode in (("bce", "ce") if i % 2 == 0 else ("ce", "bce")):  # alternate who goes first
            dt, dc = time_step(losses[mode], outputs, targets, device)
            if i >= opt.warmup:
                times[mode].append(dt)
                cpu[mode].append(dc)

    med = {mode: statistics.median(t) * 1000 for mode, t in times.items()}
    med_cpu = {mode: statistics.median(t) * 1000 for mode, t in cpu.items()}
    n_pos = sum(len(b) for b, *_ in losses["bce"].build_targets(outputs, targets)[2])
    # each iteration times both modes back to back: the median of those paired ratios resists machine load
    ratio = statistics.median(c / b for c, b in zip(times["ce"], times["bce"]))
    print(f"ComputeLoss forward+backward, batch {opt.batch}, {opt.img}px, nc {opt.nc}, {opt.targets} targets "
          f"({n_pos} positives), {device.type}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {opt.runs}:")
    for mode in ("bce", "ce"):
        print(f"  {mode:3s}: {med[mode]:8.2f} ms wall (min {min(times[mode]) * 1000:.2f} ms), "
              f"{med_cpu[mode]:8.2f} ms process CPU")
    print(f"  ratio ce/bce: {ratio:.3f} (median of paired wall-time ratios; ratio of medians "
          f"{med['ce'] / med['bce']:.3f} wall, {med_cpu['ce'] / med_cpu['bce']:.3f} CPU) -> "
          f"{'OK' if ratio <= 1.1 else 'ABOVE'} the 1.1 target")
    return ratio


if __name__ == "__main__":
    main()
