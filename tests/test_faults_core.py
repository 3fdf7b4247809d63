"""Fault suite, shared layers: saving checkpoints on a full / read-only disk, dataset yaml mistakes, model yaml
mistakes from the command line; folder walks through symlink loops, text files in other encodings, code tags in
every yaml loader (issue 22). (Training, validation, detection and export faults: tests/test_faults_*.py.)"""
import codecs
import errno
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from data.config import DatasetError, check_dataset
from data.datasets import img_files_from
from data.label_cache import parse_label_file, verify_image_label
from engine import checkpoint
from engine.checkpoint import CheckpointSaveError, load_checkpoint, save_checkpoint
from engine.safe_load import CheckpointError
from loop_helpers import add_loops, deadline
from utils.errors import UserError
from utils.files import check_file, glob_files, walk_files

ROOT = Path(__file__).resolve().parents[1]


def _entries(folder: Path):
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------------------------- saving
@pytest.fixture
def saved(tmp_path):
    f = tmp_path / "weights" / "last.pt"
    save_checkpoint({"epoch": 1, "best_fitness": 0.5}, f)
    return f


def test_full_disk_keeps_previous_file_and_no_temp(saved, monkeypatch):
    def full(obj, fh, *args, **kwargs):
        fh.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointSaveError, match=r"cannot save .*last\.pt: no space left.*previous file is kept"):
        save_checkpoint({"epoch": 2}, saved)
    monkeypatch.undo()
    assert _entries(saved.parent) == ["last.pt"]  # no temp file left behind
    assert load_checkpoint(saved)["epoch"] == 1


def test_torch_zip_writer_failure_is_reported_as_full_disk(saved, monkeypatch):
    """torch's writer says only 'file write failed' (RuntimeError); the disk being full is the real cause."""
    def failing(obj, fh, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0\n"
                           "PytorchStreamWriter failed writing file data/0: file write failed")
    monkeypatch.setattr(torch, "save", failing)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: checkpoint.shutil._ntuple_diskusage(1, 1, 0))
    with pytest.raises(CheckpointSaveError, match="no space left"):
        save_checkpoint({"epoch": 2}, saved)
    assert _entries(saved.parent) == ["last.pt"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_folder_is_one_line(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(CheckpointSaveError, match="permission denied"):
            save_checkpoint({"epoch": 1}, folder / "best.pt")
    finally:
        folder.chmod(0o700)


def test_permission_error_while_creating_temp(saved, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(checkpoint.tempfile, "mkstemp", denied)
    with pytest.raises(CheckpointSaveError, match="permission denied.*previous file is kept"):
        save_checkpoint({"epoch": 2}, saved)
    assert load_checkpoint(saved)["epoch"] == 1


def test_save_errors_are_user_errors():
    assert issubclass(CheckpointSaveError, UserError) and issubclass(CheckpointSaveError, OSError)


def test_truncated_checkpoint_is_a_clear_error(saved, tmp_path):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(saved.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cut.pt.*not a checkpoint"):
        load_checkpoint(cut)


# ---------------------------------------------------------------------------------------------- data yaml
def _dataset(tmp_path: Path, **keys) -> Path:
    (tmp_path / "images").mkdir(exist_ok=True)
    f = tmp_path / "data.yaml"
    f.write_text(yaml.safe_dump({"train": str(tmp_path / "images"), "val": str(tmp_path / "images"), **keys}))
    return f


def test_data_yaml_given_as_a_directory(tmp_path):
    _dataset(tmp_path, nc=1, names=["a"])
    with pytest.raises(DatasetError, match=r"is a directory, not a dataset yaml.*data\.yaml"):
        check_dataset(tmp_path)


def test_data_yaml_without_names_warns_naming_the_yaml(tmp_path, log_lines):
    f = _dataset(tmp_path, nc=2)
    assert check_dataset(f)["names"] == ["class0", "class1"]
    assert any(str(f) in line and "no 'names'" in line for line in log_lines)


def test_data_yaml_names_nc_mismatch(tmp_path):
    with pytest.raises(DatasetError, match=r"data\.yaml: 1 names for nc=2"):
        check_dataset(_dataset(tmp_path, nc=2, names=["a"]))


def test_data_yaml_bad_cls_groups_names_the_yaml(tmp_path):
    f = _dataset(tmp_path, nc=3, names=["person", "man", "woman"],
                 cls_groups=[{"classes": ["man", "woman", "person"], "parent": "person"}])
    with pytest.raises(UserError, match=r"data\.yaml.*parent.*member of the group itself"):
        check_dataset(f)


# ---------------------------------------------------------------------------------------------- model yaml CLI
def _run(*args, cwd=ROOT):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_model_summary_cli_bad_yaml_has_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"nc": 2, "depth_multiple": 1, "width_multiple": 1, "anchors": 1,
                                   "backbone": [[-1, 1, "__import__('os').system('echo hi')", [16]]],
                                   "head": []}))
    r = _run("models/yolo.py", "--cfg", str(bad))
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert "bad.yaml" in r.stderr and "not a plain name" in r.stderr


def test_model_summary_cli_missing_yaml(tmp_path):
    r = _run("models/yolo.py", "--cfg", str(tmp_path / "nope.yaml"))
    assert r.returncode == 1 and "Traceback" not in r.stderr and "nope.yaml" in r.stderr


# ---------------------------------------------------------------------------------------------- folder walks (issue 22)
def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((32, 32, 3), 80, np.uint8))
    return path


@pytest.fixture
def looped(tmp_path):
    """images/ with 5 real images, every kind of loop, a file link, a hard link, and an image outside it."""
    root = tmp_path / "images"
    for name in ("1.jpg", "2.jpg", "sub/3.jpg", "a/4.jpg", "b/5.png"):
        _image(root / name)
    _image(tmp_path / "outside.jpg")  # reachable only through images/up -> ..
    add_loops(root)
    os.symlink("../b", root / "a" / "to_b")
    os.symlink("../a", root / "b" / "to_a")
    os.symlink("1.jpg", root / "link1.jpg")
    os.link(root / "2.jpg", root / "hard2.jpg")
    return root


def test_walk_files_never_loops_nor_counts_a_file_twice(looped):
    with deadline(10):
        files = walk_files(looped, suffixes=["JPG", ".png"])
    assert files == [str(looped / n) for n in ("1.jpg", "2.jpg", "a/4.jpg", "b/5.png", "sub/3.jpg")]
    with deadline(10):
        assert walk_files(looped, recursive=False) == [str(looped / "1.jpg"), str(looped / "2.jpg")]


def test_walk_files_follows_a_linked_folder_once(tmp_path):
    """A dataset assembled from links: the linked folder is walked, under its link name, once."""
    _image(tmp_path / "store" / "x.jpg")
    (tmp_path / "ds").mkdir()
    os.symlink(tmp_path / "store", tmp_path / "ds" / "part1")
    os.symlink(tmp_path / "store", tmp_path / "ds" / "part2")
    assert walk_files(tmp_path / "ds") == [str(tmp_path / "ds" / "part1" / "x.jpg")]


@pytest.mark.parametrize("pattern, expect", [
    ("**/*.jpg", ["1.jpg", "2.jpg", "a/4.jpg", "sub/3.jpg"]),
    ("**", ["1.jpg", "2.jpg", "a/4.jpg", "b/5.png", "sub/3.jpg"]),
    ("*/*", ["a/4.jpg", "b/5.png", "sub/3.jpg"]),  # not self/1.jpg, up/outside.jpg: those links are loops
    ("[12].jpg", ["1.jpg", "2.jpg"]),
    ("a/**/?.*", ["a/4.jpg", "a/to_b/5.png"]),
])
def test_glob_files_never_loops_nor_counts_a_file_twice(looped, pattern, expect):
    with deadline(10):
        assert glob_files(f"{looped}/{pattern}") == [str(looped / e) for e in expect]


def test_check_file_search_survives_a_loop(looped, monkeypatch):
    """check_file searches below the repository for a bare name (v5.0): a loop there must not hang it."""
    import utils.files
    monkeypatch.setattr(utils.files, "ROOT", looped)
    with deadline(10):
        assert check_file("3.jpg") == str(looped / "sub" / "3.jpg")
        with pytest.raises(UserError, match="not found: 'nope.yaml'"):
            check_file("nope.yaml")


def test_latest_run_search_survives_a_loop(tmp_path):
    from engine.train.options import get_latest_run
    (tmp_path / "exp" / "weights").mkdir(parents=True)
    (tmp_path / "exp" / "weights" / "last.pt").write_bytes(b"x")
    add_loops(tmp_path / "exp")
    with deadline(10):
        assert get_latest_run(str(tmp_path)) == str(tmp_path / "exp" / "weights" / "last.pt")


def test_dataset_image_listing_counts_each_image_once(looped, tmp_path):
    """Folders with loops, a .txt list naming images twice (also through a link), and a list of both."""
    lst = tmp_path / "list.txt"
    lst.write_text(f"{looped / '1.jpg'}\n./images/1.jpg\n{looped / 'self' / 'sub' / '3.jpg'}\nimages/link1.jpg\n")
    with deadline(10):
        assert img_files_from(looped) == [str(looped / n) for n in ("1.jpg", "2.jpg", "a/4.jpg", "b/5.png",
                                                                     "sub/3.jpg")]
        assert img_files_from(lst) == [str(looped / "1.jpg"), str(looped / "self" / "sub" / "3.jpg")]
        assert len(img_files_from([looped, lst, looped / "a"])) == 5


def test_int8_calibration_images_count_each_image_once(looped, tmp_path):
    from engine.export.images import calibration_images, sample_images
    data = tmp_path / "data.yaml"
    data.write_text(yaml.safe_dump({"train": str(looped), "val": str(looped), "nc": 1, "names": ["a"]}))
    with deadline(10):
        assert len(calibration_images(data, (32, 32), n=100)) == 5
        _, used = sample_images((32, 32), 4, looped)
    assert used == "1.jpg,2.jpg,generated"  # link1.jpg and hard2.jpg are the same two images


# ---------------------------------------------------------------------------------------------- encodings (issue 22)
LABEL = "0 0.5 0.5 0.25 0.25\n1 0.25 0.75 0.1 0.2\n"


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be-bom", "utf-32"])
def test_label_file_with_a_byte_order_mark_is_read(tmp_path, encoding):
    """Windows tools write UTF-16 (Notepad's "Unicode", PowerShell 5) or UTF-8 with a BOM: read them."""
    f = tmp_path / "x.txt"
    if encoding == "utf-16-be-bom":
        f.write_bytes(codecs.BOM_UTF16_BE + LABEL.encode("utf-16-be"))
    else:
        f.write_bytes(LABEL.encode(encoding))
    labels, _, _ = parse_label_file(str(f))
    np.testing.assert_allclose(labels, [[0, 0.5, 0.5, 0.25, 0.25], [1, 0.25, 0.75, 0.1, 0.2]], rtol=1e-6)


@pytest.mark.parametrize("data, what", [
    (LABEL.encode("utf-16-le"), "UTF-16 without a byte-order mark"),
    ("0 0.5 0.5 0.25 0.25 # café\n".encode("cp1252"), "Windows-1252"),
])
def test_label_file_in_another_encoding_is_reported_and_skipped(tmp_path, data, what):
    im = _image(tmp_path / "images" / "x.png")
    lb = tmp_path / "labels" / "x.txt"
    lb.parent.mkdir()
    lb.write_bytes(data)
    res = verify_image_label(str(im), str(lb))
    assert res.status == "corrupt" and res.labels is None
    assert f"ignoring corrupt image/label {im}: label {lb} not UTF-8 text (it looks like" in res.msg
    assert what in res.msg and "save it as UTF-8" in res.msg and "\n" not in res.msg


def test_utf16_data_yaml_and_image_list_are_read(tmp_path):
    _image(tmp_path / "images" / "1.jpg")
    (tmp_path / "train.txt").write_bytes("./images/1.jpg\n".encode("utf-16"))
    f = tmp_path / "data.yaml"
    f.write_bytes("train: train.txt\nval: train.txt\nnc: 1\nnames: [café]\n".encode("utf-16"))
    d = check_dataset(f)
    assert d["names"] == ["café"] and img_files_from(d["train"]) == [str(tmp_path / "images" / "1.jpg")]


def test_data_yaml_in_a_code_page_is_one_line(tmp_path):
    f = tmp_path / "data.yaml"
    f.write_bytes("train: x\nval: x\nnc: 1\nnames: [café]\n".encode("cp1252"))
    with pytest.raises(DatasetError) as e:
        check_dataset(f)
    assert str(e.value).startswith(f"{f}: not UTF-8 text") and "\n" not in str(e.value)


# ---------------------------------------------------------------------------------------------- code tags (issue 22)
def _yaml_loaders():
    """Every loader of a user's yaml file: (name, call, error class)."""
    from engine.backends import _names_from_data
    from engine.compare.experiment import load_spec
    from engine.train.options import TrainError, read_yaml
    from models.builder import ModelYamlError
    from models.model import Model
    return [("data", check_dataset, DatasetError), ("model", Model, ModelYamlError),
            ("hyp", lambda f: read_yaml(f, "--hyp"), TrainError), ("detect --data names", _names_from_data, UserError)]


@pytest.mark.parametrize("loader", range(4), ids=["data", "model", "hyp", "detect-data"])
def test_code_tag_in_a_yaml_is_one_line_and_never_run(tmp_path, loader):
    name, load, error = _yaml_loaders()[loader]
    marker = tmp_path / "ran"
    f = tmp_path / f"{name.split()[0]}.yaml"
    f.write_text(f"nc: 1\nnames: [a]\ntrain: !!python/object/apply:os.system ['touch {marker}']\nval: x\n")
    with pytest.raises(error) as e:
        load(f)
    msg = str(e.value)
    assert "\n" not in msg and str(f) in msg and "line 3, column 8" in msg
    assert "tag '!!python/object/apply:os.system' refused" in msg and not marker.exists()


def test_yaml_syntax_error_is_one_line_with_its_position(tmp_path):
    f = tmp_path / "data.yaml"
    f.write_text("train: [a, b\nval: x\n")
    with pytest.raises(DatasetError) as e:
        check_dataset(f)
    assert str(e.value).startswith(f"{f}: not valid yaml (line ") and "\n" not in str(e.value)


def test_detect_data_yaml_that_is_not_a_mapping_is_one_line(tmp_path):
    from engine.backends import _names_from_data
    f = tmp_path / "names.yaml"
    f.write_text("- a\n- b\n")
    with pytest.raises(UserError, match=r"--data .*names\.yaml: expected a mapping .* got list"):
        _names_from_data(f)
