"""Validation: :func:`run` (engine/val/validator.py) and the pieces it is made of.

    validator.py  run(), the Validator steps (load, loader, batches, results)
    stats.py      DetectionStats (TP flags, confusion matrix, calibration) and Metrics
    matching.py   process_batch: TP flags of one image at IoU 0.5:0.95
    coco.py       COCO ids, ground truth from labels, pycocotools scoring
    writers.py    --save-txt / --save-json writers
    report.py     the printed table and metrics.json
    tasks.py      the --task programs of val.py / test.py (val, speed, study) and their flag checks
"""
from engine.val.coco import coco80_to_coco91_class, coco_evaluate, dataset_to_coco, image_id  # noqa: F401
from engine.val.matching import process_batch  # noqa: F401
from engine.val.stats import DetectionStats, Metrics  # noqa: F401
from engine.val.validator import TASKS, run  # noqa: F401
from engine.val.writers import save_one_json, save_one_txt  # noqa: F401
