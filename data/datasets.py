"""Training / validation data: YOLO-format datasets, the augmentation pipeline and the dataloader.

The upstream path ``utils.datasets`` re-exports this module with the inference loaders (:mod:`data.loaders`) and
the augmentations (:mod:`data.augmentations`).
"""
from __future__ import annotations

import atexit
import logging
import multiprocessing.util  # noqa: F401  (its exit handler is registered before ours: see _stop_all_workers)
import os
import random
import signal
import weakref
from contextlib import nullcontext
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler, distributed

from data.augmentations import (augment_hsv, chw_rgb, draw_warp, letterbox, mixup, mosaic_labels, mosaic_origins,
                                 paint_mosaic, random_perspective, tile_in_box)
from data.label_cache import CACHE_VERSION, IMG_FORMATS, VID_FORMATS, cache_labels, img2label_paths
from data.scratch import WORKSPACE, imread_into
from utils.boxes import xywhn2xyxy, xyxy2xywhn
from utils.files import unique_real_paths, walk_files
from utils.text import read_text
from utils.torch_utils import torch_distributed_zero_first

LOGGER = logging.getLogger("yolov5")
NUM_THREADS = min(8, max(1, os.cpu_count() or 1))
img_formats, vid_formats = list(IMG_FORMATS), list(VID_FORMATS)  # v5.0 names
help_url = "https://github.com/ultralytics/yolov5/wiki/Train-Custom-Data"

# hyp keys read by the training augmentations
AUG_KEYS = ("hsv_h", "hsv_s", "hsv_v", "degrees", "translate", "scale", "shear", "perspective", "flipud",
            "fliplr", "mosaic", "mixup")


def img_files_from(path: Union[str, Path, Sequence[Union[str, Path]]], prefix: str = "") -> List[str]:
    """Image files of a split: a directory (recursive), a ``.txt`` list, an image, or a list of those.

    Each real image counts once: a folder's symlink loops are never followed, and an image listed twice or
    reached through two links is kept under its first path in sorted order (see :func:`utils.files.walk_files`).
    In a ``.txt`` list (UTF-8, or UTF-16 with a byte-order mark), a line starting with ``./`` is relative to the
    list's directory; another relative line is taken from the working directory when it exists there, else from
    the list's directory.
    """
    files: List[str] = []
    for p in path if isinstance(path, (list, tuple)) else [path]:
        p = Path(p).expanduser()
        if p.is_dir():
            files += walk_files(p, suffixes=IMG_FORMATS)
        elif p.is_file() and p.suffix.lower() == ".txt":
            files += _listed_files(p)
        elif p.is_file():
            files.append(str(p))
        else:
            raise FileNotFoundError(f"{prefix}{p} does not exist")
    files = sorted(x.replace("/", os.sep) for x in files if x.rsplit(".", 1)[-1].lower() in IMG_FORMATS)
    if not (isinstance(path, (str, Path)) and Path(path).expanduser().is_dir()):  # one folder: already unique
        files = unique_real_paths(files)
    if not files:
        raise FileNotFoundError(f"{prefix}No images found in {path}. Supported formats: {', '.join(IMG_FORMATS)}. "
                                f"See {help_url}")
    return files


def _listed_files(list_file: Path) -> List[str]:
    """The paths a ``.txt`` image list names (see :func:`img_files_from` for relative lines)."""
    parent, out = list_file.parent, []
    for line in read_text(list_file).splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("./"):
            out.append(str(parent / line[2:]))
        elif not os.path.isabs(line) and not os.path.exists(line):
            out.append(str(parent / line))
        else:
            out.append(line)
    return out


class LoadImagesAndLabels(Dataset):
    """A YOLO-format split: images + one ``.txt`` label file each (see ``img2label_paths``).

    Items are ``(img uint8 (3, H, W) RGB tensor, labels (n, 6) [0, cls, x, y, w, h] normalised, path, shapes)``
    where ``shapes = ((h0, w0), ((h / h0, w / w0), (pad_w, pad_h)))`` for letterboxed items, None for mosaics.
    Corrupt images / labels are reported once at construction and left out (``self.msgs``).

    ``cache``: False | True / 'ram' (decoded resized images kept in memory) | 'disk' (``.npy`` next to the image).
    ``nc``: when given, class ids >= nc are reported as corrupt labels. ``self.indices`` is the sampling order
    (image-weighted training overwrites it); the samplers of :func:`create_dataloader` read it every epoch.
    """

    cache_version = CACHE_VERSION

    def __init__(self, path, img_size: int = 640, batch_size: int = 16, augment: bool = False,
                 hyp: Optional[dict] = None, rect: bool = False, image_weights: bool = False,
                 cache_images: Union[bool, str] = False, single_cls: bool = False, stride: int = 32,
                 pad: float = 0.0, prefix: str = "", nc: Optional[int] = None, progress: bool = True):
        self.path = path
        self.img_size = img_size
        self.augment = augment
        self.hyp = hyp
        self.image_weights = image_weights
        self.rect = False if image_weights else rect
        self.mosaic = self.augment and not self.rect  # 4 images at a time during training
        self.mosaic_border = [-img_size // 2, -img_size // 2]
        self.stride = stride
        self.prefix = prefix
        if augment:
            missing = [k for k in AUG_KEYS if not hyp or k not in hyp]
            if missing:
                raise KeyError(f"{prefix}augment=True needs the hyperparameters {missing} (see data/hyp.scratch.yaml)")

        im_files = img_files_from(path, prefix)
        lb_files = img2label_paths(im_files)
        first = Path(path[0] if isinstance(path, (list, tuple)) else path)
        self.cache_path = (first if first.is_file() and first.suffix.lower() == ".txt"
                           else Path(lb_files[0]).parent).with_suffix(".cache")
        cache, _ = cache_labels(self.cache_path, im_files, lb_files, nc=nc, prefix=prefix, progress=progress)
        self.results = tuple(cache["results"])  # found, missing, empty, corrupt, total
        self.msgs: List[str] = list(cache["msgs"])
        if not cache["files"]:
            raise FileNotFoundError(f"{prefix}No usable images in {path}: every image was corrupt (see the warnings "
                                    f"above). See {help_url}")
        self.img_files: List[str] = list(cache["files"])
        self.label_files = img2label_paths(self.img_files)
        self.labels: List[np.ndarray] = [x.numpy().astype(np.float32).reshape(-1, 5) for x in cache["labels"]]
        self.shapes = np.array(cache["shapes"], dtype=np.float64).reshape(-1, 2)  # (w, h)
        self.segments: List[List[np.ndarray]] = [[s.numpy() for s in segs] for segs in cache["segments"]]
        if single_cls:
            for x in self.labels:
                x[:, 0] = 0
        if not sum(len(x) for x in self.labels):
            LOGGER.warning(f"{prefix}WARNING: no labels found in {path}, training on background only. See {help_url}")

        n = len(self.img_files)
        self.n = n
        self.batch = np.floor(np.arange(n) / batch_size).astype(int)  # batch index of each image
        self.indices = list(range(n))
        self.batch_shapes = None
        if self.rect:
            self._sort_for_rect(batch_size, pad)

        self._setup_image_cache(cache_images)

    def _setup_image_cache(self, cache_images: Union[bool, str]) -> None:
        """The decoded-image caches: empty, then filled in RAM or as .npy files next to the images when asked."""
        n = self.n
        self.imgs: List[Optional[np.ndarray]] = [None] * n
        self.img_hw0: List[Optional[tuple]] = [None] * n
        self.img_hw: List[Optional[tuple]] = [None] * n
        self._read_hw: Dict[int, tuple] = {}  # (h, w) of every image this process has loaded (resized)
        self.npy_files = [str(Path(f).with_suffix(".npy")) for f in self.img_files]
        if cache_images is True:
            cache_images = "ram"
        if cache_images:
            if cache_images not in ("ram", "disk"):
                raise ValueError(f"{self.prefix}cache must be 'ram', 'disk', True or False, got {cache_images!r}")
            self._cache_images(cache_images)

    @property
    def im_files(self) -> List[str]:  # v6.0+ name
        return self.img_files

    def _sort_for_rect(self, batch_size: int, pad: float) -> None:
        """Sort by aspect ratio and give each batch the smallest stride-multiple shape that fits its images."""
        ar = self.shapes[:, 1] / self.shapes[:, 0]  # h / w
        order = ar.argsort()
        self.img_files = [self.img_files[i] for i in order]
        self.label_files = [self.label_files[i] for i in order]
        self.labels = [self.labels[i] for i in order]
        self.segments = [self.segments[i] for i in order]
        self.shapes = self.shapes[order]
        ar = ar[order]
        nb = int(self.batch[-1]) + 1
        shapes = np.ones((nb, 2))
        for i in range(nb):
            ari = ar[self.batch == i]
            lo, hi = ari.min(), ari.max()
            if hi < 1:
                shapes[i] = [hi, 1]  # all wide: height shrinks
            elif lo > 1:
                shapes[i] = [1, 1 / lo]  # all tall: width shrinks
        self.batch_shapes = (np.ceil(shapes * self.img_size / self.stride + pad) * self.stride).astype(int)

    def _cache_images(self, mode: str) -> None:
        gb = 0.0
        fn = self._cache_to_disk if mode == "disk" else self.load_image
        with ThreadPool(NUM_THREADS) as pool:
            for i, out in enumerate(pool.imap(fn, range(self.n))):
                if mode == "disk":
                    gb += out
                else:
                    self.imgs[i], self.img_hw0[i], self.img_hw[i] = out
                    gb += self.imgs[i].nbytes
        LOGGER.info(f"{self.prefix}Caching images ({gb / 1e9:.2f}GB {mode})")

    def _cache_to_disk(self, i: int) -> int:
        f = Path(self.npy_files[i])
        if not f.exists():
            np.save(f, cv2.imread(self.img_files[i]), allow_pickle=False)
        return f.stat().st_size

    def __len__(self) -> int:
        return len(self.img_files)

    def load_image(self, i: int):
        """Image i resized so that its long side is ``img_size`` -> ``(img BGR, (h0, w0), (h, w))``."""
        return self._load_image(i)

    def _load_image(self, i: int, tile: Optional[int] = None):
        """:meth:`load_image`; with ``tile`` (0-3) the image lives in this thread's workspace, valid until the next
        item asks for the same tile (a new array otherwise)."""
        if self.imgs[i] is not None:
            self._read_hw[i] = self.img_hw[i]
            return self.imgs[i], self.img_hw0[i], self.img_hw[i]
        npy = self.npy_files[i]
        if os.path.isfile(npy):
            im = np.load(npy, allow_pickle=False)
        elif tile is None:
            im = cv2.imread(self.img_files[i])
        else:  # decode into the workspace: the tile itself, or a buffer the resize reads from
            w0, h0 = (int(x) for x in self.shapes[i])  # from the label scan; a wrong guess only costs an allocation
            im = imread_into(self.img_files[i], WORKSPACE.array("decode" if max(h0, w0) != self.img_size
                                                                else f"tile{tile}", (h0, w0, 3)))
        if im is None:
            raise FileNotFoundError(f"Image not found or unreadable: {self.img_files[i]}")
        h0, w0 = im.shape[:2]
        r = self.img_size / max(h0, w0)
        if r != 1:  # always to the training scale, so train and val see objects at the same size
            interp = cv2.INTER_AREA if r < 1 and not self.augment else cv2.INTER_LINEAR
            size = (max(1, round(w0 * r)), max(1, round(h0 * r)))
            dst = None if tile is None else WORKSPACE.array(f"tile{tile}", (size[1], size[0], im.shape[2]))
            im = cv2.resize(im, size, dst=dst, interpolation=interp)
        self._read_hw[i] = im.shape[:2]
        return im, (h0, w0), im.shape[:2]

    def load_mosaic(self, index: int, slot: int = 0):
        """4-image mosaic around a random centre, warped and cropped back to ``img_size``.

        The image is in this thread's workspace (``slot`` 0 or 1, for mixup's second mosaic) until the next item.
        Only the part of the (2s, 2s) canvas that the warp reads is painted, and a tile outside it is not even
        decoded when its size is known (the image was read before by this process).
        """
        s, hyp = self.img_size, self.hyp
        centre = tuple(int(random.uniform(-b, 2 * s + b)) for b in self.mosaic_border)  # (xc, yc)
        ids = [index] + random.choices(self.indices, k=3)
        warp = draw_warp(2 * s, 2 * s, degrees=hyp["degrees"], translate=hyp["translate"], scale=hyp["scale"],
                         shear=hyp["shear"], perspective=hyp["perspective"], border=tuple(self.mosaic_border))
        images = [None if i in self._read_hw else self._load_image(i, tile=k)[0] for k, i in enumerate(ids)]
        shapes = [self._read_hw[i] for i in ids]
        origins = mosaic_origins(shapes, centre)
        box = warp.source_box(2 * s, 2 * s)
        for k, i in enumerate(ids):
            if images[k] is None and tile_in_box(shapes[k], origins[k], box):
                images[k] = self._load_image(i, tile=k)[0]
        shown = [k for k in range(4) if images[k] is not None]
        canvas = WORKSPACE.array("canvas", (2 * s, 2 * s, 3))
        paint_mosaic(canvas, [images[k] for k in shown], [origins[k] for k in shown], box)
        labels4, segments4 = mosaic_labels([self.labels[i] for i in ids], [self.segments[i] for i in ids], shapes,
                                           origins, s)
        out_w, out_h = warp.size
        img = warp.image(canvas, dst=WORKSPACE.array(f"mosaic{slot}", (out_h, out_w, 3)))
        return img, warp.labels(labels4, segments4)

    def __getitem__(self, index: int):
        index = int(index)
        hyp = self.hyp
        if self.mosaic and random.random() < hyp["mosaic"]:
            img, labels = self.load_mosaic(index)
            shapes = None
            if random.random() < hyp["mixup"]:
                img2, labels2 = self.load_mosaic(random.randint(0, self.n - 1), slot=1)
                img, labels = mixup(img, labels, img2, labels2)
        else:
            img, (h0, w0), (h, w) = self._load_image(index, tile=0)
            shape = self.batch_shapes[self.batch[index]] if self.rect else self.img_size
            img, ratio, pad = letterbox(img, shape, auto=False, scaleup=self.augment)
            shapes = (h0, w0), ((h / h0, w / w0), (float(pad[0]), float(pad[1])))
            labels = self.labels[index].copy()
            if labels.size:
                labels[:, 1:] = xywhn2xyxy(labels[:, 1:], ratio[0] * w, ratio[1] * h, pad[0], pad[1])
            if self.augment:
                img, labels = random_perspective(img, labels, degrees=hyp["degrees"], translate=hyp["translate"],
                                                 scale=hyp["scale"], shear=hyp["shear"],
                                                 perspective=hyp["perspective"])

        labels = np.asarray(labels, dtype=np.float32).reshape(-1, 5)
        nl = len(labels)
        if nl:
            labels[:, 1:5] = xyxy2xywhn(labels[:, 1:5], w=img.shape[1], h=img.shape[0], clip=True, eps=1e-3)
        flip = None  # OpenCV flip code (0 up-down, 1 left-right, -1 both), applied by the HWC -> CHW copy
        if self.augment:
            cached = self.imgs[index]
            if cached is not None and np.shares_memory(img, cached):
                img = img.copy()  # no warp or padding made a new array: the HSV jitter must not reach the RAM cache
            augment_hsv(img, hgain=hyp["hsv_h"], sgain=hyp["hsv_s"], vgain=hyp["hsv_v"])
            if random.random() < hyp["flipud"]:
                flip = 0
                labels[:, 2] = 1 - labels[:, 2]
            if random.random() < hyp["fliplr"]:
                flip = 1 if flip is None else -1
                labels[:, 1] = 1 - labels[:, 1]

        labels_out = np.zeros((nl, 6), np.float32)  # column 0: image index in the batch (collate_fn)
        labels_out[:, 1:] = labels
        img = chw_rgb(img, flip)  # a new array: the workspace arrays stay behind
        return torch.from_numpy(img), torch.from_numpy(labels_out), self.img_files[index], shapes

    @staticmethod
    def collate_fn(batch):
        """Stack images; concatenate targets with their image index in column 0."""
        imgs, labels, paths, shapes = zip(*batch)
        for i, lb in enumerate(labels):
            lb[:, 0] = i
        return torch.stack(imgs, 0), torch.cat(labels, 0), paths, shapes

    @staticmethod
    def collate_fn4(batch):
        """Quad collate: every 4 items become one 2x image, either a 2x2 tile or item 0 upsampled 2x."""
        imgs, labels, paths, shapes = zip(*batch)
        n = len(batch) // 4
        out_imgs, out_labels = [], []
        for i in range(n):
            j = 4 * i
            if random.random() < 0.5:
                im = F.interpolate(imgs[j][None].float(), scale_factor=2.0, mode="bilinear", align_corners=False)
                im = im[0].round().clamp(0, 255).to(imgs[j].dtype)
                lb = labels[j].clone()
            else:
                top = torch.cat((imgs[j], imgs[j + 1]), 2)  # side by side (W axis of CHW)
                bottom = torch.cat((imgs[j + 2], imgs[j + 3]), 2)
                im = torch.cat((top, bottom), 1)
                parts = []
                for k, (ox, oy) in enumerate(((0, 0), (1, 0), (0, 1), (1, 1))):
                    lb = labels[j + k].clone()
                    lb[:, 2] = (lb[:, 2] + ox) / 2
                    lb[:, 3] = (lb[:, 3] + oy) / 2
                    lb[:, 4:6] /= 2
                    parts.append(lb)
                lb = torch.cat(parts, 0)
            lb[:, 0] = i
            out_imgs.append(im)
            out_labels.append(lb)
        return torch.stack(out_imgs, 0), torch.cat(out_labels, 0), paths[::4][:n], shapes[::4][:n]


class IndexSampler(Sampler):
    """Single-process sampler yielding ``dataset.indices`` (read at every epoch start), optionally shuffled."""

    def __init__(self, dataset: LoadImagesAndLabels, shuffle: bool = False, generator=None):
        self.dataset, self.shuffle, self.generator = dataset, shuffle, generator

    def __iter__(self) -> Iterator[int]:
        idx = list(self.dataset.indices)
        if self.shuffle:
            idx = [idx[i] for i in torch.randperm(len(idx), generator=self.generator).tolist()]
        return iter(idx)

    def __len__(self) -> int:
        return len(self.dataset.indices)


class DistributedIndexSampler(distributed.DistributedSampler):
    """DistributedSampler whose positions are mapped through ``dataset.indices`` (image weights under DDP)."""

    def __iter__(self) -> Iterator[int]:
        indices = self.dataset.indices
        return iter([indices[i] for i in super().__iter__()])


class InfiniteDataLoader(DataLoader):
    """DataLoader whose worker processes persist across epochs (no re-spawn cost per epoch) and can be started
    ahead of the first iteration (:meth:`start_workers`)."""

    def __init__(self, *args, **kwargs):
        if kwargs.get("num_workers", 0) > 0:
            kwargs.setdefault("persistent_workers", True)
        super().__init__(*args, **kwargs)
        self._started_iterator = None  # made by start_workers, handed out by the next __iter__ as it is
        _LOADERS.add(self)

    def start_workers(self) -> bool:
        """Fork the worker processes now and let them prepare the first batches; False if there are none.

        A worker is a fork of this process: every page both share is copy-on-write, and each page the parent
        writes afterwards costs a copy. The validation loader, forked at its first iteration after training had
        touched ~2 GB, made that first validation batch 2 s slower (110,000+ page copies); forked while the
        process is still small it costs nothing. The first epoch's order is drawn here, so whatever decides it
        (the sampler's epoch, ``dataset.indices``) must be set before.
        """
        if self.num_workers == 0 or not self.persistent_workers or self._iterator is not None:
            return False
        self._started_iterator = self._iterator = self._get_iterator()
        return True

    def __iter__(self):
        if self._started_iterator is not None:  # its batches are this epoch's: a reset would discard them
            it, self._started_iterator = self._started_iterator, None
            return it
        return super().__iter__()

    def stop_workers(self) -> None:
        """End the worker processes now (they are started again by the next iteration)."""
        it, self._iterator, self._started_iterator = self._iterator, None, None
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()


_LOADERS: "weakref.WeakSet[InfiniteDataLoader]" = weakref.WeakSet()


@atexit.register
def _stop_all_workers() -> None:
    """At exit, end the workers of every loader still referenced (e.g. by the traceback of an uncaught error).

    Workers ignore SIGTERM (see seed_worker), so multiprocessing's own exit handler, which terminates daemonic
    children and then joins them, would wait for them forever. Registered after it, this handler runs first.
    """
    for loader in list(_LOADERS):
        loader.stop_workers()


def seed_worker(worker_id: int) -> None:
    """Seed ``random`` / ``np.random`` of a worker from its torch seed (derived from the loader generator)."""
    cv2.setNumThreads(0)  # one OpenCV thread per worker: the workers already use the cores
    # Ctrl-C / SIGTERM reach the whole process group: the trainer stops at a safe point and ends the workers
    # itself; a worker dying of the signal first would make the main process fail mid-batch instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    worker_seed = torch.initial_seed() % 2 ** 32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def create_dataloader(path, imgsz: int, batch_size: int, stride: int, single_cls: bool = False,
                      hyp: Optional[dict] = None, augment: bool = False, cache: Union[bool, str] = False,
                      pad: float = 0.0, rect: bool = False, rank: int = -1, workers: int = 8,
                      image_weights: bool = False, quad: bool = False, prefix: str = "", shuffle: bool = False,
                      seed: int = 0, nc: Optional[int] = None):
    """-> ``(loader, dataset)``; batches are ``(imgs uint8 (B, 3, H, W), targets (N, 6), paths, shapes)``.

    ``rank != -1`` shards with a DistributedSampler (rank 0 scans the labels first). ``seed`` fixes the
    shuffling order and the per-worker augmentation RNG, so two runs with the same seed see identical batches.
    """
    if rect and shuffle:
        LOGGER.warning(f"{prefix}WARNING: rect=True is incompatible with shuffle, setting shuffle=False")
        shuffle = False
    if rank != -1:
        ctx = torch_distributed_zero_first(rank)
    else:
        ctx = nullcontext()
    with ctx:  # rank 0 builds the label cache, the others then read it
        dataset = LoadImagesAndLabels(path, imgsz, batch_size, augment=augment, hyp=hyp, rect=rect,
                                      image_weights=image_weights, cache_images=cache, single_cls=single_cls,
                                      stride=int(stride), pad=pad, prefix=prefix, nc=nc,
                                      progress=rank in (-1, 0))
    batch_size = min(batch_size, len(dataset))
    world = torch.distributed.get_world_size() if rank != -1 and torch.distributed.is_initialized() else 1
    nw = min((os.cpu_count() or 1) // max(world, 1), batch_size if batch_size > 1 else 0, workers)
    generator = torch.Generator()
    generator.manual_seed(6148914691236517205 + seed + max(rank, 0))
    if rank != -1:
        sampler = DistributedIndexSampler(dataset, shuffle=shuffle, seed=seed)
    else:
        sampler = IndexSampler(dataset, shuffle=shuffle, generator=generator)
    loader = InfiniteDataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=nw,
                                pin_memory=torch.cuda.is_available(),
                                collate_fn=LoadImagesAndLabels.collate_fn4 if quad else LoadImagesAndLabels.collate_fn,
                                worker_init_fn=seed_worker, generator=generator)
    return loader, dataset


def autosplit(path: Union[str, Path], weights=(0.9, 0.1, 0.0), annotated_only: bool = False, seed: int = 0) -> None:
    """Split the images of a directory into ``autosplit_{train,val,test}.txt`` files written next to it."""
    path = Path(path)
    files = img_files_from(path)
    if annotated_only:
        files = [f for f, lb in zip(files, img2label_paths(files)) if os.path.isfile(lb)]
    rng = random.Random(seed)
    split = rng.choices([0, 1, 2], weights=weights, k=len(files))
    names = ["autosplit_train.txt", "autosplit_val.txt", "autosplit_test.txt"]
    outs = [path.parent / x for x in names]
    for o in outs:
        o.unlink(missing_ok=True)
    for f, k in zip(files, split):
        with open(outs[k], "a", encoding="utf-8") as fh:
            fh.write("./" + Path(f).relative_to(path.parent).as_posix() + "\n")
