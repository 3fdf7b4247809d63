"""Upstream import path ``utils.datasets`` (v5.0 / v6.x): re-exports only; nothing in the project imports it.

Training data lives in :mod:`data.datasets`, inference loaders in :mod:`data.loaders`, augmentations in
:mod:`data.augmentations`, label scanning in :mod:`data.label_cache`.
"""
from data.augmentations import (augment_hsv, box_candidates, hist_equalize, letterbox, mixup,  # noqa: F401
                                mosaic4, random_perspective)
from data.datasets import (NUM_THREADS, IndexSampler, InfiniteDataLoader, LoadImagesAndLabels,  # noqa: F401
                           autosplit, create_dataloader, help_url, img_files_from, img_formats, seed_worker,
                           vid_formats)
from data.label_cache import (CACHE_VERSION, IMG_FORMATS, VID_FORMATS, exif_size, img2label_paths,  # noqa: F401
                              verify_image_label)
from data.label_stats import labels_to_class_weights, labels_to_image_weights  # noqa: F401
from data.loaders import LoadImages, LoadStreams, LoadWebcam  # noqa: F401
