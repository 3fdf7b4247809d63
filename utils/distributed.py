"""Distributed (DDP) helpers for train.py: process-group setup and a SyncBatchNorm that also works on CPU.

torch's own ``nn.SyncBatchNorm`` refuses CPU tensors, so CPU DDP (gloo backend) with ``--sync-bn`` uses
:class:`CPUSyncBatchNorm`, which computes the batch statistics over all ranks with a differentiable all-reduce.
"""
from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn as nn

LOCAL_RANK = int(os.getenv("LOCAL_RANK", -1))  # set by torchrun / torch.distributed.launch
RANK = int(os.getenv("RANK", -1))
WORLD_SIZE = int(os.getenv("WORLD_SIZE", 1))


def init_distributed(device: torch.device, timeout_s: int = 1800) -> str:
    """Join the process group described by the torchrun environment; nccl on CUDA, gloo on CPU."""
    backend = "nccl" if device.type == "cuda" and dist.is_nccl_available() else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return backend


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose backward is also a sum over ranks (the gradient of a sum of per-rank losses)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are computed over the whole DDP batch (all ranks), on any device.

    Forward all-reduces the per-channel sum, sum of squares and count with a differentiable all-reduce, so
    gradients flow through the shared statistics exactly as they would through one big batch.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        xf = x.float()
        count = xf.new_tensor([xf.numel() / c])
        stats = _AllReduceSum.apply(torch.cat([xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3)), count]))
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp(min=0)  # biased, used for normalisation
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * (n / (n - 1).clamp(min=1))
                self.running_mean.mul_(1 - m).add_(m * mean.to(self.running_mean.dtype))
                self.running_var.mul_(1 - m).add_(m * unbiased.to(self.running_var.dtype))
        y = (xf - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(x.dtype)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm2d by a synchronised one: torch's on CUDA, :class:`CPUSyncBatchNorm` elsewhere."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, CPUSyncBatchNorm):  # subclasses too
            new = CPUSyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                   child.track_running_stats).to(next(child.buffers(), torch.empty(0)).device)
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            if child.affine:
                new.weight.requires_grad_(child.weight.requires_grad)
                new.bias.requires_grad_(child.bias.requires_grad)
            setattr(model, name, new)
        else:
            convert_sync_batchnorm(child, device)
    return model


def broadcast_object(obj, src: int = 0):
    """``obj`` of rank ``src`` on every rank (identity when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src)
    return box[0]
