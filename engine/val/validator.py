"""Evaluate a detector on a dataset split: P, R, mAP@0.5, mAP@0.5:0.95 overall and per class, calibration, speed.

:func:`run` is the one entry point: val.py / test.py call it with weights (any format DetectMultiBackend runs),
train.py every epoch with its EMA model and validation loader. A run is a short sequence of steps on a
:class:`Validator`: load the model (or take the training one), build the loader, go through the batches
(pre-process, inference, NMS, per-image statistics, one ``Profile`` timer per stage), then compute, print and
write the results (plots, ``metrics.json``, optional txt labels and COCO json scored by pycocotools).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import torch
from tqdm import tqdm

from data.config import DatasetError, check_dataset
from data.datasets import create_dataloader
from engine import backends
from engine.cli import FlagError
from engine.val.coco import class_map_for, is_coco_dataset, score_predictions
from engine.val.report import HEADER, log_calibration, log_table, metrics_record, write_metrics
from engine.val.stats import DetectionStats
from engine.val.writers import PredictionWriter
from utils.boxes import scale_coords, xywh2xyxy
from utils.calibration import MIN_CONF
from utils.errors import MissingFileError, UserError
from utils.checks import check_img_size
from utils.figures import try_plot
from utils.files import ROOT, increment_path
from utils.log import LOGGER, colorstr
from utils.names import class_names
from utils.nms import non_max_suppression
from utils.plots import output_to_target, plot_images
from utils.precision import Precision, inference_precision
from utils.torch_utils import Profile, select_device

TASKS = ("train", "val", "test", "speed", "study")
BACKEND_NAMES = {"pt": "PyTorch", "jit": "TorchScript", "ptl": "TorchScript Lite", "onnx": "ONNX Runtime"}
Results = Tuple[tuple, Any, tuple]
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes of data-layer messages, kept out of one-line errors


@dataclass
class ValOptions:
    """The arguments of :func:`run` (its signature holds the defaults)."""

    data: Any
    weights: Any
    batch_size: int
    imgsz: int
    conf_thres: float
    iou_thres: float
    task: str
    device: Any
    workers: int
    single_cls: bool
    augment: bool
    verbose: bool
    save_txt: bool
    save_hybrid: bool
    save_conf: bool
    save_json: bool
    project: Any
    name: str
    exist_ok: bool
    half: bool
    model: Any
    dataloader: Any
    save_dir: Any
    plots: bool
    compute_loss: Any
    max_det: int
    dnn: bool
    is_coco: Optional[bool]
    plot_prefix: str
    fp32: bool
    calib_conf: float


@torch.no_grad()
def run(data, weights=None, batch_size: int = 32, imgsz: int = 640, conf_thres: float = 0.001,
        iou_thres: float = 0.6, task: str = "val", device: str = "", workers: int = 8, single_cls: bool = False,
        augment: bool = False, verbose: bool = False, save_txt: bool = False, save_hybrid: bool = False,
        save_conf: bool = False, save_json: bool = False, project=ROOT / "runs/val", name: str = "exp",
        exist_ok: bool = False, half: bool = False, model=None, dataloader=None, save_dir=Path(""),
        plots: bool = True, compute_loss=None, max_det: int = 300, dnn: bool = False, is_coco: Optional[bool] = None,
        plot_prefix: str = "val", fp32: bool = False, calib_conf: float = MIN_CONF) -> Results:
    """Evaluate ``weights`` (standalone) or the given ``model`` (during training) on ``data``.

    Returns ``((mp, mr, map50, map, box_loss, obj_loss, cls_loss), maps, times)``: class-mean precision and
    recall at the best mean-F1 confidence, mAP@0.5, mAP@0.5:0.95, validation losses (only with
    ``compute_loss``, averaged over batches), per-class mAP@0.5:0.95 ``maps`` (nc,) (classes without labels get
    the overall mAP) and per-image ``times`` in ms (pre-process, inference, NMS).

    ``half`` / ``fp32`` choose the precision of .pt models (utils.precision.inference_precision: fp16 on CUDA,
    bf16 autocast on CPU / exact fp32); ``calib_conf`` is the lowest confidence the calibration numbers count.
    ``metrics.json`` is written to the run folder (or to ``save_dir`` when training passes one).
    """
    return Validator(ValOptions(**locals())).run()


# ------------------------------------------------------------------------------------------------ checks
def check_task(task: str) -> None:
    if task not in TASKS:
        raise FlagError(f"--task '{task}' is invalid, use one of {', '.join(TASKS)}")


def load_data(data: Union[str, Path, dict]) -> dict:
    """check_dataset, with a plain message when --data names a directory instead of a yaml file."""
    if isinstance(data, (str, Path)) and Path(data).is_dir():
        raise DatasetError(f"--data '{data}' is a directory: pass the dataset yaml file (train/val/nc/names), "
                           f"e.g. data/coco128.yaml")
    return check_dataset(data)


def check_weights(weights: Union[str, Path, Sequence, None]) -> None:
    """Directories and unknown suffixes fail here, before the device and the model (missing files fail in the
    loader, which also knows the downloadable official names)."""
    paths = list(weights) if isinstance(weights, (list, tuple)) else [weights]
    if weights is None or not paths:
        raise FlagError("--weights: no weights given")
    for w in paths:
        if Path(str(w)).is_dir() and not str(w).rstrip("/\\").lower().endswith(backends.FOLDER_SUFFIXES):
            raise FlagError(f"--weights '{w}' is a directory: pass a weights file "
                            f"({', '.join(backends.SUPPORTED_SUFFIXES)})")
        backends.weights_kind(w)


def pick_device(device: Any, batch_size: Optional[int] = None) -> torch.device:
    try:
        return select_device(device, batch_size=batch_size)
    except (ValueError, RuntimeError) as e:  # a --device this machine does not have is bad input
        raise FlagError(str(e)) from None


def pick_precision(device: torch.device, half: bool, fp32: bool) -> Precision:
    if half and fp32:
        raise FlagError("--half and --fp32 contradict each other: pass one of them")
    return inference_precision(device, half=half, fp32=fp32)


def load_backend(weights, device: torch.device, dnn: bool, half: bool, precision: Precision):
    """DetectMultiBackend in eval mode. An exported file its runtime cannot read (truncated, not a model,
    another format under the suffix) is bad input: one error naming the file instead of the runtime's traceback."""
    try:
        return backends.DetectMultiBackend(weights, device=device, dnn=dnn, data=None, fp16=half,
                                           precision=precision).eval()
    except UserError:
        raise
    except Exception as e:
        first = next(iter(weights)) if isinstance(weights, (list, tuple)) else weights
        if backends.weights_kind(first) == "pt":
            raise  # checkpoints report their own problems (CheckpointError); anything else is a bug
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        raise backends.BackendError(f"--weights '{first}' could not be loaded: {type(e).__name__}: {reason}") \
            from None


def _model_nc(model) -> Optional[int]:
    for obj in (model, getattr(model, "model", None)):
        nc = getattr(obj, "nc", None)
        if isinstance(nc, int):
            return nc
    return None


# ------------------------------------------------------------------------------------------------ validator
class Validator:
    """One validation run; :meth:`run` lists its steps."""

    def __init__(self, o: ValOptions):
        self.o = o
        self.training = o.model is not None
        self.model, self.dataloader = o.model, o.dataloader
        self.save_dir = Path(o.save_dir)
        self.imgsz = o.imgsz
        self.backend = "PyTorch"

    def run(self) -> Results:
        if self.training:
            self.take_training_model()
        else:
            self.load_model()
        self.set_classes()
        if not self.training:
            self.dataloader = self.make_loader()
            self.make_run_dir()  # only now: every input was usable
        self.start_stats()
        self.evaluate()
        return self.finish()

    # -- setup ------------------------------------------------------------------------------------------------
    def take_training_model(self) -> None:
        """train.py's EMA model as is (no reload, no fusing), in the inference precision of its device."""
        o = self.o
        self.device = next(self.model.parameters()).device
        self.precision = pick_precision(self.device, o.half and self.device.type != "cpu", o.fp32)
        self.model.half() if self.precision.half else self.model.float()
        self.half_input = self.precision.half
        self.stride = int(max(self.model.stride)) if hasattr(self.model, "stride") else 32
        self.data = o.data if isinstance(o.data, dict) else load_data(o.data)
        self.model.eval()

    def load_model(self) -> None:
        """Validate the input (data, split, weights, flags), then load the weights; nothing is written yet."""
        o = self.o
        check_task(o.task)
        self.data = load_data(o.data)  # before the run dir is made: a bad --data leaves nothing behind
        self.split = "val" if o.task in ("speed", "study") else o.task
        if not self.data.get(self.split):
            raise DatasetError(f"--task {o.task}: the dataset yaml {o.data} has no '{self.split}' split")
        check_weights(o.weights)
        self.device = pick_device(o.device, o.batch_size)
        self.precision = pick_precision(self.device, o.half, o.fp32)
        self.model = load_backend(o.weights, self.device, o.dnn, o.half, self.precision)
        self.half_input, self.stride = bool(self.model.fp16), int(self.model.stride)
        kind = next((k for k in ("pt", "jit", "ptl", "onnx") if getattr(self.model, k, False)), "pt")
        self.backend = "OpenCV DNN" if getattr(self.model, "dnn", False) else BACKEND_NAMES[kind]
        self.imgsz = self.input_size()
        LOGGER.info(f"{colorstr('val: ')}{o.weights} ({self.backend}) on {self.device}, "
                    f"{self.precision_text(describe=True)}")
        if not self.model.pt or self.device.type != "cpu":
            self.model.warmup(imgsz=(self.model.batch_size or 1, 3, self.imgsz, self.imgsz))

    def input_size(self) -> int:
        """--imgsz rounded to the stride; a fixed-shape export imposes its own (square) size."""
        imgsz = check_img_size(self.o.imgsz, s=self.stride)
        fixed = self.model.fixed_shape
        if fixed is None:
            return imgsz
        if fixed[0] != fixed[1]:
            raise backends.BackendError(f"'{self.o.weights}' was exported for non-square {tuple(fixed)} inputs; "
                                        f"val needs a square or dynamic export")
        if tuple(fixed) != (imgsz, imgsz):
            LOGGER.info(f"Using the exported input size {tuple(fixed)} instead of --imgsz {imgsz}")
        return int(fixed[0])

    def precision_text(self, describe: bool = False) -> str:
        """Precision of the forward pass: the policy's for .pt / the training model, the file's for exports."""
        if self.training or getattr(self.model, "pt", True):
            return self.precision.describe() if describe else self.precision.name
        return "fp16" if self.half_input else "fp32"

    def set_classes(self) -> None:
        """nc, names, COCO ids; a model trained on other classes than --data is refused (unless --single-cls)."""
        o = self.o
        self.nc = 1 if o.single_cls else int(self.data["nc"])
        names = class_names(getattr(self.model, "names", None) or self.data.get("names"))
        if o.single_cls:
            names = [names[0]] if len(names) == 1 else ["item"]
        self.names = (names + [str(i) for i in range(len(names), self.nc)])[:self.nc]  # one name per class
        if not self.training and not o.single_cls:
            ncm = _model_nc(self.model)
            if ncm is not None and ncm != self.nc:
                raise DatasetError(f"{o.weights} ({ncm} classes) was trained on a different dataset than --data "
                                   f"{o.data} ({self.nc} classes); pass a --weights / --data pair trained together")
        self.is_coco = is_coco_dataset(self.data, o.data) if o.is_coco is None else o.is_coco
        self.class_map = class_map_for(self.is_coco, self.nc)

    def make_run_dir(self) -> None:
        self.save_dir = increment_path(Path(self.o.project) / self.o.name, exist_ok=self.o.exist_ok)
        self.save_dir.mkdir(parents=True, exist_ok=True)

    def make_loader(self):
        """Rectangular batches (pad 0.5) unless the export has a fixed shape; --task speed pads nothing."""
        o = self.o
        rect = self.model.pt or self.model.fixed_shape is None
        pad = 0.0 if o.task == "speed" or not rect else 0.5
        try:
            return create_dataloader(self.data[self.split], self.imgsz, o.batch_size, self.stride,
                                     single_cls=o.single_cls, pad=pad, rect=rect, workers=o.workers,
                                     prefix=colorstr(f"{self.split}: "))[0]
        except FileNotFoundError as e:  # no (usable) images in the split: bad input, not a bug
            raise MissingFileError(f"--data {o.data}: {ANSI.sub('', str(e))}") from None

    def start_stats(self) -> None:
        o = self.o
        self.iouv = torch.linspace(0.5, 0.95, 10, device=self.device)
        self.stats = DetectionStats(self.nc, self.iouv, o.calib_conf)
        dataset = getattr(self.dataloader, "dataset", None)
        self.writer = PredictionWriter(self.save_dir, o.save_txt or o.save_hybrid, o.save_conf, o.save_json,
                                       self.class_map, getattr(dataset, "img_files", None) or [])
        self.loss = torch.zeros(3, device=self.device)
        self.dt = (Profile(self.device), Profile(self.device), Profile(self.device))  # pre-process, inference, NMS

    # -- the batches ------------------------------------------------------------------------------------------
    def evaluate(self) -> None:
        pbar = tqdm(self.dataloader, desc=HEADER, bar_format="{l_bar}{bar:10}{r_bar}")
        for batch_i, (img, targets, paths, shapes) in enumerate(pbar):
            with self.dt[0]:
                img, targets = self.preprocess(img, targets)
            with self.dt[1]:
                out, train_out = self.infer(img)
            if self.o.compute_loss is not None and train_out is not None and len(train_out):
                self.loss += self.o.compute_loss([x.float() for x in train_out], targets)[1][:3]
            nb, _, height, width = img.shape
            targets[:, 2:] *= torch.tensor((width, height, width, height), device=self.device)  # to pixels
            with self.dt[2]:
                out = self.nms(out, targets, nb)
            for si, pred in enumerate(out):
                self.score_image(pred, targets[targets[:, 0] == si, 1:], img.shape[2:], paths[si], shapes[si])
            if self.o.plots and batch_i < 3:
                self.plot_batch(batch_i, img, targets, out, paths)

    def preprocess(self, img: torch.Tensor, targets: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        img = img.to(self.device, non_blocking=True)
        img = (img.half() if self.half_input else img.float()) / 255.0
        return img, targets.to(self.device)

    def infer(self, img: torch.Tensor):
        """-> (decoded predictions, raw head maps or None). DetectMultiBackend applies the precision itself."""
        if self.training:
            with self.precision.autocast():
                out = self.model(img, augment=self.o.augment)
        else:
            out = self.model(img, augment=self.o.augment)
        return (out[0], out[1]) if isinstance(out, (tuple, list)) else (out, None)

    def nms(self, out: torch.Tensor, targets: torch.Tensor, nb: int) -> List[torch.Tensor]:
        """val's NMS: multi-label; --save-hybrid adds the labels as detections of confidence 1."""
        lb = [targets[targets[:, 0] == i, 1:] for i in range(nb)] if self.o.save_hybrid else []
        return non_max_suppression(out, self.o.conf_thres, self.o.iou_thres, labels=lb, multi_label=True,
                                   agnostic=self.o.single_cls, max_det=self.o.max_det)

    def score_image(self, pred: torch.Tensor, labels: torch.Tensor, img_hw, path, shape_info) -> None:
        """Detections and labels to original-image pixels, then statistics and the txt / json writers."""
        shape, ratio_pad = shape_info
        if self.o.single_cls:
            pred[:, 5] = 0
        predn = pred.clone()
        scale_coords(img_hw, predn[:, :4], shape, ratio_pad)
        labelsn = torch.zeros((0, 5), device=self.device)
        if len(labels):
            tbox = xywh2xyxy(labels[:, 1:5])
            scale_coords(img_hw, tbox, shape, ratio_pad)
            labelsn = torch.cat((labels[:, 0:1], tbox), 1)
        self.stats.update(predn, labelsn)
        self.writer.add(predn, path, shape)

    def plot_batch(self, batch_i: int, img, targets, out, paths) -> None:
        prefix = self.save_dir / f"{self.o.plot_prefix}_batch{batch_i}"
        try_plot(f"{prefix.name}_labels.jpg", plot_images, img, targets, paths, f"{prefix}_labels.jpg", self.names)
        try_plot(f"{prefix.name}_pred.jpg", plot_images, img, output_to_target(out), paths, f"{prefix}_pred.jpg",
                 self.names)

    # -- results ----------------------------------------------------------------------------------------------
    def finish(self) -> Results:
        """Metrics, the printed table, plots, pycocotools, metrics.json; the return value of :func:`run`."""
        o, seen = self.o, self.stats.seen
        m = self.stats.compute(plot=o.plots, save_dir=self.save_dir, names=self.names)
        speed = tuple(p.ms(seen) for p in self.dt)
        show = not self.training or o.verbose
        log_table(m, seen, self.names, (o.verbose or (self.nc < 50 and not self.training)) and self.nc > 1, o.task)
        if show:
            log_calibration(self.stats, self.names)
            if not self.training:
                LOGGER.info("Speed: %.1fms pre-process, %.1fms inference, %.1fms NMS per image at shape "
                            f"{(o.batch_size, 3, self.imgsz, self.imgsz)}" % speed)
        if o.plots:
            try_plot("confusion_matrix.png", self.stats.confusion.plot, save_dir=self.save_dir, names=self.names)
            try_plot("calibration.png", self.stats.calibration.plot, self.save_dir)
        self.score_json(m)
        if not self.training or Path(o.save_dir) != Path(""):
            write_metrics(self.save_dir, metrics_record(
                m, self.stats, self.names, speed, weights=o.weights, data=self.data_name(), task=o.task,
                imgsz=self.imgsz, cls_act=str(getattr(self.model, "cls_act", "sigmoid")),
                precision=self.precision_text()))
        if self.training:
            self.model.float()  # training continues in FP32
        else:
            LOGGER.info(f"Results saved to {colorstr('bold', self.save_dir)}{self.writer.summary()}")
        losses = (self.loss.cpu() / max(len(self.dataloader), 1)).tolist()
        return (m.mp, m.mr, m.map50, m.map, *losses), m.maps(self.nc), speed

    def score_json(self, m) -> None:
        """--save-json: write the COCO results and let pycocotools' mAP replace ours (upstream behaviour)."""
        if not self.o.save_json:
            return
        if not self.writer.jdict:
            LOGGER.warning("WARNING: no detections, pycocotools evaluation skipped")
            return
        w = self.o.weights
        stem = Path(w[0] if isinstance(w, (list, tuple)) else w).stem if w is not None else ""
        scored = score_predictions(self.writer.jdict, self.writer.jdict_index,
                                   self.save_dir / f"{stem}_predictions.json", self.data,
                                   getattr(self.dataloader, "dataset", None), self.names, self.class_map, self.is_coco)
        if scored is not None:
            m.map, m.map50 = scored

    def data_name(self) -> Optional[str]:
        if isinstance(self.o.data, (str, Path)):
            return str(self.o.data)
        return self.data.get("yaml_file")
