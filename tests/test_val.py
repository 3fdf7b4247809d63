"""val.py / test.py: matching, mAP against pycocotools, end-to-end runs on generated data, command line."""
import contextlib
import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml

import val
from utils.boxes import xyxy2xywh
from utils.metrics import ap_per_class
from utils.nms import non_max_suppression

ROOT = Path(__file__).resolve().parents[1]
IOUV = torch.linspace(0.5, 0.95, 10)


def _import_test_py():
    """The repo's test.py (imported by path: a plain ``import test`` could find the stdlib ``test`` package)."""
    spec = importlib.util.spec_from_file_location("yolov5_test_py", ROOT / "test.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------------------------------------------------
# process_batch
# --------------------------------------------------------------------------------------------------------------
def test_process_batch_thresholds_class_and_one_to_one():
    labels = torch.tensor([[0, 0, 0, 10, 10], [1, 20, 20, 30, 30]], dtype=torch.float32)
    dets = torch.tensor([[0, 0, 10, 7, 0.9, 0],     # IoU 0.7 with label 0
                         [0, 0, 10, 10, 0.8, 0],    # IoU 1.0 with label 0, lower confidence
                         [20, 20, 30, 30, 0.7, 0],  # perfect box, wrong class
                         [20, 20, 30, 29, 0.6, 1]])  # IoU 0.9 with label 1
    c = val.process_batch(dets, labels, IOUV)
    assert c.shape == (4, 10) and c.dtype == torch.bool
    # pycocotools rule: the most confident detection takes label 0 up to its IoU 0.7; above that label 0 is
    # still free, so the IoU-1.0 duplicate takes it
    assert c[0].tolist() == [True] * 5 + [False] * 5
    assert c[1].tolist() == [False] * 5 + [True] * 5
    assert not c[2].any()  # class must match
    assert c[3].tolist() == [True] * 9 + [False]  # 0.9 >= 0.9 (inclusive), < 0.95
    # upstream v6 order: highest IoU first, so the duplicate wins label 0 at every threshold
    ci = val.process_batch(dets, labels, IOUV, match="iou")
    assert not ci[0].any() and ci[1].all() and ci[3].tolist() == c[3].tolist()
    # empty inputs
    assert val.process_batch(dets[:0], labels, IOUV).shape == (0, 10)
    assert not val.process_batch(dets, labels[:0], IOUV).any()
    with pytest.raises(ValueError, match="match"):
        val.process_batch(dets, labels, IOUV, match="greedy")


# --------------------------------------------------------------------------------------------------------------
# mAP against pycocotools
# --------------------------------------------------------------------------------------------------------------
def _scene(seed: int, n_img: int = 40, nc: int = 3, w: int = 320, h: int = 240):
    """Known boxes + synthetic detections: jittered copies (some duplicated, some with a wrong class), misses,
    random false positives, varied confidences. -> list of (labels (m, 5) [cls, xyxy], dets (n, 6))."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_img):
        m = int(rng.integers(0, 7))
        wh = rng.uniform(12, 70, (m, 2))
        xy = rng.uniform(0, 1, (m, 2)) * ([w, h] - wh)
        gt = np.column_stack([rng.integers(0, nc, m), xy, xy + wh])
        dets = []
        for g in gt:
            size = np.r_[g[3] - g[1], g[4] - g[2]]
            for dup in range(1 + int(rng.random() < 0.2)):
                if rng.random() < 0.1:
                    continue  # missed
                b = g[1:] + rng.normal(0, rng.uniform(0, 0.15 + 0.2 * dup), 4) * np.r_[size, size]
                b = np.r_[np.minimum(b[:2], b[2:]), np.maximum(b[:2], b[2:])]
                cls = g[0] if rng.random() > 0.1 else rng.integers(0, nc)
                dets.append([*b, rng.uniform(0.2, 1.0) * (0.6 if dup else 1.0), cls])
        for _ in range(int(rng.integers(0, 4))):  # false positives
            wh2 = rng.uniform(10, 60, 2)
            xy2 = rng.uniform(0, 1, 2) * ([w, h] - wh2)
            dets.append([*xy2, *(xy2 + wh2), rng.uniform(0.01, 0.7), rng.integers(0, nc)])
        d = np.array(dets, dtype=np.float64).reshape(-1, 6)
        out.append((gt, d[np.argsort(-d[:, 4])]))
    return out, nc, w, h


def _project_map(scene):
    """The metric path of val.run: process_batch per image, then ap_per_class."""
    stats = []
    for gt, d in scene:
        correct = val.process_batch(torch.tensor(d, dtype=torch.float32),
                                    torch.tensor(gt, dtype=torch.float32).reshape(-1, 5), IOUV)
        stats.append((correct.numpy(), d[:, 4], d[:, 5], gt[:, 0]))
    tp, conf, pcls, tcls = (np.concatenate([s[k] for s in stats]) for k in range(4))
    _, _, ap, _, _ = ap_per_class(tp, conf, pcls, tcls)
    return ap[:, 0].mean(), ap.mean()


def _pycocotools_map(scene, nc, w, h):
    """Independent reference: pycocotools on the same boxes (its own matching and its own AP)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets = [], [], []
    for i, (gt, d) in enumerate(scene):
        images.append({"id": i, "width": w, "height": h})
        for g in gt:
            bw, bh = g[3] - g[1], g[4] - g[2]
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(g[0]),
                         "bbox": [g[1], g[2], bw, bh], "area": bw * bh, "iscrowd": 0})
        for q in d:
            dets.append({"image_id": i, "category_id": int(q[5]), "bbox": [q[0], q[1], q[2] - q[0], q[3] - q[1]],
                         "score": float(q[4])})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": k} for k in range(nc)]}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[1], ev.stats[0]


def _after_nms(scene, nc):
    """The same detections after val's NMS (conf 0.001, IoU 0.6, multi-label), as val.run scores them."""
    out = []
    for gt, d in scene:
        x = torch.zeros((1, len(d), 5 + nc))
        t = torch.tensor(d, dtype=torch.float32)
        x[0, :, :4], x[0, :, 4] = xyxy2xywh(t[:, :4]), t[:, 4]
        x[0, torch.arange(len(d)), 5 + t[:, 5].long()] = 1.0
        out.append((gt, non_max_suppression(x, 0.001, 0.6, multi_label=True)[0].double().numpy()))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_agrees_with_pycocotools(seed):
    scene, nc, w, h = _scene(seed)
    for s in (scene, _after_nms(scene, nc)):
        ours50, ours = _project_map(s)
        ref50, ref = _pycocotools_map(s, nc, w, h)
        assert 0.3 < ref < 0.9  # a meaningful, non-saturated test case
        assert abs(ours - ref) < 0.01, (ours, ref)
        assert abs(ours50 - ref50) < 0.01, (ours50, ref50)


def test_upstream_iou_order_differs_on_duplicates():
    """Why the default matching follows pycocotools: with near-duplicate detections the v6 highest-IoU-first
    order hands labels to low-confidence duplicates and lowers mAP@0.5 noticeably (seed 1: by ~0.06)."""
    scene, nc, w, h = _scene(1)
    stats = []
    for gt, d in scene:
        c = val.process_batch(torch.tensor(d, dtype=torch.float32),
                              torch.tensor(gt, dtype=torch.float32).reshape(-1, 5), IOUV, match="iou")
        stats.append((c.numpy(), d[:, 4], d[:, 5], gt[:, 0]))
    _, _, ap, _, _ = ap_per_class(*(np.concatenate([s[k] for s in stats]) for k in range(4)))
    ref50, _ = _pycocotools_map(scene, nc, w, h)
    assert ref50 - ap[:, 0].mean() > 0.03


def test_exact_predictions_score_one():
    scene, nc, w, h = _scene(3)
    exact = [(gt, np.column_stack([gt[:, 1:], np.linspace(1.0, 0.5, len(gt)), gt[:, 0]])) for gt, _ in scene]
    map50, map_ = _project_map(exact)
    assert map50 == pytest.approx(1.0, abs=1e-9) and map_ == pytest.approx(1.0, abs=1e-9)
    ref50, ref = _pycocotools_map(exact, nc, w, h)
    assert ref50 == pytest.approx(1.0) and ref == pytest.approx(1.0)


def test_coco80_to_coco91_map():
    m = val.coco80_to_coco91_class()
    assert len(m) == 80 == len(set(m)) and m[:3] == [1, 2, 3] and m[11] == 13 and m[-1] == 90
    assert not set(m) & {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}


# --------------------------------------------------------------------------------------------------------------
# end to end on a generated dataset with a model that "sees" the labels
# --------------------------------------------------------------------------------------------------------------
NAMES = ["square", "wide", "tall"]
BG = 0  # background grey level; letterbox padding is 114


def _code(obj: int, cls: int) -> int:
    """Grey level that encodes (object index, class); never 0 or 114."""
    return 30 + 8 * obj + cls


def _make_dataset(root: Path, n: int = 6) -> tuple:
    """64 px images (some 64x48) with up to 4 non-overlapping filled rectangles, each a unique grey level."""
    rng = np.random.default_rng(0)
    img_dir, lb_dir = root / "images" / "val", root / "labels" / "val"
    img_dir.mkdir(parents=True)
    lb_dir.mkdir(parents=True)
    gt = {}
    for i in range(n):
        h, w = (48, 64) if i % 3 == 2 else (64, 64)
        im = np.full((h, w, 3), BG, np.uint8)
        rows = []
        for q, (qx, qy) in enumerate(((0, 0), (32, 0), (0, h // 2), (32, h // 2))):
            if i < n - 1 and rng.random() < 0.25:
                continue  # keep some quadrants empty; the last image stays fully populated
            cls = int(rng.integers(0, 3))
            bw, bh = (int(v) for v in rng.integers(5, 20, 2))
            x1, y1 = qx + int(rng.integers(1, 31 - bw)), qy + int(rng.integers(1, h // 2 - 1 - bh))
            im[y1:y1 + bh, x1:x1 + bw] = _code(q, cls)
            rows.append([cls, (x1 + bw / 2) / w, (y1 + bh / 2) / h, bw / w, bh / h])
        cv2.imwrite(str(img_dir / f"{1000 + i}.png"), im)  # PNG: exact grey levels
        (lb_dir / f"{1000 + i}.txt").write_text("".join("%d %.8f %.8f %.8f %.8f\n" % tuple(r) for r in rows))
        gt[f"{1000 + i}"] = np.array(rows).reshape(-1, 5)
    data = root / "data.yaml"
    data.write_text(yaml.safe_dump({"path": str(root), "train": "images/val", "val": "images/val", "nc": 3,
                                    "names": NAMES}))
    return data, gt


class LabelReader(nn.Module):
    """Stands in for a trained detector: decodes the grey-level code of every rectangle into a prediction row
    [x, y, w, h (input pixels), obj, class probabilities] and returns the eval-mode pair (decoded, raw)."""

    def __init__(self, nc: int = 3):
        super().__init__()
        self.nc, self.names = nc, list(NAMES)
        self.stride = torch.tensor([8.0, 16.0, 32.0])
        self.w = nn.Parameter(torch.zeros(1))  # gives the module a device and dtype
        self.calls = 0

    def forward(self, x, augment=False):
        self.calls += 1
        levels = (x[:, 0] * 255).round().long()
        out = torch.zeros((x.shape[0], 4, 5 + self.nc))
        for b in range(x.shape[0]):
            for q in range(4):
                for cls in range(len(NAMES)):  # the grey-level code only covers the dataset's 3 classes
                    ys, xs = torch.nonzero(levels[b] == _code(q, cls), as_tuple=True)
                    if len(xs):
                        x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
                        out[b, q, :4] = torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]).float()
                        out[b, q, 4] = 0.9 - 0.1 * q  # varied confidences
                        out[b, q, 5 + cls] = 1.0
        return out, [torch.zeros(1)]


class FakeBackend(LabelReader):
    """What DetectMultiBackend gives val.run for .pt weights."""

    pt, fp16, fixed_shape, batch_size, nc = True, False, None, None, 3

    def __init__(self, weights, device=None, dnn=False, data=None, fp16=False, fuse=True):
        super().__init__()
        self.stride = 32  # DetectMultiBackend exposes the max stride as an int

    def warmup(self, imgsz=(1, 3, 640, 640)):
        pass


def _read_txt(f: Path) -> np.ndarray:
    return np.array([[float(v) for v in line.split()] for line in f.read_text().splitlines()]).reshape(-1, 5)


def test_val_run_standalone_perfect_model(tmp_path, monkeypatch):
    import engine.backends
    monkeypatch.setattr(engine.backends, "DetectMultiBackend", FakeBackend)
    data, gt = _make_dataset(tmp_path / "ds")
    (mp, mr, map50, map_, *losses), maps, times = val.run(
        data, weights="perfect.pt", batch_size=4, imgsz=64, device="cpu", workers=0, save_txt=True,
        save_json=True, project=tmp_path / "runs", name="exp")
    assert map50 == pytest.approx(1.0) and map_ == pytest.approx(1.0)  # pycocotools' numbers (save_json)
    assert mp == pytest.approx(1.0) and mr == pytest.approx(1.0)
    assert maps.tolist() == pytest.approx([1.0] * 3) and losses == [0.0, 0.0, 0.0] and len(times) == 3
    d = tmp_path / "runs" / "exp"
    # labels/*.txt: class x y w h normalised to the original image, one file per image with detections
    for stem, rows in gt.items():
        f = d / "labels" / f"{stem}.txt"
        assert f.is_file() == bool(len(rows))
        if len(rows):
            got = _read_txt(f)
            np.testing.assert_allclose(got[np.lexsort(got.T[::-1])], rows[np.lexsort(rows.T[::-1])], atol=1e-5)
    # COCO json: numeric stems become int ids, bbox is top-left xywh in original pixels
    js = json.loads((d / "perfect_predictions.json").read_text())
    assert len(js) == sum(len(r) for r in gt.values())
    e = js[0]
    assert isinstance(e["image_id"], int) and set(e) == {"image_id", "category_id", "bbox", "score"}
    rows = gt[str(e["image_id"])]
    h = 48 if (e["image_id"] - 1000) % 3 == 2 else 64
    boxes = np.column_stack([(rows[:, 1] - rows[:, 3] / 2) * 64, (rows[:, 2] - rows[:, 4] / 2) * h,
                             rows[:, 3] * 64, rows[:, 4] * h])
    assert np.abs(boxes - e["bbox"]).sum(1).min() < 1e-2
    for name in ("val_batch0_labels.jpg", "val_batch0_pred.jpg", "val_batch1_labels.jpg", "val_batch1_pred.jpg",
                 "confusion_matrix.png", "PR_curve.png", "F1_curve.png", "P_curve.png", "R_curve.png"):
        assert (d / name).is_file() and (d / name).stat().st_size > 1000, name
    assert not (d / "val_batch2_labels.jpg").exists()  # 6 images at batch 4: two batches only
    # batch plots show the boxes: the prediction mosaic differs from the bare images where boxes are drawn
    pred = cv2.imread(str(d / "val_batch0_pred.jpg"))
    assert pred is not None and pred.std() > 10


def test_val_run_training_api_uses_given_model_and_loss(tmp_path):
    from data.datasets import create_dataloader
    data, _ = _make_dataset(tmp_path / "ds")
    loader = create_dataloader(str(tmp_path / "ds" / "images" / "val"), 64, 4, 32, pad=0.5, rect=True,
                               workers=0)[0]
    model = LabelReader()
    calls = []

    def compute_loss(p, targets):
        calls.append(len(p))
        return torch.tensor(6.0), torch.tensor([1.0, 2.0, 3.0, 6.0])

    data_dict = yaml.safe_load(Path(data).read_text())
    results, maps, _ = val.run(data_dict, batch_size=4, imgsz=64, model=model, dataloader=loader,
                               save_dir=tmp_path / "out", plots=False, compute_loss=compute_loss)
    assert results[:4] == pytest.approx((1.0, 1.0, 1.0, 1.0))
    assert list(results[4:]) == pytest.approx([1.0, 2.0, 3.0])  # losses averaged over the 2 batches
    assert calls == [1, 1] and model.calls == 2
    assert not (tmp_path / "out").exists()  # plots=False, no txt/json: nothing written


def test_test_py_is_val_with_v50_defaults(tmp_path, monkeypatch):
    import engine.backends
    monkeypatch.setattr(engine.backends, "DetectMultiBackend", FakeBackend)
    t = _import_test_py()
    opt = t.parse_opt(["--img", "64", "--batch", "4", "--weights", "w.pt", "--device", "cpu"])
    assert opt.imgsz == 64 and opt.batch_size == 4 and Path(opt.project) == ROOT / "runs" / "test"
    data, _ = _make_dataset(tmp_path / "ds")
    (_, _, map50, map_, *_), _, _ = t.test(str(data), weights="w.pt", batch_size=4, imgsz=64, workers=0,
                                           project=tmp_path / "runs", device="cpu")
    assert map_ == pytest.approx(1.0)
    assert (tmp_path / "runs" / "exp" / "test_batch0_pred.jpg").is_file()
    assert not (tmp_path / "runs" / "exp" / "val_batch0_pred.jpg").exists()


def test_study_writes_txt_zip_and_plot(tmp_path, monkeypatch):
    import engine.backends
    monkeypatch.setattr(engine.backends, "DetectMultiBackend", FakeBackend)
    monkeypatch.setattr(val, "STUDY_SIZES", [32, 64])
    data, _ = _make_dataset(tmp_path / "ds")
    monkeypatch.chdir(tmp_path)
    val.main(val.parse_opt(["--task", "study", "--data", str(data), "--weights", "w.pt", "--batch", "4",
                            "--workers", "0", "--project", str(tmp_path / "runs"), "--device", "cpu"]))
    rows = np.loadtxt(tmp_path / "study_data_w.txt", ndmin=2)
    assert rows.shape == (2, 10)  # 7 results + 3 times per image size
    assert rows[1, 3] == pytest.approx(1.0, abs=1e-3)  # at 64 px the reader sees exact boxes
    assert (tmp_path / "study.zip").is_file() and (tmp_path / "study.png").stat().st_size > 1000
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["exp"]  # one run dir for the whole study

    seen = []
    monkeypatch.setattr(val, "run", lambda **kw: seen.append(kw) or ((0.0,) * 7, np.zeros(3), (0.0,) * 3))
    val.main(val.parse_opt(["--task", "speed", "--data", str(data), "--weights", "a.pt", "b.pt"]))
    assert [(k["weights"], k["conf_thres"], k["iou_thres"], k["save_json"], k["plots"]) for k in seen] == \
        [("a.pt", 0.25, 0.45, False, False), ("b.pt", 0.25, 0.45, False, False)]  # v5.0 speed benchmark


# --------------------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, expect", [
    ("--img 128 --batch 16 --weights weights/yolov5s.pt --device cpu", dict(imgsz=128, batch_size=16)),  # v5.0 CI
    ("--img 64 --batch 32 --weights yolov5s.pt --device cpu", dict(imgsz=64, batch_size=32)),  # v6.0 CI
    ("--imgsz 64 --batch 32 --weights yolov5n.pt --device cpu", dict(imgsz=64, batch_size=32)),  # v7.0 CI
    ("--img-size 320 --conf 0.01 --iou 0.65 --max-det 100", dict(imgsz=320, conf_thres=0.01, iou_thres=0.65,
                                                                  max_det=100)),
    ("--save-hybrid --half --dnn --workers 0", dict(save_txt=True, save_hybrid=True, half=True, dnn=True,
                                                    workers=0)),
    ("--data data/coco.yaml", dict(save_json=True)),  # v5.0: COCO is always scored with pycocotools
])
def test_cli_flags_and_upstream_abbreviations(argv, expect):
    opt = val.parse_opt(argv.split())
    for k, v in expect.items():
        assert getattr(opt, k) == v, k
    assert Path(opt.project) == ROOT / "runs" / "val"


@pytest.mark.parametrize("argv, msg", [
    ("--task bogus", "invalid choice"),
    ("--conf-thres 1.5", "--conf-thres 1.5 must be between 0 and 1"),
    ("--batch-size 0", "--batch-size 0 must be >= 1"),
])
def test_cli_rejects_bad_flags(argv, msg, capsys):
    with pytest.raises(SystemExit) as e:
        val.parse_opt(argv.split())
    assert e.value.code == 2 and msg in capsys.readouterr().err


def _one_error(capsys, argv, prog_main=val.main, parse=val.parse_opt):
    with pytest.raises(SystemExit) as e:
        prog_main(parse(argv))
    err = capsys.readouterr().err.strip()
    assert e.value.code == 1
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_cli_bad_data_and_bad_weights_give_one_message(tmp_path, capsys):
    data, _ = _make_dataset(tmp_path / "ds")
    runs = str(tmp_path / "runs")
    err = _one_error(capsys, ["--data", str(tmp_path / "nope.yaml"), "--weights", "x.pt", "--project", runs])
    assert err.startswith("val.py: error:") and "nope.yaml" in err
    bad = tmp_path / "notackpt.pt"
    bad.write_text("this is not a checkpoint\n")
    err = _one_error(capsys, ["--data", str(data), "--weights", str(bad), "--project", runs, "--device", "cpu"])
    assert "notackpt.pt" in err and "checkpoint" in err
    err = _one_error(capsys, ["--data", str(data), "--weights", str(tmp_path / "missing.pt"), "--project", runs])
    assert "missing.pt" in err and "not found" in err
    t = _import_test_py()
    err = _one_error(capsys, ["--data", str(tmp_path / "nope.yaml")], t.main, t.parse_opt)
    assert err.startswith("test.py: error:")
    assert not (tmp_path / "runs").exists()  # failed runs leave no empty run directories behind


TINY = {"nc": 3, "depth_multiple": 0.33, "width_multiple": 0.25,
        "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
        "backbone": [[-1, 1, "Conv", [32, 3, 2]], [-1, 1, "Conv", [64, 3, 2]], [-1, 1, "Conv", [64, 3, 2]],
                     [-1, 1, "Conv", [128, 3, 2]], [-1, 1, "Conv", [128, 3, 2]]],
        "head": [[[2, 3, 4], 1, "Detect", ["nc", "anchors"]]]}


def test_cli_subprocess_real_checkpoint_ci_line(tmp_path):
    """The upstream CI line ``python val.py --img 64 --batch 32 --weights <ckpt> --device cpu`` on a real
    (untrained) checkpoint: the full path runs and writes its run directory."""
    from models.model import Model
    from engine.checkpoint import save_checkpoint

    data, _ = _make_dataset(tmp_path / "ds")
    model = Model(TINY)
    model.names = list(NAMES)
    w = save_checkpoint({"epoch": -1, "best_fitness": 0.0, "model": model, "ema": None, "updates": None,
                         "optimizer": None}, tmp_path / "tiny.pt")
    r = subprocess.run([sys.executable, "val.py", "--img", "64", "--batch", "32", "--weights", str(w), "--device",
                        "cpu", "--data", str(data), "--workers", "0", "--project", str(tmp_path / "runs"),
                        "--save-json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    log = r.stdout + r.stderr
    assert "mAP@.5:.95" in log and "Speed:" in log and "Results saved to" in log
    assert (tmp_path / "runs" / "exp" / "val_batch0_labels.jpg").is_file()
    assert (tmp_path / "runs" / "exp" / "tiny_predictions.json").is_file() or "no detections" in log


class BlindBackend(FakeBackend):
    """A model that detects nothing: with --save-hybrid only the injected labels come out of NMS."""

    def forward(self, x, augment=False):
        return torch.zeros((x.shape[0], 4, 5 + self.nc))


def test_save_hybrid_writes_labels_as_predictions(tmp_path, monkeypatch):
    import engine.backends
    monkeypatch.setattr(engine.backends, "DetectMultiBackend", BlindBackend)
    data, gt = _make_dataset(tmp_path / "ds", n=3)
    val.run(data, weights="blind.pt", batch_size=4, imgsz=64, device="cpu", workers=0, save_hybrid=True,
            save_conf=True, plots=False, project=tmp_path / "runs")
    for stem, rows in gt.items():
        got = np.array([[float(v) for v in line.split()]
                        for line in (tmp_path / "runs" / "exp" / "labels" / f"{stem}.txt").read_text().splitlines()])
        assert got.shape == (len(rows), 6) and (got[:, 5] == 1.0).all()  # conf 1 for the injected labels
        got = got[:, :5]
        np.testing.assert_allclose(got[np.lexsort(got.T[::-1])], rows[np.lexsort(rows.T[::-1])], atol=1e-5)


class Coco80Backend(FakeBackend):
    nc = 80

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.nc, self.names = 80, [f"c{i}" for i in range(80)]


def test_coco_dataset_uses_91_ids_and_official_annotations(tmp_path, monkeypatch, capsys):
    """A dataset yaml named coco.yaml: --save-json is forced, category ids go through the 80 -> 91 map, and
    pycocotools scores against <path>/annotations/instances_val2017.json."""
    import engine.backends
    monkeypatch.setattr(engine.backends, "DetectMultiBackend", Coco80Backend)
    _, gt = _make_dataset(tmp_path / "coco", n=3)
    data = tmp_path / "coco.yaml"
    data.write_text(yaml.safe_dump({"path": str(tmp_path / "coco"), "train": "images/val", "val": "images/val",
                                    "nc": 80, "names": [f"c{i}" for i in range(80)]}))
    ids = val.coco80_to_coco91_class()
    images, anns = [], []
    for stem, rows in gt.items():
        h = 48 if (int(stem) - 1000) % 3 == 2 else 64
        images.append({"id": int(stem), "width": 64, "height": h})
        for c, x, y, w, hh in rows:
            box = [(x - w / 2) * 64, (y - hh / 2) * h, w * 64, hh * h]
            anns.append({"id": len(anns) + 1, "image_id": int(stem), "category_id": ids[int(c)], "bbox": box,
                         "area": box[2] * box[3], "iscrowd": 0})
    (tmp_path / "coco" / "annotations").mkdir()
    (tmp_path / "coco" / "annotations" / "instances_val2017.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": [{"id": i} for i in ids]}))
    opt = val.parse_opt(["--data", str(data), "--weights", "w.pt", "--img", "64", "--batch", "4", "--workers", "0",
                         "--project", str(tmp_path / "runs"), "--device", "cpu"])
    assert opt.save_json
    val.run(**dict(val._run_kwargs(opt), plots=False))  # what main() runs, minus the (slow, 81-class) plots
    out = capsys.readouterr().out
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000" in out
    js = json.loads((tmp_path / "runs" / "exp" / "w_predictions.json").read_text())
    used = {int(r[0]) for rows in gt.values() for r in rows}
    assert {e["category_id"] for e in js} == {ids[c] for c in used}


def test_val_runs_exported_onnx(tmp_path):
    """Exported weights go through the same evaluation (fixed-shape export: square letterbox at its size,
    batches split to the export batch); the .onnx run scores like the .pt run on square inputs."""
    pytest.importorskip("onnxruntime")
    import export
    from models.model import Model
    from engine.checkpoint import save_checkpoint

    data, _ = _make_dataset(tmp_path / "ds", n=3)
    torch.manual_seed(1)
    model = Model(TINY)
    model.names = list(NAMES)
    with torch.no_grad():  # objectness ~0.5 everywhere: plenty of detections to compare (252 candidates/image)
        for conv in model.model[-1].m:
            conv.bias.view(3, -1)[:, 4] = 0.0
    w = save_checkpoint({"epoch": -1, "best_fitness": 0.0, "model": model, "ema": None, "updates": None,
                         "optimizer": None}, tmp_path / "tiny.pt")
    (f,) = export.run(weights=str(w), imgsz=(64, 64), batch_size=1, include=("onnx",))
    kw = dict(batch_size=2, imgsz=64, plots=False, save_txt=True, save_conf=True, conf_thres=0.01)
    r_onnx, maps_onnx, _ = val.run(data, weights=str(f), device="cpu", workers=0, project=tmp_path / "runs", **kw)
    assert len(r_onnx) == 7 and maps_onnx.shape == (3,) and r_onnx[4:] == (0.0, 0.0, 0.0)

    from engine.checkpoint import attempt_load
    from data.datasets import create_dataloader
    square = create_dataloader(str(tmp_path / "ds" / "images" / "val"), 64, 2, 32, rect=False, workers=0)[0]
    r_pt, maps_pt, _ = val.run(data, model=attempt_load(str(w)), dataloader=square, save_dir=tmp_path / "pt", **kw)
    assert r_onnx[:4] == pytest.approx(r_pt[:4], abs=1e-3) and maps_onnx == pytest.approx(maps_pt, abs=1e-3)
    # the same detections (the untrained model finds plenty of boxes at conf 0.01), in the same order
    files = sorted((tmp_path / "pt" / "labels").glob("*.txt"))
    assert len(files) == 3
    for fp in files:
        a, b = _read_txt6(fp), _read_txt6(tmp_path / "runs" / "exp" / "labels" / fp.name)
        assert len(a) > 5 and a.shape == b.shape
        a, b = a[np.lexsort(a.T[::-1])], b[np.lexsort(b.T[::-1])]
        np.testing.assert_allclose(a, b, atol=2e-3)


def _read_txt6(f: Path) -> np.ndarray:
    return np.array([[float(v) for v in line.split()] for line in f.read_text().splitlines()]).reshape(-1, 6)


def test_run_rejects_mismatched_weights_and_missing_split_before_writing(tmp_path, monkeypatch):
    import engine.backends
    monkeypatch.setattr(engine.backends, "DetectMultiBackend", FakeBackend)  # a 3-class model
    data, _ = _make_dataset(tmp_path / "ds", n=1)
    d80 = tmp_path / "d80.yaml"
    d80.write_text(yaml.safe_dump({"path": str(tmp_path / "ds"), "train": "images/val", "val": "images/val",
                                   "nc": 80, "names": [f"c{i}" for i in range(80)]}))
    kw = dict(weights="w.pt", imgsz=64, device="cpu", workers=0, project=tmp_path / "runs")
    with pytest.raises(ValueError, match=r"w.pt \(3 classes\).*d80.yaml \(80 classes\)"):
        val.run(d80, **kw)
    with pytest.raises(ValueError, match="no 'test' split"):
        val.run(data, task="test", **kw)
    assert not (tmp_path / "runs").exists()
    # --single-cls evaluates any model class-agnostically, so the class counts need not match
    (_, _, map50, _, *_), maps, _ = val.run(d80, single_cls=True, plots=False, **kw)
    assert map50 == pytest.approx(1.0) and maps.shape == (1,)
