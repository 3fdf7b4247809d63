"""detect.py: sources, the runs/detect outputs of contract 7.5, exported weights, bad input."""
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from detect_helpers import NAMES, ROOT, make_checkpoint


def scene(h: int, w: int, seed: int) -> np.ndarray:
    from export import synthetic_image
    return synthetic_image(h, w, seed)


def read_labels(f: Path) -> np.ndarray:
    rows = [[float(v) for v in line.split()] for line in f.read_text().splitlines()]
    return np.array(rows).reshape(len(rows), -1)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("detect")
    w = make_checkpoint(d / "tiny.pt", "softmax")
    images = d / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.jpg"), scene(96, 128, 1))
    cv2.imwrite(str(images / "b.png"), scene(120, 90, 2))
    square = d / "square"  # square images: every backend sees the same letterbox, detections must agree
    square.mkdir()
    cv2.imwrite(str(square / "s1.png"), scene(128, 128, 3))
    cv2.imwrite(str(square / "s2.png"), scene(100, 100, 4))
    video = d / "clip.mp4"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 12.0, (128, 96))
    for i in range(9):
        vw.write(scene(96, 128, 10 + i))
    vw.release()
    return d, w, images, square, video


def run_detect(**kw):
    import detect
    opt = dict(imgsz=[128], device="cpu", exist_ok=True)
    opt.update(kw)
    return detect.run(**opt)


def test_directory_outputs_and_labels(assets, tmp_path, log_lines):
    d, w, images, _, _ = assets
    save_dir = run_detect(weights=str(w), source=str(images), project=str(tmp_path), name="exp", save_txt=True,
                          save_conf=True, save_crop=True)
    assert save_dir == tmp_path / "exp"
    err = log_lines.text()
    lines = [x for x in err.splitlines() if x.startswith("image ")]
    assert len(lines) == 2
    assert re.fullmatch(r"image 1/2 .*a\.jpg: 96x128 (\d+ (circle|square|triangle)s?, )+Done\. \(\d+\.\d{3}s\)",
                        lines[0]), lines[0]
    assert "labels saved to" in err and "Results saved to" in err
    for name in ("a.jpg", "b.png"):  # annotated copies, same name, same size as the source
        src, out = cv2.imread(str(images / name)), cv2.imread(str(save_dir / name))
        assert out.shape == src.shape and np.abs(out.astype(int) - src.astype(int)).sum() > 0
    labels = read_labels(save_dir / "labels" / "a.txt")
    assert len(labels) and set(labels[:, 0]) <= {0, 1, 2}
    assert (labels[:, 1:5] >= 0).all() and (labels[:, 1:5] <= 1).all()
    assert np.all(np.diff(labels[:, 5]) >= 0)  # reversed NMS order: lowest confidence first

    # independent reference for a.jpg: backend + NMS on the letterboxed image, mapped back by hand
    from engine.backends import DetectMultiBackend
    from data.augmentations import letterbox
    from utils.nms import non_max_suppression
    im0 = cv2.imread(str(images / "a.jpg"))
    lb, ratio, (dw, dh) = letterbox(im0, 128, stride=32, auto=True)
    x = torch.from_numpy(lb[:, :, ::-1].transpose(2, 0, 1).copy()).float()[None] / 255
    with torch.no_grad():
        det = non_max_suppression(DetectMultiBackend(w)(x), 0.25, 0.45, max_det=1000)[0]
    xyxy = det[:, :4].clone()
    xyxy[:, [0, 2]] = ((xyxy[:, [0, 2]] - dw) / ratio[0]).clamp(0, 128)
    xyxy[:, [1, 3]] = ((xyxy[:, [1, 3]] - dh) / ratio[1]).clamp(0, 96)
    xyxy = xyxy.round()
    ref = torch.stack([det[:, 5], (xyxy[:, 0] + xyxy[:, 2]) / 2 / 128, (xyxy[:, 1] + xyxy[:, 3]) / 2 / 96,
                       (xyxy[:, 2] - xyxy[:, 0]) / 128, (xyxy[:, 3] - xyxy[:, 1]) / 96, det[:, 4]], 1).flip(0)
    np.testing.assert_allclose(labels, ref.numpy(), atol=1e-5)
    line = (save_dir / "labels" / "a.txt").read_text().splitlines()[0]
    assert line == " ".join("%g" % v for v in labels[0])  # %g, space separated

    crops = list((save_dir / "crops").rglob("*.jpg"))
    assert crops and {c.parent.name for c in crops} <= set(NAMES)
    assert {c.stem.rstrip("0123456789") for c in crops} <= {"a", "b"}


def test_video_same_fps_size_frames(assets, tmp_path, log_lines):
    d, w, _, _, video = assets
    save_dir = run_detect(weights=str(w), source=str(video), project=str(tmp_path), save_txt=True)
    cap = cv2.VideoCapture(str(save_dir / "clip.mp4"))
    frames, fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS)
    size = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()
    assert (frames, fps, size) == (9, 12.0, (128, 96))
    out = log_lines.text()
    assert re.search(r"^video 1/1 \(9/9\) .*clip\.mp4: 96x128 .*Done\.", out, re.M)
    assert sorted(p.name for p in (save_dir / "labels").glob("*.txt"))[:2] == ["clip_1.txt", "clip_2.txt"]

    save_dir = run_detect(weights=str(w), source=str(video), project=str(tmp_path), name="stride", vid_stride=3,
                          nosave=True, save_txt=True)
    assert sorted(p.name for p in (save_dir / "labels").glob("*.txt")) == ["clip_1.txt", "clip_4.txt", "clip_7.txt"]
    assert not (save_dir / "clip.mp4").exists()  # --nosave


def test_txt_list_glob_and_class_filter(assets, tmp_path):
    d, w, images, square, _ = assets
    lst = tmp_path / "list.txt"
    lst.write_text(f"{images / 'b.png'}\n{square / 's1.png'}\n")
    save_dir = run_detect(weights=str(w), source=str(lst), project=str(tmp_path), name="txt")
    assert sorted(p.name for p in save_dir.iterdir()) == ["b.png", "s1.png"]
    save_dir = run_detect(weights=str(w), source=str(square / "*.png"), project=str(tmp_path), name="glob",
                          save_txt=True, classes=[1])
    assert sorted(p.name for p in save_dir.glob("*.png")) == ["s1.png", "s2.png"]
    classes = np.concatenate([read_labels(f)[:, 0] for f in (save_dir / "labels").glob("*.txt")])
    assert set(classes.tolist()) == {1.0}  # unfiltered, s1.png also has a class-2 box


@pytest.mark.parametrize("fmt,dynamic,folder", [("onnx", False, 3), ("onnx", True, 2), ("torchscript", False, 2),
                                                ("ptl", False, 2)])
def test_exported_weights_give_the_same_detections(assets, tmp_path, fmt, dynamic, folder):
    """Same labels as the .pt. Non-square images (folder 2) need a shape-generic file: TorchScript always is
    (export.py checks it), ONNX with --dynamic; a static ONNX letterboxes to its square export size (folder 3)."""
    import export
    w, source = assets[1], assets[folder]
    wf = tmp_path / "tiny.pt"
    wf.write_bytes(w.read_bytes())
    (f,) = export.run(weights=[str(wf)], imgsz=[128], include=[fmt], dynamic=dynamic)
    ref = run_detect(weights=str(wf), source=str(source), project=str(tmp_path), name="pt", save_txt=True,
                     save_conf=True)
    out = run_detect(weights=str(f), source=str(source), project=str(tmp_path), name=fmt, save_txt=True,
                     save_conf=True)
    stems = sorted(p.stem for p in (ref / "labels").glob("*.txt"))
    assert len(stems) == 2 and stems == sorted(p.stem for p in (out / "labels").glob("*.txt"))
    for stem in stems:
        a, b = read_labels(ref / "labels" / f"{stem}.txt"), read_labels(out / "labels" / f"{stem}.txt")
        assert len(a) > 3 and a.shape == b.shape
        np.testing.assert_allclose(b, a, atol=2e-3)


def test_unreadable_image_is_skipped(assets, tmp_path, log_lines):
    d, w, images, _, _ = assets
    src = tmp_path / "mixed"
    src.mkdir()
    (src / "good.jpg").write_bytes((images / "a.jpg").read_bytes())
    (src / "broken.jpg").write_bytes(b"not a jpeg at all")
    save_dir = run_detect(weights=str(w), source=str(src), project=str(tmp_path))
    err = log_lines.text()
    assert re.search(r"WARNING: skipping unreadable image .*broken\.jpg", err)
    assert (save_dir / "good.jpg").is_file() and not (save_dir / "broken.jpg").exists()


def test_bad_input_cli(assets, tmp_path, log_lines):
    import detect
    d, w, images, _, _ = assets
    assert detect.cli(["--weights", str(w), "--source", str(tmp_path / "nowhere"), "--project", str(tmp_path)]) == 1
    assert "--source '" in log_lines.text()
    assert detect.cli(["--weights", str(d / "model.h5"), "--source", str(images)]) == 1
    assert "unsupported weights" in log_lines.text()
    bogus = tmp_path / "bogus.pt"
    bogus.write_text("hello")
    assert detect.cli(["--weights", str(bogus), "--source", str(images), "--project", str(tmp_path)]) == 1
    assert "bogus.pt" in log_lines.text()
    assert not list(tmp_path.glob("exp*"))  # nothing is created for a run that cannot start
    # the real entry point: one clear line, non-zero exit, no traceback
    r = subprocess.run([sys.executable, "detect.py", "--weights", str(w), "--source", str(tmp_path / "nope.jpg"),
                        "--project", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "nope.jpg' does not exist" in r.stderr and "Traceback" not in r.stderr


def test_update_strips_weights(assets, tmp_path):
    from engine.checkpoint import load_checkpoint
    d, w, images, _, _ = assets
    wf = tmp_path / "u.pt"
    wf.write_bytes(w.read_bytes())
    run_detect(weights=str(wf), source=str(images / "a.jpg"), project=str(tmp_path), update=True, nosave=True)
    ckpt = load_checkpoint(wf)
    assert ckpt.get("optimizer") is None and ckpt["model"]["cls_act"] == "softmax"


def test_stream_branch(assets, tmp_path, monkeypatch, log_lines):
    """The webcam / stream path (LoadStreams), fed with the local clip: '<i>: ' log lines, a '.mp4' appended to
    the stream's output at the frame size of the source; a stream that cannot be opened is one clear error."""
    import detect
    d, w, _, _, video = assets
    monkeypatch.setattr("engine.predict.sources.is_stream_source", lambda s: s == str(video))
    save_dir = run_detect(weights=str(w), source=str(video), project=str(tmp_path), save_txt=True)
    out = save_dir / "clip.mp4.mp4"  # streams get '.mp4' appended to the source name (contract 7.5)
    cap = cv2.VideoCapture(str(out))
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    size = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()
    assert frames >= 1 and size == (128, 96)
    assert re.search(r"^0: 96x128 .*Done\.", log_lines.text(), re.M)
    assert list((save_dir / "labels").glob("clip_*.txt"))
    monkeypatch.undo()
    assert detect.cli(["--weights", str(w), "--source", "rtsp://127.0.0.1:9/none", "--project", str(tmp_path),
                       "--name", "refused"]) == 1
    assert "Failed to open stream 1/1: rtsp://127.0.0.1:9/none" in log_lines.text()
    assert not (tmp_path / "refused").exists()
