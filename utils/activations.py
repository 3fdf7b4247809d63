"""Activation modules written with primitive tensor ops so that they export to ONNX / TorchScript everywhere.

``nn.SiLU`` and ``nn.Hardswish`` are single fused ops in PyTorch, but older ONNX opsets and some runtimes lack them;
the exporter can swap the built-in modules for these equivalents (same numbers, plainer graph).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class SiLU(nn.Module):
    """x * sigmoid(x) (a.k.a. swish)."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class Hardswish(nn.Module):
    """x * relu6(x + 3) / 6, written with hardtanh, which every ONNX opset / CoreML understands."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return x * F.hardtanh(x + 3.0, 0.0, 6.0) / 6.0


class Mish(nn.Module):
    """x * tanh(softplus(x))."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return x * F.softplus(x).tanh()


class _SwishFunction(torch.autograd.Function):
    # Saves only the input: the backward recomputes sigmoid instead of keeping the intermediate product.
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        sx = torch.sigmoid(x)
        return grad_output * (sx * (1 + x * (1 - sx)))


class MemoryEfficientSwish(nn.Module):
    """Swish whose backward recomputes the sigmoid (lower activation memory during training)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _SwishFunction.apply(x)


class FReLU(nn.Module):
    """Funnel ReLU: max(x, BN(depthwise kxk conv(x)))."""

    def __init__(self, c1: int, k: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(c1, c1, k, 1, k // 2, groups=c1, bias=False)
        self.bn = nn.BatchNorm2d(c1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.max(x, self.bn(self.conv(x)))
