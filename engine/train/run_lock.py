"""One training per run folder: a lock file holding the owner's PID, host and process start time.

A second training into the same folder (``--exist-ok``, ``--resume`` of a run that is still going) fails with a
message naming the owner. A lock left behind by a crash (SIGKILL, power loss) is taken over when its owner is on
this host and its process is gone (or the PID now belongs to a process that started at another time). A lock of
another host cannot be checked: it is reported, with the file to delete once that run is known to be dead.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path
from typing import Optional, Union

from utils.errors import UserError
from utils.log import LOGGER

LOCK_NAME = ".train.lock"


class RunFolderBusy(UserError):
    """The run folder is being written by another live training."""


def _start_time(pid: int) -> Optional[str]:
    """Start time of process ``pid`` in clock ticks since boot (Linux /proc), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22 overall; the command name may contain spaces


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _owner_alive(owner: dict) -> bool:
    pid = int(owner.get("pid", -1))
    if pid <= 0 or not _alive(pid):
        return False
    started = owner.get("start")
    return started is None or _start_time(pid) in (None, started)  # a recycled PID started at another time


class RunLock:
    """``with RunLock(save_dir):`` claims ``save_dir/.train.lock`` (re-entrant within one process)."""

    def __init__(self, save_dir: Union[str, Path]):
        self.path = Path(save_dir) / LOCK_NAME
        self.owned = False

    def _me(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(), "start": _start_time(os.getpid()),
                "since": time.strftime("%Y-%m-%d %H:%M:%S")}

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(self._me(), f)
        return True

    def _read_owner(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}  # unreadable / half-written lock: treated as stale below only if its file is old

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # racing claimants: one wins the O_EXCL create, the others re-read
            if self._create():
                self.owned = True
                return self
            owner = self._read_owner()
            if owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
                self.owned = False  # this process already holds it (e.g. --evolve generations): not ours to free
                return self
            self._check_stale(owner)
        raise RunFolderBusy(f"{self.path.parent}: could not claim the run folder (lock {self.path} keeps changing)")

    def _check_stale(self, owner: dict) -> None:
        """Remove a stale lock; raise RunFolderBusy for a live (or uncheckable) owner."""
        host = owner.get("host")
        if not owner and time.time() - self._mtime() < 5:
            time.sleep(0.2)  # being written right now
            return
        if owner and host != socket.gethostname():
            raise RunFolderBusy(f"{self.path.parent} is in use by a training on host {host} (PID {owner.get('pid')},"
                                f" since {owner.get('since')}); use another --name, or delete {self.path} if that "
                                f"run is over")
        if owner and _owner_alive(owner):
            raise RunFolderBusy(f"{self.path.parent} is in use by another training (PID {owner['pid']}, since "
                                f"{owner.get('since')}); wait for it, stop it, or use another --name")
        LOGGER.info(f"Taking over {self.path.parent}: its previous training (PID {owner.get('pid')}) is gone")
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def _mtime(self) -> float:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return 0.0

    def release(self) -> None:
        if self.owned:
            self.owned = False
            try:
                if self._read_owner().get("pid") == os.getpid():
                    self.path.unlink()
            except OSError as e:
                if e.errno != errno.ENOENT:
                    LOGGER.warning(f"WARNING: could not remove the run lock {self.path}: {e}")

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
