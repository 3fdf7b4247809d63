"""Upstream import path ``utils.augmentations`` (v6.0+): re-exports only; the code is in :mod:`data.augmentations`."""
from data.augmentations import *  # noqa: F401,F403
from data.augmentations import (augment_hsv, box_candidates, hist_equalize, letterbox, mixup,  # noqa: F401
                                mosaic4, random_perspective)
