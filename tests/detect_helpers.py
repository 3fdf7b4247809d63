"""Checkpoints shared by the detect.py and export.py tests."""
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CFG = ROOT / "models" / "yolov5-shufflenetv2.yaml"
NAMES = ["circle", "square", "triangle"]


def make_checkpoint(path: Path, cls_act: str = "sigmoid", seed: int = 0, groups=None) -> Path:
    """Tiny ShuffleNetV2 detector (nc=3) in the project format, scaled so it produces a few dozen boxes per image
    (``groups``: the class groups spec of cls_act 'grouped')."""
    from models.model import Model
    from engine.checkpoint import save_checkpoint
    torch.manual_seed(seed)
    model = Model(str(CFG), nc=len(NAMES))
    model.names = list(NAMES)
    model.set_class_activation(cls_act, groups)
    head = model.model[-1]
    with torch.no_grad():  # random-init features barely vary: amplify them into logits with a realistic spread
        for conv in head.m:
            conv.bias.view(head.na, -1)[:, 4:] = -1.0
            conv.weight.view(head.na, head.no, -1)[:, 4:] *= 3000
    save_checkpoint({"epoch": -1, "best_fitness": 0.0, "model": model.eval(), "optimizer": None}, path)
    return path
