"""Detection as a sequence of named steps: check the options, load the model, open the source, then for every
batch of frames pre-process, infer, NMS, scale the boxes back and hand them to the result sink; summarise.

:func:`run` is the entry point of ``detect.py`` (same signature and return value: the run directory).
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
import torch

from engine.backends import DetectMultiBackend, weights_kind
from engine.checkpoint import strip_optimizer
from engine.cli import FlagError, check_at_least, check_classes, check_fraction
from engine.predict.model import (FeatureDumper, feature_dumper, inference_size, load_model, pick_device,
                                  pick_precision, precision_line)
from engine.predict.sink import ResultSink, SinkOptions, class_counts
from engine.predict.sources import Batch, Source, resolve_source
from utils.boxes import scale_coords
from utils.errors import MissingFileError
from utils.files import increment_path
from utils.log import LOGGER
from utils.nms import non_max_suppression
from utils.torch_utils import Profile


@dataclass
class DetectOptions:
    """The arguments of :func:`run` (detect.py's flags, same names and defaults)."""

    weights: Union[str, Sequence[str]] = "yolov5s.pt"
    source: str = "data/images"
    data: Optional[str] = None
    imgsz: Union[int, Sequence[int]] = (640, 640)
    conf_thres: float = 0.25
    iou_thres: float = 0.45
    max_det: int = 1000
    device: str = ""
    view_img: bool = False
    save_txt: bool = False
    save_conf: bool = False
    save_crop: bool = False
    nosave: bool = False
    classes: Optional[Sequence[int]] = None
    agnostic_nms: bool = False
    augment: bool = False
    visualize: bool = False
    update: bool = False
    project: str = "runs/detect"
    name: str = "exp"
    exist_ok: bool = False
    line_thickness: int = 3
    hide_labels: bool = False
    hide_conf: bool = False
    half: bool = False
    dnn: bool = False
    vid_stride: int = 1
    fp32: bool = False
    weight_list: List[str] = field(init=False)

    def __post_init__(self) -> None:
        w = self.weights
        self.weight_list = [str(x) for x in (w if isinstance(w, (list, tuple)) else [w])]


def check_options(o: DetectOptions) -> None:
    """Every flag error that needs no model, before anything is loaded."""
    ns = argparse.Namespace(**asdict(o))
    check_fraction(ns, "conf_thres", "iou_thres")
    for name, low in (("max_det", 1), ("imgsz", 32), ("line_thickness", 1), ("vid_stride", 1)):
        check_at_least(ns, name, low)
    if isinstance(o.imgsz, (list, tuple)) and len(o.imgsz) not in (1, 2):
        raise FlagError(f"--imgsz {' '.join(map(str, o.imgsz))}: give one size (square) or two (h w)")
    if o.classes is not None and any(int(c) < 0 for c in o.classes):
        raise FlagError(f"--classes {' '.join(map(str, o.classes))}: class indices start at 0")
    if o.half and o.fp32:
        raise FlagError("--half and --fp32 contradict each other: pass one of them")
    for w in o.weight_list:
        weights_kind(w)  # unsupported suffix -> BackendError naming the file
    if o.data and not Path(o.data).is_file():
        raise MissingFileError(f"--data '{o.data}' not found")


class Predictor:
    """One detection run over ``opt`` (see :class:`DetectOptions`); :meth:`run` returns the run directory."""

    def __init__(self, opt: DetectOptions):
        self.opt = opt
        self.dt: List[Profile] = []  # pre-process, inference, NMS
        self.imgsz: List[int] = []
        self.seen = 0

    @torch.no_grad()
    def run(self) -> Path:
        o = self.opt
        check_options(o)
        source, stream = resolve_source(o.source)
        model = self.load_model()
        self.dt = [Profile(model.device) for _ in range(3)]
        self.imgsz, auto = inference_size(model, o.imgsz)
        size = self.imgsz[0] if self.imgsz[0] == self.imgsz[1] else tuple(self.imgsz)
        if stream and model.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # constant-size stream frames: let cuDNN pick kernels
        src = Source(source, stream, size, model.stride, auto, o.vid_stride)
        sink = self.make_sink(model, stream, source)
        model.warmup(imgsz=(src.bs, 3, *self.imgsz))
        dumper = feature_dumper(model, o.visualize)
        t0 = time.time()
        try:
            for batch in src.batches():
                self.process(model, batch, sink, dumper)
        finally:
            sink.close()
            if dumper is not None:
                dumper.remove()
        src.check_read(self.seen)
        self.summarise(src, sink, t0)
        return sink.save_dir

    # -- steps --------------------------------------------------------------------------------------------------
    def load_model(self) -> DetectMultiBackend:
        o = self.opt
        device = pick_device(o.device)
        model = load_model(o.weight_list, device, pick_precision(device, o.half, o.fp32), o.dnn, o.data)
        LOGGER.info(precision_line(model, o.half, o.fp32))
        check_classes(o.classes, model.nc, model.names)
        if o.augment and not model.pt:
            LOGGER.warning("WARNING: --augment (TTA) works with .pt weights only, ignored")
            o.augment = False
        return model

    def make_sink(self, model: DetectMultiBackend, stream: bool, source: str) -> ResultSink:
        o = self.opt
        view = o.view_img and display_available()
        if o.view_img and not view:
            LOGGER.warning("WARNING: --view-img needs a display (no DISPLAY set), results are not shown")
        save_img = not o.nosave and not (stream and source.lower().endswith(".txt"))  # lists of streams: no
        opts = SinkOptions(save_img=save_img, save_txt=o.save_txt, save_conf=o.save_conf, save_crop=o.save_crop,
                           view_img=view, line_thickness=o.line_thickness, hide_labels=o.hide_labels,
                           hide_conf=o.hide_conf)
        return ResultSink(increment_path(Path(o.project) / o.name, exist_ok=o.exist_ok), model.names, opts)

    def process(self, model: DetectMultiBackend, batch: Batch, sink: ResultSink,
                dumper: Optional[FeatureDumper]) -> None:
        """Pre-process, infer, NMS; then per image: boxes back to the original, the sink, the log line."""
        o = self.opt
        with self.dt[0]:
            x = torch.from_numpy(np.ascontiguousarray(batch.img)).to(model.device)
            x = (x.half() if model.fp16 else x.float()) / 255
        with self.dt[1]:
            if dumper is not None:
                sink.make_dir()
                dumper.arm(sink.save_dir / Path(batch.paths[0]).stem)
            pred = model(x, augment=o.augment)
            if dumper is not None:
                dumper.arm(None)
        with self.dt[2]:
            pred = non_max_suppression(pred, o.conf_thres, o.iou_thres, o.classes, o.agnostic_nms,
                                       max_det=o.max_det)
        took = self.dt[1].last + self.dt[2].last
        for i, det in enumerate(pred):
            self.seen += 1
            im0 = batch.im0s[i]
            s = batch.prefixes[i] + "%gx%g " % tuple(x.shape[2:])
            if len(det):
                det[:, :4] = scale_coords(x.shape[2:], det[:, :4], im0.shape).round()
                s += class_counts(det, sink.names)
            sink.write(det, batch.paths[i], im0, batch.mode, batch.frame, i, batch.vid_cap)
            LOGGER.info(f"{s}Done. ({took:.3f}s)")

    def summarise(self, src: Source, sink: ResultSink, t0: float) -> None:
        o = self.opt
        if self.seen:
            t = tuple(d.ms(self.seen) for d in self.dt)
            LOGGER.info(f"Speed: {t[0]:.1f}ms pre-process, {t[1]:.1f}ms inference, {t[2]:.1f}ms NMS per image at "
                        f"shape {(src.bs, 3, *self.imgsz)}")
        if src.skipped:
            LOGGER.warning(f"WARNING: {src.skipped.summary()}")
        saved = sink.summary()
        if saved:
            LOGGER.info(saved)
        if o.update:
            for w in o.weight_list:
                if weights_kind(w) == "pt":
                    strip_optimizer(w)  # re-save without optimizer state / in the current format
        LOGGER.info(f"Done. ({time.time() - t0:.3f}s)")


def display_available() -> bool:
    """cv2.imshow needs a window system: a DISPLAY / WAYLAND_DISPLAY on Linux; assumed present elsewhere."""
    if platform.system() == "Linux":
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def run(weights: Union[str, Sequence[str]] = "yolov5s.pt", source: str = "data/images",
        data: Optional[str] = None, imgsz: Union[int, Sequence[int]] = (640, 640), conf_thres: float = 0.25,
        iou_thres: float = 0.45, max_det: int = 1000, device: str = "", view_img: bool = False,
        save_txt: bool = False, save_conf: bool = False, save_crop: bool = False, nosave: bool = False,
        classes: Optional[Sequence[int]] = None, agnostic_nms: bool = False, augment: bool = False,
        visualize: bool = False, update: bool = False, project: str = "runs/detect", name: str = "exp",
        exist_ok: bool = False, line_thickness: int = 3, hide_labels: bool = False, hide_conf: bool = False,
        half: bool = False, dnn: bool = False, vid_stride: int = 1, fp32: bool = False) -> Path:
    """Detect on ``source`` and save the results; returns the run directory (see detect.py for the flags)."""
    return Predictor(DetectOptions(**locals())).run()
