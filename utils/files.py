"""Paths: the repository root, numbered run folders, and finding a file the user named."""
from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Union

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
