"""detect.py on bad input (issue 15): unreadable images and videos are never silent, flag values are checked
before anything runs, class filters once the model is known; every user mistake is one ERROR line and exit 1."""
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from detect_helpers import ROOT, make_checkpoint


def write_video(path: Path, frames: int = 3) -> Path:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for i in range(frames):
        vw.write(np.full((48, 64, 3), 60 * i, np.uint8))
    vw.release()
    return path


def write_image(path: Path) -> Path:
    im = np.full((48, 64, 3), 114, np.uint8)
    cv2.rectangle(im, (10, 10), (40, 30), (0, 0, 255), -1)
    cv2.imwrite(str(path), im)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny checkpoint, a good image and 3-frame video, a video of random bytes, an empty video and a JPEG cut
    after its first 300 bytes (OpenCV cannot decode it at all)."""
    d = tmp_path_factory.mktemp("faults")
    rng = np.random.default_rng(0)
    f = {"weights": make_checkpoint(d / "tiny.pt"), "image": write_image(d / "good.jpg"),
         "video": write_video(d / "good.mp4"), "random": d / "broken.mp4", "empty": d / "empty.mp4",
         "truncated": d / "cut.jpg"}
    f["random"].write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    f["empty"].write_bytes(b"")
    f["truncated"].write_bytes(f["image"].read_bytes()[:300])
    return f


def folder(tmp_path: Path, name: str, *sources: Path) -> Path:
    d = tmp_path / name
    d.mkdir()
    for s in sources:
        (d / s.name).write_bytes(s.read_bytes())
    return d


def detect_cli(args, log_lines, weights):
    """(exit code, ERROR lines, all log text) of ``detect.py --weights <tiny> --imgsz 64 <args>``, in-process."""
    import detect
    rc = detect.cli(["--weights", str(weights), "--imgsz", "64", "--device", "cpu", *map(str, args)])
    text = log_lines.text()
    return rc, [x for x in text.splitlines() if "ERROR" in x], text


def run_detect(**kw):
    import detect
    return detect.run(**{"imgsz": [64], "device": "cpu", **kw})


# ------------------------------------------------------------------------------------------ unreadable inputs
@pytest.mark.parametrize("kind", ["random", "empty", "truncated"])
def test_an_unreadable_only_source_is_an_error(files, tmp_path, log_lines, kind):
    """Alone, a video that cannot be opened / yields no frame, or an image that cannot be decoded, ends the run
    with one line naming it, exit 1, and no (empty) run folder."""
    src = files[kind]
    rc, errors, _ = detect_cli(["--source", src, "--project", tmp_path / "runs"], log_lines, files["weights"])
    what = "image" if kind == "truncated" else "video"
    assert rc == 1 and len(errors) == 1 and f"unreadable {what}" in errors[0] and str(src) in errors[0]
    assert not (tmp_path / "runs").exists()


def test_the_real_entry_point_on_a_corrupt_video(files, tmp_path):
    """The issue's report, end to end: exit 1 (was 0), our line naming the file, no traceback, no folder."""
    r = subprocess.run([sys.executable, "detect.py", "--weights", str(files["weights"]), "--source",
                        str(files["random"]), "--imgsz", "64", "--project", str(tmp_path / "runs")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    assert f"unreadable video (cannot be opened or yields no frame): {files['random']}" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "runs").exists()


def test_unreadable_files_in_a_folder_are_counted_named_skips(files, tmp_path, log_lines):
    src = folder(tmp_path, "mixed", files["image"], files["truncated"], files["random"], files["video"])
    save_dir = run_detect(weights=str(files["weights"]), source=str(src), project=str(tmp_path / "runs"),
                          save_txt=True)
    text = log_lines.text()
    assert f"WARNING: skipping unreadable image (not an image, or damaged): {src / 'cut.jpg'}" in text
    assert f"WARNING: skipping unreadable video (cannot be opened or yields no frame): {src / 'broken.mp4'}" in text
    assert "WARNING: 2 unreadable inputs skipped (1 image, 1 video): cut.jpg, broken.mp4" in text
    assert [x.split(": ")[0] for x in text.splitlines() if x.startswith(("image ", "video "))] == [
        f"image 2/4 {src / 'good.jpg'}", f"video 4/4 (1/3) {src / 'good.mp4'}",
        f"video 4/4 (2/3) {src / 'good.mp4'}", f"video 4/4 (3/3) {src / 'good.mp4'}"]
    cap = cv2.VideoCapture(str(save_dir / "good.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3  # the readable video after the broken one is whole
    cap.release()
    assert sorted(p.name for p in save_dir.iterdir()) == ["good.jpg", "good.mp4", "labels"]


def test_unreadable_entries_of_a_list_are_counted_named_skips(files, tmp_path, log_lines):
    lst = tmp_path / "list.txt"
    lst.write_text(f"{files['empty']}\n{files['image']}\n")
    save_dir = run_detect(weights=str(files["weights"]), source=str(lst), project=str(tmp_path / "runs"))
    text = log_lines.text()
    assert "WARNING: 1 unreadable input skipped (1 video): empty.mp4" in text
    assert (save_dir / "good.jpg").is_file()


def test_a_folder_of_only_unreadable_files_is_an_error(files, tmp_path, log_lines):
    src = folder(tmp_path, "broken", files["truncated"], files["random"])
    rc, errors, _ = detect_cli(["--source", src, "--project", tmp_path / "runs"], log_lines, files["weights"])
    assert rc == 1 and len(errors) == 1
    assert f"--source '{src}': no readable image or video (2 unreadable inputs skipped (1 image, 1 video): " \
           f"cut.jpg, broken.mp4)" in errors[0]
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------------------------- flags
@pytest.mark.parametrize("args,message", [
    (["--conf-thres", "1.5"], "--conf-thres 1.5: must be between 0 and 1"),
    (["--iou-thres", "-0.1"], "--iou-thres -0.1: must be between 0 and 1"),
    (["--max-det", "0"], "--max-det 0: must be >= 1"),
    (["--imgsz", "16"], "--imgsz 16: must be >= 32"),
    (["--imgsz", "64", "64", "64"], "--imgsz 64 64 64: give one size (square) or two (h w)"),
    (["--line-thickness", "0"], "--line-thickness 0: must be >= 1"),
    (["--vid-stride", "0"], "--vid-stride 0: must be >= 1"),
    (["--classes", "-1"], "--classes -1: class indices start at 0"),
    (["--half", "--fp32"], "--half and --fp32 contradict each other"),
    (["--device", "gpu0"], "invalid --device 'gpu0'"),
    (["--data", "nowhere.yaml"], "--data 'nowhere.yaml' not found"),
])
def test_bad_flag_values_stop_before_the_model_loads(files, tmp_path, log_lines, args, message):
    rc, errors, text = detect_cli(["--source", files["image"], "--project", tmp_path / "runs", *args], log_lines,
                                  files["weights"])
    assert rc == 1 and len(errors) == 1 and message in errors[0], errors
    assert "Fusing layers" not in text and not (tmp_path / "runs").exists()


def test_a_class_filter_the_model_does_not_have(files, tmp_path, log_lines):
    """--classes 99 on a 3-class model used to give zero detections silently."""
    rc, errors, _ = detect_cli(["--source", files["image"], "--project", tmp_path / "runs", "--classes", "1", "99"],
                               log_lines, files["weights"])
    assert rc == 1 and errors and "--classes 99: the model has 3 classes, 0-2 (0: circle, 1: square, 2: triangle)" \
        in errors[0]
    assert not (tmp_path / "runs").exists()


def test_a_malformed_flag_is_a_usage_error(files):
    import detect
    with pytest.raises(SystemExit) as e:
        detect.cli(["--weights", str(files["weights"]), "--conf-thres", "high"])
    assert e.value.code == 2


# ------------------------------------------------------------------------------------------ sources, weights
@pytest.mark.parametrize("case", ["missing file", "empty glob", "empty folder"])
def test_sources_that_give_nothing(files, tmp_path, log_lines, case):
    (tmp_path / "empty").mkdir()
    src, message = {"missing file": (tmp_path / "nope.mp4", "does not exist"),
                    "empty glob": (tmp_path / "*.png", "no file matches this pattern"),
                    "empty folder": (tmp_path / "empty", "no images or videos found in")}[case]
    rc, errors, _ = detect_cli(["--source", src, "--project", tmp_path / "runs"], log_lines, files["weights"])
    assert rc == 1 and len(errors) == 1 and message in errors[0] and str(src) in errors[0]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name,content,message", [
    ("model.h5", b"x", "unsupported weights"),
    ("garbage.pt", b"not a checkpoint", "is not a checkpoint"),
    ("garbage.onnx", b"\x08\x07\xff\xff\xff garbage", "is not a readable ONNX model"),
    ("garbage.torchscript", b"PK not a zip", "is not a readable TorchScript model"),
    ("garbage.ptl", b"", "is not a readable TorchScript-Lite model"),
    ("absent.pt", None, "weights not found"),
])
def test_weights_that_cannot_be_run(files, tmp_path, log_lines, name, content, message):
    w = tmp_path / name
    if content is not None:
        w.write_bytes(content)
    rc, errors, _ = detect_cli(["--source", files["image"], "--project", tmp_path / "runs"], log_lines, w)
    assert rc == 1 and len(errors) == 1 and message in errors[0] and name in errors[0], errors
    assert "\n" not in errors[0] and not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------------------ issue 22
def test_a_missing_file_in_a_list_is_named_and_skipped(files, tmp_path, log_lines):
    """Was: the whole run aborted. Now the missing entry is named, counted, and the others are processed."""
    lst = tmp_path / "list.txt"
    lst.write_text(f"{files['image']}\n{tmp_path / 'nope.jpg'}\n{files['video']}\n")
    rc, errors, text = detect_cli(["--source", lst, "--project", tmp_path / "runs", "--save-txt"], log_lines,
                                  files["weights"])
    assert rc == 0 and not errors
    assert f"WARNING: skipping missing file (listed in {lst}): {tmp_path / 'nope.jpg'}" in text
    assert "WARNING: 1 input skipped (1 missing file): nope.jpg" in text
    assert sorted(p.name for p in (tmp_path / "runs" / "exp").iterdir()) == ["good.jpg", "good.mp4", "labels"]


def test_a_list_of_only_missing_files_is_an_error(files, tmp_path, log_lines):
    lst = tmp_path / "list.txt"
    lst.write_text(f"{tmp_path / 'a.jpg'}\n{tmp_path / 'b.jpg'}\n")
    rc, errors, _ = detect_cli(["--source", lst, "--project", tmp_path / "runs"], log_lines, files["weights"])
    assert rc == 1 and len(errors) == 1 and f"2 listed file(s) missing: {tmp_path / 'a.jpg'}" in errors[0]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("pattern", ["", "*.jpg", "**/*.jpg"])
def test_folder_and_glob_sources_with_symlink_loops(files, tmp_path, log_lines, pattern):
    """A folder, a glob and a ``**`` glob over a folder with loops and a link to its image: one image, once
    (``**`` used to repeat it 40 times, or never end with two folders linking each other)."""
    from loop_helpers import add_loops, deadline
    src = folder(tmp_path, "src", files["image"])
    add_loops(src)
    os.symlink("good.jpg", src / "same.jpg")
    with deadline(60):
        run_detect(weights=str(files["weights"]), source=str(src / pattern) if pattern else str(src),
                   project=str(tmp_path / "runs"), nosave=True)
    assert [x.split(": ")[0] for x in log_lines.text().splitlines() if x.startswith("image ")] == [
        f"image 1/1 {src / 'good.jpg'}"]


def test_utf16_source_list_is_read(files, tmp_path, log_lines):
    lst = tmp_path / "list.txt"
    lst.write_bytes(f"{files['image']}\n".encode("utf-16"))
    run_detect(weights=str(files["weights"]), source=str(lst), project=str(tmp_path / "runs"), nosave=True)
    assert f"image 1/1 {files['image']}: " in log_lines.text()
