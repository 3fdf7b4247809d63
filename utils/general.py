"""Upstream import path ``utils.general`` (v5.0 - v7.0): re-exports only; nothing in the project imports it.

Each name lives in the module of its job: logging in :mod:`utils.log`, paths in :mod:`utils.files`, size checks
in :mod:`utils.checks`, boxes in :mod:`utils.boxes`, NMS in :mod:`utils.nms`, datasets in :mod:`data.config`,
checkpoints in :mod:`engine.checkpoint`.
"""
from data.config import check_dataset  # noqa: F401
from data.label_stats import labels_to_class_weights, labels_to_image_weights  # noqa: F401
from engine.checkpoint import strip_optimizer  # noqa: F401
from utils.boxes import (clip_boxes, clip_coords, resample_segments, scale_boxes, scale_coords,  # noqa: F401
                         segment2box, segments2boxes, xyn2xy, xywh2xyxy, xywhn2xyxy, xyxy2xywh, xyxy2xywhn)
from utils.checks import check_img_size, make_divisible  # noqa: F401
from utils.files import ROOT, check_file, increment_path  # noqa: F401
from utils.log import LOGGER, colorstr, count_noun, set_logging  # noqa: F401
from utils.metrics import bbox_iou, box_iou, fitness  # noqa: F401
from utils.nms import non_max_suppression  # noqa: F401
from utils.torch_utils import init_seeds, one_cycle  # noqa: F401
