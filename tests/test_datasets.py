"""Datasets: yaml forms, label mapping, cache, bad-data report, rect / quad / image weights, loaders."""
import os
import random
import socket
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from utils.boxes import scale_coords, xywhn2xyxy
from data.config import check_dataset
from data.datasets import LoadImagesAndLabels, create_dataloader
from data.label_cache import img2label_paths
from data.label_stats import labels_to_class_weights, labels_to_image_weights
from data.loaders import LoadImages, LoadStreams
from data.label_cache import CACHE_VERSION

ROOT = Path(__file__).resolve().parents[1]
HYP = yaml.safe_load((ROOT / "data" / "hyp.scratch.yaml").read_text())
COLORS = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255)]


def _write_image(path: Path, h: int, w: int, boxes=(), classes=(), bg=114):
    """Plain image with solid rectangles (normalised xywh boxes) coloured by class."""
    im = np.full((h, w, 3), bg, np.uint8)
    for (x, y, bw, bh), c in zip(boxes, classes):
        im[int((y - bh / 2) * h):int((y + bh / 2) * h), int((x - bw / 2) * w):int((x + bw / 2) * w)] = COLORS[c]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), im)


def _make_split(root: Path, split: str = "train", n: int = 8, sizes=None, seed: int = 0):
    """n images with 1-2 rectangles each (non-overlapping), labels in YOLO format."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = sizes[i % len(sizes)] if sizes else (96, 128)
        boxes = [(0.25, 0.3, 0.3, 0.3), (0.7, 0.7, 0.3, 0.35)][: 1 + i % 2]
        classes = [int(rng.integers(0, 4)) for _ in boxes]
        _write_image(root / "images" / split / f"im{i}.jpg", h, w, boxes, classes)
        lb = root / "labels" / split / f"im{i}.txt"
        lb.parent.mkdir(parents=True, exist_ok=True)
        lb.write_text("".join(f"{c} {x} {y} {bw} {bh}\n" for c, (x, y, bw, bh) in zip(classes, boxes)))
    return root / "images" / split


@pytest.fixture
def split(tmp_path):
    return _make_split(tmp_path / "ds")


# ---------------------------------------------------------------------------------------------- paths / yaml
def test_img2label_paths_replaces_last_images_dir():
    s = os.sep
    img = f"{s}d{s}images{s}a{s}images{s}train{s}x.jpg"
    assert img2label_paths([img]) == [f"{s}d{s}images{s}a{s}labels{s}train{s}x.txt"]
    assert img2label_paths([f"{s}d{s}pics{s}x.png"]) == [f"{s}d{s}pics{s}x.txt"]


def test_check_dataset_yaml_forms(tmp_path, monkeypatch):
    root = tmp_path / "ds"
    train, val = _make_split(root, "train", 4), _make_split(root, "val", 2)
    (root / "val.txt").write_text("./images/val/im0.jpg\n./images/val/im1.jpg\n")
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    monkeypatch.chdir(tmp_path / "ds")  # the cwd is not the yaml's directory

    # v6 'path:' root with dict names; val given as a txt list
    y = cfg / "a.yaml"
    y.write_text(yaml.safe_dump({"path": str(root), "train": "images/train", "val": "val.txt",
                                 "names": {0: "a", 1: "b", 2: "c", 3: "d"}}))
    d = check_dataset(str(y))
    assert d["train"] == str(train) and d["val"] == str(root / "val.txt") and d["nc"] == 4
    assert d["names"] == ["a", "b", "c", "d"]

    # no path: relative entries resolved against the yaml's directory when the cwd does not have them
    y = cfg / "b.yaml"
    y.write_text(yaml.safe_dump({"train": ["../ds/images/train", "../ds/val.txt"], "val": "../ds/images/val",
                                 "nc": 4}))
    d = check_dataset(y)
    assert d["train"] == [str(train), str(root / "val.txt")] and d["val"] == str(val)
    assert d["names"] == ["class0", "class1", "class2", "class3"]

    # relative to the cwd first (v5.0)
    y.write_text(yaml.safe_dump({"train": "images/train", "val": "images/val", "nc": 4}))
    assert check_dataset(y)["val"] == str(val)

    # a list of a directory and a txt file loads both
    ds = LoadImagesAndLabels(d["train"] if isinstance(d["train"], list) else [d["train"]], 64, progress=False)
    assert ds.n == 6

    y.write_text(yaml.safe_dump({"train": "images/train", "val": "images/val", "nc": 3, "names": ["a", "b"]}))
    with pytest.raises(ValueError, match="2 names for nc=3"):
        check_dataset(y)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_missing_dataset_with_unreachable_download_names_yaml_path_and_url(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/data.zip"
    y = tmp_path / "missing.yaml"
    y.write_text(yaml.safe_dump({"path": str(tmp_path / "nothere"), "train": "images/train",
                                 "val": "images/val", "nc": 1, "download": url}))
    t = time.time()
    with pytest.raises(FileNotFoundError) as e:
        check_dataset(y)
    msg = str(e.value)
    assert str(y) in msg and str(tmp_path / "nothere" / "images" / "val") in msg and url in msg
    assert time.time() - t < 10


def test_download_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    y = tmp_path / "evil.yaml"
    y.write_text(yaml.safe_dump({"train": str(tmp_path / "a"), "val": str(tmp_path / "b"), "nc": 1,
                                 "download": f"import pathlib; pathlib.Path('{marker}').touch()"}))
    with pytest.raises(FileNotFoundError, match="not executed"):
        check_dataset(y)
    assert not marker.exists()


def test_shipped_yamls_parse():
    for name, nc in (("coco128.yaml", 80), ("coco.yaml", 80), ("voc.yaml", 20), ("shapes.yaml", 8)):
        d = yaml.safe_load((ROOT / "data" / name).read_text())
        assert d["nc"] == nc == len(d["names"]), name
    assert yaml.safe_load((ROOT / "data" / "coco128.yaml").read_text())["download"].startswith("https://")
    keys = list(yaml.safe_load((ROOT / "data" / "hyp.scratch.yaml").read_text()))
    assert keys[:27] == ["lr0", "lrf", "momentum", "weight_decay", "warmup_epochs", "warmup_momentum",
                         "warmup_bias_lr", "box", "cls", "cls_pw", "obj", "obj_pw", "iou_t", "anchor_t", "fl_gamma",
                         "hsv_h", "hsv_s", "hsv_v", "degrees", "translate", "scale", "shear", "perspective",
                         "flipud", "fliplr", "mosaic", "mixup"]
    assert keys[27:] == ["cls_loss", "box_loss"]
    ft = yaml.safe_load((ROOT / "data" / "hyp.finetune.yaml").read_text())
    assert (ft["lr0"], ft["anchor_t"], ft["mixup"]) == (0.0032, 2.91, 0.243)
    v6 = yaml.safe_load((ROOT / "data" / "hyps" / "hyp.scratch.yaml").read_text())
    low = yaml.safe_load((ROOT / "data" / "hyps" / "hyp.scratch-low.yaml").read_text())
    assert (v6["lrf"], v6["copy_paste"], low["lrf"]) == (0.1, 0.0, 0.01)


# ------------------------------------------------------------------------------------------ bad data report
def test_bad_data_is_reported_once_and_skipped(tmp_path, log_lines):
    root = tmp_path / "bad"
    imgs = _make_split(root, "train", 3)
    L = root / "labels" / "train"
    good = (imgs / "im0.jpg").read_bytes()

    def add(name, label=None, data=None):
        (imgs / name).write_bytes(good if data is None else data)
        if label is not None:
            (L / (Path(name).stem + ".txt")).write_text(label)

    add("truncated.jpg", "0 0.5 0.5 0.2 0.2\n", data=good[: len(good) // 2])
    add("notimage.jpg", "0 0.5 0.5 0.2 0.2\n", data=b"this is not an image at all")
    _write_image(imgs / "tiny.png", 8, 8)
    (L / "tiny.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    add("columns.jpg", "0 0.5 0.5 0.2\n")
    add("text.jpg", "0 0.5 abc 0.2 0.2\n")
    add("negative.jpg", "0 0.5 -0.5 0.2 0.2\n")
    add("above1.jpg", "0 0.5 1.5 0.2 0.2\n")
    add("badclass.jpg", "9 0.5 0.5 0.2 0.2\n")
    add("dupes.jpg", "1 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n2 0.1 0.1 0.1 0.1\n")
    add("empty.jpg", "")
    add("nolabel.jpg")
    add("polygon.jpg", "3 0.1 0.2 0.5 0.1 0.4 0.6\n")

    ds = LoadImagesAndLabels(imgs, 64, nc=4, progress=False)
    reasons = {
        "truncated.jpg": "truncated", "notimage.jpg": "not an image", "tiny.png": "below 10 pixels",
        "columns.jpg": "4 values", "text.jpg": "non-numeric value 'abc'", "negative.jpg": "negative",
        "above1.jpg": "coordinate > 1", "badclass.jpg": "class id 9 outside 0-3", "dupes.jpg": "1 duplicate",
    }
    for name, reason in reasons.items():
        hits = [m for m in ds.msgs if name in m]
        assert len(hits) == 1, (name, ds.msgs)
        assert reason in hits[0], (name, hits[0])
    assert len(ds.msgs) == len(reasons)
    # found: 3 good + dupes + polygon; missing: nolabel; empty: empty; corrupted: the other 8
    assert ds.results == (5, 1, 1, 8, 15)
    summary = [x for x in log_lines if "Scanning" in x]
    assert summary and summary[-1].endswith("5 found, 1 missing, 1 empty, 8 corrupted")
    names = sorted(Path(f).name for f in ds.img_files)
    assert names == ["dupes.jpg", "empty.jpg", "im0.jpg", "im1.jpg", "im2.jpg", "nolabel.jpg", "polygon.jpg"]
    lab = dict(zip((Path(f).name for f in ds.img_files), ds.labels))
    np.testing.assert_allclose(lab["dupes.jpg"], [[1, 0.5, 0.5, 0.2, 0.2], [2, 0.1, 0.1, 0.1, 0.1]])
    np.testing.assert_allclose(lab["polygon.jpg"], [[3, 0.3, 0.35, 0.4, 0.5]], atol=1e-6)  # polygon -> extent
    assert lab["nolabel.jpg"].shape == (0, 5)
    assert len(ds.segments[ds.img_files.index(str(imgs / "polygon.jpg"))]) == 1

    # the rest trains: every remaining item loads
    for i in range(len(ds)):
        img, labels, *_ = ds[i]
        assert img.shape[0] == 3
    # reported again (once each) from the cache on the next construction, without rescanning
    log_lines.clear()
    ds2 = LoadImagesAndLabels(imgs, 64, nc=4, progress=False)
    assert ds2.msgs == ds.msgs and any("(from cache)" in x for x in log_lines)
    # nc is checked after loading: without nc the class-9 image is usable, from the same cache
    ds3 = LoadImagesAndLabels(imgs, 64, progress=False)
    assert ds3.results == (6, 1, 1, 7, 15) and any(x.endswith("badclass.jpg") for x in ds3.img_files)


# --------------------------------------------------------------------------------------------------- cache
def test_cache_is_safe_and_rebuilt_when_files_change(split):
    ds = LoadImagesAndLabels(split, 64, progress=False)
    cache = torch.load(ds.cache_path, weights_only=True)  # plain containers only
    assert cache["version"] == CACHE_VERSION and len(cache["files"]) == 8
    lb = Path(ds.label_files[0])
    lb.write_text(lb.read_text().replace("0.25 ", "0.26 ", 1))  # same size, new mtime and content
    st = lb.stat()
    os.utime(lb, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    ds2 = LoadImagesAndLabels(split, 64, progress=False)
    assert ds2.labels[0][0, 1] == pytest.approx(0.26)
    _write_image(split / "new.jpg", 64, 64)  # added image -> rebuilt too
    assert LoadImagesAndLabels(split, 64, progress=False).n == 9


def test_foreign_or_corrupt_cache_is_rebuilt_not_unpickled(split):
    cache = Path(split).parent.parent / "labels" / "train.cache"
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"version": 0.1, "hash": 0, "x": np.zeros(3)}, cache)  # v5.0-style pickle with numpy objects
    ds = LoadImagesAndLabels(split, 64, progress=False)
    assert ds.n == 8 and torch.load(cache, weights_only=True)["version"] == CACHE_VERSION
    cache.write_bytes(b"garbage")
    assert LoadImagesAndLabels(split, 64, progress=False).n == 8


def test_unwritable_cache_dir_warns(split, log_lines, monkeypatch):
    def refuse(*a, **k):
        raise PermissionError(30, "Read-only file system")
    monkeypatch.setattr("data.label_cache.torch.save", refuse)
    ds = LoadImagesAndLabels(split, 64, progress=False)
    assert ds.n == 8
    assert any("not writeable" in x for x in log_lines)


# ------------------------------------------------------------------------------------- items and batches
def test_items_letterboxed_with_shapes_that_map_back(tmp_path):
    imgs = _make_split(tmp_path / "r", n=6, sizes=[(60, 120), (130, 65), (100, 100)])
    loader, ds = create_dataloader(str(imgs), 128, 2, 32, rect=True, pad=0.5, workers=0)
    # rect: sorted by aspect ratio, batch shapes = ceil(ratio * 128 / 32 + 0.5) * 32 (h/w 0.5, 1, 2)
    ar = ds.shapes[:, 1] / ds.shapes[:, 0]
    assert (np.diff(ar) >= 0).all()
    assert ds.batch_shapes.tolist() == [[96, 160], [160, 160], [160, 96]]
    for imgs_b, targets, paths, shapes in loader:
        batch_index = ds.batch[ds.img_files.index(paths[0])]
        assert imgs_b.dtype == torch.uint8 and imgs_b.shape[2:] == tuple(ds.batch_shapes[batch_index])
        assert targets.shape[1] == 6 and set(targets[:, 0].tolist()) <= set(range(len(paths)))
        for i, (p, s) in enumerate(zip(paths, shapes)):
            (h0, w0), ((gh, gw), pad) = s
            im0 = cv2.imread(p)
            assert (h0, w0) == im0.shape[:2]
            t = targets[targets[:, 0] == i]
            h, w = imgs_b.shape[2:]
            boxes = xywhn2xyxy(t[:, 2:].clone(), w, h)
            back = scale_coords((h, w), boxes, (h0, w0), ratio_pad=((gh, gw), pad))
            ref = xywhn2xyxy(torch.from_numpy(ds.labels[ds.img_files.index(p)][:, 1:]), w0, h0)
            torch.testing.assert_close(back, ref, atol=1.0, rtol=0)
            # RGB channel order: class colours are BGR in the file
            x1, y1, x2, y2 = [int(v) for v in xywhn2xyxy(t[:1, 2:], w, h)[0]]
            centre = imgs_b[i, :, (y1 + y2) // 2, (x1 + x2) // 2].tolist()
            assert np.abs(np.subtract(centre, COLORS[int(t[0, 1])][::-1])).max() < 30


def test_training_items_labels_follow_pixels(tmp_path):
    """Mosaic + perspective + flips: every label box encloses exactly its coloured rectangle."""
    imgs = _make_split(tmp_path / "aug", n=8, sizes=[(96, 128), (128, 96)])
    hyp = dict(HYP, degrees=0.0, shear=0.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, flipud=0.5, fliplr=0.5, mixup=0.0)
    ds = LoadImagesAndLabels(imgs, 128, augment=True, hyp=hyp, progress=False)
    random.seed(0)
    np.random.seed(0)
    checked = 0
    for k in range(12):
        img, labels, _, shapes = ds[k % ds.n]
        assert shapes is None and img.shape == (3, 128, 128)
        im = img.permute(1, 2, 0).numpy()[..., ::-1]  # back to BGR
        for _, c, x, y, w, h in labels.tolist():
            x1, y1, x2, y2 = (x - w / 2) * 128, (y - h / 2) * 128, (x + w / 2) * 128, (y + h / 2) * 128
            if min(x1, y1) < 1 or max(x2, y2) > 127:
                continue  # cut by the crop: only the visible part is labelled
            sub = im[max(int(y1) - 3, 0):int(y2) + 3, max(int(x1) - 3, 0):int(x2) + 3].astype(int)
            mask = np.abs(sub - np.array(COLORS[int(c)])).max(2) < 60
            ys, xs = np.nonzero(mask)
            ox, oy = max(int(x1) - 3, 0), max(int(y1) - 3, 0)
            ext = np.array([xs.min() + ox, ys.min() + oy, xs.max() + 1 + ox, ys.max() + 1 + oy])
            np.testing.assert_allclose(ext, [x1, y1, x2, y2], atol=2.5)
            checked += 1
    assert checked > 10


def test_cache_ram_and_disk_give_identical_items(split):
    plain = LoadImagesAndLabels(split, 64, progress=False)
    ram = LoadImagesAndLabels(split, 64, cache_images="ram", progress=False)
    disk = LoadImagesAndLabels(split, 64, cache_images="disk", progress=False)
    assert all(x is not None for x in ram.imgs) and all(Path(f).is_file() for f in disk.npy_files)
    for i in range(plain.n):
        a, b, c = plain[i], ram[i], disk[i]
        assert torch.equal(a[0], b[0]) and torch.equal(a[0], c[0]) and torch.equal(a[1], c[1])


def test_quad_collate_tiles_images_and_labels():
    imgs = [torch.full((3, 4, 4), v, dtype=torch.uint8) for v in (10, 20, 30, 40)]
    labels = [torch.tensor([[0, k, 0.5, 0.5, 0.5, 0.5]]) for k in range(4)]
    batch = [(im, lb, f"p{k}", None) for k, (im, lb) in enumerate(zip(imgs, labels))]
    random.seed(0)  # first random.random() = 0.844 -> tile branch (seed 1: 0.134 -> upsample branch)
    im, t, paths, _ = LoadImagesAndLabels.collate_fn4(batch)
    assert im.shape == (1, 3, 8, 8) and paths == ("p0",)
    corners = [im[0, 0, 1, 1], im[0, 0, 1, 5], im[0, 0, 5, 1], im[0, 0, 5, 5]]
    assert [int(v) for v in corners] == [10, 20, 30, 40]
    for row in t.tolist():  # each label centre lands in its own tile
        k = int(row[1])
        assert im[0, 0, int(row[3] * 8), int(row[2] * 8)].item() == (10, 20, 30, 40)[k]
        assert row[4] == row[5] == 0.25
    random.seed(1)
    im, t, _, _ = LoadImagesAndLabels.collate_fn4(batch)
    assert im.shape == (1, 3, 8, 8) and (im == 10).all() and t.tolist() == [[0, 0, 0.5, 0.5, 0.5, 0.5]]


def test_image_weights_indices_reach_persistent_workers(split):
    loader, ds = create_dataloader(str(split), 64, 4, 32, workers=1, image_weights=True)
    seen = [p for _, _, paths, _ in loader for p in paths]
    assert sorted(seen) == sorted(ds.img_files)
    ds.indices = [3] * ds.n  # what train.py does each epoch with --image-weights
    seen = {p for _, _, paths, _ in loader for p in paths}
    assert seen == {ds.img_files[3]}


def test_seeded_loader_is_deterministic(split):
    def batches(seed):
        loader, _ = create_dataloader(str(split), 64, 4, 32, hyp=HYP, augment=True, workers=2, shuffle=True,
                                      seed=seed)
        return [(b[0].clone(), b[1].clone(), b[2]) for b in loader]
    a, b, c = batches(0), batches(0), batches(1)
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) and x[2] == y[2] for x, y in zip(a, b))
    assert not all(torch.equal(x[0], y[0]) for x, y in zip(a, c))


def test_single_cls_and_weights(split):
    ds = LoadImagesAndLabels(split, 64, single_cls=True, progress=False)
    assert all((x[:, 0] == 0).all() for x in ds.labels)
    labels = [np.array([[0, .5, .5, .1, .1], [0, .5, .5, .1, .1], [1, .5, .5, .1, .1]]),
              np.array([[2, .5, .5, .1, .1]])]
    w = labels_to_class_weights(labels, nc=4)
    ref = np.array([1 / 2, 1, 1, 1])  # counts 2, 1, 1, 0 (absent counts as 1)
    torch.testing.assert_close(w, torch.tensor(ref / ref.sum(), dtype=torch.float32))
    np.testing.assert_allclose(labels_to_image_weights(labels, 4, np.array([1., 2., 3., 4.])), [1 + 1 + 2, 3])


def test_augment_without_hyp_is_a_clear_error(split):
    with pytest.raises(KeyError, match="hyperparameters"):
        LoadImagesAndLabels(split, 64, augment=True, hyp={"mosaic": 1.0}, progress=False)


# ---------------------------------------------------------------------------------------- inference loaders
def test_load_images_sources(tmp_path):
    a, b = tmp_path / "a.jpg", tmp_path / "sub" / "b.png"
    _write_image(a, 1080 // 8, 810 // 8)
    _write_image(b, 30, 60)
    (tmp_path / "list.txt").write_text(f"{a}\nsub/b.png\n")
    sources = ((str(a), 1), (str(tmp_path), 1), (str(tmp_path / "**" / "*.*g"), 2), (str(tmp_path / "list.txt"), 2))
    for src, n in sources:
        items = list(LoadImages(src, img_size=64, stride=32))
        assert len(items) == n, src
    path, img, im0, cap = next(iter(LoadImages(str(a), img_size=64, stride=32)))
    assert img.shape == (3, 64, 64) and img.dtype == np.uint8 and im0.shape == (135, 101, 3) and cap is None
    with pytest.raises(FileNotFoundError):
        LoadImages(str(tmp_path / "nope.jpg"))


def test_load_images_video_frame_counters(tmp_path):
    video = tmp_path / "v.mp4"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for i in range(5):
        w.write(np.full((48, 64, 3), 40 * i, np.uint8))
    w.release()
    _write_image(tmp_path / "x.jpg", 48, 64)
    ds = LoadImages(str(tmp_path), img_size=64, stride=32)
    assert ds.nf == 2
    out = [(ds.mode, ds.frame, ds.frames, p) for p, img, im0, cap in ds]
    assert out[0][0] == "image" and len(out) == 6
    assert [o[1] for o in out[1:]] == [1, 2, 3, 4, 5] and all(o[0] == "video" and o[2] == 5 for o in out[1:])
    assert ds.nframes == 5 and "video 2/2 (5/5)" in ds.s


def test_load_streams(tmp_path):
    url = f"rtsp://127.0.0.1:{_closed_port()}/live"
    t = time.time()
    with pytest.raises(ConnectionError, match=url):
        LoadStreams(url, img_size=64)
    assert time.time() - t < 10
    video = tmp_path / "v.mp4"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 50, (64, 48))
    for i in range(6):
        w.write(np.full((48, 64, 3), 40 * i, np.uint8))
    w.release()
    ds = LoadStreams(str(video), img_size=64, stride=32)
    n = 0
    for sources, img, im0s, _ in ds:
        assert img.shape == (1, 3, 64, 64) and len(im0s) == 1 and im0s[0].shape == (48, 64, 3)
        n += 1
        time.sleep(0.02)
    assert n >= 1 and ds.sources == [str(video)]


# --------------------------------------------------------------------------------------------- VOC converter
def test_voc2yolo_converts_boxes_and_skips_difficult(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("voc2yolo", ROOT / "data" / "scripts" / "voc2yolo.py")
    voc2yolo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(voc2yolo)
    yd = tmp_path / "raw" / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (yd / sub).mkdir(parents=True)
    (yd / "ImageSets/Main/test.txt").write_text("000001\n")
    _write_image(yd / "JPEGImages/000001.jpg", 100, 200)
    (yd / "Annotations/000001.xml").write_text(
        "<annotation><size><width>200</width><height>100</height><depth>3</depth></size>"
        "<object><name>dog</name><difficult>0</difficult><bndbox><xmin>1</xmin><ymin>11</ymin><xmax>100</xmax>"
        "<ymax>60</ymax></bndbox></object>"
        "<object><name>cat</name><difficult>1</difficult><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>9</xmax>"
        "<ymax>9</ymax></bndbox></object></annotation>")
    counts = voc2yolo.convert(tmp_path / "raw", tmp_path / "VOC", {"val": [("VOC2007", "test")]})
    assert counts == {"val": 1}
    rows = (tmp_path / "VOC/labels/val/000001.txt").read_text().split()
    # dog = class 11; pixels 0..100 x 10..60 of a 200 x 100 image
    np.testing.assert_allclose([float(v) for v in rows], [11, 0.25, 0.35, 0.5, 0.5])
    assert (tmp_path / "VOC/images/val/000001.jpg").is_file()
