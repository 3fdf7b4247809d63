"""Tiny dataset / model fixtures shared by test_train.py and test_resume_ddp.py (64 px images, 3 classes)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
COLORS = [(40, 40, 220), (40, 200, 40), (220, 60, 40)]  # BGR colour of each class

# A ShuffleNetV2 detector small enough for a few seconds of CPU training (strides 8 / 16 / 32).
TINY_CFG = {
    "nc": 3, "depth_multiple": 0.33, "width_multiple": 0.25,
    "anchors": [[4, 5, 8, 10, 13, 16], [23, 29, 43, 55, 73, 105], [146, 217, 231, 300, 335, 433]],
    "backbone": [
        [-1, 1, "conv_bn_relu_maxpool", [32]],  # 0 P2/4
        [-1, 1, "ShuffleNetV2_InvertedResidual", [64, 2]],  # 1 P3/8
        [-1, 1, "ShuffleNetV2_InvertedResidual", [128, 2]],  # 2 P4/16
        [-1, 1, "ShuffleNetV2_InvertedResidual", [256, 2]],  # 3 P5/32
    ],
    "head": [
        [-1, 1, "Conv", [128, 1, 1]],  # 4
        [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
        [[-1, 2], 1, "Concat", [1]],
        [-1, 1, "C3", [128, False]],  # 7
        [-1, 1, "Conv", [64, 1, 1]],  # 8
        [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
        [[-1, 1], 1, "Concat", [1]],
        [-1, 1, "C3", [64, False]],  # 11 P3
        [-1, 1, "Conv", [64, 3, 2]],
        [[-1, 8], 1, "Concat", [1]],
        [-1, 1, "C3", [128, False]],  # 14 P4
        [-1, 1, "Conv", [128, 3, 2]],
        [[-1, 4], 1, "Concat", [1]],
        [-1, 1, "C3", [256, False]],  # 17 P5
        [[11, 14, 17], 1, "Detect", ["nc", "anchors"]],
    ],
}


def make_dataset(root: Path, n: int = 8, size: int = 64, seed: int = 0, nc: int = 3, names=None,
                 max_class: int = None) -> Path:
    """Coloured rectangles on grey, YOLO labels; train and val share the images. Returns the data yaml path."""
    rng = np.random.default_rng(seed)
    img_dir, lb_dir = root / "images" / "train", root / "labels" / "train"
    img_dir.mkdir(parents=True, exist_ok=True)
    lb_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        im = np.full((size, size, 3), 114, np.uint8)
        rows = []
        for _ in range(int(rng.integers(1, 3))):
            c = int(rng.integers(0, 3))
            w, h = (int(v) for v in rng.integers(size // 5, size // 2, 2))
            x0, y0 = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
            cv2.rectangle(im, (x0, y0), (x0 + w - 1, y0 + h - 1), COLORS[c], -1)
            rows.append(f"{c} {(x0 + w / 2) / size:.6f} {(y0 + h / 2) / size:.6f} {w / size:.6f} {h / size:.6f}")
        if max_class is not None and i == n - 1:
            rows.append(f"{max_class} 0.5 0.5 0.2 0.2")
        cv2.imwrite(str(img_dir / f"im{i}.jpg"), im)
        (lb_dir / f"im{i}.txt").write_text("\n".join(rows) + "\n")
    data = {"train": str(img_dir), "val": str(img_dir), "nc": nc,
            "names": list(names) if names is not None else ["red", "green", "blue"][:nc]}
    f = root / "data.yaml"
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    return f


def write_cfg(path: Path) -> Path:
    path.write_text(yaml.safe_dump(TINY_CFG, sort_keys=False))
    return path


def write_hyp(path: Path, **overrides) -> Path:
    """The default hyps, with a short warmup so one tiny epoch moves the weights."""
    hyp = yaml.safe_load(default_hyp_file().read_text())
    hyp.update(warmup_epochs=0.0, **overrides)
    path.write_text(yaml.safe_dump(hyp, sort_keys=False))
    return path


def default_hyp_file() -> Path:
    for name in ("data/hyps/hyp.scratch.yaml", "data/hyp.scratch.yaml", "data/hyps/hyp.scratch-low.yaml"):
        if (ROOT / name).is_file():
            return ROOT / name
    raise FileNotFoundError("no default hyp yaml in data/hyps")


def train_args(data: Path, cfg: Path, hyp: Path, project: Path, *extra: str, epochs: int = 1, batch: int = 4,
               name: str = "exp") -> list:
    return ["--data", str(data), "--cfg", str(cfg), "--hyp", str(hyp), "--weights", "", "--img", "64",
            "--batch", str(batch), "--epochs", str(epochs), "--workers", "0", "--device", "cpu",
            "--project", str(project), "--name", name, "--noautoanchor", *extra]


def env() -> dict:
    e = dict(os.environ)
    e.update(OMP_NUM_THREADS="1", PYTHONHASHSEED="0", PYTHONPATH=str(ROOT))
    return e


def run_train(args: list, cwd: Path, timeout: int = 240, launcher=None) -> subprocess.CompletedProcess:
    cmd = (launcher or [sys.executable]) + [str(ROOT / "train.py"), *args]
    return subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)


def train_cli(args: list) -> int:
    """train.py's command line in this process (exit status); resets torch's determinism switch afterwards."""
    import torch

    import train
    try:
        return train.cli([str(a) for a in args])
    finally:
        torch.use_deterministic_algorithms(False)


def epochs_in(csv: Path) -> list:
    """Epoch numbers of the rows of a results.csv."""
    return [int(float(ln.split(",")[0])) for ln in Path(csv).read_text().splitlines()[1:] if ln.strip()]


def stop_after_epoch(monkeypatch, epoch: int, signum: int) -> None:
    """Send this process ``signum`` at the end of ``epoch`` (a real signal, at a reproducible moment)."""
    from engine.train import trainer
    original = trainer.Trainer.after_epoch

    def after_epoch(self):
        stop = original(self)
        if self.state.epoch == epoch:
            os.kill(os.getpid(), signum)
        return stop
    monkeypatch.setattr(trainer.Trainer, "after_epoch", after_epoch)


def stop_worker(rank: int, port: int, q) -> None:
    """DDP rank for test_faults_train: only rank 1 is signalled; both must see the stop request."""
    import signal

    import torch.distributed as dist

    from engine.train.stop import StopRequest
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    stop = StopRequest()
    before = stop.requested(distributed=True)
    if rank == 1:
        stop.signum = signal.SIGTERM
    q.put((rank, before, stop.requested(distributed=True)))
    dist.destroy_process_group()
