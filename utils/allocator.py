"""glibc malloc settings that keep freed memory in the process, for train / val / detect.

Every training step allocates and frees the same large buffers (batches, activations, gradients, augmented
images). With glibc's defaults each block above the mmap threshold (128 KiB, adapting up to 32 MiB) is a fresh
``mmap`` that is unmapped again on ``free``, and the heap top is trimmed back to the kernel above 128 KiB, so the
kernel hands out and zero-fills the same memory again, page by page: millions of minor page faults an epoch and a
large share of the CPU time spent in the kernel (issue #21). The settings below serve those blocks from the heap
and keep freed memory there for the next step.

:func:`keep_freed_memory` applies them to this process with ``mallopt`` (forked dataloader workers inherit them)
and exports them as the ``MALLOC_*_`` environment variables glibc reads at the start of a new process (spawned
workers, DDP ranks, subprocesses). A variable the user already set is left alone: glibc applied it at start-up.
Linux with glibc only; elsewhere (macOS, Windows, musl) it does nothing. ``YOLOV5_MALLOC_TUNING=0`` in the
environment turns it off.
"""
from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass
from typing import Any, Dict, MutableMapping, Optional

DISABLE_ENV = "YOLOV5_MALLOC_TUNING"  # "0": keep glibc's defaults


@dataclass(frozen=True)
class MallocSetting:
    """One ``mallopt`` parameter and the environment variable glibc reads for it at process start."""

    env: str
    param: int  # M_* constant of <malloc.h>
    value: int


MIB = 1 << 20
SETTINGS = (
    MallocSetting("MALLOC_MMAP_THRESHOLD_", -3, 1024 * MIB),  # M_MMAP_THRESHOLD: batches / activations from the heap
    MallocSetting("MALLOC_TRIM_THRESHOLD_", -1, 1024 * MIB),  # M_TRIM_THRESHOLD: keep up to 1 GiB of free heap top
    MallocSetting("MALLOC_TOP_PAD_", -2, 64 * MIB),  # M_TOP_PAD: grow the heap in 64 MiB steps
)


def glibc() -> Optional[Any]:
    """The C library as a ctypes handle when this is Linux with glibc (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return None  # musl and other C libraries have no mallopt of these parameters
        libc = ctypes.CDLL("libc.so.6")
    except (ValueError, OSError, AttributeError):  # confstr name unknown, or no libc.so.6
        return None
    return libc if hasattr(libc, "mallopt") else None


def keep_freed_memory(environ: Optional[MutableMapping[str, str]] = None, libc: Optional[Any] = None) -> Dict[str, int]:
    """Apply :data:`SETTINGS` to this process and its future children (see the module docstring).

    Returns the settings applied, by environment variable name; {} when turned off or not on glibc. Calling it
    again changes nothing. ``environ`` / ``libc`` default to ``os.environ`` / :func:`glibc` (tests pass their own).
    """
    environ = os.environ if environ is None else environ
    if environ.get(DISABLE_ENV, "").strip() == "0":
        return {}
    libc = glibc() if libc is None else libc
    if libc is None:
        return {}
    applied = {}
    for s in SETTINGS:
        if s.env in environ:  # the user's value (or ours, from an earlier call): glibc already has it
            continue
        if libc.mallopt(s.param, s.value) == 1:  # 1 = accepted
            environ[s.env] = str(s.value)
            applied[s.env] = s.value
    return applied
