"""Shared pytest setup: the repository root is importable, torch runs with one intra-op thread, and the
project logger can be captured.

One thread: the tests forward tiny tensors, which gain nothing from OpenMP threads, while spinning threads on a
busy 2-core machine made single convolutions ~10x slower. OMP_NUM_THREADS is exported so that the scripts the
tests start as subprocesses (train.py, detect.py, torchrun, ...) inherit the same setting.
"""
import logging
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _seed():
    import torch
    torch.manual_seed(0)
    yield


class LogLines(list):
    """Messages logged on the 'yolov5' logger during a test (its handler keeps a stream capfd cannot see)."""

    def text(self, clear: bool = True) -> str:
        out = "\n".join(self)
        if clear:
            self.clear()
        return out


@pytest.fixture
def log_lines():
    logger = logging.getLogger("yolov5")
    lines = LogLines()
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: lines.append(record.getMessage())
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(old_level)
