"""What ``--save-txt`` and ``--save-json`` write: per-image label files and COCO result entries."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Union

import torch

from engine.val.coco import image_id
from utils.boxes import xyxy2xywh


def save_one_txt(predn: torch.Tensor, save_conf: bool, shape: Sequence[int], file: Path) -> None:
    """Append detections as ``cls x y w h [conf]`` lines, normalised by the original image (h, w) ``shape``."""
    gn = torch.tensor(shape, dtype=torch.float32)[[1, 0, 1, 0]]
    xywh = (xyxy2xywh(predn[:, :4].float().cpu()) / gn).tolist()
    with open(file, "a") as f:
        for (cls, conf), box in zip(predn[:, [5, 4]].float().tolist(), xywh):
            line = (cls, *box, conf) if save_conf else (cls, *box)
            f.write(("%g " * len(line)).rstrip() % line + "\n")


def save_one_json(predn: torch.Tensor, jdict: list, path: Union[str, Path], class_map: Sequence[int]) -> None:
    """Append COCO result dicts {image_id, category_id, bbox [x_topleft, y_topleft, w, h], score}."""
    box = xyxy2xywh(predn[:, :4].float().cpu())
    box[:, :2] -= box[:, 2:] / 2  # centre -> top-left corner
    iid = image_id(path)
    for p, b in zip(predn[:, 4:6].float().tolist(), box.tolist()):
        jdict.append({"image_id": iid, "category_id": class_map[int(p[1])],
                      "bbox": [round(x, 3) for x in b], "score": round(p[0], 5)})


class PredictionWriter:
    """The ``--save-txt`` label files and the ``--save-json`` result list of one run.

    ``jdict_index`` keeps the dataset index of every json entry: pycocotools needs numeric image ids, which
    non-COCO datasets only have as their position in the dataset.
    """

    def __init__(self, save_dir: Path, save_txt: bool, save_conf: bool, save_json: bool,
                 class_map: Sequence[int], img_files: Sequence[str] = ()):
        self.labels_dir = Path(save_dir) / "labels"
        self.save_txt, self.save_conf, self.save_json = save_txt, save_conf, save_json
        self.class_map = class_map
        self.jdict: List[dict] = []
        self.jdict_index: List[int] = []
        self._index_of: Dict[str, int] = {str(f): i for i, f in enumerate(img_files or [])}
        if save_txt:
            self.labels_dir.mkdir(parents=True, exist_ok=True)

    def add(self, predn: torch.Tensor, path: Union[str, Path], shape: Sequence[int]) -> None:
        """One image's detections in original-image pixels; ``shape`` is that image's (h, w)."""
        if not len(predn):
            return
        if self.save_txt:
            save_one_txt(predn, self.save_conf, shape, file=self.labels_dir / f"{Path(path).stem}.txt")
        if self.save_json:
            n0 = len(self.jdict)
            save_one_json(predn, self.jdict, path, self.class_map)
            self.jdict_index += [self._index_of.get(str(path), -1)] * (len(self.jdict) - n0)

    def summary(self) -> str:
        """'' or the line telling where the label files went."""
        if not self.save_txt:
            return ""
        return f"\n{len(list(self.labels_dir.glob('*.txt')))} labels saved to {self.labels_dir}"
