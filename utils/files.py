"""Paths: the repository root, numbered run folders, and finding a file the user named."""
from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Iterable, List, Optional, Set, Tuple, Union

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


def walk_files(root: Union[str, Path], recursive: bool = True, suffixes: Optional[Iterable[str]] = None) -> List[str]:
    """Files under ``root``, sorted, each real file once, never caught in a symlink loop.

    Symlinked directories are followed (datasets are often assembled from links), but a directory whose real
    identity (device, inode) has been entered before is skipped, so ``ln -s . self`` or two folders linking each
    other cannot make the walk endless. Files reached through several links are returned once, under the first
    path in sorted order. ``suffixes`` (lower case, without the dot) keeps only those file types.
    """
    wanted = {s.lower().lstrip(".") for s in suffixes} if suffixes is not None else None
    seen_dirs: Set[Tuple[int, int]] = set()
    found: List[str] = []
    stack = [str(root)]
    while stack:
        directory = stack.pop()
        try:
            st = os.stat(directory)
        except OSError:  # dangling link or vanished folder
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            try:
                is_dir = entry.is_dir()  # follows symlinks
            except OSError:
                continue
            if is_dir:
                if recursive:
                    stack.append(entry.path)
            elif wanted is None or entry.name.rsplit(".", 1)[-1].lower() in wanted:
                found.append(entry.path)
    return unique_real_paths(sorted(found))


def unique_real_paths(paths: Iterable[Union[str, Path]]) -> List[str]:
    """``paths`` without repeats of the same real file (first occurrence kept, order preserved)."""
    seen: Set[str] = set()
    unique: List[str] = []
    for p in paths:
        real = os.path.realpath(p)
        if real not in seen:
            seen.add(real)
            unique.append(str(p))
    return unique
