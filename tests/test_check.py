"""data/check.py: the dataset check finds what is planted in a synthetic dataset, and nothing else."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from PIL import Image

from data import check
from data.check_report import REPORT_DIR, check_training_data
from data.dataset_check import CheckSettings, file_hashes, run_checks, split_from_path

ROWS_OK = "0 0.5 0.5 0.4 0.4\n1 0.3 0.3 0.2 0.2\n"


def noise_image(path: Path, seed: int, size: int = 32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), np.uint8)).save(path)
    return path


def label(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    """train t0..t6, val v0..v2; the problems planted are listed next to each file."""
    root = tmp_path_factory.mktemp("planted")
    im, lb = root / "images", root / "labels"
    for i in range(7):
        noise_image(im / "train" / f"t{i}.png", i)
        label(lb / "train" / f"t{i}.txt", ROWS_OK)
    shutil.copyfile(im / "train" / "t0.png", im / "train" / "t1.png")  # duplicate within train
    label(lb / "train" / "t2.txt", ROWS_OK + "2 0.5 0.5 0.003 0.04\n")  # class 2: one box, 1.9 px wide at 640
    (lb / "train" / "t3.txt").unlink()  # image without a label file
    label(lb / "train" / "t4.txt", "0 0.5 1.2 0.1 0.1\n")  # row outside [0, 1]: the cache drops the file
    label(lb / "train" / "t5.txt", "1 0.5 0.5 0.9 0.02\n")  # 45:1 aspect ratio
    label(lb / "train" / "t6.txt", "0 0.95 0.5 0.2 0.2\n")  # reaches past the right edge
    for i in range(3):
        noise_image(im / "val" / f"v{i}.png", 100 + i)
        label(lb / "val" / f"v{i}.txt", ROWS_OK)
    shutil.copyfile(im / "train" / "t2.png", im / "val" / "v0.png")  # leakage train -> val
    data = {"path": str(root), "train": "images/train", "val": "images/val", "names": ["cat", "dog", "bird"]}
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    return root


def kinds(findings) -> dict:
    return {f["kind"]: f for f in findings}


def test_planted_problems_found_and_nothing_else(planted, tmp_path, caplog):
    assert check.main(["--data", str(planted / "data.yaml"), "--project", str(tmp_path), "--min-boxes", "2"]) == 0
    out = tmp_path / "exp"
    assert {p.name for p in out.iterdir()} == {"report.md", "report.json", "class_counts.png", "box_sizes.png"}
    rep = json.loads((out / "report.json").read_text())
    found = kinds(rep["findings"])
    assert set(found) == {"duplicates:train", "leakage:train-val", "tiny_boxes:train", "rare_classes",
                          "images_without_label_file", "dropped:label rows outside [0, 1]", "extreme_aspect:train",
                          "boxes_past_edge:train", "classes_missing_in_val"}
    t = planted / "images" / "train"
    assert found["duplicates:train"]["count"] == 1
    assert found["duplicates:train"]["examples"] == [f"{t / 't0.png'} = {t / 't1.png'}"]
    assert found["leakage:train-val"]["count"] == 1 and "v0.png" in found["leakage:train-val"]["examples"][0]
    assert found["tiny_boxes:train"]["count"] == 1
    assert found["tiny_boxes:train"]["examples"][0].startswith(f"{planted / 'labels/train/t2.txt'}:3 (1.9x25.6 px)")
    assert found["rare_classes"]["examples"] == ["bird: 1"]
    assert found["images_without_label_file"]["examples"] == [str(t / "t3.png")]
    dropped = found["dropped:label rows outside [0, 1]"]
    assert dropped["count"] == 1 and "t4.txt line 1: coordinate > 1" in dropped["examples"][0]
    assert found["extreme_aspect:train"]["count"] == 1 and "t5.txt:1" in found["extreme_aspect:train"]["examples"][0]
    assert found["boxes_past_edge:train"]["count"] == 1 and "t6.txt:1" in found["boxes_past_edge:train"]["examples"][0]
    # class counts: t4 is dropped; t3 has no labels; t2 has the bird
    train = rep["splits"]["train"]
    assert train["images"] == 6 and train["boxes_per_class"] == [4, 4, 1] and train["boxes"] == 9
    assert train["label_files"] == {"found": 5, "missing": 1, "empty": 0, "dropped": 1, "total": 7}
    assert rep["splits"]["val"]["boxes_per_class"] == [3, 3, 0]
    md = (out / "report.md").read_text()
    assert "| 2 | bird | 1 (1) | 0 (0) |" in md and "images of val are also in train" in md
    assert "WARNING: 1 images of val are also in train" in caplog.text


def test_box_size_depends_on_img_and_clean_data_has_no_warnings(planted, tmp_path):
    """At --img 1280 the 0.003-wide box is 3.8 px: no longer tiny. A clean copy gives no warning at all."""
    d = yaml.safe_load((planted / "data.yaml").read_text())
    splits = [split_from_path(s, str(planted / d[s]), 3, progress=False) for s in ("train", "val")]
    big = run_checks(splits, d["names"], CheckSettings(img_size=1280, min_boxes=1, workers=2))
    assert "tiny_boxes:train" not in {f.kind for f in big.findings}
    clean = tmp_path / "clean"
    for i, split in enumerate(("train", "val")):
        noise_image(clean / "images" / split / "a.png", 10 + i)
        label(clean / "labels" / split / "a.txt", ROWS_OK)
    s = [split_from_path(x, str(clean / "images" / x), 2, progress=False) for x in ("train", "val")]
    assert run_checks(s, ["a", "b"], CheckSettings(min_boxes=1)).warnings() == []


def test_hashes_threaded_equal_serial(planted):
    files = sorted(str(p) for p in (planted / "images").rglob("*.png")) * 10  # 100 files: the pool is used
    assert file_hashes(files, workers=2) == file_hashes(files, workers=1)
    assert len(set(file_hashes(files, 1))) == 8  # 10 files: t1 is a copy of t0, v0 of t2


def test_training_start_up_print_and_report(planted, tmp_path, caplog):
    """What train.py prints from the loaded datasets (no label re-read), and the report in the run folder."""
    d = yaml.safe_load((planted / "data.yaml").read_text())
    loaded = {}
    for s in ("train", "val"):
        sp = split_from_path(s, str(planted / d[s]), 3, progress=False)
        loaded[s] = SimpleNamespace(img_files=sp.files, labels=sp.labels, shapes=sp.shapes, msgs=sp.msgs,
                                    results=sp.results)
    caplog.clear()
    report = check_training_data(loaded, d["names"], 640, tmp_path / "exp")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == ("Dataset check: train 6 images / 9 boxes, val 3 images / 6 boxes; 3 classes; "
                        f"{len(report.warnings())} warnings")
    assert "  WARNING: 3 classes have fewer than 10 training boxes: cat (4), dog (4), bird (1)" in lines
    assert lines[-1] == f"Dataset report: {tmp_path / 'exp' / REPORT_DIR / 'report.md'}"
    assert {p.name for p in (tmp_path / "exp" / REPORT_DIR).iterdir()} == {"report.md", "report.json"}

    caplog.clear()  # the check informs, it never fails a training: a report that cannot be written is a warning
    (tmp_path / "file").write_text("")
    assert check_training_data(loaded, d["names"], 640, tmp_path / "file") is None
    assert [r.getMessage()[:51] for r in caplog.records] == ["WARNING: dataset check not done: NotADirectoryError"]


def test_unreadable_dataset_is_one_error_line(tmp_path, caplog):
    (tmp_path / "d.yaml").write_text(yaml.safe_dump({"train": str(tmp_path / "nope"), "val": str(tmp_path / "nope"),
                                                      "names": ["a"]}))
    assert check.main(["--data", str(tmp_path / "d.yaml"), "--project", str(tmp_path / "runs")]) == 1
    errors = [r.getMessage() for r in caplog.records if "ERROR" in r.getMessage()]
    assert len(errors) == 1 and "dataset not found" in errors[0] and str(tmp_path / "nope") in errors[0]
    assert not (tmp_path / "runs").exists()
