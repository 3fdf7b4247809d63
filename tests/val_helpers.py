"""Shared by tests/test_val.py and tests/test_faults_val.py: a generated dataset whose objects a stand-in model
can read back exactly, stand-ins for DetectMultiBackend, a tiny real checkpoint."""
import importlib.util
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import yaml

ROOT = Path(__file__).resolve().parents[1]


def import_test_py():
    """The repo's test.py (imported by path: a plain ``import test`` could find the stdlib ``test`` package)."""
    spec = importlib.util.spec_from_file_location("yolov5_test_py", ROOT / "test.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


NAMES = ["square", "wide", "tall"]
BG = 0  # background grey level; letterbox padding is 114


def code(obj: int, cls: int) -> int:
    """Grey level that encodes (object index, class); never 0 or 114."""
    return 30 + 8 * obj + cls


def make_dataset(root: Path, n: int = 6) -> tuple:
    """64 px images (some 64x48) with up to 4 non-overlapping filled rectangles, each a unique grey level."""
    rng = np.random.default_rng(0)
    img_dir, lb_dir = root / "images" / "val", root / "labels" / "val"
    img_dir.mkdir(parents=True)
    lb_dir.mkdir(parents=True)
    gt = {}
    for i in range(n):
        h, w = (48, 64) if i % 3 == 2 else (64, 64)
        im = np.full((h, w, 3), BG, np.uint8)
        rows = []
        for q, (qx, qy) in enumerate(((0, 0), (32, 0), (0, h // 2), (32, h // 2))):
            if i < n - 1 and rng.random() < 0.25:
                continue  # keep some quadrants empty; the last image stays fully populated
            cls = int(rng.integers(0, 3))
            bw, bh = (int(v) for v in rng.integers(5, 20, 2))
            x1, y1 = qx + int(rng.integers(1, 31 - bw)), qy + int(rng.integers(1, h // 2 - 1 - bh))
            im[y1:y1 + bh, x1:x1 + bw] = code(q, cls)
            rows.append([cls, (x1 + bw / 2) / w, (y1 + bh / 2) / h, bw / w, bh / h])
        cv2.imwrite(str(img_dir / f"{1000 + i}.png"), im)  # PNG: exact grey levels
        (lb_dir / f"{1000 + i}.txt").write_text("".join("%d %.8f %.8f %.8f %.8f\n" % tuple(r) for r in rows))
        gt[f"{1000 + i}"] = np.array(rows).reshape(-1, 5)
    data = root / "data.yaml"
    data.write_text(yaml.safe_dump({"path": str(root), "train": "images/val", "val": "images/val", "nc": 3,
                                    "names": NAMES}))
    return data, gt


class LabelReader(nn.Module):
    """Stands in for a trained detector: decodes the grey-level code of every rectangle into a prediction row
    [x, y, w, h (input pixels), obj, class probabilities] and returns the eval-mode pair (decoded, raw)."""

    def __init__(self, nc: int = 3):
        super().__init__()
        self.nc, self.names = nc, list(NAMES)
        self.stride = torch.tensor([8.0, 16.0, 32.0])
        self.w = nn.Parameter(torch.zeros(1))  # gives the module a device and dtype
        self.calls = 0

    def forward(self, x, augment=False):
        self.calls += 1
        levels = (x[:, 0] * 255).round().long()
        out = torch.zeros((x.shape[0], 4, 5 + self.nc))
        for b in range(x.shape[0]):
            for q in range(4):
                for cls in range(len(NAMES)):  # the grey-level code only covers the dataset's 3 classes
                    ys, xs = torch.nonzero(levels[b] == code(q, cls), as_tuple=True)
                    if len(xs):
                        x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
                        out[b, q, :4] = torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]).float()
                        out[b, q, 4] = 0.9 - 0.1 * q  # varied confidences
                        out[b, q, 5 + cls] = 1.0
        return out, [torch.zeros(1)]


class FakeBackend(LabelReader):
    """What DetectMultiBackend gives val.run for .pt weights."""

    pt, fp16, fixed_shape, batch_size, nc = True, False, None, None, 3
    built = []  # (weights, precision) of every instance, to check what val asked for

    def __init__(self, weights, device=None, dnn=False, data=None, fp16=False, fuse=True, precision=None):
        super().__init__()
        self.stride = 32  # DetectMultiBackend exposes the max stride as an int
        self.precision = precision
        FakeBackend.built.append((weights, precision))

    def warmup(self, imgsz=(1, 3, 640, 640)):
        pass


TINY = {"nc": 3, "depth_multiple": 0.33, "width_multiple": 0.25,
        "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
        "backbone": [[-1, 1, "Conv", [32, 3, 2]], [-1, 1, "Conv", [64, 3, 2]], [-1, 1, "Conv", [64, 3, 2]],
                     [-1, 1, "Conv", [128, 3, 2]], [-1, 1, "Conv", [128, 3, 2]]],
        "head": [[[2, 3, 4], 1, "Detect", ["nc", "anchors"]]]}


def tiny_checkpoint(path: Path) -> Path:
    from engine.checkpoint import save_checkpoint
    from models.model import Model
    torch.manual_seed(1)
    model = Model(TINY)
    model.names = list(NAMES)
    with torch.no_grad():  # objectness ~0.5 everywhere: many boxes survive NMS
        for conv in model.model[-1].m:
            conv.bias.view(3, -1)[:, 4] = 0.0
    return save_checkpoint({"epoch": -1, "best_fitness": 0.0, "model": model, "ema": None, "updates": None,
                            "optimizer": None}, path)
