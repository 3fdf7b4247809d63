"""Paths: the repository root, numbered run folders, finding a file the user named, and folder walks / globs that
never follow a symlink loop nor return one real file twice (every walker of the project goes through them)."""
from __future__ import annotations

import glob
import os
import re
import shutil
from collections import deque
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Set, Tuple, Union

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
    matches = glob_files(str(ROOT / "**" / file))
    if not matches:
        raise MissingFileError(f"{what} not found: '{file}'")
    if len(matches) > 1:
        raise MissingFileError(f"{what} '{file}' is ambiguous, it matches: {matches}")
    return matches[0]


def walk_files(root: Union[str, Path], recursive: bool = True, suffixes: Optional[Iterable[str]] = None,
               hidden: bool = False) -> List[str]:
    """Files under ``root``, sorted, each real file once, never caught in a symlink loop.

    Symlinked directories are followed (datasets are often assembled from links), but a directory whose real
    identity (device, inode) has been entered before, or which is ``root`` itself or one of its parents, is
    skipped: ``ln -s . self``, ``ln -s .. up`` or two folders linking each other cannot make the walk endless or
    list a file twice. Every folder reachable without a link is entered under that link-free path first, so a
    file is reported under its plain path when it has one. A file reached several times (through linked folders,
    file links or hard links) is returned once. ``suffixes`` (e.g. ``("jpg", "png")``, any case, dot optional)
    keeps only those file types. Names starting with a dot (``.git``, macOS ``._x.jpg`` companions) are left out
    unless ``hidden``, as ``glob`` leaves them out.
    """
    wanted = {s.lower().lstrip(".") for s in suffixes} if suffixes is not None else None
    found = [f for f in _walk(str(root), recursive, hidden)
             if wanted is None or f.rsplit(".", 1)[-1].lower() in wanted]
    return sorted(unique_real_paths(found))


def _walk(root: str, recursive: bool, hidden: bool = False, max_depth: Optional[int] = None) -> Iterator[str]:
    """Every file path under ``root`` (see :func:`walk_files`), folders reached without a link first;
    ``max_depth`` folders deep at most (0: only ``root``'s own files)."""
    seen_dirs = _parent_ids(root)
    plain, linked = deque([(root, 0)]), deque()  # folders reached without / through a symlink, with their depth
    while plain or linked:
        directory, depth = plain.popleft() if plain else linked.popleft()
        ident = _identity(directory)
        if not isinstance(ident, tuple) or ident in seen_dirs:  # vanished / dangling, or entered before
            continue
        seen_dirs.add(ident)
        deeper = recursive and (max_depth is None or depth < max_depth)
        for entry in _entries(directory):
            if not hidden and entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()  # follows symlinks
            except OSError:
                continue
            if not is_dir:
                yield entry.path
            elif deeper:
                (linked if entry.is_symlink() else plain).append((entry.path, depth + 1))


def glob_files(pattern: str) -> List[str]:
    """Files matching a glob ``pattern``, sorted, each real file once, never through a symlink loop.

    ``glob.glob(recursive=True)`` follows symlinked folders without memory: one ``ln -s . self`` repeats every
    file 40 times (the kernel's link limit) and two such links take forever. The pattern is matched against a
    :func:`_walk` of its literal leading folder instead (as deep as the pattern reaches, any depth for ``**``),
    with ``glob``'s rules: ``**`` is any number of folders, a leading dot must be matched literally.
    """
    if not glob.has_magic(pattern):
        return [pattern] if os.path.isfile(pattern) else []
    parts = pattern.replace(os.sep, "/").split("/")
    literal = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    base = "/".join(parts[:literal]) or ("/" if pattern.startswith(("/", os.sep)) else ".")
    rest = parts[literal:]
    regex = re.compile(_glob_regex(rest), re.S)
    depth = None if "**" in rest else len(rest) - 1
    hidden = any(p.startswith(".") for p in rest)  # else hidden folders are not even entered, as in glob
    skip = len(base.rstrip("/")) + 1  # the relative part of a walked path
    found = [f for f in _walk(base, True, hidden, depth) if regex.fullmatch(f.replace(os.sep, "/")[skip:])]
    found = sorted(unique_real_paths(found))
    return [f[skip:] for f in found] if base == "." else found  # 'a/b.jpg', as glob gives it, not './a/b.jpg'


def _glob_regex(parts: List[str]) -> str:
    """Regex for the path components of a glob, relative to its literal base folder. As in ``glob``, ``**`` is
    any number of folders (none included) and a name starting with a dot only matches a literal dot."""
    out = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            out.append(r"(?:[^/.][^/]*/)*" + (r"[^/.][^/]*" if last else ""))
            continue
        out.append(("" if part.startswith(".") else r"(?!\.)") + _name_regex(part) + ("" if last else "/"))
    return "".join(out)


def _name_regex(part: str) -> str:
    """``*``, ``?`` and ``[...]`` of one name, never matching a ``/``."""
    out, i = [], 0
    while i < len(part):
        c = part[i]
        close = part.find("]", i + 2) if c == "[" else -1
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif close > 0:
            body = part[i + 1:close]
            body = "^" + body[1:] if body.startswith("!") else body
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = close
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def unique_real_paths(paths: Iterable[Union[str, Path]]) -> List[str]:
    """``paths`` without repeats of the same real file (first occurrence kept, order preserved).

    Files are told apart by (device, inode), so links and hard links count once; a path that does not exist
    (yet) is compared by its absolute form.
    """
    seen: Set[Union[Tuple[int, int], str]] = set()
    unique: List[str] = []
    for p in paths:
        ident = _identity(p)
        if ident not in seen:
            seen.add(ident)
            unique.append(str(p))
    return unique


def _identity(path: Union[str, Path]) -> Union[Tuple[int, int], str]:
    """(device, inode) of what ``path`` points to; its absolute path when it cannot be reached."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return os.path.abspath(path)
    return st.st_dev, st.st_ino


def _parent_ids(root: Union[str, Path]) -> Set[Tuple[int, int]]:
    """Identities of the real parents of ``root``: a link back up to one of them is a loop, never entered."""
    ids = (_identity(p) for p in Path(os.path.realpath(root)).parents)
    return {i for i in ids if isinstance(i, tuple)}


def _entries(directory: str) -> List[os.DirEntry]:
    try:
        with os.scandir(directory) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError:  # unreadable folder: nothing in it
        return []
