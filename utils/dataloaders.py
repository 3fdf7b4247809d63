"""v7.0 import path of the data loaders: everything lives in :mod:`utils.datasets`."""
from utils.datasets import *  # noqa: F401,F403
from utils.datasets import (IMG_FORMATS, VID_FORMATS, InfiniteDataLoader, LoadImages,  # noqa: F401
                            LoadImagesAndLabels, LoadStreams, LoadWebcam, create_dataloader, img2label_paths,
                            seed_worker)
