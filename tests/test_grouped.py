"""cls_loss grouped end to end: the head, a checkpoint round trip, every export and its metadata, and training.

The maths (loss values, reductions to ce / bce, probabilities, yaml validation) is tested in test_class_groups.py.
"""
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from detect_helpers import CFG
from engine.backends import DetectMultiBackend, read_metadata
from engine.checkpoint import attempt_load, load_checkpoint, model_record, save_checkpoint
from models.model import Model
from train_helpers import run_train, train_args, write_cfg, write_hyp
from utils.class_groups import ClassGroups

NAMES = ["person", "car", "man"]
GROUPS = [["person", "car"], {"classes": ["man"], "parent": "person"}]
SPEC = [[0, 1], {"classes": [2], "parent": 0}]
IMG = 64


def _grouped_model(seed: int = 0) -> Model:
    torch.manual_seed(seed)
    model = Model(str(CFG), nc=3)
    model.names = list(NAMES)
    model.set_class_activation("grouped", SPEC)
    head = model.model[-1]
    with torch.no_grad():  # spread the class logits so the activation matters
        for conv in head.m:
            conv.weight.view(head.na, head.no, -1)[:, 5:] *= 500
    return model.eval()


@pytest.fixture(scope="module")
def grouped_pt(tmp_path_factory) -> Path:
    f = tmp_path_factory.mktemp("grouped") / "grouped.pt"
    save_checkpoint({"epoch": -1, "model": _grouped_model(), "optimizer": None}, f)
    return f


def _check_scores(decoded: torch.Tensor) -> None:
    """person + car = 1 (one exclusive group); man = P(person) * P(man | person) <= person."""
    cls = decoded[..., 5:]
    torch.testing.assert_close(cls[..., 0] + cls[..., 1], torch.ones_like(cls[..., 0]), atol=1e-5, rtol=0)
    assert (cls[..., 2] <= cls[..., 0] + 1e-6).all() and (cls[..., 2] < cls[..., 0] - 1e-3).any()


def test_head_scores_follow_the_groups():
    with torch.no_grad():
        decoded = _grouped_model()(torch.rand(2, 3, IMG, IMG))[0]
    _check_scores(decoded)


def test_checkpoint_round_trip_identical(grouped_pt):
    record = load_checkpoint(grouped_pt)["model"]
    assert record["cls_act"] == "grouped" and record["cls_groups"] == SPEC
    loaded = attempt_load(grouped_pt, map_location="cpu", fuse=False)
    assert loaded.cls_act == "grouped" and loaded.cls_groups == SPEC
    x = torch.rand(1, 3, IMG, IMG)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[0], _grouped_model()(x)[0], atol=1e-5, rtol=1e-5)


def test_record_without_groups_is_refused():
    record = model_record(_grouped_model())
    record["cls_groups"] = None
    from engine.checkpoint import model_from_record
    from engine.safe_load import CheckpointError
    with pytest.raises(CheckpointError, match="grouped.*class groups"):
        model_from_record(record)


@pytest.mark.parametrize("train", [False, True], ids=["decoded", "raw-heads"])
def test_exports_keep_the_grouped_activation(grouped_pt, tmp_path, train):
    import export
    weights = tmp_path / grouped_pt.name
    weights.write_bytes(grouped_pt.read_bytes())
    files = export.run(weights=[str(weights)], imgsz=[IMG], include=["torchscript", "onnx"], train=train)
    x = torch.rand(1, 3, IMG, IMG)
    with torch.no_grad():
        reference = attempt_load(weights, map_location="cpu")(x)[0]
    for f in files:
        meta = read_metadata(f)
        assert meta["cls_act"] == "grouped" and meta["cls_groups"] == SPEC, f
        out = DetectMultiBackend(str(f), device="cpu")(x)  # raw heads are decoded with the recorded groups
        torch.testing.assert_close(out, reference, atol=2e-4, rtol=1e-4)
        _check_scores(out)


def test_train_one_epoch_grouped(tmp_path):
    """Multi-label rows (person + man on one box) train with --cls-loss grouped; the checkpoint keeps the groups."""
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    import cv2
    rng = np.random.default_rng(0)
    for i in range(8):
        im = np.full((64, 64, 3), 114, np.uint8)
        cv2.rectangle(im, (8, 8), (40, 56), (40, 40, 200), -1)
        cv2.imwrite(str(root / "images" / f"{i}.jpg"), im)
        rows = ["0 0.375 0.5 0.5 0.75", "2 0.375 0.5 0.5 0.75"] if i % 2 else ["1 0.375 0.5 0.5 0.75"]
        (root / "labels" / f"{i}.txt").write_text("\n".join(rows) + "\n")
        rng.random()
    data = root / "data.yaml"
    data.write_text(yaml.safe_dump({"train": str(root / "images"), "val": str(root / "images"), "nc": 3,
                                    "names": NAMES, "cls_groups": GROUPS}))
    cfg = write_cfg(tmp_path / "cfg.yaml")
    hyp = write_hyp(tmp_path / "hyp.yaml")
    r = run_train(train_args(data, cfg, hyp, tmp_path / "runs", "--cls-loss", "grouped"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    record = load_checkpoint(tmp_path / "runs" / "exp" / "weights" / "best.pt")["model"]
    assert record["cls_act"] == "grouped" and record["cls_groups"] == SPEC
    assert ClassGroups.from_spec(record["cls_groups"], 3).depth == 1
    opt = yaml.safe_load((tmp_path / "runs" / "exp" / "opt.yaml").read_text())
    assert opt["hyp"]["cls_loss"] == "grouped"


def test_grouped_without_groups_in_the_yaml_is_an_error(tmp_path):
    from train_helpers import make_dataset
    data = make_dataset(tmp_path / "ds", n=4)
    r = run_train(train_args(data, write_cfg(tmp_path / "c.yaml"), write_hyp(tmp_path / "h.yaml"), tmp_path / "runs",
                             "--cls-loss", "grouped"), cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "cls_groups" in r.stderr + r.stdout
