"""data/convert.py: COCO, LabelMe, CVAT and VOC annotations -> YOLO datasets.

Round trips: the written labels, scaled back by the image size, give the source's pixel boxes; class names keep the
source's order. Malformed input: one ERROR line naming the file (and the annotation), exit status 1, nothing left
under --out or beside it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import yaml
from PIL import Image

from data import convert
from data.converters import writer

# pixel boxes x1, y1, x2, y2 (with fractions, as tools write them)
BOXES_A = [(3.0, 4.0, 20.5, 30.0), (10.0, 0.0, 64.0, 12.25)]  # image a: 64 x 48
BOXES_B = [(0.0, 0.0, 40.0, 30.0)]  # image b: 40 x 30


def image(path: Path, w: int, h: int, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)
    return path


def run(*args: str) -> int:
    return convert.main([str(a) for a in args])


def read_dataset(out: Path) -> Dict[str, Dict[str, np.ndarray]]:
    """split -> image stem -> pixel boxes [cls, x1, y1, x2, y2] recovered from the YOLO labels."""
    res: Dict[str, Dict[str, np.ndarray]] = {}
    for im in sorted((out / "images").rglob("*.*")):
        split = im.parent.name
        w, h = Image.open(im).size
        text = (out / "labels" / split / f"{im.stem}.txt").read_text()
        rows = np.array([[float(v) for v in ln.split()] for ln in text.splitlines()]).reshape(-1, 5)
        c, xc, yc, bw, bh = rows.T
        res.setdefault(split, {})[im.stem] = np.stack(
            [c, (xc - bw / 2) * w, (yc - bh / 2) * h, (xc + bw / 2) * w, (yc + bh / 2) * h], 1)
    return res


def assert_boxes(got: np.ndarray, classes: List[int], boxes) -> None:
    assert got[:, 0].tolist() == classes
    np.testing.assert_allclose(got[:, 1:], np.array(boxes, float).reshape(-1, 4), atol=1e-3)  # 6 decimals


def no_leftovers(out: Path) -> None:
    """Neither --out nor a hidden temporary folder beside it."""
    assert not out.exists()
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


# ------------------------------------------------------------------------------------------------------ COCO
def coco_file(path: Path, images: list, annotations: list, categories=None) -> Path:
    categories = categories or [{"id": 7, "name": "zebra"}, {"id": 3, "name": "apple"}, {"id": 12, "name": "cat"}]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def ann(i: int, image_id: int, cat: int, box, **kw) -> dict:
    x1, y1, x2, y2 = box
    return {"id": i, "image_id": image_id, "category_id": cat, "bbox": [x1, y1, x2 - x1, y2 - y1], **kw}


@pytest.fixture
def coco(tmp_path):
    img = tmp_path / "src"
    image(img / "train2017" / "a.jpg", 64, 48)
    image(img / "val2017" / "b.png", 40, 30)
    image(img / "train2017" / "bg.jpg", 32, 32)
    train = coco_file(tmp_path / "instances_train2017.json",
                      [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48},
                       {"id": 2, "file_name": "train2017/bg.jpg", "width": 32, "height": 32}],
                      [ann(10, 1, 12, BOXES_A[0]), ann(11, 1, 7, BOXES_A[1]),
                       ann(12, 1, 3, (1, 1, 9, 9), iscrowd=1),
                       ann(13, 1, 3, (50, 40, 70, 60)),  # 6 px past the right edge and 12 below: clipped
                       ann(14, 1, 3, (70, 5, 80, 9))])  # wholly outside: skipped
    val = coco_file(tmp_path / "instances_val2017.json", [{"id": 5, "file_name": "b.png", "width": 40, "height": 30}],
                    [ann(20, 5, 3, BOXES_B[0])])
    return tmp_path, img, train, val


def test_coco_round_trip_names_ids_and_splits(coco, caplog):
    tmp, img, train, val = coco
    out = tmp / "out"
    assert run("--from", "coco", "--annotations", train, val, "--images", img, "--out", out) == 0
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["names"] == ["zebra", "apple", "cat"] and data["nc"] == 3  # the file's order, not id or name order
    assert data["path"] == str(out.resolve()) and data["train"] == "images/train" and data["val"] == "images/val"
    ds = read_dataset(out)
    assert set(ds) == {"train", "val"} and set(ds["train"]) == {"a", "bg"}
    assert_boxes(ds["train"]["a"], [2, 0, 1], BOXES_A + [(50, 40, 64, 48)])  # ids 12, 7, 3 -> 2, 0, 1; clipped
    assert ds["train"]["bg"].shape == (0, 5)  # image without annotations: background, empty label file
    assert_boxes(ds["val"]["b"], [1], BOXES_B)
    log = caplog.text
    assert f"{train}: annotation id 12: skipped (iscrowd)" in log
    assert f"{train}: annotation id 13: clipped to the image" in log
    assert f"{train}: annotation id 14: skipped (box outside the image" in log
    assert "Skipped 2 annotations (1 box outside the image, 1 iscrowd); clipped 1 boxes" in log
    assert "annotation id 14: skipped (box outside the image" in (out / "conversion.txt").read_text()


def test_coco_val_fraction_is_seeded(coco):
    tmp, img, train, _ = coco
    splits = []
    for k in range(2):
        out = tmp / f"out{k}"
        assert run("--from", "coco", "--annotations", train, "--images", img, "--out", out,
                   "--val-fraction", "0.5", "--seed", "3") == 0
        splits.append({s: sorted(v) for s, v in read_dataset(out).items()})
    assert splits[0] == splits[1] and sum(len(v) for v in splits[0].values()) == 2 and len(splits[0]["val"]) == 1


# ------------------------------------------------------------------------------------- LabelMe, CVAT, VOC
def test_labelme_rectangles_polygons_and_names_order(tmp_path, caplog):
    src = tmp_path / "lm"
    image(src / "a.jpg", 64, 48)
    image(src / "sub" / "b.png", 40, 30)
    (src / "a.json").write_text(json.dumps({"imagePath": "a.jpg", "imageWidth": 64, "imageHeight": 48, "shapes": [
        {"label": "dog", "shape_type": "rectangle", "points": [[20.5, 30.0], [3.0, 4.0]]},  # corners in any order
        {"label": "cat", "shape_type": "polygon", "points": [[10, 6], [64, 0], [40, 12.25], [30, 3]]},
        {"label": "cat", "shape_type": "circle", "points": [[5, 5], [8, 8]]}]}))
    (src / "sub" / "b.json").write_text(json.dumps({"imagePath": "b.png", "imageWidth": 40, "imageHeight": 30,
                                                    "shapes": [{"label": "cat", "shape_type": "rectangle",
                                                                "points": [[0, 0], [40, 30]]}]}))
    out = tmp_path / "out"
    assert run("--from", "labelme", "--annotations", src, "--out", out, "--names", "cat,dog",
               "--val-fraction", "0") == 0
    assert yaml.safe_load((out / "data.yaml").read_text())["names"] == ["cat", "dog"]
    ds = read_dataset(out)["train"]
    assert_boxes(ds["a"], [1, 0], [BOXES_A[0], (10, 0, 64, 12.25)])
    assert_boxes(ds["b"], [0], BOXES_B)
    assert f"{src / 'a.json'}: shape 2 ('cat'): skipped (circle shape)" in caplog.text
    out2 = tmp_path / "out2"  # without --names: order of first appearance
    assert run("--from", "labelme", "--annotations", src, "--out", out2) == 0
    assert yaml.safe_load((out2 / "data.yaml").read_text())["names"] == ["dog", "cat"]


def cvat_xml(path: Path, body: str, labels=("car", "person")) -> Path:
    meta = "".join(f"<label><name>{n}</name></label>" for n in labels)
    path.write_text(f'<?xml version="1.0"?><annotations><version>1.1</version><meta><task><labels>{meta}'
                    f"</labels></task></meta>{body}</annotations>")
    return path


def test_cvat_boxes_polygons_subsets(tmp_path, caplog):
    img = tmp_path / "imgs"
    image(img / "a.jpg", 64, 48)
    image(img / "b.png", 40, 30)
    xml = cvat_xml(tmp_path / "annotations.xml",
                   '<image id="0" name="a.jpg" width="64" height="48" subset="Train">'
                   '<box label="person" xtl="3" ytl="4" xbr="20.5" ybr="30" occluded="0"/>'
                   '<polygon label="car" points="10,6;64,0;40,12.25"/>'
                   '<polyline label="car" points="1,1;5,5"/></image>'
                   '<image id="1" name="b.png" width="40" height="30" subset="Validation">'
                   '<box label="car" xtl="0" ytl="0" xbr="40" ybr="30"/></image>')
    out = tmp_path / "out"
    assert run("--from", "cvat", "--annotations", xml, "--images", img, "--out", out) == 0
    assert yaml.safe_load((out / "data.yaml").read_text())["names"] == ["car", "person"]  # the meta block's order
    ds = read_dataset(out)
    assert_boxes(ds["train"]["a"], [1, 0], [BOXES_A[0], (10, 0, 64, 12.25)])
    assert_boxes(ds["val"]["b"], [0], BOXES_B)
    assert "polyline 2 ('car'): skipped (polyline shape)" in caplog.text


def voc_xml(path: Path, filename: str, w: int, h: int, objects: list) -> Path:
    objs = "".join(f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin>"
                   f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
                   for n, b, d in objects)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><filename>{filename}</filename><size><width>{w}</width><height>{h}</height>"
                    f"</size>{objs}</annotation>")
    return path


def test_voc_folder_one_based_corners_difficult(tmp_path):
    src = tmp_path / "voc"
    image(src / "train" / "a.jpg", 64, 48)
    image(src / "val" / "b.jpg", 40, 30)
    voc_xml(src / "train" / "a.xml", "a.jpg", 64, 48, [("dog", (4, 5, 20, 30), 0), ("cat", (11, 1, 64, 12), 0),
                                                       ("cat", (2, 2, 5, 5), 1)])
    voc_xml(src / "val" / "b.xml", "b.jpg", 40, 30, [("cat", (1, 1, 40, 30), 0)])
    out = tmp_path / "out"
    assert run("--from", "voc", "--annotations", src, "--out", out) == 0
    assert yaml.safe_load((out / "data.yaml").read_text())["names"] == ["dog", "cat"]  # first appearance
    ds = read_dataset(out)  # train / val from the folder names; 1-based inclusive corners -> 0-based edges
    assert_boxes(ds["train"]["a"], [0, 1], [(3, 4, 20, 30), (10, 0, 64, 12)])
    assert_boxes(ds["val"]["b"], [1], BOXES_B)
    assert "skipped (difficult)" in (out / "conversion.txt").read_text()


# ---------------------------------------------------------------------------------------------- bad input
def _bad_coco(tmp: Path, case: str) -> list:
    img = tmp / "src"
    image(img / "a.jpg", 64, 48)
    images = [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}]
    f = tmp / "bad.json"
    if case == "missing image":
        coco_file(f, images + [{"id": 2, "file_name": "gone.jpg", "width": 9, "height": 9}], [])
    elif case == "unknown category":
        coco_file(f, images, [ann(1, 1, 7, (1, 1, 5, 5)), ann(77, 1, 99, (1, 1, 5, 5))])
    elif case == "empty file":
        f.write_text("")
    elif case == "invalid file":
        f.write_text('{"images": [')
    elif case == "bad bbox":
        coco_file(f, images, [{"id": 5, "image_id": 1, "category_id": 7, "bbox": [1, 2]}])
    elif case == "latin-1 file":  # a category name in Windows-1252: an error naming the file, not mangled names
        coco_file(f, images, [ann(1, 1, 7, (1, 1, 5, 5))], [{"id": 7, "name": "caf\u00e9"}])
        f.write_bytes(json.dumps(json.loads(f.read_text()), ensure_ascii=False).encode("cp1252"))
    return ["--from", "coco", "--annotations", f, "--images", img]


BAD = {  # case -> (input builder, text the one error line must hold)
    "missing image": (_bad_coco, "bad.json: image id 2: image 'gone.jpg' not found under --images"),
    "unknown category": (_bad_coco, "bad.json: annotation id 77: unknown category_id 99"),
    "empty file": (_bad_coco, "bad.json: empty annotation file"),
    "invalid file": (_bad_coco, "bad.json: not valid JSON (line 1"),
    "bad bbox": (_bad_coco, "bad.json: annotation id 5: 'bbox' must be [x, y, width, height]"),
    "latin-1 file": (_bad_coco, "bad.json: not UTF-8 text"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_coco_one_line_nothing_written(case, tmp_path, caplog):
    build, needle = BAD[case]
    out = tmp_path / "out"
    assert run(*build(tmp_path, case), "--out", out) == 1
    errors = [r.getMessage() for r in caplog.records if "ERROR" in r.getMessage()]
    assert len(errors) == 1 and needle in errors[0] and "\n" not in errors[0], errors
    no_leftovers(out)


def _bad_other(tmp: Path, case: str) -> tuple:
    """(arguments, text the error line must hold) of a malformed LabelMe / CVAT / VOC input."""
    image(tmp / "a.jpg", 64, 48)
    if case == "labelme unknown label":
        f = tmp / "lm.json"
        f.write_text(json.dumps({"imagePath": "a.jpg", "shapes": [{"label": "horse", "shape_type": "rectangle",
                                                                    "points": [[1, 1], [5, 5]]}]}))
        return (["--from", "labelme", "--annotations", f, "--names", "dog"],
                f"{f}: shape 0 ('horse'): unknown class 'horse' (not in --names: dog)")
    if case == "cvat empty file":
        f = tmp / "empty.xml"
        f.write_text("  \n")
        return ["--from", "cvat", "--annotations", f], f"{f}: empty annotation file"
    if case == "cvat unknown label":
        f = cvat_xml(tmp / "c.xml", '<image id="3" name="a.jpg" width="64" height="48">'
                                    '<box label="tree" xtl="1" ytl="1" xbr="5" ybr="5"/></image>')
        return ["--from", "cvat", "--annotations", f], f"{f}: image id 3 'a.jpg': box 0 ('tree'): unknown class 'tree'"
    f = voc_xml(tmp / "v.xml", "missing.jpg", 64, 48, [("dog", (1, 1, 5, 5), 0)])  # voc missing image
    return ["--from", "voc", "--annotations", f], f"{f}: filename: image 'missing.jpg' not found beside"


@pytest.mark.parametrize("case", ["labelme unknown label", "cvat empty file", "cvat unknown label",
                                  "voc missing image"])
def test_malformed_labelme_cvat_voc(case, tmp_path, caplog):
    args, needle = _bad_other(tmp_path, case)
    out = tmp_path / "out"
    assert run(*args, "--out", out) == 1
    errors = [r.getMessage() for r in caplog.records if "ERROR" in r.getMessage()]
    assert len(errors) == 1 and needle in errors[0], (errors, needle)
    no_leftovers(out)


def test_out_folder_refused_replaced_and_never_half_written(coco, monkeypatch, caplog):
    tmp, img, train, val = coco
    out = tmp / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = ["--from", "coco", "--annotations", train, val, "--images", img, "--out", out]
    assert run(*args) == 1 and "folder exists and is not empty" in caplog.text
    assert (out / "keep.txt").read_text() == "mine"

    calls = []

    def failing_copy(src, dst, mode):  # the disk fills up at the second image
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        Path(dst).write_bytes(Path(src).read_bytes())

    monkeypatch.setattr(writer, "_place_image", failing_copy)
    with pytest.raises(OSError):
        run(*args, "--exist-ok")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]  # the old folder untouched, no partial tree
    assert not [p for p in tmp.iterdir() if p.name.startswith(".out.")]
    monkeypatch.undo()
    assert run(*args, "--exist-ok") == 0
    assert not (out / "keep.txt").exists() and (out / "data.yaml").is_file()


def test_voc2yolo_wrapper_keeps_its_command_line(tmp_path):
    """The v5.0-era script still runs as a file with its flags (the 20 VOC classes, ImageSets splits)."""
    import subprocess
    import sys

    yd = tmp_path / "raw" / "VOC2012"
    (yd / "ImageSets" / "Main").mkdir(parents=True)
    (yd / "ImageSets" / "Main" / "trainval.txt").write_text("x1\n")
    image(yd / "JPEGImages" / "x1.jpg", 64, 48)
    voc_xml(yd / "Annotations" / "x1.xml", "x1.jpg", 64, 48, [("person", (4, 5, 20, 30), 0)])
    script = Path(__file__).resolve().parents[1] / "data" / "scripts" / "voc2yolo.py"
    r = subprocess.run([sys.executable, str(script), "--voc", str(tmp_path / "raw"), "--out", str(tmp_path / "VOC"),
                        "--split", "train=VOC2012:trainval"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and "train: 1 images" in r.stdout, r.stderr
    assert_boxes(read_dataset(tmp_path / "VOC")["train"]["x1"], [14], [(3, 4, 20, 30)])  # person = 14


def test_annotation_size_differs_from_image(tmp_path, caplog):
    """Images downscaled after labelling: boxes keep their place (normalised by the annotated size), and it is said."""
    src = tmp_path / "lm"
    image(src / "a.jpg", 64, 48)
    (src / "a.json").write_text(json.dumps({"imagePath": "a.jpg", "imageWidth": 128, "imageHeight": 96, "shapes": [
        {"label": "dog", "shape_type": "rectangle", "points": [[6, 8], [41, 60]]}]}))
    out = tmp_path / "out"
    assert run("--from", "labelme", "--annotations", src, "--out", out, "--val-fraction", "0") == 0
    assert_boxes(read_dataset(out)["train"]["a"], [0], [(3, 4, 20.5, 30)])  # half of the drawn box
    assert f"{src / 'a.json'}: image size 128x96 in the annotation, 64x48 in" in caplog.text
    assert "WARNING: 1 images differ in size from their annotation" in caplog.text


def test_images_sharing_a_stem_get_their_own_label_file(tmp_path):
    """a.jpg and sub/a.jpg and a.png in one split: three images, three label files, boxes not mixed up."""
    src = tmp_path / "lm"
    for k, rel in enumerate(("a.jpg", "sub/a.jpg", "a.png")):
        image(src / rel, 64, 48, value=40 * k)
        (src / f"{rel}.json").write_text(json.dumps({"imagePath": Path(rel).name, "shapes": [
            {"label": "dog", "shape_type": "rectangle", "points": [[k, k], [10 + k, 10 + k]]}]}))
    out = tmp_path / "out"
    assert run("--from", "labelme", "--annotations", src, "--out", out, "--val-fraction", "0") == 0
    ds = read_dataset(out)["train"]
    assert sorted(ds) == ["a", "a_2", "a_3"]
    assert sorted(float(v[0, 1]) for v in ds.values()) == pytest.approx([0, 1, 2], abs=1e-3)
