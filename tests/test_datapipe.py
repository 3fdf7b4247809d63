"""The cheaper training pipeline gives exactly the items of the plain one (tests/datapipe_reference.py, commit
f5e98d3's code path) for the same random state: mosaic (with mixup, rotation, shear, perspective, polygons),
letterboxed training items, the rect / letterbox validation path, RAM-cached images. Plus the pieces it rests on:
the warp's source box, decoding into a reused array, the HWC BGR -> CHW RGB copy with flips."""
import random
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import datapipe_reference as reference
from data.augmentations import chw_rgb, draw_warp, paint_mosaic
from data.datasets import LoadImagesAndLabels
from data import scratch
from data.scratch import Workspace, imread_into

ROOT = Path(__file__).resolve().parents[1]
HYP = yaml.safe_load((ROOT / "data" / "hyp.scratch.yaml").read_text())
IMG = 96
# (h, w) around IMG = 96: exact long side, shrunk, enlarged, square, tall
SIZES = [(72, 96), (150, 200), (40, 60), (96, 96), (130, 70), (96, 64)]


def _texture(rng, h, w):
    """Smooth random colours: interpolation differences would show, JPEG keeps them."""
    small = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _dataset(root: Path, polygons: bool = False, n: int = 9) -> Path:
    """n JPEGs of the SIZES (one PNG, one with EXIF orientation 6), 1-3 boxes or polygons each."""
    rng = np.random.default_rng(1)
    for i in range(n):
        h, w = SIZES[i % len(SIZES)]
        im = _texture(rng, h, w)
        f = root / "images" / (f"im{i}.png" if i == 2 else f"im{i}.jpg")
        f.parent.mkdir(parents=True, exist_ok=True)
        if i == 4:  # stored sideways with an EXIF rotation: OpenCV and the label scan turn it upright
            exif = Image.Exif()
            exif[0x0112] = 6
            Image.fromarray(np.ascontiguousarray(np.rot90(im, 1)[..., ::-1])).save(f, exif=exif, quality=90)
        else:
            cv2.imwrite(str(f), im)
        rows = []
        for _ in range(1 + i % 3):
            x, y = rng.uniform(0.2, 0.8, 2)
            bw, bh = rng.uniform(0.1, 0.35, 2)
            c = int(rng.integers(0, 3))
            if polygons:  # a hexagon inside the box
                t = np.linspace(0, 2 * np.pi, 7)[:-1]
                pts = np.stack([x + bw / 2 * np.cos(t), y + bh / 2 * np.sin(t)], 1).round(4)
                rows.append(f"{c} " + " ".join(f"{v}" for v in pts.ravel()))
            else:
                rows.append(f"{c} {x:.4f} {y:.4f} {bw:.4f} {bh:.4f}")
        lb = root / "labels" / f"{f.stem}.txt"
        lb.parent.mkdir(parents=True, exist_ok=True)
        lb.write_text("\n".join(rows) + "\n")
    return root / "images"


@pytest.fixture(scope="module")
def boxes_ds(tmp_path_factory):
    return _dataset(tmp_path_factory.mktemp("dp_boxes"))


@pytest.fixture(scope="module")
def polygon_ds(tmp_path_factory):
    return _dataset(tmp_path_factory.mktemp("dp_polygons"), polygons=True)


def _same_items(ds, n_items: int, seed: int = 0) -> None:
    """ds[i] == reference.item(ds, i) for the same random state, over a sequence of items (the reused arrays
    and the known image sizes carry over from one item to the next, as in a worker)."""
    order = random.Random(seed).choices(range(ds.n), k=n_items)
    for k, i in enumerate(order):
        random.seed(seed * 1000 + k)
        np.random.seed(seed * 1000 + k)
        got = ds[i]
        state = random.getstate(), np.random.get_state()
        random.seed(seed * 1000 + k)
        np.random.seed(seed * 1000 + k)
        want = reference.item(ds, i)
        where = f"item {k} (image {i})"
        assert got[0].dtype == want[0].dtype and got[0].shape == want[0].shape, where
        assert torch.equal(got[0], want[0]), f"{where}: {int((got[0] != want[0]).sum())} pixel values differ"
        assert got[1].dtype == want[1].dtype and torch.equal(got[1], want[1]), where
        assert got[2:] == want[2:], where
        # and the same random numbers were drawn (a later item would differ otherwise)
        assert random.getstate() == state[0] and np.array_equal(np.random.get_state()[1], state[1][1]), where


@pytest.mark.parametrize("name, change", [
    ("scratch defaults", {}),
    ("rotation, shear, flips, mixup, wide scale", dict(degrees=15.0, shear=8.0, flipud=0.5, mixup=1.0, scale=0.9)),
    ("perspective", dict(perspective=0.0008, degrees=5.0)),
])
def test_mosaic_items_equal_the_plain_pipeline(boxes_ds, name, change):
    ds = LoadImagesAndLabels(boxes_ds, IMG, 4, augment=True, hyp=dict(HYP, **change), progress=False)
    _same_items(ds, 24)


def test_mosaic_items_with_polygons_equal_the_plain_pipeline(polygon_ds):
    ds = LoadImagesAndLabels(polygon_ds, IMG, 4, augment=True, hyp=dict(HYP, degrees=10.0), progress=False)
    assert all(len(s) for s in ds.segments)  # the polygon branch of the warp
    _same_items(ds, 16, seed=1)


def test_tiles_outside_the_warp_are_not_decoded_and_change_nothing(boxes_ds, monkeypatch):
    ds = LoadImagesAndLabels(boxes_ds, IMG, 4, augment=True, hyp=dict(HYP, scale=0.9), progress=False)
    loads = []
    real = ds._load_image
    monkeypatch.setattr(ds, "_load_image", lambda i, tile=None: loads.append(i) or real(i, tile))
    _same_items(ds, 40, seed=2)
    assert len(loads) < 4 * 40  # some tiles of known size fell outside what the warp reads


def test_wrong_size_in_the_label_cache_changes_nothing(boxes_ds):
    """The scan's (w, h) only picks the decode buffer: a wrong one costs an allocation, not a wrong item."""
    ds = LoadImagesAndLabels(boxes_ds, IMG, 4, augment=True, hyp=HYP, progress=False)
    ds.shapes = ds.shapes[:, ::-1] + 3
    _same_items(ds, 12, seed=3)


@pytest.mark.parametrize("augment", [False, True])
def test_letterboxed_items_equal_the_plain_pipeline(boxes_ds, augment):
    """rect batches (validation, and augmented training without mosaic) and square letterboxes."""
    hyp = dict(HYP, degrees=5.0, flipud=0.5)
    for rect in (True, False):
        ds = LoadImagesAndLabels(boxes_ds, IMG, 4, augment=augment, hyp=hyp, rect=rect, pad=0.5, progress=False)
        ds.mosaic = False  # square letterbox also when augmenting
        _same_items(ds, 10, seed=4)


def test_ram_cached_images_give_the_same_items(boxes_ds):
    ds = LoadImagesAndLabels(boxes_ds, IMG, 4, augment=True, hyp=dict(HYP, mixup=0.5), cache_images="ram",
                             progress=False)
    cached = [im.copy() for im in ds.imgs]
    _same_items(ds, 12, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(cached, ds.imgs))  # the cache is never written to


def test_hsv_jitter_never_reaches_the_ram_cache(boxes_ds):
    """Without mosaic and with every geometric hyp at 0, neither letterbox nor the warp makes a new array for an
    image that already has the training size: the HSV jitter (in place) must work on a copy, or every epoch
    would jitter the cached image again."""
    hyp = dict(HYP, mosaic=0.0, mixup=0.0, degrees=0.0, translate=0.0, scale=0.0, shear=0.0, perspective=0.0,
               hsv_h=0.5, hsv_s=0.9, hsv_v=0.9)
    ds = LoadImagesAndLabels(boxes_ds, IMG, 4, augment=True, hyp=hyp, cache_images="ram", progress=False)
    cached = [im.copy() for im in ds.imgs]
    random.seed(0)
    items = [ds[i] for i in range(ds.n) for _ in range(2)]
    assert all(np.array_equal(a, b) for a, b in zip(cached, ds.imgs))
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(items[::2], items[1::2]))  # the jitter did run


def test_source_box_holds_every_pixel_the_warp_reads():
    """Noise outside the box must not reach the warped image, for warps of every kind."""
    rng = np.random.default_rng(0)
    random.seed(0)
    s, cropped = 64, 0
    for k in range(60):
        warp = draw_warp(2 * s, 2 * s, degrees=45.0 * (k % 3), translate=0.3, scale=0.9, shear=10.0 * (k % 2),
                         border=(-s // 2, -s // 2))
        x1, y1, x2, y2 = warp.source_box(2 * s, 2 * s)
        assert 0 <= x1 <= x2 <= 2 * s and 0 <= y1 <= y2 <= 2 * s
        cropped += (x2 - x1) * (y2 - y1) < (2 * s) ** 2
        full = rng.integers(0, 256, (2 * s, 2 * s, 3), dtype=np.uint8)
        boxed = rng.integers(0, 256, full.shape, dtype=np.uint8)
        boxed[y1:y2, x1:x2] = full[y1:y2, x1:x2]
        assert np.array_equal(warp.image(full), warp.image(boxed)), (k, warp.m)
    assert cropped > 20  # the box is worth computing: most warps read part of the canvas only


def test_paint_mosaic_touches_only_the_box():
    canvas = np.zeros((40, 40, 3), np.uint8)
    tiles = [np.full((10, 30, 3), 1 + k, np.uint8) for k in range(4)]
    origins = [(-10, 10), (20, 10), (-10, 20), (20, 20)]
    paint_mosaic(canvas, tiles, origins, box=(5, 5, 30, 35))
    assert (canvas[:5] == 0).all() and (canvas[35:] == 0).all() and (canvas[:, 30:] == 0).all()
    assert (canvas[5:10, 5:30] == 114).all() and (canvas[30:35, 5:30] == 114).all()  # grey where no tile is
    assert (canvas[10:20, 5:20] == 1).all() and (canvas[10:20, 20:30] == 2).all()
    assert (canvas[20:30, 5:20] == 3).all() and (canvas[20:30, 20:30] == 4).all()


@pytest.mark.parametrize("flip", [None, 0, 1, -1])
def test_chw_rgb_is_a_new_flipped_channel_first_copy(flip):
    im = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    want = {None: im, 0: im[::-1], 1: im[:, ::-1], -1: im[::-1, ::-1]}[flip].transpose(2, 0, 1)[::-1]
    out = chw_rgb(im, flip)
    assert out.flags.c_contiguous and not np.may_share_memory(out, im) and np.array_equal(out, want)


def test_imread_into_equals_imread(tmp_path):
    rng = np.random.default_rng(0)
    jpg, png = str(tmp_path / "a.jpg"), str(tmp_path / "b.png")
    cv2.imwrite(jpg, _texture(rng, 30, 40))
    cv2.imwrite(png, _texture(rng, 30, 40))
    rotated = str(tmp_path / "r.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_texture(rng, 30, 40)).save(rotated, exif=exif)
    for f in (jpg, png, rotated):
        want = cv2.imread(f)
        buf = np.zeros(want.shape, np.uint8)
        got = imread_into(f, buf)
        assert np.array_equal(got, want), f
        other = imread_into(f, np.zeros((3, 3, 3), np.uint8))  # wrong shape: a new array, same pixels
        assert np.array_equal(other, want)
    assert cv2.imread(rotated).shape == (40, 30, 3)  # the EXIF rotation was applied


def test_imread_into_unreadable_files_give_none_not_the_old_buffer(tmp_path):
    good = tmp_path / "a.jpg"
    cv2.imwrite(str(good), np.full((30, 40, 3), 50, np.uint8))
    buf = np.full((30, 40, 3), 7, np.uint8)
    (tmp_path / "cut.jpg").write_bytes(good.read_bytes()[:20])  # header cut short
    (tmp_path / "text.jpg").write_text("not an image")
    for name in ("cut.jpg", "text.jpg", "missing.jpg"):
        assert imread_into(str(tmp_path / name), buf) is None, name


def test_imread_into_without_dst_support_falls_back_to_imread(tmp_path, monkeypatch):
    """OpenCV < 4.10 has no imread(filename, dst): the first call finds out, every call still gives the image."""
    f = str(tmp_path / "a.jpg")
    cv2.imwrite(f, _texture(np.random.default_rng(0), 30, 40))
    plain = cv2.imread

    def old_imread(path, flags=cv2.IMREAD_COLOR, **kwargs):
        if kwargs:
            raise TypeError("'dst' is an invalid keyword argument for imread()")
        return plain(path, flags)

    monkeypatch.setattr(scratch, "_decode_into", True)
    monkeypatch.setattr(cv2, "imread", old_imread)
    buf = np.zeros((30, 40, 3), np.uint8)
    for _ in range(2):
        im = imread_into(f, buf)
        assert np.array_equal(im, plain(f)) and not np.shares_memory(im, buf)
    assert scratch._decode_into is False


def test_workspace_reuses_memory_per_name_and_grows():
    ws = Workspace()
    a = ws.array("x", (4, 5, 3))
    b = ws.array("x", (2, 5, 3))
    assert b.shape == (2, 5, 3) and np.shares_memory(a, b)
    c = ws.array("x", (10, 10, 3))
    assert c.shape == (10, 10, 3) and not np.shares_memory(a, c)
    assert not np.shares_memory(ws.array("y", (4, 5, 3)), ws.array("x", (4, 5, 3)))
    assert ws.array("z", (3,), np.float32).dtype == np.float32
