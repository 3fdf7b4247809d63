"""Training speed on this machine: whole ``train.py`` commands against a baseline checkout (``--whole``), or the
throughput (images/s) of one training step per precision path of the trainer.

Whole-command mode: wall time, CPU time (user / system, the training process and its dataloader workers) and minor
page faults of ``train.py`` for ``--epochs 1`` of a dataset (coco128 by default) at ``--img 320 --batch 16`` with
``--cfg models/yolov5s.yaml --weights ''`` and otherwise default flags (final validation included), for this
checkout and a baseline checkout: by default a temporary ``git worktree`` of main's commit f5e98d3 (the code before
issue #21), or ``--baseline DIR``. The variants run interleaved (A B, B A, A B, ...), each in its own copy of the
dataset (absolute-path data yaml, own label cache) and with glibc's ``MALLOC_*`` variables removed from the
environment; medians of ``--runs`` runs and their ratios to the first variant are printed as a Markdown table.

    python benchmarks/bench_train.py --whole                                   # this checkout vs main f5e98d3
    python benchmarks/bench_train.py --whole --runs 5 --baseline ../main        # against another checkout
    python benchmarks/bench_train.py --whole --variants this-fp32 this this-malloc0 --runs 3   # what each part gives

Variants: ``main`` (the baseline), ``this`` (this checkout, default flags), ``this-fp32`` (``--fp32``),
``this-malloc0`` (``YOLOV5_MALLOC_TUNING=0``: glibc's default allocator settings). ``--data`` defaults to
coco128 beside the checkout (``../shared/datasets/coco128/data.yaml``, the path the project's data yaml names).

Step mode:

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
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

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
from engine.baseline import baseline_checkout  # noqa: E402
from engine.cli import run_cli  # noqa: E402
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


# ------------------------------------------------------------------------------------------------ whole command
BASELINE_COMMIT = "f5e98d3"  # main before issue #21 (bf16 training default, allocator settings, data pipeline)
COCO128 = Path("shared/datasets/coco128/data.yaml")  # beside the checkout (or beside a folder holding it)


def default_data() -> Path:
    """coco128's data yaml in ``shared/`` beside this checkout or beside one of its parent folders."""
    return next((d / COCO128 for d in ROOT.parents if (d / COCO128).is_file()), ROOT.parent / COCO128)
WHOLE_CFG = "models/yolov5s.yaml"


@dataclass(frozen=True)
class Variant:
    """One way of running ``train.py``: which checkout, extra flags, extra environment."""

    name: str
    checkout: Path
    flags: Tuple[str, ...] = ()
    env: Dict[str, str] = field(default_factory=dict)


@dataclass
class RunResult:
    wall: float
    user: float
    sys: float
    minflt: int


def make_variants(names: Sequence[str], baseline: Path) -> List[Variant]:
    known = {"main": Variant("main", baseline), "this": Variant("this", ROOT),
             "this-fp32": Variant("this-fp32", ROOT, ("--fp32",)),
             "this-malloc0": Variant("this-malloc0", ROOT, env={"YOLOV5_MALLOC_TUNING": "0"})}
    return [known[n] for n in names]


def dataset_root(data_yaml: Path) -> Tuple[Path, dict]:
    """The directory a data yaml's ``train`` entry is relative to, and the yaml as a dict."""
    d = yaml.safe_load(data_yaml.read_text())
    path = Path(str(d.get("path") or "."))
    candidates = [path] if path.is_absolute() else [data_yaml.parent, ROOT / path, Path.cwd() / path]
    for root in candidates:
        if (root / str(d["train"])).exists():
            return root.resolve(), d
    raise SystemExit(f"ERROR: --data {data_yaml}: its train entry {d['train']!r} is in none of "
                     f"{', '.join(map(str, candidates))}")


def copy_dataset(data_yaml: Path, dest: Path) -> Path:
    """A private copy of the dataset under ``dest`` (own label cache) and its data yaml with an absolute path."""
    root, d = dataset_root(data_yaml)
    shutil.copytree(root, dest / "dataset", ignore=shutil.ignore_patterns("*.cache", "*.yaml"))
    d["path"] = str(dest / "dataset")
    d.pop("download", None)
    out = dest / "data.yaml"
    out.write_text(yaml.safe_dump(d, sort_keys=False))
    return out


def child_env(extra: Dict[str, str]) -> Dict[str, str]:
    """This environment without glibc malloc variables (each variant sets its own allocator), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "YOLOV5_MALLOC_TUNING"}
    return env | extra


def run_train_command(v: Variant, data: Path, project: Path, name: str, opt) -> RunResult:
    """One whole ``train.py`` run; wall time, and CPU time / minor faults of it and its (reaped) children."""
    cmd = [sys.executable, "train.py", "--data", str(data), "--cfg", opt.cfg[0], "--weights", "",
           "--img", str(opt.imgsz), "--batch", str(opt.batch), "--epochs", str(opt.epochs),
           "--project", str(project), "--name", name, "--exist-ok", *v.flags, *opt.train_args.split()]
    log = project / f"{name}.log"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, cwd=v.checkout, env=child_env(v.env), stdout=f, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"ERROR: variant {v.name} failed (exit {rc}): {' '.join(cmd)}\n{tail}")
    return RunResult(wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime,
                     after.ru_minflt - before.ru_minflt)


def cpu_description() -> str:
    """lscpu's model name and whether the CPU has native bf16 instructions (flags and torch's own query)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("Model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    try:
        flags = set(next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines()
                         if ln.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        flags = set()
    have = ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in ("avx512_bf16", "amx_tile"))
    return f"{model} ({os.cpu_count()} logical CPUs; {have}; torch native bf16: {cpu_bf16_native()})"


def whole_table(variants: Sequence[Variant], results: Dict[str, List[RunResult]]) -> str:
    """Markdown table of medians and ratios to the first variant."""
    keys = ("wall", "user", "sys", "minflt")
    med = {v.name: {k: statistics.median(getattr(r, k) for r in results[v.name]) for k in keys} for v in variants}
    base = med[variants[0].name]
    rows = ["| variant | wall s | wall ratio | CPU user s | CPU sys s | CPU ratio | minor faults | walls of the runs |",
            "|---|---:|---:|---:|---:|---:|---:|---|"]
    for v in variants:
        m = med[v.name]
        cpu_ratio = (m["user"] + m["sys"]) / (base["user"] + base["sys"])
        walls = " ".join(f"{r.wall:.1f}" for r in results[v.name])
        rows.append(f"| {v.name} | {m['wall']:.1f} | {m['wall'] / base['wall']:.2f} | {m['user']:.1f} | "
                    f"{m['sys']:.1f} | {cpu_ratio:.2f} | {m['minflt'] / 1e6:.2f} M | {walls} |")
    return "\n".join(rows)


def whole(opt) -> Dict[str, List[RunResult]]:
    """Whole-command mode (see the module docstring)."""
    data = Path(opt.data) if opt.data else default_data()
    if not data.is_file():
        raise SystemExit(f"ERROR: --data {data}: no such data yaml")
    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
    try:
        needed = opt.baseline or "main" in opt.variants
        with baseline_checkout(opt.baseline, opt.baseline_commit) if needed else nullcontext() as baseline:
            return _whole_runs(opt, data, tmp, baseline)
    finally:
        if opt.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _whole_runs(opt, data: Path, tmp: Path, baseline: Optional[Path]) -> Dict[str, List[RunResult]]:
    """The interleaved runs of every variant, printed as they finish, then the table of medians."""
    variants = make_variants(opt.variants, baseline)
    checkouts = dict.fromkeys(v.checkout for v in variants)  # one dataset copy (and label cache) per checkout
    yamls = {c: copy_dataset(data, tmp / f"data{i}") for i, c in enumerate(checkouts)}
    project = tmp / "runs"
    project.mkdir()
    print(f"CPU: {cpu_description()}")
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"train.py --cfg {opt.cfg[0]} --img {opt.imgsz} --batch {opt.batch} --epochs {opt.epochs} "
          f"--weights '' {opt.train_args} on {data}; {opt.runs} interleaved runs of "
          + ", ".join(f"{v.name} ({v.checkout})" for v in variants), flush=True)
    results: Dict[str, List[RunResult]] = {v.name: [] for v in variants}
    for i in range(opt.runs):
        for v in variants if i % 2 == 0 else variants[::-1]:  # A B, B A, ...: drift hits both alike
            r = run_train_command(v, yamls[v.checkout], project, f"{v.name}-{i}", opt)
            results[v.name].append(r)
            print(f"  run {i + 1} {v.name}: wall {r.wall:.1f} s, CPU {r.user:.1f} + {r.sys:.1f} s, "
                  f"{r.minflt / 1e6:.2f} M minor faults", flush=True)
    print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(whole_table(variants, results))
    return results


# ------------------------------------------------------------------------------------------------ command line
def parse_opt(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--whole", action="store_true", help="time whole train.py commands against a baseline")
    p.add_argument("--cfg", nargs="+", default=None,
                   help=f"model yaml(s) (default: {', '.join(DEFAULT_CFGS)}; --whole: {WHOLE_CFG})")
    p.add_argument("--img", "--imgsz", "--img-size", dest="imgsz", type=int, default=320)
    p.add_argument("--batch", "--batch-size", dest="batch", type=int, default=16)
    p.add_argument("--iters", type=int, default=5, help="timed iterations per run")
    p.add_argument("--runs", type=int, default=3, help="runs; the median is reported")
    p.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    p.add_argument("--nc", type=int, default=80, help="number of classes of the built models")
    p.add_argument("--hyp", default=str(ROOT / "data/hyps/hyp.scratch.yaml"))
    p.add_argument("--data", default="", help="time real dataloader batches of this dataset yaml "
                                              f"(--whole: the dataset trained on, default ../{COCO128})")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS),
                   help="precision paths to time; ratios are to the first one")
    w = p.add_argument_group("whole-command mode (--whole)")
    w.add_argument("--variants", nargs="+", default=["main", "this"],
                   choices=["main", "this", "this-fp32", "this-malloc0"], help="ratios are to the first one")
    w.add_argument("--baseline", default="", help="checkout of the 'main' variant (default: a temporary git "
                                                  f"worktree of {BASELINE_COMMIT})")
    w.add_argument("--baseline-commit", default=BASELINE_COMMIT, help="commit of the temporary baseline worktree")
    w.add_argument("--epochs", type=int, default=1)
    w.add_argument("--train-args", default="", help="more train.py flags for every variant, e.g. '--workers 4'")
    w.add_argument("--keep", action="store_true", help="keep the temporary folder (run logs, runs)")
    opt = p.parse_args(argv)
    if opt.cfg is None:
        opt.cfg = [WHOLE_CFG] if opt.whole else list(DEFAULT_CFGS)
    elif opt.whole and len(opt.cfg) != 1:
        p.error("--whole times one model: give one --cfg")
    return opt


def main(opt):
    if opt.whole:
        return whole(opt)
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
    sys.exit(run_cli(main, parse_opt()))  # a user error (e.g. a failed baseline worktree) is one line
