"""Shared by the fault suites (issue 22): folders with symlink loops, and a deadline that turns an endless walk
into a failing test instead of a hung run."""
import os
import signal
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def deadline(seconds: float):
    """Raise TimeoutError in the test when the body runs longer than ``seconds`` (main thread, POSIX)."""
    def expired(*_):
        raise TimeoutError(f"still running after {seconds} s: a symlink loop is being followed")
    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def add_loops(folder: Path, pair: bool = True) -> None:
    """``folder/self -> .`` and ``folder/up -> ..``; with ``pair``, also ``folder/loop_a`` and ``folder/loop_b``,
    two (empty) folders linking each other (each holds only the link to the other)."""
    os.symlink(".", folder / "self")
    os.symlink("..", folder / "up")
    if pair:
        (folder / "loop_a").mkdir()
        (folder / "loop_b").mkdir()
        os.symlink("../loop_b", folder / "loop_a" / "to_b")
        os.symlink("../loop_a", folder / "loop_b" / "to_a")
