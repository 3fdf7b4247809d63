"""The training loop, shaped as its own table of contents::

    Trainer.train()
      before_train      run config -> data -> model -> optimizer -> loaders -> resume -> DDP -> loss
      train_in_epoch    for each epoch: before_epoch, train_in_iter (train_one_iter per batch), after_epoch
      after_train       strip optimizers, final validation, plots, summaries (engine/train/finish.py)

State that changes while training lives in :class:`LoopState`; everything else is set up once in before_train.
"""
from __future__ import annotations

import argparse
import math
import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import yaml
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from data.check_report import check_training_data
from data.config import DatasetError, check_dataset
from data.datasets import create_dataloader
from data.label_stats import labels_to_class_weights, labels_to_image_weights
from engine.autoanchor import check_anchors
from engine.checkpoint import attempt_load, model_record, save_checkpoint
from engine.cli import Interrupted
from engine.train import validation
from engine.train.finish import finish_training, join_background, plot_in_background
from engine.train.model_setup import (build_model, check_labels, log_label_diagnosis, restore_training_state,
                                      warn_without_names)
from engine.train.optim import NBS, EarlyStopping, build_optimizer, freeze_layers, lr_lambda, warmup
from engine.train.options import TrainError, load_hyp, precision_mode
from engine.train.stop import StopRequest
from utils.checks import check_img_size
from utils.distributed import LOCAL_RANK, RANK, WORLD_SIZE, broadcast_object, convert_sync_batchnorm
from utils.figures import try_plot
from utils.log import LOGGER, colorstr
from utils.loggers import Loggers
from utils.loss import CLS_ACTIVATION, ComputeLoss
from utils.metrics import fitness
from utils.plots import plot_images, plot_labels
from utils.precision import Precision, training_precision
from utils.torch_utils import ModelEMA, de_parallel, detect_head, init_seeds, torch_distributed_zero_first

Results = Tuple[float, ...]  # (P, R, mAP@0.5, mAP@0.5:0.95, val box, obj, cls)
EMA_ATTRS = ["yaml", "nc", "hyp", "gr", "names", "stride", "class_weights"]



def start_loader(loader: Any) -> None:
    if hasattr(loader, "start_workers"):
        loader.start_workers()


def fitness_value(results: Results) -> float:
    """0.1 * mAP@0.5 + 0.9 * mAP@0.5:0.95 of a (P, R, mAP@0.5, mAP@0.5:0.95, ...) row."""
    return float(np.asarray(fitness(np.array(results, dtype=float).reshape(1, -1))).reshape(-1)[0])


def memory_usage(device: torch.device) -> str:
    """Reserved CUDA memory, or the process's peak RSS on CPU, as e.g. '1.23G'."""
    if device.type == "cuda":
        return f"{torch.cuda.memory_reserved(device) / 1e9:.3g}G"
    try:
        import resource  # POSIX only
        return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.3g}G"  # KiB on Linux
    except (ImportError, AttributeError):
        return "0G"


def dataloader(path: Any, *args: Any, **kwargs: Any) -> Tuple[Any, Any]:
    """create_dataloader; a split without usable images is bad input (one line naming it), not a bug."""
    try:
        return create_dataloader(path, *args, **kwargs)
    except FileNotFoundError as e:
        raise TrainError(str(e)) from None


@dataclass
class LoopState:
    """What changes while the loop runs."""

    epochs: int
    accumulate: int
    start_epoch: int = 0
    epoch: int = 0
    last_opt_step: int = -1
    best_fitness: float = 0.0
    best_epoch: int = -1  # epoch of best.pt in this run (-1: none written yet)
    final_validated: bool = False  # the last validation was the final one (with plots)
    results: Results = (0.0,) * 7
    maps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    mloss: torch.Tensor = field(default_factory=lambda: torch.zeros(4))  # running mean box, obj, cls, total


class Trainer:
    """Trains per ``opt`` (the train.py options, after engine.train.options.prepare_options) on ``device``."""

    def __init__(self, hyp: Union[str, Dict[str, Any]], opt: argparse.Namespace, device: torch.device):
        self.opt, self.device, self.hyp_source = opt, device, hyp
        self.save_dir = Path(opt.save_dir)
        self.wdir = self.save_dir / "weights"
        self.last, self.best = self.wdir / "last.pt", self.wdir / "best.pt"
        self.main_rank, self.distributed = RANK in (-1, 0), RANK != -1
        self.plots = not opt.evolve and not opt.noplots
        self.batch_size = opt.total_batch_size
        self.stop_request = StopRequest()
        self.loggers: Optional[Loggers] = None
        self.ema: Optional[ModelEMA] = None
        self.ckpt: Optional[Dict[str, Any]] = None
        self.label_plot: Optional[Any] = None  # the process drawing labels.jpg
        self.started = False  # the first epoch began: a failure from then on keeps the run folder

    def train(self) -> Results:
        """Set up, run the epochs, finish; returns the final validation results."""
        try:
            with self.stop_request:
                try:
                    self.before_train()
                    self.train_in_epoch()
                except BaseException:
                    if not self.started:  # the run folder is about to be removed: labels.jpg must not come back
                        join_background(self.label_plot, timeout=0)
                    raise
            return self.after_train()
        finally:
            self.stop_workers()

    # ------------------------------------------------------------------------------------------ before_train
    def before_train(self) -> None:
        t = time.time()
        self.setup_run_config()
        self.setup_data()
        self.setup_model()
        self.setup_optimizer()
        self.setup_loaders()
        self.setup_resume()
        self.start_workers()  # they prepare the first batches while the rest is set up
        self.setup_ddp()
        self.setup_loss()
        self.write_run_files()
        self.check_data()
        self.log_start(time.time() - t)

    def setup_run_config(self) -> None:
        """Hyperparameters (``opt.hyp`` keeps them as given, before the gain scaling) and precision."""
        opt = self.opt
        self.hyp = load_hyp(self.hyp_source, opt)
        LOGGER.info(colorstr("hyperparameters: ") + ", ".join(f"{k}={v}" for k, v in self.hyp.items()))
        opt.hyp = self.hyp.copy()
        self.precision: Precision = training_precision(self.device, precision_mode(opt))

    def write_run_files(self) -> None:
        """The first writes into the run folder, once every input has been checked (a failed start leaves
        nothing behind): weights/, hyp.yaml, opt.yaml, the loggers, labels.jpg."""
        if not self.main_rank:
            return
        opt = self.opt
        self.wdir.mkdir(parents=True, exist_ok=True)
        with open(self.save_dir / "hyp.yaml", "w") as f:
            yaml.safe_dump(opt.hyp, f, sort_keys=False)
        with open(self.save_dir / "opt.yaml", "w") as f:
            yaml.safe_dump({k: v for k, v in vars(opt).items() if k != "hyp"} | {"hyp": opt.hyp}, f, sort_keys=False)
        self.loggers = Loggers(self.save_dir)
        self.loggers.truncate(self.state.start_epoch if opt.resume else 0)  # rows about to be (re)trained go
        if self.plots and not opt.resume:
            self.label_plot = plot_in_background("labels.jpg", plot_labels, np.concatenate(self.dataset.labels, 0),
                                                 self.names, self.save_dir)

    def setup_data(self) -> None:
        opt = self.opt
        with torch_distributed_zero_first(LOCAL_RANK):
            try:
                self.data = check_dataset(opt.data)
            except DatasetError:
                raise
            except ValueError as e:  # malformed dataset yaml (nc / names mismatch, missing keys, ...)
                raise TrainError(str(e)) from None  # the message names the yaml
        if self.main_rank:
            warn_without_names(self.data.get("yaml_file") or opt.data)
        self.nc = 1 if opt.single_cls else int(self.data["nc"])
        names = list(self.data["names"])
        self.names = ["item"] if opt.single_cls and len(names) != 1 else names
        if len(self.names) != self.nc:
            raise TrainError(f"{opt.data}: {len(self.names)} names found for nc={self.nc}")
        self.is_coco = str(opt.data).endswith("coco.yaml") and self.nc == 80
        if self.hyp["cls_loss"] == "grouped" and self.data.get("cls_groups") is None:  # before any loader is built
            raise TrainError(f"--cls-loss grouped: {opt.data} has no 'cls_groups' (the groups of exclusive classes)")

    def setup_model(self) -> None:
        opt = self.opt
        init_seeds(opt.seed + 1 + RANK, deterministic=True)
        model, self.ckpt = build_model(opt, self.hyp, self.nc, self.device)
        freeze_layers(model, opt.freeze)
        self.gs = max(int(model.stride.max()), 32)
        self.nl = detect_head(model, required=True).nl
        self.imgsz, self.imgsz_val = [check_img_size(x, self.gs) for x in opt.img_size]
        if self.precision.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model: nn.Module = model

    def setup_optimizer(self) -> None:
        """Accumulate to the nominal batch size NBS, weight decay scaled accordingly; LR schedule."""
        accumulate = max(round(NBS / self.batch_size), 1)
        self.state = LoopState(epochs=self.opt.epochs, accumulate=accumulate, maps=np.zeros(self.nc))
        hyp = self.hyp
        hyp["weight_decay"] *= self.batch_size * accumulate / NBS
        self.optimizer = build_optimizer(self.model, self.opt.optimizer, hyp["lr0"], hyp["momentum"],
                                         hyp["weight_decay"])
        self.lf = lr_lambda(hyp, self.opt.epochs, self.opt.linear_lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda=self.lf)

    def setup_loaders(self) -> None:
        """Training loader (every rank), validation loader, label plot and AutoAnchor (rank 0)."""
        opt, hyp = self.opt, self.hyp
        self.train_loader, self.dataset = dataloader(
            self.data["train"], self.imgsz, self.batch_size // WORLD_SIZE, self.gs, opt.single_cls, hyp=hyp,
            augment=True, cache=opt.cache, rect=opt.rect, rank=LOCAL_RANK, workers=opt.workers,
            image_weights=opt.image_weights, quad=opt.quad, prefix=colorstr("train: "), shuffle=True, seed=opt.seed)
        check_labels(self.dataset, self.nc, opt.data)
        self.nb = len(self.train_loader)
        self.val_loader = None
        if not self.main_rank:
            return
        self.val_loader = dataloader(
            self.data["val"], self.imgsz_val, self.batch_size // WORLD_SIZE * 2, self.gs, opt.single_cls, hyp=hyp,
            cache=None if opt.notest else opt.cache, rect=True, rank=-1, workers=opt.workers, pad=0.5,
            prefix=colorstr("val: "))[0]
        if not opt.resume:
            if not opt.noautoanchor:
                check_anchors(self.dataset, model=self.model, thr=hyp["anchor_t"], imgsz=self.imgsz)
            self.model.half().float()  # pre-reduce anchor precision

    def setup_resume(self) -> None:
        """EMA (rank 0), then the optimizer / EMA / epoch of a resumed or fine-tuned checkpoint."""
        s = self.state
        self.ema = ModelEMA(self.model) if self.main_rank else None
        if self.ckpt is not None:
            s.start_epoch, s.best_fitness, s.epochs = restore_training_state(self.ckpt, self.opt, self.optimizer,
                                                                             self.ema, s.epochs)
        self.ckpt = None
        self.scheduler.last_epoch = s.start_epoch - 1
        if s.start_epoch > 0:  # the LR an uninterrupted run has at this epoch (a stripped optimizer has lr0)
            for group in self.optimizer.param_groups:  # epoch e trains at lf(e - 1): v5.0's schedule, kept
                group["lr"] = group["initial_lr"] * self.lf(s.start_epoch - 1)

    def setup_ddp(self) -> None:
        """SyncBatchNorm and the DDP wrapper (the EMA keeps plain BatchNorm: it was copied before)."""
        if not self.distributed:
            return
        cuda = self.device.type == "cuda"
        if self.opt.sync_bn:
            self.model = convert_sync_batchnorm(self.model, self.device).to(self.device)
            LOGGER.info("Using SyncBatchNorm()")
        self.model = DDP(self.model, device_ids=[LOCAL_RANK] if cuda else None,
                         output_device=LOCAL_RANK if cuda else None)

    def setup_loss(self) -> None:
        """Loss gains scaled to the layers, classes and image size; the head's class activation, then the loss."""
        hyp, nc, nl = self.hyp, self.nc, self.nl
        hyp["box"] *= 3 / nl
        hyp["cls"] *= nc / 80 * 3 / nl
        hyp["obj"] *= (self.imgsz / 640) ** 2 * 3 / nl
        hyp["label_smoothing"] = self.opt.label_smoothing
        m = de_parallel(self.model)
        m.nc, m.hyp, m.gr, m.names = nc, hyp, 1.0, self.names
        m.class_weights = labels_to_class_weights(self.dataset.labels, nc).to(self.device) * nc
        activation = CLS_ACTIVATION[hyp["cls_loss"]]
        groups = self.data.get("cls_groups") if activation == "grouped" else None  # checked in setup_data
        m.set_class_activation(activation, groups)  # once, on the model and the EMA: the loss never changes it
        if self.ema is not None:
            self.ema.ema.set_class_activation(activation, groups)
        self.compute_loss = ComputeLoss(m)
        if self.main_rank:
            log_label_diagnosis(self.dataset, self.names, hyp["cls_loss"])
        self.nw = max(round(hyp.get("warmup_epochs", 3.0) * self.nb), 100)  # warmup iterations (v7.0 minimum 100)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision.scaler)
        self.stopper = EarlyStopping(patience=self.opt.patience)

    def check_data(self) -> None:
        """The dataset check of the loaded splits, printed in short; report.md / .json in save_dir/dataset_check."""
        if self.main_rank and not self.opt.evolve and not self.opt.resume:
            check_training_data({"train": self.dataset, "val": self.val_loader.dataset}, self.names, self.imgsz,
                                self.save_dir)

    def start_workers(self) -> None:
        """Fork the dataloader workers while this process is still small (see InfiniteDataLoader.start_workers).

        --image-weights draws the first epoch's images in before_epoch, so its training loader starts there.
        """
        if not self.opt.image_weights:
            sampler = getattr(self.train_loader, "sampler", None)
            if self.distributed and hasattr(sampler, "set_epoch"):
                sampler.set_epoch(self.state.start_epoch)
            start_loader(self.train_loader)
        start_loader(self.val_loader)

    def stop_workers(self) -> None:
        """End the dataloader workers with the training, also a failed one (the loaders may not exist yet)."""
        for loader in (getattr(self, "train_loader", None), getattr(self, "val_loader", None)):
            if hasattr(loader, "stop_workers"):
                loader.stop_workers()

    def log_start(self, setup_s: float) -> None:
        LOGGER.info(f"Image sizes {self.imgsz} train, {self.imgsz_val} val\n"
                    f"Precision: {self.precision.describe()}\n"
                    f"Using {self.train_loader.num_workers} dataloader workers, {torch.get_num_threads()} torch "
                    f"threads (set up in {setup_s:.1f}s)\n"
                    f"Logging results to {colorstr('bold', self.save_dir)}\n"
                    f"Starting training for {self.state.epochs} epochs...")

    # ------------------------------------------------------------------------------------------ train_in_epoch
    def train_in_epoch(self) -> None:
        s = self.state
        self.t0 = time.time()
        if self.stop_request.requested(self.distributed):
            raise Interrupted(self.stop_request.signum, "stopped before the first batch, nothing was trained")
        self.started = True
        for epoch in range(s.start_epoch, s.epochs):
            s.epoch = epoch
            self.before_epoch()
            self.train_in_iter()
            stop = self.after_epoch() or epoch + 1 == s.epochs
            if self.stop_request.requested(self.distributed) and not stop:  # a finished run just finishes
                self.interrupt(completed_epoch=epoch, where=f"after epoch {epoch}")
            if stop:
                break

    def before_epoch(self) -> None:
        self.model.train()
        if self.opt.image_weights:
            self.resample_images()
        sampler = getattr(self.train_loader, "sampler", None)
        if self.distributed and hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.state.epoch)
        self.state.mloss = torch.zeros(4, device=self.device)
        LOGGER.info(("\n" + "%10s" * 8) % ("Epoch", "mem", "box", "obj", "cls", "total", "labels", "img_size"))
        self.optimizer.zero_grad()

    def resample_images(self) -> None:
        """--image-weights: draw this epoch's images with weights from class weights and per-class mAP."""
        indices = None
        if self.main_rank:
            cw = de_parallel(self.model).class_weights.cpu().numpy() * (1 - self.state.maps) ** 2 / self.nc
            iw = labels_to_image_weights(self.dataset.labels, self.nc, cw)
            indices = random.choices(range(self.dataset.n), weights=iw, k=self.dataset.n)
        self.dataset.indices = broadcast_object(indices, 0) if self.distributed else indices

    def train_in_iter(self) -> None:
        """One pass over the training data; stops after the current batch when a stop signal arrived."""
        pbar = enumerate(self.train_loader)
        if self.main_rank:
            pbar = tqdm(pbar, total=self.nb, bar_format="{l_bar}{bar:10}{r_bar}")
        for i, (imgs, targets, paths, _) in pbar:
            ni = i + self.nb * self.state.epoch  # integrated batch count since the start of training
            imgs, items = self.train_one_iter(ni, imgs, targets)
            if self.main_rank:
                self.log_iter(pbar, i, ni, imgs, targets, paths, items)
            if self.stop_request.requested(self.distributed):
                self.interrupt(completed_epoch=self.state.epoch - 1,
                               where=f"in epoch {self.state.epoch} after batch {i + 1}/{self.nb}")

    def preprocess(self, imgs: torch.Tensor, ni: int) -> torch.Tensor:
        """uint8 batch -> float [0, 1] on the device (channels_last if the model is); --multi-scale resize."""
        imgs = imgs.to(self.device, non_blocking=True).float() / 255
        if self.opt.multi_scale:
            gs = self.gs
            sz = random.randrange(int(self.imgsz * 0.5), int(self.imgsz * 1.5) + gs) // gs * gs
            sf = sz / max(imgs.shape[2:])
            if sf != 1:
                ns = [math.ceil(x * sf / gs) * gs for x in imgs.shape[2:]]
                imgs = nn.functional.interpolate(imgs, size=ns, mode="bilinear", align_corners=False)
        if self.precision.channels_last:
            imgs = imgs.contiguous(memory_format=torch.channels_last)
        return imgs

    def train_one_iter(self, ni: int, imgs: torch.Tensor, targets: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Warmup, forward + loss under the precision's autocast, backward, (accumulated) optimizer step."""
        s = self.state
        if ni <= self.nw:
            s.accumulate = warmup(self.optimizer, self.hyp, ni, self.nw, self.lf(s.epoch), self.batch_size)
        imgs = self.preprocess(imgs, ni)
        with self.precision.autocast():
            pred = self.model(imgs)
            loss, items = self.compute_loss(pred, targets.to(self.device))
            if self.distributed:
                loss *= WORLD_SIZE  # DDP averages gradients over ranks
            if self.opt.quad:
                loss *= 4.0
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss {items.tolist()} at epoch {s.epoch} batch "
                                     f"{ni - self.nb * s.epoch}; lower lr0 (--hyp) or check the labels")
        self.scaler.scale(loss).backward()
        if ni - s.last_opt_step >= s.accumulate:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad()
            if self.ema is not None:
                self.ema.update(self.model)
            s.last_opt_step = ni
        return imgs, items

    def log_iter(self, pbar: Any, i: int, ni: int, imgs: torch.Tensor, targets: torch.Tensor, paths: List[str],
                 items: torch.Tensor) -> None:
        s = self.state
        items = items.detach().reshape(-1)[:4].to(self.device)
        if items.numel() == 3:  # v6-style loss items: append the total
            items = torch.cat([items, items.sum().reshape(1)])
        s.mloss = (s.mloss * i + items) / (i + 1)
        pbar.set_description(("%10s" * 2 + "%10.4g" * 6) % (
            f"{s.epoch}/{s.epochs - 1}", memory_usage(self.device), *s.mloss.tolist(), targets.shape[0],
            imgs.shape[-1]))
        if self.plots and ni < 3:
            f = self.save_dir / f"train_batch{ni}.jpg"
            try_plot(f.name, plot_images, imgs.float(), targets, paths, fname=f, names=self.names)

    # ------------------------------------------------------------------------------------------ after_epoch
    def after_epoch(self) -> bool:
        """Validate (each epoch, or only the final one with --noval), log, save; True = stop early.

        An epoch that was not validated (--noval) logs NaN metrics: results.csv says 'nan', not 0."""
        s, opt = self.state, self.opt
        lr = [x["lr"] for x in self.optimizer.param_groups]
        self.scheduler.step()
        stop = False
        if self.main_rank:
            self.ema.update_attr(de_parallel(self.model), include=EMA_ATTRS)
            final = s.epoch + 1 == s.epochs or self.stopper.possible_stop
            validated = not opt.notest or final
            if validated:
                s.results, s.maps = self.validate_epoch(final)
                self.loggers.log_calibration(self.save_dir, s.epoch)
            metrics = s.results if validated else (float("nan"),) * len(s.results)
            self.loggers.log_epoch(s.epoch, list(s.mloss.cpu().numpy()[:3]) + list(metrics) + lr)
            fi = fitness_value(s.results)
            best = self.is_best(fi)
            s.best_fitness = max(s.best_fitness, fi)
            stop = self.stopper(s.epoch, fi)
            if not opt.nosave or (final and not opt.evolve):
                self.save(epoch=s.epoch, best=best)
        if self.distributed:
            stop = broadcast_object(stop, 0)
        return stop

    def is_best(self, fi: float) -> bool:
        """Fitness ``fi`` makes this epoch best.pt: at least the best so far, or this run has written no best.pt
        yet (so a fitness that stays 0 still gets one; a resumed run keeps the best.pt it already has)."""
        has_best = self.state.best_epoch >= 0 or (bool(self.opt.resume) and self.best.exists())
        return fi >= self.state.best_fitness or not has_best

    def validate_epoch(self, final: bool) -> Tuple[Results, np.ndarray]:
        """The EMA on the validation set; the final validation draws the plots and prints per-class results."""
        self.state.final_validated = final
        results, maps, _ = validation.validate(
            self.data, batch_size=self.batch_size // WORLD_SIZE * 2, imgsz=self.imgsz_val, model=self.ema.ema,
            single_cls=self.opt.single_cls, dataloader=self.val_loader, save_dir=self.save_dir,
            plots=self.plots and final, compute_loss=self.compute_loss, half=self.device.type == "cuda",
            verbose=final, iou_thres=0.65 if self.is_coco and final else 0.6, save_json=self.is_coco and final)
        return tuple(results), maps

    def save(self, epoch: int, best: bool = False, periodic: bool = True) -> None:
        """last.pt (+ best.pt, + epoch{N}.pt every --save-period epochs), each written atomically."""
        ckpt = {"epoch": epoch, "best_fitness": float(self.state.best_fitness),
                "model": model_record(de_parallel(self.model)), "ema": model_record(self.ema.ema),
                "updates": self.ema.updates, "optimizer": self.optimizer.state_dict(),
                "opt": dict(vars(self.opt)), "date": datetime.now().isoformat()}
        paths = [self.last]
        if best:
            paths.append(self.best)
            self.state.best_epoch = self.state.epoch
        if periodic and self.opt.save_period > 0 and epoch >= 0 and epoch % self.opt.save_period == 0:
            paths.append(self.wdir / f"epoch{epoch}.pt")
        for path in paths:  # a full disk or a permission error: CheckpointSaveError, the previous file kept
            save_checkpoint(ckpt, path)

    def interrupt(self, completed_epoch: int, where: str) -> None:
        """Save last.pt at a safe point after a stop signal, say how to resume, raise :class:`Interrupted`."""
        signum = self.stop_request.signum
        if self.main_rank:
            self.save(epoch=completed_epoch, periodic=False)
            LOGGER.info(f"Stopped {where}; saved {self.last}\n"
                        f"Resume with: python train.py --resume {self.last}")
        if self.distributed:
            dist.barrier()  # the other ranks wait for rank 0's checkpoint before exiting
        raise Interrupted(signum, f"training stopped {where}; resume with --resume {self.last}")

    # ------------------------------------------------------------------------------------------ after_train
    def after_train(self) -> Results:
        s = self.state
        results = s.results
        join_background(self.label_plot)
        if self.main_rank:
            LOGGER.info(f"\n{s.epoch - s.start_epoch + 1} epochs completed in {(time.time() - self.t0) / 3600:.3f}"
                        f" hours.")
            revalidate = not self.opt.evolve and not (s.final_validated and s.best_epoch == s.epoch)
            results = finish_training(self.save_dir, self.plots, self.loggers, s.results,
                                      self.validate_best if revalidate else None, s.epoch)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return results

    def validate_best(self, best: Path) -> Tuple[Results, np.ndarray, tuple]:
        LOGGER.info(f"\nValidating {best}...")
        return validation.validate(
            self.data, batch_size=self.batch_size // WORLD_SIZE * 2, imgsz=self.imgsz_val,
            model=attempt_load(best, self.device), single_cls=self.opt.single_cls, dataloader=self.val_loader,
            save_dir=self.save_dir, plots=self.plots, compute_loss=self.compute_loss,
            half=self.device.type == "cuda", verbose=True, iou_thres=0.65 if self.is_coco else 0.60,
            save_json=self.is_coco)
