"""val.py / test.py on bad input: exit status 1, one ERROR line naming the flag or file, no traceback, no run
folder left behind; out-of-range numbers are refused before any model is built."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import val
from engine.cli import EXIT_USER_ERROR
from val_helpers import import_test_py, make_dataset, tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def ds(tmp_path):
    data, _ = make_dataset(tmp_path / "ds", n=2)
    return data


@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if val builds a model: flag errors must come first."""
    import engine.backends

    def refuse(*args, **kwargs):
        raise AssertionError("a model was built before the flags were checked")
    monkeypatch.setattr(engine.backends, "DetectMultiBackend", refuse)


def _errors(lines) -> list:
    return [s for s in lines if "ERROR:" in s]


def _fails(argv, log_lines, tmp_path, cli=val.cli) -> str:
    """Run the command line, expect exit 1 with exactly one one-line error and no run folder; -> the error."""
    log_lines.clear()
    code = cli([*argv, "--project", str(tmp_path / "runs")] + ([] if "--workers" in argv else ["--workers", "0"]))
    errors = _errors(log_lines)
    assert code == EXIT_USER_ERROR and len(errors) == 1, log_lines
    assert "\n" not in errors[0] and "Traceback" not in errors[0]
    assert not (tmp_path / "runs").exists()
    return errors[0]


@pytest.mark.parametrize("flags, needle", [
    ("--batch-size 0", "--batch-size 0: must be >= 1"),
    ("--img 16", "--imgsz 16: must be >= 32"),
    ("--conf-thres 1.5", "--conf-thres 1.5: must be between 0 and 1"),
    ("--iou-thres -0.1", "--iou-thres -0.1: must be between 0 and 1"),
    ("--max-det 0", "--max-det 0: must be >= 1"),
    ("--workers -1", "--workers -1: must be >= 0"),
    ("--calib-conf 2", "--calib-conf 2.0: must be between 0 and 1"),
    ("--half --fp32", "--half and --fp32"),
])
def test_numeric_flags_checked_before_the_model(flags, needle, ds, tmp_path, no_model, log_lines):
    assert needle in _fails(["--data", str(ds), "--weights", "w.pt", *flags.split()], log_lines, tmp_path)


def test_missing_data_yaml(tmp_path, no_model, log_lines):
    assert "nope.yaml" in _fails(["--data", str(tmp_path / "nope.yaml"), "--weights", "w.pt"], log_lines, tmp_path)


def test_data_is_a_directory(ds, tmp_path, no_model, log_lines):
    err = _fails(["--data", str(ds.parent), "--weights", "w.pt"], log_lines, tmp_path)
    assert str(ds.parent) in err and "is a directory" in err


def test_missing_split(ds, tmp_path, no_model, log_lines):
    assert "no 'test' split" in _fails(["--data", str(ds), "--weights", "w.pt", "--task", "test"], log_lines,
                                       tmp_path)


def test_weights_not_found(ds, tmp_path, log_lines):
    err = _fails(["--data", str(ds), "--weights", str(tmp_path / "missing.pt"), "--device", "cpu"], log_lines,
                 tmp_path)
    assert "missing.pt" in err and "not found" in err
    err = _fails(["--data", str(ds), "--weights", str(tmp_path / "missing.onnx"), "--device", "cpu"], log_lines,
                 tmp_path)
    assert "missing.onnx" in err and "not found" in err


def test_weights_is_a_directory(ds, tmp_path, no_model, log_lines):
    (tmp_path / "w.pt").mkdir()
    err = _fails(["--data", str(ds), "--weights", str(tmp_path / "w.pt")], log_lines, tmp_path)
    assert "--weights" in err and "is a directory" in err


def test_unsupported_suffix(ds, tmp_path, no_model, log_lines):
    (tmp_path / "model.h5").write_text("x")
    err = _fails(["--data", str(ds), "--weights", str(tmp_path / "model.h5")], log_lines, tmp_path)
    assert "model.h5" in err and ".onnx" in err


def test_not_a_checkpoint(ds, tmp_path, log_lines):
    bad = tmp_path / "notackpt.pt"
    bad.write_text("this is not a checkpoint\n")
    err = _fails(["--data", str(ds), "--weights", str(bad), "--device", "cpu"], log_lines, tmp_path)
    assert "notackpt.pt" in err and "checkpoint" in err


def test_wrong_dataset_for_the_weights(ds, tmp_path, log_lines):
    w = tiny_checkpoint(tmp_path / "tiny3.pt")  # 3 classes
    d80 = tmp_path / "d80.yaml"
    d80.write_text(yaml.safe_dump(dict(yaml.safe_load(ds.read_text()), nc=80, names=[f"c{i}" for i in range(80)])))
    err = _fails(["--data", str(d80), "--weights", str(w), "--device", "cpu"], log_lines, tmp_path)
    assert "tiny3.pt (3 classes)" in err and "d80.yaml (80 classes)" in err


def test_device_this_machine_does_not_have(ds, tmp_path, no_model, log_lines, monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    err = _fails(["--data", str(ds), "--weights", "w.pt", "--device", "0"], log_lines, tmp_path)
    assert "--device" in err and "CUDA" in err
    err = _fails(["--data", str(ds), "--weights", "w.pt", "--device", "gpu"], log_lines, tmp_path)
    assert "--device 'gpu'" in err


def test_test_py_reports_the_same_way(tmp_path, no_model, log_lines):
    t = import_test_py()
    err = _fails(["--data", str(tmp_path / "nope.yaml")], log_lines, tmp_path,
                 cli=lambda argv: t.run_cli(t.main, t.parse_opt(argv)))
    assert "nope.yaml" in err


def test_subprocess_exit_codes_and_no_traceback(ds, tmp_path):
    """The real command line: one ERROR line on stderr and status 1 (usage errors: test_val.py)."""
    r = subprocess.run([sys.executable, "val.py", "--data", str(ds), "--weights", str(tmp_path / "missing.pt"),
                        "--project", str(tmp_path / "runs"), "--device", "cpu"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert [s for s in r.stderr.splitlines() if "ERROR" in s] and "missing.pt" in r.stderr


@pytest.mark.parametrize("name", ["broken.onnx", "broken.torchscript", "broken.ptl"])
def test_exported_file_its_runtime_cannot_read(name, ds, tmp_path, log_lines):
    (tmp_path / name).write_bytes(b"not a model\n" * 10)
    err = _fails(["--data", str(ds), "--weights", str(tmp_path / name), "--device", "cpu"], log_lines, tmp_path)
    kind = {"onnx": "ONNX", "torchscript": "TorchScript", "ptl": "TorchScript-Lite"}[name.split(".")[1]]
    assert f"'{tmp_path / name}' is not a readable {kind} model (" in err  # the backend's one line


def test_split_without_images(tmp_path, log_lines):
    (tmp_path / "empty" / "images" / "val").mkdir(parents=True)
    data = tmp_path / "empty.yaml"
    data.write_text(yaml.safe_dump({"path": str(tmp_path / "empty"), "train": "images/val", "val": "images/val",
                                    "nc": 3, "names": ["a", "b", "c"]}))
    w = tiny_checkpoint(tmp_path / "tiny.pt")
    err = _fails(["--data", str(data), "--weights", str(w), "--device", "cpu"], log_lines, tmp_path)
    assert str(data) in err and "No images found" in err and "\x1b[34m" not in err  # no colour codes of the data layer


# ------------------------------------------------------------------------------------------ issue 22
def _val_loop_run(data, tmp_path, name):
    return val.run(data, weights="perfect.pt", batch_size=4, imgsz=64, device="cpu", workers=0, plots=False,
                   project=tmp_path / "runs", name=name)


def test_val_folder_with_symlink_loops_counts_each_image_once(tmp_path, monkeypatch, log_lines):
    """The issue's case: with `ln -s . self` val counted 164 images for 4 (missing labels taken as background,
    mAP@0.5 0.54 for a perfect model); with two folders linking each other it never ended. Now the loops are
    walked past: the same image count and mAP as without them, at once."""
    import engine.backends
    from val_helpers import FakeBackend
    from loop_helpers import add_loops, deadline
    monkeypatch.setattr(engine.backends, "DetectMultiBackend", FakeBackend)
    data, gt = make_dataset(tmp_path / "ds", n=4)
    clean = _val_loop_run(data, tmp_path, "clean")[0]
    add_loops(tmp_path / "ds" / "images" / "val")
    (tmp_path / "ds" / "labels" / "val.cache").unlink()
    log_lines.clear()
    with deadline(60):
        looped = _val_loop_run(data, tmp_path, "looped")[0]
    assert looped == pytest.approx(clean) and looped[2] == pytest.approx(1.0)  # mAP@0.5 of the perfect model
    assert "4 found, 0 missing, 0 empty, 0 corrupted" in log_lines.text()


def test_val_reads_a_utf16_label_file(tmp_path, monkeypatch, log_lines):
    """A label file saved as UTF-16 by a Windows tool counts like the UTF-8 one (was: reported corrupt, image
    dropped)."""
    import engine.backends
    from val_helpers import FakeBackend
    monkeypatch.setattr(engine.backends, "DetectMultiBackend", FakeBackend)
    data, _ = make_dataset(tmp_path / "ds", n=2)
    lb = tmp_path / "ds" / "labels" / "val" / "1001.txt"
    lb.write_bytes(lb.read_text().encode("utf-16"))
    (mp, mr, map50, *_), _, _ = _val_loop_run(data, tmp_path, "exp")
    assert map50 == pytest.approx(1.0) and "2 found, 0 missing, 0 empty, 0 corrupted" in log_lines.text()


def test_code_tag_in_the_data_yaml_is_one_line(tmp_path, no_model, log_lines):
    """Was a 60-line traceback; the tag is never run."""
    marker = tmp_path / "ran"
    data = tmp_path / "evil.yaml"
    data.write_text(f"nc: 1\nnames: [a]\nval: !!python/object/apply:os.system ['touch {marker}']\n")
    err = _fails(["--data", str(data), "--weights", "w.pt"], log_lines, tmp_path)
    assert f"{data}: line 3, column 6: tag '!!python/object/apply:os.system' refused" in err and not marker.exists()
