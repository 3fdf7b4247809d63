"""Where detect's frames come from: local files (images, directories, globs, ``.txt`` lists, videos) or live
streams (webcam index, rtsp/rtmp/http URL, or a ``.txt`` list of those), as uniform batches.

An unreadable image or video is never silent: alone it is an error naming the file; inside a directory, glob or
list it is skipped with a warning naming it, counted, and reported again in the run's summary. So is a file a
``.txt`` list names that does not exist. A folder or ``**`` glob is walked without following symlink loops, and a
file reached twice (through links, or listed twice) is read once.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from data.loaders import LoadImages, LoadStreams, UnreadableInputError
from utils.errors import MissingFileError, UserError
from utils.files import glob_files
from utils.log import LOGGER, count_noun
from utils.text import read_text

STREAM_PREFIXES = ("rtsp://", "rtmp://", "http://", "https://")


class SourceError(UserError):
    """A ``--source`` that gave no readable image or video at all."""


class MissingInputError(UnreadableInputError):
    """A file named in a ``.txt`` source list that does not exist (skipped like an unreadable one)."""

    def __init__(self, path: str, list_file: str):
        super().__init__(path, "missing file", "")
        self.args = (f"missing file (listed in {list_file}): {path}",)

    def __str__(self) -> str:
        return self.args[0]


def is_stream_source(source: str) -> bool:
    """Webcam index, stream URL, or a ``.txt`` list whose entries are streams (v5.0 meaning of ``.txt``).

    A ``.txt`` list of local files / directories / globs is read as images and videos instead (v7.0 meaning).
    """
    if source.isnumeric() or source.lower().startswith(STREAM_PREFIXES):
        return True
    if source.lower().endswith(".txt") and Path(source).is_file():
        lines = [x.strip() for x in read_text(source).splitlines() if x.strip()]
        return bool(lines) and all(x.isnumeric() or x.lower().startswith(STREAM_PREFIXES) for x in lines)
    return False


def check_source(source: str) -> None:
    """One clear error for a local source that does not exist (streams are checked when opened)."""
    if any(c in source for c in "*?["):
        if not glob_files(source):
            raise MissingFileError(f"--source '{source}': no file matches this pattern")
    elif not Path(source).exists():
        raise MissingFileError(f"--source '{source}' does not exist")


def resolve_source(source: Union[str, Path]) -> Tuple[str, bool]:
    """``(source, is_stream)``; local sources are checked and made absolute (absolute paths in the log lines)."""
    source = str(source)
    if is_stream_source(source):
        return source, True
    check_source(source)
    return os.path.abspath(os.path.expanduser(source)), False


@dataclass
class Batch:
    """One step of the source: ``img`` (n, 3, H, W) uint8 RGB letterboxed, and per image its path, BGR original,
    log prefix ('image 1/2 /abs/a.jpg: ', 'video 1/1 (3/9) /abs/v.mp4: ', '0: ') and frame number."""

    img: np.ndarray
    paths: List[str]
    im0s: List[np.ndarray]
    prefixes: List[str]
    frame: int
    mode: str  # 'image' | 'video' | 'stream'
    vid_cap: Optional[cv2.VideoCapture] = None


@dataclass
class Skipped:
    """The unreadable inputs skipped so far."""

    errors: List[UnreadableInputError] = field(default_factory=list)

    def add(self, e: UnreadableInputError) -> None:
        LOGGER.warning(f"WARNING: skipping {e}")
        self.errors.append(e)

    def __len__(self) -> int:
        return len(self.errors)

    def summary(self) -> str:
        """'3 unreadable inputs skipped (2 images, 1 video): a.jpg, b.jpg, c.mp4', or '2 inputs skipped (1 image,
        1 missing file): ...' when a listed file is missing ('' when none)."""
        if not self.errors:
            return ""
        counts = [(sum(e.kind == k for e in self.errors), k) for k in ("image", "video", "missing file")]
        kinds = [count_noun(n, k) for n, k in counts if n]
        names = [Path(e.path).name for e in self.errors]
        shown = ", ".join(names[:5]) + (f", ... ({len(names) - 5} more)" if len(names) > 5 else "")
        noun = "input" if any(e.kind == "missing file" for e in self.errors) else "unreadable input"
        return f"{count_noun(len(self.errors), noun)} skipped ({', '.join(kinds)}): {shown}"


class Source:
    """An opened ``--source``: ``batches()`` yields :class:`Batch` es; ``bs`` images per batch (streams: one per
    stream), ``stream`` (live sources), ``skipped`` (unreadable or missing files passed over)."""

    def __init__(self, source: str, stream: bool, size: Union[int, Sequence[int]], stride: int, auto: bool,
                 vid_stride: int = 1):
        self.source, self.stream = source, stream
        self.skipped = Skipped()
        if stream:
            self.dataset = LoadStreams(source, img_size=size, stride=stride, auto=auto)
            self.bs = len(self.dataset.sources)
        else:
            self.dataset = LoadImages(source, img_size=size, stride=stride, auto=auto, vid_stride=vid_stride)
            self.bs = 1
            for path, list_file in self.dataset.missing:
                self.skipped.add(MissingInputError(path, list_file))

    def batches(self) -> Iterator[Batch]:
        items = iter(self.dataset)
        while True:
            try:
                path, img, im0s, vid_cap = next(items)
            except StopIteration:
                return
            except UnreadableInputError as e:
                if self.dataset.nf == 1:  # the only input: nothing to skip to
                    raise
                self.skipped.add(e)
                continue
            yield self._batch(path, img, im0s, vid_cap)

    def _batch(self, path, img: np.ndarray, im0s, vid_cap) -> Batch:
        d = self.dataset
        if self.stream:
            return Batch(img, list(path), list(im0s), [f"{i}: " for i in range(len(path))], d.count, "stream")
        return Batch(img[None], [path], [im0s], [d.s], d.frame, d.mode, vid_cap)

    def check_read(self, seen: int) -> None:
        """A source of which nothing could be read is an error, not an empty run."""
        if not seen and self.skipped:
            raise SourceError(f"--source '{self.source}': no readable image or video ({self.skipped.summary()})")
