"""What a validation run prints and the machine-readable ``metrics.json`` it leaves in its run folder."""
from __future__ import annotations

import json
from pathlib import Path
import math
from typing import Any, Dict, Optional, Sequence

from engine.val.stats import DetectionStats, Metrics
from utils.log import LOGGER

METRICS_FILE = "metrics.json"
HEADER = ("%20s" + "%12s" * 6) % ("Class", "Images", "Labels", "P", "R", "mAP@.5", "mAP@.5:.95")
ROW = "%20s" + "%12i" * 2 + "%12.3g" * 4


def log_table(m: Metrics, seen: int, names: Sequence[str], per_class: bool, task: str) -> None:
    """The 'all' row, then one row per class with labels when ``per_class``."""
    LOGGER.info(ROW % ("all", seen, m.nt.sum(), m.mp, m.mr, m.map50, m.map))
    if m.nt.sum() == 0:
        LOGGER.warning(f"WARNING: no labels found in the {task} set, can not compute metrics without labels")
    if per_class:
        for i, c in enumerate(m.ap_class):
            name = names[c] if c < len(names) else str(c)
            LOGGER.info(ROW % (name, seen, m.nt[c], m.p[i], m.r[i], m.ap50[i], m.ap[i]))


def log_calibration(stats: DetectionStats, names: Sequence[str]) -> None:
    """Calibration (ECE, MCE) and the wrong-class rate, printed after the per-class table."""
    for line in stats.calibration.format_lines(list(names)):
        LOGGER.info(line)


def metrics_record(m: Metrics, stats: DetectionStats, names: Sequence[str], speed_ms: Sequence[float],
                   **run_info: Any) -> Dict[str, Any]:
    """The ``metrics.json`` dict. ``run_info``: weights, data, task, imgsz, cls_act, precision (in this order).

    Other tools (the comparison command) read exactly these keys: add keys, never rename them.
    """
    keys = ("weights", "data", "task", "imgsz", "cls_act", "precision")
    record: Dict[str, Any] = {k: run_info.get(k) for k in keys}
    record["seen"] = int(stats.seen)
    record["metrics"] = {k: _number(v) for k, v in
                         (("P", m.mp), ("R", m.mr), ("mAP50", m.map50), ("mAP50-95", m.map), ("fitness", m.fitness))}
    record["per_class"] = m.per_class(list(names))
    record["calibration"] = stats.calibration.summary(list(names))
    record["speed_ms"] = dict(zip(("preprocess", "inference", "nms"), (_number(t) for t in speed_ms)))
    return record


def _number(x: Any) -> Optional[float]:
    """A float for JSON; NaN (no labels, nothing to measure) becomes null like in the calibration summary."""
    x = float(x)
    return None if math.isnan(x) else x


def write_metrics(save_dir: Path, record: Dict[str, Any]) -> Optional[Path]:
    """Write ``save_dir/metrics.json`` (strict JSON: NaN is already None in the record)."""
    path = Path(save_dir) / METRICS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
    return path
