"""Image / label verification and the ``*.cache`` file of a dataset split.

Every image is checked once (readable, a known format, not truncated, at least 10 px) together with its label
file (see :func:`parse_label_file`). The results are stored in a cache next to the labels that is rebuilt when
any image or label file is added, removed, resized or touched. The cache is a ``torch.save`` of plain
containers (tensors, lists, strings, numbers) and is read back with ``torch.load(weights_only=True)``, so
opening a cache never runs pickled code; an unreadable or foreign cache (e.g. upstream's) is simply rebuilt.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import ExifTags, Image, UnidentifiedImageError

from utils.boxes import segments2boxes
from utils.text import TextEncodingError, read_text

LOGGER = logging.getLogger("yolov5")
CACHE_VERSION = "fork-2"  # bump when the content or the checks change
NUM_THREADS = min(8, max(1, os.cpu_count() or 1))
IMG_FORMATS = ("bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp")  # v5.0 list
VID_FORMATS = ("avi", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "wmv")  # v5.0 list
_PIL_FORMATS = {"bmp", "dng", "jpeg", "mpo", "png", "tiff", "webp"}  # PIL's names for IMG_FORMATS
_ORIENTATION = next(k for k, v in ExifTags.TAGS.items() if v == "Orientation")


def img2label_paths(img_paths: Sequence[str]) -> List[str]:
    """``.../images/x.jpg`` -> ``.../labels/x.txt``; the LAST ``/images/`` component is replaced (v6.0+).

    Without an ``images`` directory component the label file sits next to the image.
    """
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    out = []
    for p in img_paths:
        p = str(p)
        if sa in p:
            head, tail = p.rsplit(sa, 1)
            p = head + sb + tail
        out.append(os.path.splitext(p)[0] + ".txt")
    return out


def exif_size(img: Image.Image) -> Tuple[int, int]:
    """(width, height) after the EXIF orientation is applied (rotated 90/270 degrees swaps them)."""
    w, h = img.size
    try:
        if img.getexif().get(_ORIENTATION) in (5, 6, 7, 8):
            w, h = h, w
    except Exception:  # malformed EXIF: keep the raw size
        pass
    return w, h


@dataclass
class LabelCheck:
    """Outcome of checking one image + label pair."""
    im_file: str
    labels: Optional[np.ndarray] = None  # (n, 5) float32 [cls, x, y, w, h]; None = corrupt, image dropped
    shape: Tuple[int, int] = (0, 0)  # (w, h)
    segments: List[np.ndarray] = field(default_factory=list)  # normalised (k, 2) polygons, or empty
    status: str = "corrupt"  # found | missing | empty | corrupt
    msg: str = ""  # warning or error text, "" when clean


def check_image(im_file: str) -> Tuple[int, int]:
    """Return (w, h) of a valid image; raise ``ValueError`` with the reason otherwise."""
    try:
        with Image.open(im_file) as im:
            fmt = (im.format or "").lower()
            im.verify()  # structural check (PNG chunk CRCs, ...), no full decode; must come first
        with Image.open(im_file) as im:
            shape = exif_size(im)
    except UnidentifiedImageError:
        raise ValueError("not an image (unknown or unreadable format)") from None
    except Exception as e:  # PIL raises OSError, SyntaxError, struct errors, ... on damaged files
        raise ValueError(f"unreadable or truncated image ({e})") from None
    if fmt not in _PIL_FORMATS:
        raise ValueError(f"unsupported image format '{fmt}'")
    if shape[0] < 10 or shape[1] < 10:
        raise ValueError(f"image size {shape[0]}x{shape[1]} is below 10 pixels")
    if fmt in ("jpeg", "mpo"):
        with open(im_file, "rb") as f:  # PIL's verify does not notice a JPEG cut short: check the end marker
            f.seek(-2, os.SEEK_END)
            if f.read() != b"\xff\xd9":
                raise ValueError("truncated JPEG (no end-of-image marker)")
    return shape


def parse_label_file(lb_file: str, nc: Optional[int] = None) -> Tuple[np.ndarray, List[np.ndarray], int]:
    """Read a YOLO label file -> ``(labels (n, 5), segments, n_duplicates_removed)``.

    A row is ``cls x y w h`` (5 values) or a polygon ``cls x1 y1 x2 y2 ...`` (odd count >= 7, i.e. 3+ points)
    whose box is its extent. The file is UTF-8, or UTF-16 / UTF-32 with a byte-order mark (see :mod:`utils.text`).
    Raises ``ValueError`` naming the row and the reason for: another encoding, a wrong value count,
    a non-numeric / non-finite value, a non-integer or out-of-range (``>= nc``) class, a negative value or a
    coordinate above 1. Exact duplicate rows are removed (reported through the returned count).
    """
    try:
        text = read_text(lb_file)  # UTF-8, or UTF-16 / UTF-32 with a byte-order mark (Windows tools)
    except TextEncodingError as e:
        raise ValueError(str(e).replace(f"{lb_file}: ", "", 1)) from None
    lines = [(i + 1, ln.split()) for i, ln in enumerate(text.splitlines()) if ln.strip()]
    rows = []
    for line_no, values in lines:
        k = len(values)
        if k != 5 and (k < 7 or k % 2 == 0):
            raise ValueError(f"line {line_no}: {k} values, expected 5 (class x y w h) or an odd number >= 7 "
                             f"(class + polygon)")
        try:
            row = np.array([float(v) for v in values], dtype=np.float64)
        except ValueError:
            bad = next(v for v in values if not _is_float(v))
            raise ValueError(f"line {line_no}: non-numeric value '{bad}'") from None
        if not np.isfinite(row).all():
            raise ValueError(f"line {line_no}: non-finite value")
        if (row < 0).any():
            raise ValueError(f"line {line_no}: negative value")
        if (row[1:] > 1).any():
            raise ValueError(f"line {line_no}: coordinate > 1 (labels must be normalised to 0-1)")
        if row[0] != int(row[0]):
            raise ValueError(f"line {line_no}: class id {values[0]} is not an integer")
        if nc is not None and row[0] >= nc:
            raise ValueError(f"line {line_no}: class id {int(row[0])} outside 0-{nc - 1} (nc={nc})")
        rows.append(row)

    unique, seen = [], set()
    for row in rows:
        key = row.tobytes()
        if key not in seen:
            seen.add(key)
            unique.append(row)
    n_dup = len(rows) - len(unique)

    segments: List[np.ndarray] = []
    if any(len(r) > 5 for r in unique):  # polygons present: keep a polygon for every row (boxes as 4 corners)
        for r in unique:
            if len(r) == 5:
                x, y, w, h = r[1:]
                r = np.array([r[0], x - w / 2, y - h / 2, x + w / 2, y - h / 2, x + w / 2, y + h / 2,
                              x - w / 2, y + h / 2])
            segments.append(r[1:].reshape(-1, 2).astype(np.float32))
        boxes = segments2boxes(segments)
        labels = np.concatenate([np.array([r[0] for r in unique], np.float32).reshape(-1, 1), boxes], 1)
    else:
        labels = np.array(unique, dtype=np.float32).reshape(-1, 5)
    return labels.astype(np.float32), segments, n_dup


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def verify_image_label(im_file: str, lb_file: str, nc: Optional[int] = None) -> LabelCheck:
    """Check one image and its label file; never raises (problems land in ``LabelCheck.msg``)."""
    res = LabelCheck(im_file)
    try:
        res.shape = check_image(im_file)
    except ValueError as e:
        res.msg = f"WARNING: ignoring corrupt image {im_file}: {e}"
        return res
    except Exception as e:  # unreadable file (permissions, vanished) or a decoder failure
        res.msg = f"WARNING: ignoring corrupt image {im_file}: {e}"
        return res
    if not os.path.isfile(lb_file):
        res.labels, res.status = np.zeros((0, 5), np.float32), "missing"
        return res
    try:
        labels, segments, n_dup = parse_label_file(lb_file, nc)
    except (ValueError, OSError) as e:
        res.msg = f"WARNING: ignoring corrupt image/label {im_file}: label {lb_file} {e}"
        return res
    res.labels, res.segments = labels, segments
    res.status = "found" if len(labels) else "empty"
    if n_dup:
        res.msg = f"WARNING: {im_file}: {n_dup} duplicate label row(s) removed from {lb_file}"
    return res


def files_hash(paths: Sequence[str], extra: str = "") -> str:
    """md5 over every path with its size and modification time (missing files hash as absent)."""
    h = hashlib.md5(extra.encode())
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\0-\n".encode())
    return h.hexdigest()


def scan_labels(im_files: Sequence[str], lb_files: Sequence[str], nc: Optional[int] = None,
                desc: str = "", progress: bool = True) -> dict:
    """Verify every pair (threaded) -> cache dict (see :func:`save_cache` for the layout)."""
    counts = {"found": 0, "missing": 0, "empty": 0, "corrupt": 0}
    files, labels, shapes, segments, msgs = [], [], [], [], []
    with ThreadPool(NUM_THREADS) as pool:
        it = pool.imap(lambda a: verify_image_label(*a, nc), zip(im_files, lb_files))
        if progress:
            from tqdm import tqdm
            it = tqdm(it, total=len(im_files), desc=desc, bar_format="{l_bar}{bar:10}{r_bar}", leave=False)
        for r in it:
            counts[r.status] += 1
            if r.msg:
                msgs.append(r.msg)
            if r.labels is not None:
                files.append(r.im_file)
                labels.append(torch.from_numpy(r.labels))
                shapes.append(list(r.shape))
                segments.append([torch.from_numpy(s) for s in r.segments])
    return {
        "version": CACHE_VERSION, "files": files, "labels": labels, "shapes": shapes, "segments": segments,
        "msgs": msgs, "results": [counts["found"], counts["missing"], counts["empty"], counts["corrupt"],
                                  len(im_files)],
    }


def save_cache(path: Path, cache: dict) -> bool:
    """Write atomically; a read-only location gives a warning (returns False), not an error."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(cache, tmp)
        os.replace(tmp, path)
        return True
    except OSError as e:
        LOGGER.warning(f"WARNING: cache directory {path.parent} is not writeable, labels not cached ({e})")
        try:
            tmp.unlink()
        except OSError:
            pass
        return False


def load_cache(path: Path, expected_hash: str) -> Optional[dict]:
    """The cache at ``path`` if it is ours, current and intact, else None."""
    if not path.is_file():
        return None
    try:
        cache = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # foreign format (e.g. upstream pickles), partial write, ...: rebuild
        return None
    if not isinstance(cache, dict) or cache.get("version") != CACHE_VERSION or cache.get("hash") != expected_hash:
        return None
    return cache


def drop_out_of_range(cache: dict, nc: int) -> dict:
    """Move images whose labels use a class id >= nc from the usable set to the corrupt count (with a message).

    Done after loading rather than while scanning, so one cache serves every ``nc``.
    """
    keep = [i for i, lb in enumerate(cache["labels"]) if not len(lb) or int(lb[:, 0].max()) < nc]
    if len(keep) == len(cache["files"]):
        return cache
    out = dict(cache)
    nf, nm, ne, nc_bad, n = cache["results"]
    msgs = list(cache["msgs"])
    for i in sorted(set(range(len(cache["files"]))) - set(keep)):
        im_file = cache["files"][i]
        bad = int(cache["labels"][i][:, 0].max())
        msgs.append(f"WARNING: ignoring corrupt image/label {im_file}: label {img2label_paths([im_file])[0]} "
                    f"class id {bad} outside 0-{nc - 1} (nc={nc})")
        nf, nc_bad = nf - 1, nc_bad + 1
    for k in ("files", "labels", "shapes", "segments"):
        out[k] = [cache[k][i] for i in keep]
    out["results"], out["msgs"] = [nf, nm, ne, nc_bad, n], msgs
    return out


def cache_labels(cache_path: Path, im_files: Sequence[str], lb_files: Sequence[str], nc: Optional[int] = None,
                 prefix: str = "", progress: bool = True) -> Tuple[dict, bool]:
    """Load the split's cache or rebuild it -> ``(cache, loaded_from_disk)``; logs the scan summary + issues.

    With ``nc``, images labelled with a class id >= nc are reported and left out (see :func:`drop_out_of_range`).
    """
    h = files_hash(list(im_files) + list(lb_files), extra=CACHE_VERSION)
    cache = load_cache(cache_path, h)
    loaded = cache is not None
    if cache is None:
        cache = scan_labels(im_files, lb_files, None, desc=f"{prefix}Scanning '{cache_path}' images and labels...",
                            progress=progress)
        cache["hash"] = h
        save_cache(cache_path, cache)
    if nc is not None:
        cache = drop_out_of_range(cache, nc)
    nf, nm, ne, nc_bad, _ = cache["results"]
    LOGGER.info(f"{prefix}Scanning '{cache_path}' images and labels... {nf} found, {nm} missing, {ne} empty, "
                f"{nc_bad} corrupted" + (" (from cache)" if loaded else ""))
    for m in cache["msgs"]:
        LOGGER.warning(f"{prefix}{m}")
    return cache, loaded
