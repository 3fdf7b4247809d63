"""AutoShape: run a detection model on everyday inputs; Detections: the results with conversions and drawing.

``Model.autoshape()`` (or ``AutoShape(model)``) accepts a file path / URL, a PIL image, a numpy HWC RGB array
(CHW and grayscale tolerated), or a list of those; torch tensors are passed straight to the model. Images are
letterboxed together to one shape, the model runs under ``torch.inference_mode()``, NMS is applied and boxes
are scaled back to each original image. The class activation is whatever the model's head uses
(``model.cls_act``): AutoShape only reads the decoded head output.

The model is prepared like detect.py's (``utils.torch_utils.prepare_for_inference``: BatchNorm folded, eval,
channels_last on CPU; a model that still has BatchNorm layers is copied first, so the caller's stays intact) and runs in ``precision`` (default :func:`utils.precision.inference_precision` of its
device: bf16 autocast on CPUs with native bf16, fp32 elsewhere). Boxes are decoded and NMS'd in fp32.
"""
from __future__ import annotations

from copy import copy, deepcopy
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from data.augmentations import letterbox
from models.model import Model
from utils.boxes import scale_coords, xyxy2xywh
from utils.checks import make_divisible
from utils.files import increment_path
from utils.log import LOGGER, count_noun
from utils.nms import non_max_suppression
from utils.precision import Precision, inference_precision
from utils.torch_utils import Profile, is_fused, prepare_for_inference

ImageLike = Union[str, Path, np.ndarray, "PIL.Image.Image"]  # noqa: F821


def _read_image(im: Any, index: int):
    """(HWC uint8 RGB ndarray, file name) for one AutoShape input."""
    from PIL import Image, ImageOps

    name = f"image{index}"
    if isinstance(im, (str, Path)):
        src = str(im)
        if src.startswith(("http://", "https://")):
            import io
            import urllib.request
            with urllib.request.urlopen(src, timeout=30) as r:  # user-requested URL, as upstream
                im = Image.open(io.BytesIO(r.read()))
        else:
            if not Path(src).is_file():
                raise FileNotFoundError(f"AutoShape input image not found: '{src}'")
            im = Image.open(src)
        name = Path(src.split("?")[0]).name
    if isinstance(im, Image.Image):
        name = Path(getattr(im, "filename", "") or name).name
        im = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    if not isinstance(im, np.ndarray):
        raise TypeError(f"AutoShape input {index}: expected a path, URL, PIL image or numpy array, "
                        f"got {type(im).__name__}")
    if im.ndim == 3 and im.shape[0] < 5 and im.shape[2] >= 5:  # CHW -> HWC
        im = im.transpose((1, 2, 0))
    if im.ndim == 2:  # grayscale -> 3 channels
        im = np.repeat(im[..., None], 3, axis=2)
    elif im.ndim == 3:
        im = im[..., :3] if im.shape[2] >= 3 else np.repeat(im[..., :1], 3, axis=2)
    else:
        raise ValueError(f"AutoShape input {index}: image array must be HW, HWC or CHW, got shape {im.shape}")
    return np.ascontiguousarray(im), str(Path(name).with_suffix(".jpg"))


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


class AutoShape(nn.Module):
    """Input-robust wrapper around a detection model: preprocessing, inference, NMS, rescaling.

    ``precision`` (a :class:`utils.precision.Precision`, public attribute): how the model runs; by default
    :func:`utils.precision.inference_precision` of the model's device.
    """

    conf = 0.25  # NMS confidence threshold
    iou = 0.45  # NMS IoU threshold
    classes = None  # optional list of class indices to keep
    max_det = 1000  # maximum detections per image

    def __init__(self, model: nn.Module, precision: Optional[Precision] = None):
        super().__init__()
        device = _device_of(model)
        if not is_fused(model):  # fold BatchNorm into a copy: the caller's model keeps its layers (and can train)
            model = deepcopy(model)
        self.model = prepare_for_inference(model, device)
        self.names = getattr(model, "names", None)
        self.stride = getattr(model, "stride", torch.tensor([32.0]))
        self.precision = precision or inference_precision(device)
        LOGGER.info(f"AutoShape precision: {self.precision.describe()}")

    def autoshape(self) -> "AutoShape":
        LOGGER.info("AutoShape already enabled, skipping... ")
        return self

    @property
    def cls_act(self) -> str:
        return getattr(self.model, "cls_act", "sigmoid")

    def _precision_on(self, device: torch.device) -> Precision:
        """The precision for ``device``: the one given, re-derived when the model moved to another device type."""
        if self.precision.device_type != device.type:
            self.precision = inference_precision(device)
            LOGGER.info(f"AutoShape precision: {self.precision.describe()}")
        return self.precision

    def _infer(self, x: torch.Tensor, augment: bool, profile: bool, precision: Precision):
        if precision.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)  # the layout prepare_for_inference gave the model
        with precision.autocast():
            return self.model(x, augment, profile)

    def forward(self, imgs: Union[torch.Tensor, ImageLike, List[ImageLike]], size: int = 640,
                augment: bool = False, profile: bool = False):
        p = next(self.model.parameters())
        precision = self._precision_on(p.device)
        if isinstance(imgs, torch.Tensor):  # already a normalised (B, 3, H, W) batch
            with torch.inference_mode():
                return self._infer(imgs.to(p.device).type_as(p), augment, profile, precision)
        dt = [Profile(p.device) for _ in range(3)]  # pre-process, inference, NMS
        with dt[0]:
            images, files = zip(*(_read_image(im, i) for i, im in
                                  enumerate(imgs if isinstance(imgs, (list, tuple)) else [imgs])))
            x, shape = self._batch(images, size, p)
        with torch.inference_mode():
            with dt[1]:
                out = self._infer(x, augment, profile, precision)
            with dt[2]:
                out = (out[0] if isinstance(out, tuple) else out).float()  # fp16 weights (CUDA --half) give fp16
                y = non_max_suppression(out, self.conf, iou_thres=self.iou, classes=self.classes,
                                        max_det=self.max_det)
        y = [d.clone() for d in y]  # cloned outside inference mode -> normal tensors that can be edited in place
        for d, im in zip(y, images):
            d[:, :4] = scale_coords(shape, d[:, :4], im.shape[:2])
        times = np.cumsum([0.0] + [t.total for t in dt]).tolist()
        return Detections(list(images), y, list(files), times, self.names, tuple(x.shape))

    def _batch(self, images: Sequence[np.ndarray], size: int, like: torch.Tensor) -> Tuple[torch.Tensor, List[int]]:
        """One letterboxed (B, 3, H, W) batch: the largest image scaled to ``size``, H and W stride multiples."""
        gs = int(torch.as_tensor(self.stride).max())
        scaled = [[y * size / max(im.shape[:2]) for y in im.shape[:2]] for im in images]
        shape = [make_divisible(x, gs) for x in np.stack(scaled, 0).max(0)]
        x = np.stack([letterbox(im, new_shape=shape, auto=False)[0] for im in images], 0)
        x = np.ascontiguousarray(x.transpose((0, 3, 1, 2)))  # BHWC -> BCHW
        return torch.from_numpy(x).to(like.device).type_as(like) / 255.0, shape


class Detections:
    """Detections of one AutoShape call: per image an (n, 6) tensor ``[x1, y1, x2, y2, conf, cls]``.

    Attributes: ``imgs`` (RGB arrays), ``pred`` = ``xyxy`` (pixels), ``xywh``, ``xyxyn`` / ``xywhn`` (normalised
    by the image size), ``names``, ``files``, ``t`` (pre-process, inference, NMS ms per image), ``s`` (batch shape).
    """

    def __init__(self, imgs: List[np.ndarray], pred: List[torch.Tensor], files: List[str],
                 times: Optional[Sequence[float]] = None, names: Optional[Sequence[str]] = None,
                 shape: Optional[tuple] = None):
        self.imgs = imgs
        self.pred = pred
        self.names = list(names) if names is not None else [str(i) for i in range(1000)]
        self.files = files
        self.xyxy = pred
        self.xywh = [xyxy2xywh(x) for x in pred]
        gn = [torch.tensor([im.shape[1], im.shape[0], im.shape[1], im.shape[0], 1.0, 1.0], device=d.device)
              for im, d in zip(imgs, pred)]
        self.xyxyn = [x / g for x, g in zip(self.xyxy, gn)]
        self.xywhn = [x / g for x, g in zip(self.xywh, gn)]
        self.n = len(pred)
        self.t = (tuple((times[i + 1] - times[i]) * 1000 / self.n for i in range(3))
                  if times is not None and len(times) >= 4 else (0.0, 0.0, 0.0))
        self.s = shape

    def _summary(self, i: int) -> str:
        im, pred = self.imgs[i], self.pred[i]
        s = f"image {i + 1}/{self.n}: {im.shape[0]}x{im.shape[1]} "
        if len(pred):
            for c in pred[:, -1].unique():
                k = int((pred[:, -1] == c).sum())
                s += f"{count_noun(k, self.names[int(c)])}, "
        else:
            s += "(no detections)"
        return s.rstrip(", ")

    def _draw(self, i: int) -> np.ndarray:
        import cv2
        im = self.imgs[i].copy()  # never draw on the caller's array
        lw = max(round(sum(im.shape[:2]) / 2 * 0.003), 2)
        for *box, conf, cls in reversed(self.pred[i].tolist()):
            c = int(cls)
            color = _palette(c)
            p1, p2 = (int(box[0]), int(box[1])), (int(box[2]), int(box[3]))
            cv2.rectangle(im, p1, p2, color, lw, cv2.LINE_AA)
            label = f"{self.names[c]} {conf:.2f}"
            tf = max(lw - 1, 1)
            w, h = cv2.getTextSize(label, 0, fontScale=lw / 3, thickness=tf)[0]
            top = p1[1] - h - 3 >= 0
            p3 = (p1[0] + w, p1[1] - h - 3 if top else p1[1] + h + 3)
            cv2.rectangle(im, p1, p3, color, -1, cv2.LINE_AA)
            cv2.putText(im, label, (p1[0], p1[1] - 2 if top else p1[1] + h + 2), 0, lw / 3, (255, 255, 255),
                        thickness=tf, lineType=cv2.LINE_AA)
        self.imgs[i] = im
        return im

    def display(self, pprint: bool = False, show: bool = False, save: bool = False, render: bool = False,
                save_dir: Union[str, Path] = "") -> None:
        from PIL import Image
        for i in range(self.n):
            if pprint:
                LOGGER.info(self._summary(i))
            if show or save or render:
                im = self._draw(i)
                if show:
                    Image.fromarray(im).show(self.files[i])
                if save:
                    f = Path(save_dir) / self.files[i]
                    Image.fromarray(im).save(f)
                    if i == self.n - 1:
                        LOGGER.info(f"Saved {self.n} image{'s' * (self.n > 1)} to {save_dir}")

    def print(self) -> None:
        self.display(pprint=True)
        LOGGER.info(f"Speed: %.1fms pre-process, %.1fms inference, %.1fms NMS per image at shape {self.s}" % self.t)

    def show(self) -> None:
        self.display(show=True)

    def save(self, save_dir: Union[str, Path] = "runs/hub/exp") -> Path:
        save_dir = increment_path(save_dir, exist_ok=str(save_dir) != "runs/hub/exp", mkdir=True)
        self.display(save=True, save_dir=save_dir)
        return save_dir

    def render(self) -> List[np.ndarray]:
        """Draw the boxes into ``imgs`` (RGB) and return them."""
        self.display(render=True)
        return self.imgs

    def pandas(self) -> "Detections":
        """A copy whose xyxy / xyxyn / xywh / xywhn are pandas DataFrames (one per image)."""
        import pandas as pd
        new = copy(self)
        ca = ["xmin", "ymin", "xmax", "ymax", "confidence", "class", "name"]
        cb = ["xcenter", "ycenter", "width", "height", "confidence", "class", "name"]
        for k, cols in zip(("xyxy", "xyxyn", "xywh", "xywhn"), (ca, ca, cb, cb)):
            rows = [[r[:5] + [int(r[5]), self.names[int(r[5])]] for r in x.tolist()] for x in getattr(self, k)]
            setattr(new, k, [pd.DataFrame(r, columns=cols) for r in rows])
        return new

    def tolist(self) -> List["Detections"]:
        """One Detections object per image."""
        out = []
        for i in range(self.n):
            d = Detections([self.imgs[i]], [self.pred[i]], [self.files[i]], None, self.names, self.s)
            d.t = self.t
            out.append(d)
        return out

    def __len__(self) -> int:
        return self.n


def _palette(i: int) -> tuple:
    """A distinct, saturated RGB colour per class index (hues spread by the golden ratio)."""
    import colorsys
    r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


Model.autoshape_wrapper = AutoShape  # Model.autoshape() wraps with this (the network layer cannot import it)
