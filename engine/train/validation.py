"""The one place the trainer reaches the validator (per-epoch and final validation).

The call keeps the signature of v5.0 ``val.run`` for the arguments training passes; the evaluation itself lives in
``engine.val.validator.run`` (imported here by module, so tests can count the calls by patching :func:`validate`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

import numpy as np
import torch.nn as nn

from engine.val import validator

Results = Tuple[float, ...]  # (P, R, mAP@0.5, mAP@0.5:0.95, val box, obj, cls)


def validate(data: Union[Dict[str, Any], str], batch_size: int, imgsz: int, model: nn.Module, single_cls: bool,
             dataloader: Any, save_dir: Path, plots: bool, compute_loss: Optional[Callable], half: bool,
             verbose: bool, iou_thres: float = 0.6, save_json: bool = False) -> Tuple[Results, np.ndarray, tuple]:
    """Evaluate ``model`` on ``dataloader``: (results, per-class mAP@0.5:0.95, per-image times in ms)."""
    return validator.run(data, batch_size=batch_size, imgsz=imgsz, model=model, single_cls=single_cls,
                         dataloader=dataloader, save_dir=save_dir, plots=plots, compute_loss=compute_loss, half=half,
                         verbose=verbose, iou_thres=iou_thres, save_json=save_json)
