"""Inference sources: files / directories / globs / lists / videos (``LoadImages``) and live streams.

Each item is letterboxed with ``auto=True`` (padded only to the next stride multiple), converted BGR -> RGB
and HWC -> CHW. ``LoadImages`` and ``LoadStreams`` are re-exported from ``data.datasets`` (v5.0 path).
"""
from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from threading import Thread
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from data.augmentations import letterbox
from data.label_cache import IMG_FORMATS, VID_FORMATS
from utils.errors import MissingFileError, UserError
from utils.files import glob_files, unique_real_paths, walk_files
from utils.text import read_text

LOGGER = logging.getLogger("yolov5")


def _to_chw_rgb(im: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(im.transpose(2, 0, 1)[::-1])


def _expand_sources(path: Union[str, Path, Sequence], missing: Optional[List[Tuple[str, str]]] = None,
                    listed_in: str = "", lists: Tuple[str, ...] = ()) -> List[str]:
    """Files named by a path, a directory, a glob, a ``.txt`` list of those, or a list of any of them.

    Each real file once (first mention kept); a directory's or a glob's files come sorted, ``**`` never follows a
    symlink loop. A path that does not exist is an error, except inside a ``.txt`` list when ``missing`` is given:
    then it is recorded there as ``(path, list file)`` and skipped. A list naming itself (or a list that names
    it: ``lists``, the real paths of the lists being read) adds nothing.
    """
    files: List[str] = []
    for p in path if isinstance(path, (list, tuple)) else [path]:
        p = str(Path(p).expanduser())
        if any(c in p for c in "*?["):
            files += glob_files(p)
        elif os.path.isdir(p):
            files += walk_files(p, recursive=False)
        elif os.path.isfile(p) and p.lower().endswith(".txt"):
            if os.path.realpath(p) in lists:
                continue
            parent = Path(p).parent
            lines = [x.strip() for x in read_text(p).splitlines() if x.strip()]
            lines = [x if os.path.isabs(x) or os.path.exists(x) else str(parent / x) for x in lines]
            files += _expand_sources(lines, missing, p, lists + (os.path.realpath(p),))
        elif os.path.isfile(p):
            files.append(p)
        elif listed_in and missing is not None:
            missing.append((p, listed_in))
        else:
            raise MissingFileError(f"{p} does not exist" + (f" (listed in {listed_in})" if listed_in else ""))
    return unique_real_paths(files)


class UnreadableInputError(UserError, OSError):
    """An image or video of the source that cannot be decoded; ``path`` and ``kind`` ('image' | 'video') name it.

    Raised by :class:`LoadImages` after it has moved past the file, so a caller may count it and keep iterating.
    """

    def __init__(self, path: str, kind: str, reason: str):
        super().__init__(f"unreadable {kind} ({reason}): {path}")
        self.path, self.kind = str(path), kind


class StreamError(UserError, ConnectionError):
    """A webcam or stream URL that cannot be opened or gives no frame."""


class LoadImages:
    """Iterate images then videos (frame by frame) -> ``(path, img (3, H, W) RGB, im0 BGR, vid_cap)``.

    Attributes: ``files``, ``nf`` (number of files), ``count`` (index of the current file), ``mode``
    ('image' | 'video'), ``frame`` (1-based frame of the current video), ``frames`` (its frame count, v5.0
    name ``nframes``), ``cap`` and ``s``, a description of the current item such as
    ``'video 1/2 (3/100) path: '`` for log lines. ``vid_stride`` n yields frames 1, 1 + n, 1 + 2n, ...

    An image that cannot be decoded, or a video that cannot be opened or yields no frame, raises
    :class:`UnreadableInputError` naming it; iteration can go on with the next file. A file named in a ``.txt``
    list that does not exist is left out and recorded in ``missing`` as ``(path, list file)``.
    """

    def __init__(self, path, img_size: int = 640, stride: int = 32, auto: bool = True, vid_stride: int = 1):
        self.missing: List[Tuple[str, str]] = []  # (path, list file) of the listed files that do not exist
        files = _expand_sources(path, self.missing)
        images = [x for x in files if x.rsplit(".", 1)[-1].lower() in IMG_FORMATS]
        videos = [x for x in files if x.rsplit(".", 1)[-1].lower() in VID_FORMATS]
        self.img_size, self.stride, self.auto = img_size, stride, auto
        self.vid_stride = max(int(vid_stride), 1)
        self.files = images + videos
        self.nf = len(self.files)
        self.video_flag = [False] * len(images) + [True] * len(videos)
        self.mode = "image"
        self.count = 0
        self.frame, self.frames = 0, 0
        self.cap = None
        self.s = ""
        if not self.nf:
            gone = f"; {len(self.missing)} listed file(s) missing: {', '.join(m for m, _ in self.missing)}" \
                if self.missing else ""
            raise MissingFileError(f"no images or videos found in {path} (images: {', '.join(IMG_FORMATS)}; "
                                   f"videos: {', '.join(VID_FORMATS)}{gone})")

    @property
    def nframes(self) -> int:  # v5.0 name
        return self.frames

    def new_video(self, path: str) -> None:
        """Open the video at ``path`` (frame counter back to 0)."""
        self._close_video()
        self.cap = cv2.VideoCapture(path)
        count = self.cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frames = int(count) if count and count > 0 else 0

    def _close_video(self) -> None:
        if self.cap is not None:
            self.cap.release()
        self.cap, self.frame = None, 0

    def __iter__(self):
        self.count = 0
        self._close_video()
        return self

    def __next__(self):
        while self.count < self.nf:
            path = self.files[self.count]
            if not self.video_flag[self.count]:
                return self._next_image(path)
            item = self._next_frame(path)
            if item is not None:
                return item
        self._close_video()
        raise StopIteration

    def _next_image(self, path: str):
        self.mode = "image"
        self.count += 1  # moved past the file first: a caller may skip an unreadable one and keep iterating
        im0 = cv2.imread(path)
        if im0 is None:
            raise UnreadableInputError(path, "image", "not an image, or damaged")
        self.s = f"image {self.count}/{self.nf} {path}: "
        return self._item(path, im0, None)

    def _next_frame(self, path: str):
        """The next frame of the video at ``path``; None at its end (``count`` moves on to the next file)."""
        self.mode = "video"
        if self.cap is None:
            self.new_video(path)
        ok, im0 = self._read()
        if not ok:
            first = self.frame == 0
            self._close_video()
            self.count += 1
            if first:
                raise UnreadableInputError(path, "video", "cannot be opened or yields no frame")
            return None
        self.s = f"video {self.count + 1}/{self.nf} ({self.frame}/{self.frames}) {path}: "
        return self._item(path, im0, self.cap)

    def _read(self):
        """Read the next frame to yield, skipping ``vid_stride - 1`` frames after the first one."""
        if self.frame:
            for _ in range(self.vid_stride - 1):
                if not self.cap.grab():
                    return False, None
                self.frame += 1
        ok, im0 = self.cap.read()
        if ok and im0 is not None:
            self.frame += 1
            return True, im0
        return False, None

    def _item(self, path: str, im0: np.ndarray, cap):
        img = letterbox(im0, self.img_size, stride=self.stride, auto=self.auto)[0]
        return path, _to_chw_rgb(img), im0, cap

    def __len__(self) -> int:
        return self.nf


def clean_str(s: str) -> str:
    """Replace characters that are awkward in file names (a stream URL used as a name) by '_'."""
    return re.sub(r"[|@#!¡·$€%&()=?¿^*;:,¨´><+]", "_", s)


class LoadStreams:
    """Threaded reader of one or more live sources (webcam index, rtsp/rtmp/http URL, or a video file).

    ``sources`` is one source or a ``.txt`` file listing one per line. Iterating yields ``(sources,
    imgs (n, 3, H, W) RGB, im0s [BGR frames], None)`` with the latest frame of each source; it stops when every
    reader thread has ended. A source that cannot be opened raises :class:`StreamError` (a ``ConnectionError``)
    naming it.
    """

    def __init__(self, sources: str = "streams.txt", img_size: int = 640, stride: int = 32, auto: bool = True):
        self.mode = "stream"
        self.img_size, self.stride, self.auto = img_size, stride, auto
        if os.path.isfile(sources) and str(sources).lower().endswith(".txt"):
            sources = [x.strip() for x in read_text(sources).splitlines() if x.strip()]
        else:
            sources = [str(sources)]
        n = len(sources)
        self.sources = [clean_str(x) for x in sources]
        self.imgs: List[np.ndarray] = [None] * n
        self.fps, self.frames, self.threads = [0.0] * n, [0] * n, [None] * n
        self.caps: List[cv2.VideoCapture] = [None] * n
        for i, s in enumerate(sources):
            cap = cv2.VideoCapture(int(s) if s.isnumeric() else s)
            if not cap.isOpened():
                cap.release()
                raise StreamError(f"Failed to open stream {i + 1}/{n}: {s}")
            ok, im = cap.read()
            if not ok:
                cap.release()
                raise StreamError(f"Stream {i + 1}/{n} opened but returned no frame: {s}")
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            fps = cap.get(cv2.CAP_PROP_FPS)
            self.fps[i] = fps if fps and np.isfinite(fps) and fps > 0 else 30.0
            count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
            self.frames[i] = int(count) if count and count > 0 else 0  # 0 = live, unbounded
            self.imgs[i], self.caps[i] = im, cap
            self.threads[i] = Thread(target=self.update, args=(i, cap, s), daemon=True)
            LOGGER.info(f"{i + 1}/{n}: {s}... success ({self.frames[i] or 'inf'} frames {w}x{h} at "
                        f"{self.fps[i]:.2f} FPS)")
            self.threads[i].start()
        shapes = {letterbox(x, img_size, stride=stride, auto=auto)[0].shape for x in self.imgs}
        self.rect = len(shapes) == 1  # same shape for every source: minimal padding, else square
        if not self.rect:
            LOGGER.warning("WARNING: stream shapes differ, frames are letterboxed to squares")

    def update(self, i: int, cap: cv2.VideoCapture, source: str) -> None:
        """Keep ``self.imgs[i]`` at the newest frame; ends at end of file (frames > 0) or when reading fails."""
        read = 1  # frames, when bounded, are consumed at the source's frame rate
        n = 1
        while cap.isOpened() and (not self.frames[i] or n < self.frames[i]):
            n += 1
            if not cap.grab():
                break
            if n % read == 0:
                ok, im = cap.retrieve()
                if not ok:
                    LOGGER.warning(f"WARNING: stream {source} unresponsive")
                    break
                self.imgs[i] = im
            time.sleep(1 / self.fps[i])
        cap.release()

    def __iter__(self):
        self.count = -1
        return self

    def __next__(self):
        self.count += 1
        if not any(t.is_alive() for t in self.threads) and self.count > 0:
            raise StopIteration
        im0 = [x.copy() for x in self.imgs]
        img = np.stack([letterbox(x, self.img_size, stride=self.stride, auto=self.rect and self.auto)[0]
                        for x in im0], 0)
        img = np.ascontiguousarray(img[..., ::-1].transpose(0, 3, 1, 2))  # BGR -> RGB, BHWC -> BCHW
        return self.sources, img, im0, None

    def __len__(self) -> int:
        return 10 ** 12  # effectively endless


class LoadWebcam:
    """Single local webcam (v5.0 helper): yields ``(name, img (3, H, W) RGB, im0 BGR, None)`` per frame."""

    def __init__(self, pipe: Union[str, int] = "0", img_size: int = 640, stride: int = 32):
        self.img_size, self.stride = img_size, stride
        self.pipe = int(pipe) if str(pipe).isnumeric() else pipe
        self.cap = cv2.VideoCapture(self.pipe)
        if not self.cap.isOpened():
            raise StreamError(f"Failed to open camera {pipe}")
        self.count = -1

    def __iter__(self):
        self.count = -1
        return self

    def __next__(self):
        self.count += 1
        ok, im0 = self.cap.read()
        if not ok:
            self.cap.release()
            raise StopIteration
        if isinstance(self.pipe, int):
            im0 = cv2.flip(im0, 1)  # a local camera is mirrored
        img = letterbox(im0, self.img_size, stride=self.stride)[0]
        return f"webcam{self.count}.jpg", _to_chw_rgb(img), im0, None

    def __len__(self) -> int:
        return 0
