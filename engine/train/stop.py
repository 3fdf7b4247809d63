"""Stopping a training at a safe point: SIGINT / SIGTERM set a flag that the loop reads after each batch.

The first signal lets the current batch finish; the trainer then saves last.pt (atomically), prints how to resume
and exits 130 (SIGINT) or 143 (SIGTERM) through :class:`engine.cli.Interrupted`. A second signal interrupts at
once. Under DDP the flag is all-reduced after every batch, so all ranks stop after the same batch (a signal may
reach only some of them, e.g. ``kill`` of one worker).
"""
from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Dict, Optional

import torch
import torch.distributed as dist

from utils.log import LOGGER

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """``with StopRequest() as stop: ... if stop.requested(): ...``; handlers are restored on exit."""

    def __init__(self) -> None:
        self.signum = 0
        self._previous: Dict[int, object] = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.signum:  # asked twice: stop now, without the safe point
            self.__exit__()
            raise KeyboardInterrupt
        self.signum = signum
        LOGGER.warning(f"\n{signal.Signals(signum).name} received: stopping after the current batch and saving "
                       f"last.pt (send it again to stop at once)")

    def requested(self, distributed: bool = False) -> int:
        """The signal number that asked to stop (0 = none); under DDP, any rank's request stops every rank."""
        if distributed and dist.is_available() and dist.is_initialized():
            flag = torch.tensor([self.signum], dtype=torch.int64)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            self.signum = self.signum or int(flag.item())
        return self.signum
