"""COCO ids and pycocotools scoring: the official annotations for COCO, ground truth built from the labels
for any other dataset (so ``--save-json`` scores every dataset the same way)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from utils.files import ROOT
from utils.log import LOGGER

COCO_MISSING_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)  # ids 1..90 unused by the 80 COCO detection classes


def coco80_to_coco91_class() -> List[int]:
    """COCO category id (1..90, with gaps) of each of the 80 contiguous detection class indices."""
    return [i for i in range(1, 91) if i not in COCO_MISSING_IDS]


def class_map_for(is_coco: bool, nc: int) -> List[int]:
    """Category id written for each class index: COCO's 91-id map for the 80 COCO classes, else the index."""
    return coco80_to_coco91_class() if is_coco and nc == 80 else list(range(max(nc, 1000)))


def image_id(path: Union[str, Path]) -> Union[int, str]:
    """COCO-style image id: the file stem as an int when it is numeric, else the stem."""
    stem = Path(path).stem
    return int(stem) if stem.isnumeric() else stem


def is_coco_dataset(data: dict, data_arg) -> bool:
    """v5.0 rule (data yaml ends with coco.yaml) or v6 rule (val split is coco/val2017.txt)."""
    val = data.get("val")
    val = val[0] if isinstance(val, list) and val else val
    return (isinstance(data_arg, (str, Path)) and str(data_arg).endswith("coco.yaml")) or \
        str(val or "").replace("\\", "/").endswith("coco/val2017.txt")


def coco_annotations(data: dict) -> Path:
    """Where the official COCO val2017 annotations live: ``<path>/annotations`` (v6+), ``../coco`` (v5.0)."""
    root = Path(data.get("path") or ROOT.parent / "coco")
    return root / "annotations" / "instances_val2017.json"


def dataset_to_coco(dataset, names: Sequence[str], class_map: Sequence[int]) -> dict:
    """COCO ground-truth dict built from a dataset's labels, image ids = dataset indices (so any dataset can
    be scored by pycocotools). Boxes are in original-image pixels, like the predictions."""
    images, annotations = [], []
    for i, (labels, (w, h)) in enumerate(zip(dataset.labels, dataset.shapes)):
        images.append({"id": i, "file_name": Path(dataset.img_files[i]).name, "width": int(w), "height": int(h)})
        for cls, x, y, bw, bh in np.asarray(labels, dtype=np.float64).reshape(-1, 5)[:, :5]:
            box = [(x - bw / 2) * w, (y - bh / 2) * h, bw * w, bh * h]
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": class_map[int(cls)],
                                "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
    categories = [{"id": class_map[i], "name": str(n)} for i, n in enumerate(names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def coco_evaluate(gt: Union[dict, str, Path], predictions: List[dict], img_ids: Optional[Sequence] = None
                  ) -> Tuple[float, float]:
    """pycocotools bbox evaluation -> (mAP@0.5:0.95, mAP@0.5). ``gt`` is a COCO dict or an annotations json."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if isinstance(gt, dict):
        anno = COCO()
        anno.dataset = gt
        anno.createIndex()
    else:
        anno = COCO(str(gt))
    pred = anno.loadRes(predictions)
    ev = COCOeval(anno, pred, "bbox")
    if img_ids is not None:
        ev.params.imgIds = list(img_ids)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return float(ev.stats[0]), float(ev.stats[1])


def score_predictions(jdict: List[dict], jdict_index: List[int], pred_json: Path, data: dict, dataset,
                      names: Sequence[str], class_map: Sequence[int], is_coco: bool
                      ) -> Optional[Tuple[float, float]]:
    """Write ``pred_json`` and score it with pycocotools -> (mAP@0.5:0.95, mAP@0.5), or None (with a warning)
    when it cannot be scored: the optional COCO scoring must never lose the run's own results."""
    LOGGER.info(f"\nEvaluating pycocotools mAP... saving {pred_json}...")
    with open(pred_json, "w") as f:
        json.dump(jdict, f)
    try:
        anno_json = coco_annotations(data)
        if is_coco and anno_json.is_file():
            img_ids = [image_id(x) for x in dataset.img_files] if dataset is not None else None
            return coco_evaluate(anno_json, jdict, img_ids)
        if dataset is not None and hasattr(dataset, "labels") and -1 not in jdict_index:
            gt = dataset_to_coco(dataset, names, class_map)
            return coco_evaluate(gt, [dict(d, image_id=i) for d, i in zip(jdict, jdict_index)])
        raise ValueError("the dataloader's dataset has no labels / image list to build ground truth from")
    except Exception as e:  # pycocotools missing, malformed annotations, ...: a warning, not a failed run
        LOGGER.warning(f"pycocotools unable to run: {e}")
        return None
