"""Checkpoints shared by the detect.py and export.py tests."""
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CFG = ROOT / "models" / "yolov5-shufflenetv2.yaml"
NAMES = ["circle", "square", "triangle"]


def make_checkpoint(path: Path, cls_act: str = "sigmoid", seed: int = 0, groups=None, cfg=CFG,
                    gain: float = 3000) -> Path:
    """Tiny ShuffleNetV2 detector (nc=3) in the project format, scaled so it produces a few dozen boxes per image
    (``groups``: the class groups spec of cls_act 'grouped'; ``cfg``: a yaml path or model dict; ``gain``: the
    head-weight factor giving its random features a realistic logit spread)."""
    from models.model import Model
    from engine.checkpoint import save_checkpoint
    torch.manual_seed(seed)
    model = Model(str(cfg) if isinstance(cfg, Path) else cfg, nc=len(NAMES))
    model.names = list(NAMES)
    model.set_class_activation(cls_act, groups)
    head = model.model[-1]
    with torch.no_grad():  # random-init features barely vary: amplify them into logits with a realistic spread
        for conv in head.m:
            conv.bias.view(head.na, -1)[:, 4:] = -1.0
            conv.weight.view(head.na, head.no, -1)[:, 4:] *= gain
    save_checkpoint({"epoch": -1, "best_fitness": 0.0, "model": model.eval(), "optimizer": None}, path)
    return path


# The export tests' model: as few layers as possible (converters' time grows with the graph: ExecuTorch lowering
# takes ~1 min for the full ShuffleNetV2 config on a loaded machine) with the op kinds the converters meet in the
# shipped configs: Focus (a strided slice ncnn cannot load: rewritten), ShuffleNetV2 channel shuffle, nearest
# upsampling, concat, Detect on strides 8 / 16 / 32.
EXPORT_CFG = {
    "nc": 3, "depth_multiple": 0.33, "width_multiple": 0.25,
    "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
    "backbone": [
        [-1, 1, "Focus", [32, 3]],  # 0 P1/2
        [-1, 1, "conv_bn_relu_maxpool", [64]],  # 1 P3/8
        [-1, 1, "ShuffleNetV2_InvertedResidual", [128, 2]],  # 2 P4/16
        [-1, 1, "ShuffleNetV2_InvertedResidual", [256, 2]],  # 3 P5/32
    ],
    "head": [
        [-1, 1, "Conv", [128, 1, 1]],  # 4 P5
        [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
        [[-1, 2], 1, "Concat", [1]],
        [-1, 1, "Conv", [64, 1, 1]],  # 7 P4
        [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
        [[-1, 1], 1, "Concat", [1]],
        [-1, 1, "Conv", [64, 3, 1]],  # 10 P3
        [[10, 7, 4], 1, "Detect", ["nc", "anchors"]],
    ],
}


def make_export_checkpoint(path: Path, cls_act: str = "sigmoid", groups=None) -> Path:
    """The export tests' checkpoint: :data:`EXPORT_CFG`, logits spread like a trained model's (std ~1-2 on P3)."""
    return make_checkpoint(path, cls_act, groups=groups, cfg=EXPORT_CFG, gain=300)
