"""The metadata every exported file records, so it runs without the repository's model code: strides, class names
and activation (with the class groups of 'grouped' models), input size and batch, decoded or raw output, pixel
anchors (what a raw-head file is decoded with). Each format stores it its own way (engine/formats/*.py)."""
from __future__ import annotations

from typing import Any, Dict, Sequence

import torch.nn as nn

from utils.torch_utils import detect_head


def export_metadata(model: nn.Module, imgsz: Sequence[int], batch: int, raw: bool, dynamic: bool,
                    half: bool) -> Dict[str, Any]:
    """What a consumer needs to run the export: JSON-serialisable values only."""
    m = detect_head(model, required=True)
    strides = [float(s) for s in m.stride]
    anchors_px = (m.anchors.detach().float().cpu() * m.stride.float().cpu().view(-1, 1, 1)).view(m.nl, -1)
    names = [str(n) for n in getattr(model, "names", [str(i) for i in range(m.nc)])]
    return {
        "stride": int(max(strides)),
        "strides": strides,
        "names": names,
        "nc": int(m.nc),
        "cls_act": str(getattr(model, "cls_act", getattr(m, "cls_act", "sigmoid"))),
        "cls_groups": getattr(m, "cls_groups", None),
        "imgsz": [int(imgsz[0]), int(imgsz[1])],
        "batch": int(batch),
        "output": "raw" if raw else "decoded",
        "dynamic": bool(dynamic),
        "half": bool(half),
        "anchors": [[round(float(v), 4) for v in row] for row in anchors_px.tolist()],
    }


def metadata_differences(written: Dict[str, Any], stored: Dict[str, Any]) -> str:
    """'' when ``stored`` (read back from a file) equals ``written``, else the differing keys."""
    keys = sorted(set(written) | set(stored))
    diffs = [f"{k}: wrote {written.get(k)!r}, read {stored.get(k)!r}" for k in keys if written.get(k) != stored.get(k)]
    return "; ".join(diffs)
