"""The hyperparameter keys training reads, and the warning for a key it does not know (a typo such as ``fl_gama``
would otherwise be accepted without a word while the real ``fl_gamma`` keeps its default)."""
from __future__ import annotations

import difflib
from typing import Iterable, List, Optional, Tuple

from utils.log import LOGGER

# Every key of the v5.0 - v7.0 hyp yamls plus this project's own (cls_loss, box_loss, label_smoothing).
HYP_KEYS = (
    "lr0", "lrf", "momentum", "weight_decay", "warmup_epochs", "warmup_momentum", "warmup_bias_lr",
    "box", "cls", "cls_pw", "obj", "obj_pw", "iou_t", "anchor_t", "anchors", "fl_gamma", "label_smoothing",
    "hsv_h", "hsv_s", "hsv_v", "degrees", "translate", "scale", "shear", "perspective", "flipud", "fliplr",
    "mosaic", "mixup", "copy_paste", "cls_loss", "box_loss",
)


def closest_key(key: str, known: Iterable[str] = HYP_KEYS) -> Optional[str]:
    """The known key nearest to ``key`` by spelling (difflib), None when nothing is close."""
    found = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_keys(keys: Iterable[str]) -> List[Tuple[str, Optional[str]]]:
    """(unknown key, closest known key or None) for every key training does not read."""
    return [(str(k), closest_key(k)) for k in keys if k not in HYP_KEYS]


def warn_unknown_keys(keys: Iterable[str], source: str) -> List[str]:
    """One warning line per unknown key, naming ``source`` (a file, or a flag) and the closest known key."""
    lines = []
    for key, near in unknown_keys(keys):
        hint = f"did you mean '{near}'?" if near else "no known key is similar; see data/hyps/hyp.scratch.yaml"
        lines.append(f"WARNING: {source}: unknown hyperparameter '{key}' is ignored ({hint})")
        LOGGER.warning(lines[-1])
    return lines
