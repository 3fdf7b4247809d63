"""val.py / test.py: matching, mAP against pycocotools, end-to-end runs on generated data, command line."""
import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

import val
from val_helpers import NAMES, TINY, FakeBackend, LabelReader, import_test_py, make_dataset, tiny_checkpoint
from utils.boxes import xyxy2xywh
from utils.metrics import ap_per_class
from utils.nms import non_max_suppression

ROOT = Path(__file__).resolve().parents[1]
IOUV = torch.linspace(0.5, 0.95, 10)


@pytest.fixture(autouse=True)
def _no_native_bf16(monkeypatch):
    """The expectations below are those of a CPU without native bf16 (default fp32), on any test machine."""
    import utils.precision
    monkeypatch.setattr(utils.precision, "cpu_bf16_native", lambda: False)


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
def _read_txt(f: Path) -> np.ndarray:
    return np.array([[float(v) for v in line.split()] for line in f.read_text().splitlines()]).reshape(-1, 5)


def test_val_run_standalone_perfect_model(tmp_path, monkeypatch):
    import engine.backends
    monkeypatch.setattr(engine.backends, "DetectMultiBackend", FakeBackend)
    data, gt = make_dataset(tmp_path / "ds")
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
    data, _ = make_dataset(tmp_path / "ds")
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
    # plots=False, no txt/json: only metrics.json, which training leaves in its save_dir every epoch
    assert [f.name for f in (tmp_path / "out").iterdir()] == ["metrics.json"]
    record = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert record["weights"] is None and record["metrics"]["mAP50-95"] == pytest.approx(1.0)
    assert record["precision"] == "fp32" and record["seen"] == 6
    val.run(data_dict, batch_size=4, imgsz=64, model=model, dataloader=loader, plots=False)
    assert not (ROOT / "metrics.json").exists()  # no save_dir given: nothing written


def test_test_py_is_val_with_v50_defaults(tmp_path, monkeypatch):
    import engine.backends
    monkeypatch.setattr(engine.backends, "DetectMultiBackend", FakeBackend)
    t = import_test_py()
    opt = t.parse_opt(["--img", "64", "--batch", "4", "--weights", "w.pt", "--device", "cpu"])
    assert opt.imgsz == 64 and opt.batch_size == 4 and Path(opt.project) == ROOT / "runs" / "test"
    data, _ = make_dataset(tmp_path / "ds")
    (_, _, map50, map_, *_), _, _ = t.test(str(data), weights="w.pt", batch_size=4, imgsz=64, workers=0,
                                           project=tmp_path / "runs", device="cpu")
    assert map_ == pytest.approx(1.0)
    assert FakeBackend.built[-1][1].name == "fp32"  # v5.0 half_precision=True means fp16 on CUDA only
    assert (tmp_path / "runs" / "exp" / "test_batch0_pred.jpg").is_file()
    assert not (tmp_path / "runs" / "exp" / "val_batch0_pred.jpg").exists()


def test_study_writes_txt_zip_and_plot(tmp_path, monkeypatch):
    import engine.backends
    import engine.val.tasks
    monkeypatch.setattr(engine.backends, "DetectMultiBackend", FakeBackend)
    monkeypatch.setattr(engine.val.tasks, "STUDY_SIZES", [32, 64])
    data, _ = make_dataset(tmp_path / "ds")
    monkeypatch.chdir(tmp_path)
    val.main(val.parse_opt(["--task", "study", "--data", str(data), "--weights", "w.pt", "--batch", "4",
                            "--workers", "0", "--project", str(tmp_path / "runs"), "--device", "cpu"]))
    rows = np.loadtxt(tmp_path / "study_data_w.txt", ndmin=2)
    assert rows.shape == (2, 10)  # 7 results + 3 times per image size
    assert rows[1, 3] == pytest.approx(1.0, abs=1e-3)  # at 64 px the reader sees exact boxes
    assert (tmp_path / "study.zip").is_file() and (tmp_path / "study.png").stat().st_size > 1000
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["exp"]  # one run dir for the whole study

    seen = []
    monkeypatch.setattr(engine.val.tasks, "run", lambda **kw: seen.append(kw) or ((0.0,) * 7, np.zeros(3), (0.0,) * 3))
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


def test_cli_usage_errors_are_argparse_errors(capsys):
    """Unknown choices and non-numbers are usage errors (exit 2); out-of-range numbers: tests/test_faults_val.py."""
    for argv, flag in (("--task bogus", "invalid choice"), ("--img abc", "--imgsz")):
        with pytest.raises(SystemExit) as e:
            val.parse_opt(argv.split())
        assert e.value.code == 2 and flag in capsys.readouterr().err


def test_cli_subprocess_real_checkpoint_ci_line(tmp_path):
    """The upstream CI line ``python val.py --img 64 --batch 32 --weights <ckpt> --device cpu`` on a real
    (untrained) checkpoint: the full path runs and writes its run directory."""
    from models.model import Model
    from engine.checkpoint import save_checkpoint

    data, _ = make_dataset(tmp_path / "ds")
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
    data, gt = make_dataset(tmp_path / "ds", n=3)
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
    _, gt = make_dataset(tmp_path / "coco", n=3)
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
    from engine.val.tasks import run_kwargs
    val.run(**dict(run_kwargs(opt), plots=False))  # what main() runs, minus the (slow, 81-class) plots
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

    data, _ = make_dataset(tmp_path / "ds", n=3)
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
    data, _ = make_dataset(tmp_path / "ds", n=1)
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


# --------------------------------------------------------------------------------------------------------------
# calibration, metrics.json
# --------------------------------------------------------------------------------------------------------------
CONF_Q = (0.875, 0.625, 0.4375, 0.3125)  # per quadrant; exact in float32 and mid-bin, so hand-computable
WRONG_Q = (1, 3)  # quadrants whose class the reader gets wrong


class MixedReader(FakeBackend):
    """Perfect boxes, one confidence per quadrant, the wrong class in quadrants 1 and 3, plus a 3x3 false
    positive of confidence 0.125 in every image (below the calibration threshold)."""

    def forward(self, x, augment=False):
        out, raw = super().forward(x)
        for q in range(4):
            found = out[:, q, 4] > 0
            out[:, q, 4] = torch.where(found, torch.tensor(CONF_Q[q]), torch.tensor(0.0))
            if q in WRONG_Q:
                out[:, q, 5:] = out[:, q, 5:].roll(1, dims=-1)
        fp = torch.zeros((x.shape[0], 1, 5 + self.nc))
        fp[:, 0, :5] = torch.tensor([2.5, 2.5, 3.0, 3.0, 0.125])
        fp[:, 0, 5] = 1.0
        return torch.cat((out, fp), 1), raw


def _quadrant(row: np.ndarray, h: int) -> int:
    return int(row[1] * 64 >= 32) + 2 * int(row[2] * h >= h / 2)


def _independent_calibration(d: Path, gt: dict):
    """CalibrationStats fed from what val wrote (--save-txt --save-conf) and the label files."""
    from utils.calibration import CalibrationStats
    cs = CalibrationStats()
    for stem, rows in sorted(gt.items()):
        h = 48 if (int(stem) - 1000) % 3 == 2 else 64
        scale = np.array([64, h, 64, h])
        p = _read_txt6(d / "labels" / f"{stem}.txt")
        pxy = xywh2xyxy_np(p[:, 1:5] * scale)
        predn = torch.tensor(np.column_stack([pxy, p[:, 5], p[:, 0]]), dtype=torch.float32)
        labelsn = torch.tensor(np.column_stack([rows[:, 0], xywh2xyxy_np(rows[:, 1:5] * scale)]),
                               dtype=torch.float32).reshape(-1, 5)
        cs.update(predn, labelsn, val.process_batch(predn, labelsn, IOUV))
    return cs


def xywh2xyxy_np(b: np.ndarray) -> np.ndarray:
    return np.column_stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 0] + b[:, 2] / 2,
                            b[:, 1] + b[:, 3] / 2])


def test_metrics_json_and_calibration_agree_with_independent_numbers(tmp_path, monkeypatch, log_lines):
    import engine.backends
    monkeypatch.setattr(engine.backends, "DetectMultiBackend", MixedReader)
    data, gt = make_dataset(tmp_path / "ds")
    (mp, mr, map50, map_, *_), _, times = val.run(data, weights="mixed.pt", batch_size=4, imgsz=64, device="cpu",
                                                  workers=0, save_txt=True, save_conf=True,
                                                  project=tmp_path / "runs")
    d = tmp_path / "runs" / "exp"
    record = json.loads((d / "metrics.json").read_text())
    assert list(record) == ["weights", "data", "task", "imgsz", "cls_act", "precision", "seen", "metrics",
                            "per_class", "calibration", "speed_ms"]
    assert (record["weights"], record["data"], record["task"], record["imgsz"], record["seen"]) == \
        ("mixed.pt", str(data), "val", 64, 6)
    assert record["cls_act"] == "sigmoid" and record["precision"] == "fp32"
    assert record["metrics"] == pytest.approx({"P": mp, "R": mr, "mAP50": map50, "mAP50-95": map_,
                                               "fitness": 0.1 * map50 + 0.9 * map_})
    assert record["speed_ms"] == pytest.approx(dict(zip(("preprocess", "inference", "nms"), times)))
    labels = np.concatenate(list(gt.values()))
    assert [(r["class"], r["name"], r["labels"]) for r in record["per_class"]] == \
        [(c, NAMES[c], int((labels[:, 0] == c).sum())) for c in range(3)]
    assert set(record["per_class"][0]) == {"class", "name", "labels", "P", "R", "AP50", "AP"}

    # hand-computed: every object is found (IoU 1); correct unless its quadrant gets the wrong class
    quads = np.array([_quadrant(r, 48 if (int(s) - 1000) % 3 == 2 else 64) for s, rows in gt.items() for r in rows])
    n_q = np.bincount(quads, minlength=4)
    acc = np.array([0.0 if q in WRONG_Q else 1.0 for q in range(4)])
    ece = float((n_q * np.abs(acc - np.array(CONF_Q))).sum() / n_q.sum())
    cal = record["calibration"]
    assert cal["ece"] == pytest.approx(ece, abs=1e-6) and cal["mce"] == pytest.approx(0.625, abs=1e-6)
    assert cal["detections"] == cal["matched"] == n_q.sum()  # the 0.125 false positives are not counted
    assert cal["wrong_class"] == n_q[1] + n_q[3]
    assert cal["wrong_class_rate"] == pytest.approx((n_q[1] + n_q[3]) / n_q.sum())
    # the same from CalibrationStats fed independently with the written predictions
    ref = _independent_calibration(d, gt).summary(NAMES)
    for key in ("ece", "mce", "detections", "wrong_class_rate", "labels"):
        assert cal[key] == pytest.approx(ref[key], abs=1e-6), key
    assert cal["confused_pairs"] == ref["confused_pairs"] and cal["per_class"] == ref["per_class"]
    assert [b["count"] for b in cal["bins"]] == [b["count"] for b in ref["bins"]]

    # printed after the per-class table, exactly as CalibrationStats formats them
    lines = log_lines.text().splitlines()
    want = _independent_calibration(d, gt).format_lines(NAMES)
    start = lines.index(want[0])
    assert lines[start:start + len(want)] == want
    table = [i for i, s in enumerate(lines) if len(s.split()) == 7 and s.split()[0] in NAMES]
    assert len(table) == 3 and start == table[-1] + 1
    for name in ("calibration.png", "PR_curve.png", "confusion_matrix.png"):
        assert (d / name).stat().st_size > 1000, name
    assert cv2.imread(str(d / "calibration.png")) is not None


# --------------------------------------------------------------------------------------------------------------
# precision
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, name", [({}, "fp32"), ({"half": True}, "bf16 autocast"), ({"fp32": True}, "fp32")])
def test_val_asks_the_backend_for_the_precision_policy(flags, name, tmp_path, monkeypatch, log_lines):
    """Without native bf16 (patched for every test here) the default is fp32; --half forces emulated bf16."""
    import engine.backends
    monkeypatch.setattr(engine.backends, "DetectMultiBackend", FakeBackend)
    data, _ = make_dataset(tmp_path / "ds", n=1)
    val.run(data, weights="w.pt", imgsz=64, device="cpu", workers=0, plots=False, project=tmp_path / "runs", **flags)
    precision = FakeBackend.built[-1][1]
    assert precision.name == name and precision.channels_last
    assert json.loads((tmp_path / "runs" / "exp" / "metrics.json").read_text())["precision"] == name
    startup = next(s for s in log_lines if s.startswith(("val: ", "\x1b")) and "w.pt" in s)
    assert f"on cpu, {name}" in startup and ("emulated" in startup) == ("half" in flags)


def test_decode_and_nms_stay_fp32_under_bf16_autocast(tmp_path):
    from engine.backends import DetectMultiBackend
    from utils.precision import inference_precision
    w = tiny_checkpoint(tmp_path / "tiny.pt")
    x = torch.rand(2, 3, 64, 64)
    fp32 = DetectMultiBackend(str(w), device="cpu", precision=inference_precision("cpu", fp32=True))
    bf16 = DetectMultiBackend(str(w), device="cpu", precision=inference_precision("cpu", half=True))
    assert bf16.precision.dtype == torch.bfloat16
    with torch.no_grad():
        a, b = fp32(x), bf16(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # the Detect head itself, before any upcast
            raw = bf16.model(x.contiguous(memory_format=torch.channels_last))[0]
            out = non_max_suppression(raw, 0.001, 0.6, multi_label=True)
    assert raw.dtype == a.dtype == b.dtype == torch.float32 and all(o.dtype == torch.float32 for o in out)
    assert not torch.equal(a, b)  # bf16 really ran ...
    assert (a[..., :4] - b[..., :4]).abs().max() < 2.0  # ... and boxes decoded in fp32 stay within ~a pixel
