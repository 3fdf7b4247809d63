"""YOLOv5 v5.0 name of the evaluation script: ``python test.py`` runs val.py's program with the v5.0 defaults
(``prog='test.py'``, results in ``runs/test/exp``, batch plots named ``test_batch*``).

Usage:
    python test.py --img 128 --batch 16 --weights runs/train/exp/weights/last.pt --device cpu
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

import torch  # noqa: E402

import val  # noqa: E402
from engine.cli import run_cli  # noqa: E402
from engine.val import coco80_to_coco91_class, process_batch, run, save_one_json, save_one_txt  # noqa: E402,F401

PROJECT = ROOT / "runs/test"
PLOT_PREFIX = "test"


def test(data, weights=None, batch_size=32, imgsz=640, conf_thres=0.001, iou_thres=0.6, save_json=False,
         single_cls=False, augment=False, verbose=False, model=None, dataloader=None, save_dir=Path(""),
         save_txt=False, save_hybrid=False, save_conf=False, plots=True, wandb_logger=None, compute_loss=None,
         half_precision=True, is_coco=False, opt=None, **kwargs):
    """v5.0 ``test.test`` signature, mapped onto :func:`engine.val.run` (``wandb_logger`` is accepted and unused).

    Returns ``((mp, mr, map50, map, box, obj, cls), maps, times)`` like :func:`engine.val.run`; its other keyword
    arguments (``task``, ``device``, ``max_det``, ...) are passed through. ``half_precision`` keeps its v5.0
    meaning, fp16 on CUDA only (val's ``half`` would also force bf16 on a CPU).
    """
    device = next(model.parameters()).device.type if model is not None else str(kwargs.get("device", "")).lower()
    half_precision = half_precision and torch.cuda.is_available() and device not in ("cpu", "mps")
    kwargs.setdefault("project", PROJECT)
    kwargs.setdefault("plot_prefix", PLOT_PREFIX)
    if opt is not None and "task" not in kwargs:
        kwargs["task"] = getattr(opt, "task", "val")
    return run(data, weights=weights, batch_size=batch_size, imgsz=imgsz, conf_thres=conf_thres,
               iou_thres=iou_thres, save_json=save_json, single_cls=single_cls, augment=augment, verbose=verbose,
               model=model, dataloader=dataloader, save_dir=save_dir, save_txt=save_txt, save_hybrid=save_hybrid,
               save_conf=save_conf, plots=plots, compute_loss=compute_loss, half=half_precision,
               is_coco=is_coco or None, **kwargs)


def parse_opt(argv: Optional[Sequence[str]] = None):
    return val.parse_opt(argv, prog="test.py", project=PROJECT)


def main(opt) -> None:
    val.main(opt, plot_prefix=PLOT_PREFIX)


if __name__ == "__main__":
    sys.exit(run_cli(main, parse_opt()))
