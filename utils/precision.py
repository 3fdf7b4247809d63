"""Numeric precision of a forward pass: fp32, bf16 autocast on CPUs that run bf16 natively, fp16 on CUDA.

Inference (detect, val, AutoShape, DetectMultiBackend with .pt weights):

    --fp32            exact fp32 everywhere
    --half            fp16 on CUDA (upstream meaning); bf16 autocast on a CPU with native bf16
    default           CUDA: fp32 (upstream); CPU: bf16 autocast + channels_last when the CPU runs bf16 natively
                      (AMX or AVX512-BF16, asked from torch's own capability queries), fp32 elsewhere

Training: CUDA uses fp16 autocast with a gradient scaler (upstream ``amp``); a CPU with native bf16 uses bf16
autocast + channels_last (no scaler: bf16 has fp32's exponent range); ``--fp32`` (or any other CPU) trains in fp32,
``--bf16`` forces bf16 autocast anywhere (emulated, slow, on a CPU without native bf16).

Under autocast only the convolutions and matmuls run in bf16/fp16: the Detect head decodes boxes in fp32, NMS
upcasts, and the loss computes IoU, BCE/CE and their reductions in fp32.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ContextManager, Optional, Union

import torch

DeviceLike = Union[str, torch.device]


def cpu_bf16_native() -> bool:
    """Does this CPU execute bf16 matmuls / convolutions in hardware (AMX tiles or AVX512-BF16)?

    Asked from torch's CPU capability queries (the same ones oneDNN's kernel choice rests on), never from a
    model name. On other CPUs bf16 is emulated and slower than fp32.
    """
    cpu = getattr(torch, "cpu", None)
    for query in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(cpu, query, None)
        try:
            if fn is not None and fn():
                return True
        except RuntimeError:  # a build without the query's backend
            continue
    return False


@dataclass(frozen=True)
class Precision:
    """How a model runs: ``dtype`` of the autocast region (None = no autocast), weights in ``half``,
    ``channels_last`` memory format, and whether training needs a gradient scaler."""

    device_type: str
    dtype: Optional[torch.dtype] = None
    half: bool = False  # model and inputs cast to fp16 (CUDA --half inference), instead of autocast
    channels_last: bool = False
    scaler: bool = False
    emulated: bool = False  # bf16 asked for on a CPU without native bf16 (runs, but slower than fp32)
    reason: str = ""  # why this precision, for the start-up line ('' = not said)

    @property
    def name(self) -> str:
        if self.half:
            return "fp16"
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype] + \
            (" autocast" if self.dtype is not None else "")

    def autocast(self) -> ContextManager:
        """The autocast context of a forward pass (a no-op for fp32 / half weights)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def describe(self) -> str:
        """For the start-up line, e.g. 'bf16 autocast, channels_last (CPU with native bf16)'."""
        parts = [self.name] + (["channels_last"] if self.channels_last else [])
        if self.emulated:
            parts.append("emulated: this CPU has no native bf16, expect it slower than fp32")
        return ", ".join(parts) + (f" ({self.reason})" if self.reason else "")


def _device_type(device: DeviceLike) -> str:
    return torch.device(device).type


def inference_precision(device: DeviceLike, half: bool = False, fp32: bool = False,
                        bf16_native: Optional[bool] = None) -> Precision:
    """The precision detect / val / AutoShape run a PyTorch model in (see the module docstring)."""
    kind = _device_type(device)
    if half and fp32:
        raise ValueError("--half and --fp32 contradict each other: pass one of them")
    if kind == "cuda":
        return Precision(kind, half=half)
    if kind != "cpu":
        return Precision(kind)
    native = cpu_bf16_native() if bf16_native is None else bf16_native
    if half or (native and not fp32):
        return Precision(kind, dtype=torch.bfloat16, channels_last=True, emulated=not native)
    return Precision(kind, channels_last=True)


# bf16 autocast is the training default on native-bf16 CPUs since issue #21: on such a CPU (AMD EPYC Zen 4,
# AVX512-BF16) the README main command trained in bf16 to mAP@0.5 0.983 / mAP@0.5:0.95 0.750 against 0.985 / 0.726
# in fp32, and the 1-epoch coco128 command took about 0.78x the fp32 time; repeated on Intel Sapphire Rapids (AMX)
# in drafts/issue-21-speed.md. Tests flip this switch to check both policies.
TRAIN_BF16_BY_DEFAULT = True


def training_precision(device: DeviceLike, mode: str = "auto", bf16_native: Optional[bool] = None) -> Precision:
    """The precision training runs in, with the reason the start-up line gives. ``mode``: 'auto' (CUDA fp16
    autocast + scaler; CPU bf16 autocast where native (:data:`TRAIN_BF16_BY_DEFAULT`), else fp32), 'fp32'
    (``--fp32``: no autocast), 'bf16' (``--bf16``: bf16 autocast on any device, even emulated)."""
    kind = _device_type(device)
    if mode not in ("auto", "fp32", "bf16"):
        raise ValueError(f"training precision must be 'auto', 'fp32' or 'bf16', got {mode!r}")
    native = cpu_bf16_native() if (bf16_native is None and kind == "cpu") else bool(bf16_native)
    cpu = kind == "cpu"
    if mode == "fp32":
        return Precision(kind, channels_last=cpu, reason="--fp32")
    if mode == "bf16":
        return Precision(kind, dtype=torch.bfloat16, channels_last=cpu, emulated=cpu and not native, reason="--bf16")
    if kind == "cuda":
        return Precision(kind, dtype=torch.float16, scaler=True, reason="default on CUDA; --fp32 for exact fp32")
    if not cpu:
        return Precision(kind, reason="default")
    if native and TRAIN_BF16_BY_DEFAULT:
        return Precision(kind, dtype=torch.bfloat16, channels_last=True,
                         reason="default: this CPU runs bf16 natively; --fp32 for exact fp32")
    why = "has no native bf16" if not native else "runs bf16 natively, but bf16 training is not the default"
    return Precision(kind, channels_last=True, reason=f"default: this CPU {why}; --bf16 forces bf16 autocast")
