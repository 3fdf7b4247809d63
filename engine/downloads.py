"""Fetching the official YOLOv5 weights: ``attempt_download`` (used by every loader of ``--weights``).

A missing ``yolov5{s,m,l,x}{,6}.pt`` is downloaded from the upstream GitHub release assets
(``https://github.com/ultralytics/yolov5/releases/download/v5.0/<name>``) into the path that was asked for.
The bytes go to a temporary ``*.part`` file in the same directory, which is checked (complete against the
server's Content-Length, loadable as a checkpoint) and only then renamed onto the target: an interrupted or
failed download never leaves a file that looks like weights. Any other missing path is an error right away
("weights not found"), with no network access.

Environment:
    YOLOV5_WEIGHTS_URL   base URL that replaces ``https://github.com/<repo>/releases/download/<release>``
                         (a mirror, or a local server in the tests); the file name is appended to it.
"""
from __future__ import annotations

import http.client
import logging
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional, Union

from engine.safe_load import torch_load_safe
from utils.errors import MissingFileError, UserError
from utils.log import LOGGER

PathLike = Union[str, Path]

REPO = "ultralytics/yolov5"
RELEASE = "v5.0"
# Assets attached to the upstream v5.0 release (P5 models and the P6 '...6.pt' models).
OFFICIAL_WEIGHTS = tuple(f"yolov5{size}{p6}.pt" for p6 in ("", "6") for size in "smlx")
URL_ENV = "YOLOV5_WEIGHTS_URL"
MANUAL_HINT = ("run 'bash weights/download_weights.sh' (curl/wget), or download the file by hand and pass its "
               "path with --weights")
_CHUNK = 1 << 16


class DownloadError(UserError, FileNotFoundError):
    """Official weights could not be downloaded; nothing was written. The message names the URL and the manual
    alternative. A FileNotFoundError, so the scripts report it like any other missing ``--weights`` file."""


def is_official(name: PathLike) -> bool:
    """True for the file names of the official release assets (``yolov5s.pt`` ... ``yolov5x6.pt``)."""
    return Path(str(name)).name in OFFICIAL_WEIGHTS


def weights_url(name: str, repo: str = REPO, release: str = RELEASE) -> str:
    """Download URL of release asset ``name``; ``$YOLOV5_WEIGHTS_URL`` replaces the GitHub release base."""
    base = os.environ.get(URL_ENV, "").strip() or f"https://github.com/{repo}/releases/download/{release}"
    return f"{base.rstrip('/')}/{name}"


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return f"cannot connect ({e.reason})"
    if isinstance(e, http.client.IncompleteRead):
        return f"connection closed after {len(e.partial)} more bytes (incomplete body)"
    return f"{type(e).__name__}: {e}"


def _fetch(url: str, dest: Path, timeout: float, progress: bool, desc: str) -> int:
    """Stream ``url`` into ``dest`` with a tqdm bar; returns the byte count, raises on short bodies."""
    from tqdm import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "yolov5-fork"})
    with urllib.request.urlopen(request, timeout=timeout) as r, open(dest, "wb") as f:
        length = r.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        done = 0
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not progress,
                  file=sys.stderr) as bar:
            while True:
                chunk = r.read(_CHUNK)
                if not chunk:
                    break
                f.write(chunk)
                done += len(chunk)
                bar.update(len(chunk))
        f.flush()
        os.fsync(f.fileno())
    if total is not None and done != total:
        raise OSError(f"incomplete body: received {done} of {total} bytes")
    if done == 0:
        raise OSError("empty response")
    return done


def _check_loadable(path: Path) -> None:
    """The downloaded file must be a checkpoint holding a model (the safe loader, no code from the file runs)."""
    ckpt = torch_load_safe(path, map_location="cpu")
    if not isinstance(ckpt, dict):
        raise ValueError(f"it holds a {type(ckpt).__name__}, not a checkpoint dict")
    if ckpt.get("ema") is None and ckpt.get("model") is None:
        raise ValueError(f"no 'model' or 'ema' entry (keys: {sorted(ckpt)})")
    if ckpt.get("ema") is None and ckpt.get("model") is None:
        raise ValueError(f"no 'model' or 'ema' entry (keys: {sorted(ckpt)})")


def safe_download(url: str, file: PathLike, timeout: float = 30.0, progress: bool = True,
                  check: bool = True) -> Path:
    """Download ``url`` to ``file`` atomically: temp ``.part`` file in the same directory, verified, renamed.

    On any failure (HTTP error, no connection, truncated body, not a loadable checkpoint when ``check``, Ctrl-C)
    the temp file is removed, ``file`` is left as it was, and :class:`DownloadError` names the URL, the reason and
    the manual alternative.
    """
    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    # A unique temp name per process: ranks of one job may download the same file at the same time safely.
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f"{file.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp)
    LOGGER.info(f"Downloading {url} to {file}...")
    try:
        try:
            size = _fetch(url, tmp, timeout, progress, desc=file.name)
        except (OSError, http.client.HTTPException) as e:  # URLError / HTTPError / timeouts are OSErrors
            raise DownloadError(f"download of {url} failed: {_reason(e)}. No file was written to '{file}'; "
                                f"{MANUAL_HINT}") from None
        if check:
            try:
                _check_loadable(tmp)
            except Exception as e:  # noqa: BLE001 - any reason means the bytes are not usable weights
                raise DownloadError(f"download of {url} failed: the {size} bytes received are not a loadable "
                                    f"checkpoint ({type(e).__name__}: {str(e).replace(str(tmp), '<download>')}). "
                                    f"No file was written to '{file}'; {MANUAL_HINT}") from None
        os.replace(tmp, file)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    LOGGER.info(f"Downloaded {file} ({size / 1e6:.1f} MB)")
    return file


def attempt_download(file: PathLike, repo: str = REPO, release: str = RELEASE,
                     timeout: float = 30.0) -> str:
    """Path of ``file``, downloading it first when it is a missing official weights file.

    * ``file`` exists: returned unchanged (as str), no network access.
    * its name is an official release asset (``yolov5s.pt`` ... ``yolov5x6.pt``): downloaded from
      ``https://github.com/<repo>/releases/download/<release>/<name>`` (or ``$YOLOV5_WEIGHTS_URL/<name>``) to
      ``file`` itself (same directory, created if needed); :class:`DownloadError` if that fails.
    * anything else: ``FileNotFoundError("weights not found: '<file>' ...")``.
    """
    text = str(file).strip().strip("'\"")
    path = Path(text)
    if path.exists():
        return text
    if not is_official(path):
        raise MissingFileError(f"weights not found: '{text}' (no such file, and not an official weights name "
                                f"that could be downloaded: {', '.join(OFFICIAL_WEIGHTS)})")
    safe_download(weights_url(path.name, repo, release), path, timeout=timeout)
    return text


def main(argv: Optional[list] = None) -> None:
    """``python utils/downloads.py yolov5s.pt weights/yolov5m6.pt``: fetch official weights (skips existing)."""
    import argparse

    ap = argparse.ArgumentParser(description="Download official YOLOv5 v5.0 weights (skips existing files)")
    ap.add_argument("files", nargs="+", help=f"paths whose names are among {', '.join(OFFICIAL_WEIGHTS)}")
    ap.add_argument("--release", default=RELEASE, help="release tag of the assets")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        for f in args.files:
            print(attempt_download(f, release=args.release))
    except FileNotFoundError as e:
        sys.exit(f"ERROR: {e}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
