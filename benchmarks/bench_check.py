"""Time of ``python data/check.py`` on a generated 10,000-image dataset, with a cold and with a warm label cache.

    python benchmarks/bench_check.py                    # 10,000 images (8,000 train / 2,000 val), 3 runs each
    python benchmarks/bench_check.py --images 2000 --runs 1

The dataset is written to a temporary folder (removed afterwards): JPEGs of 160-640 px with a few filled
rectangles on a gradient (about 10-30 kB each, like small photos), 1-12 label rows each over 20 classes, a few
planted duplicates. "cold" deletes the ``*.cache`` files first (every image is opened and verified, every label
file parsed); "warm" reuses them. Cold and warm runs alternate; the medians of wall time and of the check's CPU
time (user + system of the child process) are printed. The image files stay in the OS page cache in both cases.
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
NC = 20


def make_image(rng: np.random.Generator) -> tuple:
    """A JPEG-encoded picture and its YOLO label text."""
    w, h = (int(v) for v in rng.integers(160, 641, 2))
    gx = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    gy = np.linspace(0, 255, h, dtype=np.float32)[:, None, None]
    im = (gx * rng.random(3) + gy * rng.random(3)).clip(0, 255).astype(np.uint8)
    im = np.array(np.broadcast_to(im, (h, w, 3)))  # writeable copy
    rows = []
    for _ in range(int(rng.integers(1, 13))):
        bw, bh = int(rng.integers(4, w // 2)), int(rng.integers(4, h // 2))
        x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        cv2.rectangle(im, (x0, y0), (x0 + bw, y0 + bh), tuple(int(c) for c in rng.integers(0, 256, 3)), -1)
        rows.append(f"{int(rng.integers(0, NC))} {(x0 + bw / 2) / w:.6f} {(y0 + bh / 2) / h:.6f} {bw / w:.6f} "
                    f"{bh / h:.6f}\n")
    im += rng.integers(0, 12, im.shape, dtype=np.uint8)  # a little texture, for realistic JPEG sizes
    ok, buf = cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return buf.tobytes(), "".join(rows)


def make_dataset(root: Path, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    n_val = n // 5
    previous = b""
    for i in range(n):
        split = "val" if i < n_val else "train"
        jpg, rows = make_image(rng)
        if i % 997 == 5:  # a few duplicates (and leaks), as real data has
            jpg = previous
        previous = jpg
        for sub, data in (("images", jpg), ("labels", rows.encode())):
            d = root / sub / split
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{i:06d}.{'jpg' if sub == 'images' else 'txt'}").write_bytes(data)
    yaml_file = root / "data.yaml"
    yaml_file.write_text(yaml.safe_dump({"path": str(root), "train": "images/train", "val": "images/val",
                                         "names": [f"class{k}" for k in range(NC)]}))
    return yaml_file


def run_check(yaml_file: Path, project: Path, cold: bool) -> tuple:
    """(wall s, CPU s of the child, the check's own wall s after its imports) of one ``data/check.py`` run."""
    if cold:
        for c in (yaml_file.parent / "labels").glob("*.cache"):
            c.unlink()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run([sys.executable, str(ROOT / "data" / "check.py"), "--data", str(yaml_file), "--project",
                        str(project), "--name", "exp"], capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode:
        raise SystemExit(r.stdout[-2000:] + r.stderr[-2000:])
    own = re.search(r"Checked in ([\d.]+)s", r.stdout + r.stderr)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), float(own.group(1))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench_check_"))
    try:
        t = time.perf_counter()
        yaml_file = make_dataset(tmp / "ds", a.images)
        size = sum(f.stat().st_size for f in (tmp / "ds" / "images").rglob("*.jpg")) / a.images / 1e3
        print(f"dataset: {a.images} images (mean {size:.1f} kB) written in {time.perf_counter() - t:.1f}s; "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
        times = {"cold": [], "warm": []}
        for k in range(a.runs):
            for mode in ("cold", "warm"):  # alternating, so both see the same machine load
                wall, cpu, own = run_check(yaml_file, tmp / "runs", cold=mode == "cold")
                times[mode].append((wall, cpu, own))
                print(f"run {k + 1} {mode}: {wall:.1f}s wall ({own:.1f}s after the imports), {cpu:.1f}s CPU",
                      flush=True)
        for mode, v in times.items():
            print(f"{mode}: median {statistics.median(t[0] for t in v):.1f}s wall "
                  f"({statistics.median(t[2] for t in v):.1f}s after the imports), "
                  f"{statistics.median(t[1] for t in v):.1f}s CPU ({len(v)} runs)")
        t = time.perf_counter()
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-c", "import torch, cv2, matplotlib.pyplot"], check=True)
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        print(f"for reference, importing torch, cv2 and matplotlib: {time.perf_counter() - t:.1f}s wall, "
              f"{cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime:.1f}s CPU")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
