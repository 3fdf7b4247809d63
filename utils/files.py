"""Paths: the repository root, numbered run folders, and finding a file the user named."""
from __future__ import annotations

import glob
import os
import re
import shutil
from pathlib import Path
from typing import Optional, Set, Union

from utils.errors import MissingFileError

ROOT = Path(__file__).resolve().parents[1]  # repository root


def increment_path(path: Union[str, Path], exist_ok: bool = False, sep: str = "", mkdir: bool = False) -> Path:
    """``runs/exp`` -> ``runs/exp2``, ``runs/exp3``, ... (max existing suffix + 1) unless ``exist_ok``."""
    path = Path(path)
    if path.exists() and not exist_ok:
        suffix = path.suffix if path.is_file() else ""
        stem = path.with_suffix("") if suffix else path
        pattern = re.compile(rf"{re.escape(stem.name)}{re.escape(sep)}(\d+)$")
        numbers = [int(m.group(1)) for p in glob.glob(f"{glob.escape(str(stem))}{sep}*")
                   if (m := pattern.match(Path(p).with_suffix("").name if suffix else Path(p).name))]
        n = max(numbers) + 1 if numbers else 2
        path = Path(f"{stem}{sep}{n}{suffix}")
    if mkdir:
        path.mkdir(parents=True, exist_ok=True)
    return path


class NewFiles:
    """What a (run) folder held when this object was made, to remove what a failed start adds to it.

    ``remove()`` deletes the folder when it did not exist (and the empty parents that did not either), else only
    the files and folders that appeared since: an existing ``--exist-ok`` folder keeps every file it had.
    Symbolic links are removed as links, never followed.
    """

    def __init__(self, folder: Union[str, Path]):
        self.folder = Path(folder)
        self.missing = [p for p in (self.folder, *self.folder.parents) if not os.path.lexists(p)]
        self.before: Optional[Set[str]] = None if self.missing else _tree(self.folder)

    def remove(self) -> None:
        if self.before is None:
            shutil.rmtree(self.folder, ignore_errors=True)
            for parent in self.missing[1:]:  # created on the way (runs/, runs/train/), if nothing else went in
                try:
                    parent.rmdir()
                except OSError:
                    break
            return
        for p in sorted(_tree(self.folder) - self.before, key=len, reverse=True):  # deepest first
            try:
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    os.unlink(p)
            except FileNotFoundError:
                pass


def _tree(folder: Path) -> Set[str]:
    """Every path below ``folder`` (symlinked folders listed, not entered)."""
    out: Set[str] = set()
    for root, dirs, files in os.walk(folder, followlinks=False):
        out.update(os.path.join(root, n) for n in dirs + files)
    return out


def check_file(file: Union[str, Path], what: str = "file") -> str:
    """Return ``file`` if it exists, else the unique match found under the repository; raise naming it otherwise."""
    file = str(file)
    if not file or Path(file).is_file():
        return file
    matches = [m for m in glob.glob(str(ROOT / "**" / file), recursive=True) if Path(m).is_file()]
    if not matches:
        raise MissingFileError(f"{what} not found: '{file}'")
    if len(matches) > 1:
        raise MissingFileError(f"{what} '{file}' is ambiguous, it matches: {matches}")
    return matches[0]
