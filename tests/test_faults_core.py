"""Fault suite, shared layers: saving checkpoints on a full / read-only disk, dataset yaml mistakes, model yaml
mistakes from the command line. (Training, validation, detection and export faults: tests/test_faults_*.py.)"""
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from data.config import DatasetError, check_dataset
from engine import checkpoint
from engine.checkpoint import CheckpointSaveError, load_checkpoint, save_checkpoint
from engine.safe_load import CheckpointError
from utils.errors import UserError

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
