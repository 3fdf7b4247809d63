"""The training workflow behind train.py: options -> device / DDP -> run folder claim -> Trainer (or --evolve)."""
from __future__ import annotations

import argparse
import contextlib
from typing import Any, Callable, Dict, Iterator, Sequence, Union

import torch
import torch.distributed as dist

from engine.train.evolve import evolve
from engine.train.options import TrainError, prepare_options
from engine.train.run_lock import RunFolderBusy, RunLock
from engine.train.trainer import Trainer
from utils.distributed import LOCAL_RANK, RANK, WORLD_SIZE, broadcast_object, init_distributed
from utils.files import NewFiles
from utils.log import LOGGER, set_logging
from utils.torch_utils import select_device


@contextlib.contextmanager
def claim_run_folder(save_dir: str, started: Callable[[], bool] = lambda: True) -> Iterator[None]:
    """Hold the run folder's lock while training (rank 0 claims; every DDP rank fails alike when it cannot).

    A start that fails before ``started()`` (bad --weights, --hyp, dataset, ...) removes what it added to the
    folder, the folder itself when it created it, so the next attempt gets the same name. A folder it could not
    claim is another training's: nothing in it is touched.
    """
    new = NewFiles(save_dir) if RANK in (-1, 0) else None
    lock, error = RunLock(save_dir), None
    if RANK in (-1, 0):
        try:
            lock.acquire()
        except RunFolderBusy as e:
            error = str(e)
    if RANK != -1:
        error = broadcast_object(error, 0)
    if error:
        raise RunFolderBusy(error)
    try:
        yield
    except BaseException:
        if new is not None and not started():
            new.remove()
        raise
    finally:
        lock.release()


def train(hyp: Union[str, Dict[str, Any]], opt: argparse.Namespace, device: torch.device) -> Sequence[float]:
    """Train per the prepared options; returns (P, R, mAP@0.5, mAP@0.5:0.95, val box, obj, cls)."""
    trainer = Trainer(hyp, opt, device)
    with claim_run_folder(opt.save_dir, started=lambda: trainer.started):
        return trainer.train()


def setup_ddp(opt: argparse.Namespace, device: torch.device) -> torch.device:
    """Join the torchrun process group (gloo on CPU, nccl on CUDA); every rank uses rank 0's run folder."""
    if opt.evolve:
        raise TrainError("--evolve is not compatible with DDP training")
    if opt.image_weights:
        LOGGER.info("--image-weights with DDP: every rank samples from the indices drawn by rank 0")
    if device.type == "cuda":
        torch.cuda.set_device(LOCAL_RANK)
        device = torch.device("cuda", LOCAL_RANK)
    backend = init_distributed(device)
    opt.save_dir = broadcast_object(opt.save_dir, 0)
    LOGGER.info(f"DDP: {WORLD_SIZE} processes, backend {backend}, batch {opt.batch_size // WORLD_SIZE} per rank")
    return device


def main(opt: argparse.Namespace, defaults: argparse.Namespace) -> argparse.Namespace:
    """Everything train.py does after parsing; ``defaults`` are the parser's defaults (for --resume)."""
    set_logging(RANK)
    opt = prepare_options(opt, defaults, WORLD_SIZE, RANK)
    if LOCAL_RANK == -1 and opt.local_rank != -1:
        raise TrainError("--local_rank given without the launcher's environment; use "
                         "'torchrun --nproc_per_node N train.py ...'")
    device = select_device(opt.device, batch_size=opt.batch_size)
    if LOCAL_RANK != -1:
        device = setup_ddp(opt, device)
    try:
        if opt.evolve:
            evolve(opt.hyp, opt, device, train)
        else:
            train(opt.hyp, opt, device)
    finally:
        if RANK != -1 and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return opt
