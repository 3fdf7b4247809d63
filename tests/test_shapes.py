"""The embedded shapes dataset: deterministic, fast, valid YOLO labels that agree with the pixels."""
import json
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from data.config import check_dataset
from data.datasets import LoadImagesAndLabels
from data.label_cache import parse_label_file
from data.shapes import COLORS_BGR, MAX_SIZE, MIN_SIZE, NAMES, generate_shapes, render_image

ROOT = Path(__file__).resolve().parents[1]


def _files(root: Path):
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_generation_is_deterministic_and_seed_dependent(tmp_path):
    a = generate_shapes(tmp_path / "a", n_train=12, n_val=4, img_size=128, seed=0)
    b = generate_shapes(tmp_path / "b", n_train=12, n_val=4, img_size=128, seed=0, workers=1)  # other threading
    c = generate_shapes(tmp_path / "c", n_train=12, n_val=4, img_size=128, seed=1)
    fa, fb = _files(a), _files(b)
    assert [p.relative_to(a) for p in fa] == [p.relative_to(b) for p in fb] and len(fa) == 12 * 2 + 4 * 2 + 1
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(fa, fb))
    assert (a / "images/train/000000.jpg").read_bytes() != (c / "images/train/000000.jpg").read_bytes()


def test_generation_is_fast(tmp_path):
    t = time.process_time()  # CPU time of all threads: independent of how busy the machine is
    generate_shapes(tmp_path / "s", n_train=150, n_val=0, img_size=320)
    dt = time.process_time() - t
    assert dt < 6, f"150 images took {dt:.1f} CPU s"  # ~1.2 s measured (8 ms / image)


def test_labels_valid_and_varied(tmp_path):
    root = generate_shapes(tmp_path / "s", n_train=60, n_val=10, img_size=160)
    counts, classes, sizes = [], [], []
    for lb in sorted((root / "labels" / "train").glob("*.txt")):
        labels, segments, dup = parse_label_file(str(lb), nc=len(NAMES))  # raises on any invalid row
        assert dup == 0 and not segments
        counts.append(len(labels))
        classes += labels[:, 0].astype(int).tolist()
        sizes += labels[:, 3:5].max(1).tolist()
    assert min(counts) >= 2 and max(counts) <= 8 and len(set(counts)) >= 4
    assert set(classes) == set(range(len(NAMES)))
    # extents: between ~8 % and 50 % of the short side (normalised by the long side here: 0.75-1 factor)
    assert min(sizes) >= MIN_SIZE * 0.75 * 0.6 and max(sizes) <= MAX_SIZE + 0.01
    meta = json.loads((root / "shapes.json").read_text())
    assert meta["names"] == NAMES and meta["n_train"] == 60


def test_boxes_are_tight_around_visible_objects():
    """For objects no other object touches, the label box equals the extent of the class-coloured pixels."""
    checked = 0
    for i in range(30):
        img, labels = render_image(0, 0, i, 320)
        h, w = img.shape[:2]
        boxes = np.stack([(labels[:, 1] - labels[:, 3] / 2) * w, (labels[:, 2] - labels[:, 4] / 2) * h,
                          (labels[:, 1] + labels[:, 3] / 2) * w, (labels[:, 2] + labels[:, 4] / 2) * h], 1)
        for j, (c, box) in enumerate(zip(labels[:, 0].astype(int), boxes)):
            if c == 7:  # white ring: too close to bright backgrounds for a colour mask
                continue
            others = np.delete(boxes, j, 0)
            sep = (others[:, 0] > box[2] + 4) | (others[:, 2] < box[0] - 4) | (others[:, 1] > box[3] + 4) | \
                  (others[:, 3] < box[1] - 4)
            if not sep.all() or (box[2] - box[0]) < 20:
                continue
            x1, y1, x2, y2 = [int(v) for v in (box[0] - 4, box[1] - 4, box[2] + 4, box[3] + 4)]
            x1, y1 = max(x1, 0), max(y1, 0)
            sub = img[y1:y2, x1:x2].astype(np.float32)
            ref = np.array(COLORS_BGR[c], np.float32)
            # colour direction match (lighting scales brightness): cosine similarity + channel tolerance
            cos = (sub @ ref) / (np.linalg.norm(sub, axis=2) * np.linalg.norm(ref) + 1e-6)
            mask = (cos > 0.97) & (np.abs(sub - ref).max(2) < 70)
            ys, xs = np.nonzero(mask)
            if len(xs) < 30:
                continue
            ext = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]) + [x1, y1, x1, y1]
            # antialiased sharp tips (triangle, star) fade out over a pixel or two
            np.testing.assert_allclose(ext, box, atol=3, err_msg=f"image {i} object {j} class {NAMES[c]}")
            checked += 1
    assert checked >= 20


def test_check_dataset_generates_from_yaml_and_reuses(tmp_path):
    y = tmp_path / "s.yaml"
    y.write_text(yaml.safe_dump({"path": str(tmp_path / "shapes"), "train": "images/train", "val": "images/val",
                                 "generate": {"name": "shapes", "n_train": 8, "n_val": 4, "img_size": 96},
                                 "nc": len(NAMES), "names": NAMES}))
    d = check_dataset(y)
    assert len(list(Path(d["train"]).glob("*.jpg"))) == 8 and len(list(Path(d["val"]).glob("*.jpg"))) == 4
    mtime = (tmp_path / "shapes" / "shapes.json").stat().st_mtime_ns
    check_dataset(y)
    assert (tmp_path / "shapes" / "shapes.json").stat().st_mtime_ns == mtime  # reused, not regenerated
    ds = LoadImagesAndLabels(d["train"], 96, nc=d["nc"], progress=False)
    assert ds.results[3] == 0 and ds.n == 8


def test_shipped_yaml_and_refusal_to_overwrite(tmp_path):
    d = yaml.safe_load((ROOT / "data" / "shapes.yaml").read_text())
    assert d["generate"] == "shapes" and d["names"] == NAMES and d["nc"] == len(NAMES) >= 6
    assert d["path"] == "datasets/shapes"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        generate_shapes(tmp_path / "mine", n_train=2, n_val=1)
    assert (tmp_path / "mine" / "precious.txt").read_text() == "keep me"
