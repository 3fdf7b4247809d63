"""Stand-in for val.py's ``metrics.json`` until the validator writes it (used by tests/test_compare.py).

Runs val.py's own ``run`` with the same command line and records, through val's module-level
``process_batch`` and ``ap_per_class``, the per-image matches (-> utils.calibration.CalibrationStats) and the
per-class AP; then writes ``<project>/<name>/metrics.json`` in the agreed schema. Difference from the real
thing: images without labels are not seen by ``process_batch``, so their detections are missing from the
calibration population.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import val  # noqa: E402
from utils.calibration import CalibrationStats  # noqa: E402
from utils.files import increment_path  # noqa: E402

captured = {"cal": CalibrationStats(), "ap": None}
_process_batch, _ap_per_class = val.process_batch, val.ap_per_class


def process_batch(detections, labels, iouv, *args, **kwargs):
    correct = _process_batch(detections, labels, iouv, *args, **kwargs)
    captured["cal"].update(detections.detach().cpu().numpy(), labels.detach().cpu().numpy(),
                           correct.cpu().numpy())
    return correct


def ap_per_class(tp, conf, pred_cls, target_cls, *args, **kwargs):
    out = _ap_per_class(tp, conf, pred_cls, target_cls, *args, **kwargs)
    captured["ap"] = (out, np.asarray(target_cls))
    return out


def per_class_rows(names) -> list:
    if captured["ap"] is None:
        return []
    (p, r, ap, _, ap_class), target_cls = captured["ap"][0][:5], captured["ap"][1]
    counts = np.bincount(target_cls.astype(int), minlength=len(names))
    return [{"class": int(c), "name": names[int(c)], "labels": int(counts[int(c)]), "P": float(p[i]),
             "R": float(r[i]), "AP50": float(ap[i, 0]), "AP": float(ap[i].mean())} for i, c in enumerate(ap_class)]


def main() -> None:
    opt = val.parse_opt()
    val.process_batch, val.ap_per_class = process_batch, ap_per_class
    kw = val._run_kwargs(opt)
    (mp, mr, map50, map_, *_), _, t = val.run(**kw)
    save_dir = increment_path(Path(opt.project) / opt.name, exist_ok=opt.exist_ok)
    data = val.check_dataset(opt.data)
    names = list(data["names"])
    doc = {"weights": str(kw["weights"]), "data": str(opt.data), "task": opt.task, "imgsz": opt.imgsz,
           "cls_act": None, "precision": "fp32", "seen": captured["cal"].images,
           "metrics": {"P": mp, "R": mr, "mAP50": map50, "mAP50-95": map_, "fitness": 0.1 * map50 + 0.9 * map_},
           "per_class": per_class_rows(names), "calibration": captured["cal"].summary(names),
           "speed_ms": dict(zip(("preprocess", "inference", "nms"), map(float, t[:3]))),
           "standin": "tests/compare_val_standin.py"}
    (save_dir / "metrics.json").write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
