"""Arrays reused from one training item to the next, one set per thread, and image reads into them.

A mosaic item passes some 10 MB through temporaries: four decoded (and resized) images, the 2s x 2s canvas,
the warped image and its HSV planes. Blocks of that size come from ``mmap`` or the top of the heap and go back to
the kernel when freed, so fresh allocations would pay page faults on every item; a dataloader worker keeps these
arrays instead. They are only ever intermediates: what a dataset item hands out is a new array.
"""
from __future__ import annotations

import threading
from typing import Dict, Optional, Sequence

import cv2
import numpy as np


class Workspace(threading.local):
    """Named scratch arrays of this thread; an array keeps the memory of the largest shape asked under its name."""

    def __init__(self) -> None:
        self._arrays: Dict[str, np.ndarray] = {}

    def array(self, name: str, shape: Sequence[int], dtype=np.uint8) -> np.ndarray:
        """A C-contiguous array of ``shape`` (contents undefined), valid until ``name`` is asked for again."""
        size, dtype = int(np.prod(shape)), np.dtype(dtype)
        flat = self._arrays.get(name)
        if flat is None or flat.size < size or flat.dtype != dtype:
            flat = self._arrays[name] = np.empty(size, dtype)
        return flat[:size].reshape(shape)


WORKSPACE = Workspace()
_decode_into = hasattr(cv2, "imcount")  # imread(filename, dst, flags) is OpenCV >= 4.10: found out on first use


def imread_into(path: str, dst: np.ndarray) -> Optional[np.ndarray]:
    """``cv2.imread(path)`` (BGR, EXIF orientation applied), decoded into ``dst`` when it has the image's shape.

    Returns the image: ``dst`` itself, or a new array when the shapes differ or this OpenCV cannot decode into a
    given array; None when the file cannot be read. The pixels are those of a plain ``cv2.imread``.
    """
    global _decode_into
    # imread into dst leaves dst as it was when the file is missing or its header unreadable: only a file whose
    # header OpenCV reads goes that way, anything else to the plain imread (which says None)
    if _decode_into and cv2.imcount(path) >= 1:
        try:
            im = cv2.imread(path, dst=dst, flags=cv2.IMREAD_COLOR)
        except TypeError:  # no dst argument before OpenCV 4.10
            _decode_into = False
        except cv2.error as e:  # dst is not the image's shape (OpenCV refuses it), or no such overload here
            _decode_into = "Overload resolution failed" not in str(e)
        else:
            if im is not None and im.size:
                return im
    return cv2.imread(path)
