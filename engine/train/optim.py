"""Optimizer, learning-rate schedule, warmup, layer freezing and early stopping of the training loop."""
from __future__ import annotations

from typing import Callable, Dict, List, Sequence

import numpy as np
import torch
import torch.nn as nn

from engine.train.options import TrainError
from utils.log import LOGGER, colorstr
from utils.torch_utils import one_cycle

NBS = 64  # nominal batch size: gradients are accumulated up to this many images per optimizer step
NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def parameter_groups(model: nn.Module) -> List[List[nn.Parameter]]:
    """v5.0 parameter groups: [norm-layer weights (no decay), other weights (decay), biases (no decay)]."""
    g_norm, g_weight, g_bias = [], [], []
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            if pname == "bias":
                g_bias.append(p)
            elif isinstance(module, NORM_TYPES):
                g_norm.append(p)
            else:
                g_weight.append(p)
    return [g_norm, g_weight, g_bias]


def build_optimizer(model: nn.Module, name: str, lr: float, momentum: float, decay: float) -> torch.optim.Optimizer:
    """SGD (Nesterov) / Adam / AdamW over the three :func:`parameter_groups`; decay only on group 1."""
    g_norm, g_weight, g_bias = parameter_groups(model)
    if name == "Adam":
        optimizer = torch.optim.Adam(g_norm, lr=lr, betas=(momentum, 0.999))
    elif name == "AdamW":
        optimizer = torch.optim.AdamW(g_norm, lr=lr, betas=(momentum, 0.999), weight_decay=0.0)
    elif name == "SGD":
        optimizer = torch.optim.SGD(g_norm, lr=lr, momentum=momentum, nesterov=True)
    else:
        raise TrainError(f"--optimizer {name}: not one of SGD, Adam, AdamW")
    optimizer.add_param_group({"params": g_weight, "weight_decay": decay})
    optimizer.add_param_group({"params": g_bias})
    LOGGER.info(f"{colorstr('optimizer:')} {type(optimizer).__name__} with parameter groups "
                f"{len(g_norm)} weight (no decay), {len(g_weight)} weight (decay {decay:.3g}), {len(g_bias)} bias")
    return optimizer


def lr_lambda(hyp: Dict, epochs: int, linear: bool) -> Callable[[float], float]:
    """LR factor per epoch: cosine one-cycle 1 -> lrf (default) or linear 1 -> lrf (--linear-lr)."""
    if linear:
        return lambda e: (1 - e / max(epochs - 1, 1)) * (1.0 - hyp["lrf"]) + hyp["lrf"]
    return one_cycle(1, hyp["lrf"], epochs)


def warmup(optimizer: torch.optim.Optimizer, hyp: Dict, ni: int, nw: int, lr_factor: float, batch_size: int) -> int:
    """Warmup step ``ni`` of ``nw``: bias LR falls from warmup_bias_lr, the others rise from 0, momentum rises.

    Returns the number of batches to accumulate before an optimizer step (1 -> NBS / batch_size).
    """
    xi = [0, nw]
    for j, group in enumerate(optimizer.param_groups):
        start = hyp.get("warmup_bias_lr", 0.1) if j == 2 else 0.0
        group["lr"] = float(np.interp(ni, xi, [start, group["initial_lr"] * lr_factor]))
        if "momentum" in group:
            group["momentum"] = float(np.interp(ni, xi, [hyp.get("warmup_momentum", 0.8), hyp["momentum"]]))
    return max(1, int(np.interp(ni, xi, [1, NBS / batch_size]).round()))


def freeze_layers(model: nn.Module, freeze: Sequence[int]) -> None:
    """--freeze N freezes layers 0..N-1; several numbers freeze exactly those layer indices."""
    indices = list(range(freeze[0])) if len(freeze) == 1 else list(freeze)
    prefixes = tuple(f"model.{i}." for i in indices)
    for k, v in model.named_parameters():
        v.requires_grad = True
        if prefixes and k.startswith(prefixes):
            LOGGER.info(f"freezing {k}")
            v.requires_grad = False


class EarlyStopping:
    """Stop when fitness has not improved for ``patience`` epochs (<= 0 disables)."""

    def __init__(self, patience: int = 30):
        self.best_fitness, self.best_epoch = 0.0, 0
        self.patience = patience if patience > 0 else float("inf")
        self.possible_stop = False  # the next epoch may be the last one: validate it

    def __call__(self, epoch: int, fitness: float) -> bool:
        if fitness >= self.best_fitness:
            self.best_epoch, self.best_fitness = epoch, fitness
        delta = epoch - self.best_epoch
        self.possible_stop = delta >= self.patience - 1
        stop = delta >= self.patience
        if stop:
            LOGGER.info(f"Stopping training early: no improvement in the last {self.patience} epochs; "
                        f"best results at epoch {self.best_epoch}. Change with --patience (0 = never stop).")
        return stop
