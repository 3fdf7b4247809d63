"""utils/checkpoint.py: project format round trips, safe loading of upstream-style pickles, atomic saves."""
import contextlib
import copy
import os
import pathlib
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from engine.checkpoint import (CheckpointError, UnsafeCheckpointError, attempt_load, checkpoint_state_dict,
                              load_checkpoint, model_from_record, model_record, save_checkpoint, strip_optimizer)

# A small P3-P5 model using the v5.0 blocks a pickle would reference (Focus, Conv, C3, SPP, Upsample, Concat).
TINY_YAML = {
    "nc": 3, "depth_multiple": 0.33, "width_multiple": 0.125,
    "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
    "backbone": [[-1, 1, "Focus", [64, 3]],
                 [-1, 1, "Conv", [128, 3, 2]],
                 [-1, 1, "C3", [128]],
                 [-1, 1, "Conv", [256, 3, 2]],
                 [-1, 1, "C3", [256]],
                 [-1, 1, "Conv", [512, 3, 2]],
                 [-1, 1, "Conv", [1024, 3, 2]],
                 [-1, 1, "SPP", [1024, [5, 9, 13]]]],
    "head": [[-1, 1, "Conv", [512, 1, 1]],
             [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
             [[-1, 5], 1, "Concat", [1]],
             [-1, 1, "C3", [512, False]],
             [-1, 1, "Conv", [256, 1, 1]],
             [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
             [[-1, 4], 1, "Concat", [1]],
             [-1, 1, "C3", [256, False]],
             [[15, 11, 8], 1, "Detect", ["nc", "anchors"]]],
}
IMG = 64

# Instance attributes upstream v5.0 pickles carry (contract 10.2); anything else a fork adds is absent from them.
V50_ATTRS = {
    "Model": {"yaml", "yaml_file", "model", "save", "names", "stride", "nc", "hyp", "gr", "class_weights"},
    "Detect": {"nc", "no", "nl", "na", "grid", "stride"},
    "Bottleneck": {"add"},
    "Concat": {"d"},
}
LAYER_ATTRS = {"i", "f", "type", "np"}


def _build(cls_act="sigmoid", seed=0):
    from models.model import Model
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Model(copy.deepcopy(TINY_YAML), ch=3, nc=3)
        for m in model.modules():  # non-trivial BN statistics so that fusing and fp16 actually matter
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    model.names = ["circle", "square", "triangle"]
    model.nc = 3
    model.hyp = {"box": 0.05, "cls": 0.5, "cls_loss": "ce" if cls_act == "softmax" else "bce"}
    model.set_class_activation(cls_act)
    return model.eval()


@pytest.fixture(scope="module")
def model():
    return _build()


@pytest.fixture(scope="module")
def other():
    return _build(seed=7)


@pytest.fixture(scope="module")
def soft():
    return _build("softmax", seed=3)


@pytest.fixture(scope="module")
def x():
    return torch.rand(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(1))


def _infer(model, x):
    with torch.no_grad():
        return model.eval()(x)[0]


def _as_v50_pickle(model):
    """Copy of ``model`` holding only the instance attributes an upstream v5.0 pickle would have."""
    legacy = copy.deepcopy(model)
    for m in legacy.modules():
        name = type(m).__name__
        if not type(m).__module__.startswith("models."):
            continue
        keep = V50_ATTRS.get(name, set()) | ({"training"} if name == "Model" else {"training"} | LAYER_ATTRS)
        for key in [k for k in vars(m) if not k.startswith("_") and k not in keep]:
            delattr(m, key)
    return legacy


@contextlib.contextmanager
def _upstream_class_paths(model_name: str = "Model"):
    """Pickle the YOLOv5 classes under the module paths upstream used (models.common.Conv, models.yolo.Model, ...),
    as an upstream checkpoint records them."""
    from models import registry
    from models.model import Model
    saved = {}
    targets = [(b.cls, b.pickled_as[0]) for b in registry.BLOCKS if b.pickled_as] + [(Model, f"models.yolo.{model_name}")]
    try:
        for cls, path in targets:
            saved[cls] = (cls.__module__, cls.__qualname__)
            cls.__module__, cls.__qualname__ = path.rsplit(".", 1)
        yield
    finally:
        for cls, (module, qualname) in saved.items():
            cls.__module__, cls.__qualname__ = module, qualname


def _upstream_save(obj, f, model_name: str = "Model") -> None:
    with _upstream_class_paths(model_name):
        torch.save(obj, f)


def _assert_sentinel_untouched(path):
    assert not path.exists(), "the pickle payload ran"


# ---------------------------------------------------------------------------------------------- project format
def test_record_round_trip_weights_only(model, x, tmp_path):
    f = tmp_path / "best.pt"
    save_checkpoint({"epoch": 4, "best_fitness": np.array([0.25]), "model": model_record(model), "ema": None,
                     "updates": None, "optimizer": None, "opt": {"save_dir": tmp_path}, "date": "today"}, f)
    # only plain data: plain torch weights_only loading works without any allow-list
    assert torch.serialization.get_unsafe_globals_in_checkpoint(f) == []
    raw = torch.load(f, weights_only=True)
    assert raw["format"] == "yolov5-fork" and raw["format_version"] == 1
    assert raw["best_fitness"] == 0.25 and raw["opt"]["save_dir"] == str(tmp_path)
    rec = raw["model"]
    assert rec["names"] == ["circle", "square", "triangle"] and rec["nc"] == 3 and rec["cls_act"] == "sigmoid"
    assert rec["stride"] == [8.0, 16.0, 32.0] and rec["hyp"]["box"] == 0.05 and rec["yaml"]["nc"] == 3

    rng = torch.get_rng_state()
    rebuilt = model_from_record(load_checkpoint(f)["model"])
    assert torch.equal(torch.get_rng_state(), rng)  # loading does not consume the caller's random stream
    assert torch.equal(_infer(rebuilt, x), _infer(model, x))
    assert torch.equal(rebuilt.stride, model.stride) and rebuilt.names == model.names and rebuilt.hyp == model.hyp

    loaded = attempt_load(f)  # fused float eval model
    assert not loaded.training and all(p.dtype == torch.float32 for p in loaded.parameters())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in loaded.modules())
    torch.testing.assert_close(_infer(loaded, x), _infer(model, x), rtol=1e-4, atol=1e-4)


def test_softmax_survives_save_load(soft, x, tmp_path):
    f = tmp_path / "ce.pt"
    save_checkpoint({"epoch": 0, "model": model_record(soft)}, f)
    assert torch.load(f, weights_only=True)["model"]["cls_act"] == "softmax"
    loaded = attempt_load(f)
    assert loaded.cls_act == "softmax"
    out = _infer(loaded, x)
    torch.testing.assert_close(out, _infer(soft, x), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out[..., 5:].sum(-1), torch.ones(out.shape[:2]))  # softmax over classes only


def test_fp16_record_loads_as_float(model, x, tmp_path):
    f = tmp_path / "half.pt"
    save_checkpoint({"epoch": 1, "model": copy.deepcopy(model).half()}, f)  # nn.Module -> record, dtype kept
    rec = torch.load(f, weights_only=True)["model"]
    assert rec["state_dict"]["model.0.conv.conv.weight"].dtype == torch.float16
    assert model_record(model, half=True)["state_dict"]["model.0.conv.conv.weight"].dtype == torch.float16
    wrapped = model_record(nn.DataParallel(model))  # de-parallelised: same keys and metadata
    assert wrapped["state_dict"].keys() == model.state_dict().keys() and wrapped["names"] == model.names
    loaded = attempt_load(f, fuse=False)
    assert all(t.dtype == torch.float32 for t in loaded.state_dict().values() if t.is_floating_point())
    torch.testing.assert_close(_infer(loaded, x), _infer(model, x), rtol=2e-2, atol=2e-2)


def test_save_rejects_unsafe_values_naming_the_key(tmp_path):
    with pytest.raises(TypeError, match=r"\['opt'\]\['callback'\]"):
        save_checkpoint({"epoch": 0, "opt": {"callback": object()}}, tmp_path / "x.pt")
    with pytest.raises(TypeError, match=r"\['extra'\]"):
        save_checkpoint({"extra": nn.Conv2d(1, 1, 1)}, tmp_path / "x.pt")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- atomic save
def test_atomic_save_survives_crash(tmp_path, monkeypatch):
    f = tmp_path / "last.pt"
    save_checkpoint({"epoch": 1, "best_fitness": 0.1}, f)
    mode = f.stat().st_mode & 0o777

    def crashing_save(obj, fh, *args, **kwargs):
        fh.write(b"PK\x03\x04 half a checkpoint")
        raise RuntimeError("simulated crash: disk full")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(RuntimeError, match="simulated crash"):
        save_checkpoint({"epoch": 2, "best_fitness": 0.2}, f)
    monkeypatch.undo()
    assert load_checkpoint(f)["epoch"] == 1  # previous file intact and loadable
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # temp file removed
    save_checkpoint({"epoch": 3}, f)
    assert load_checkpoint(f)["epoch"] == 3 and f.stat().st_mode & 0o777 == mode


# ---------------------------------------------------------------------------------------------- legacy pickles
def test_legacy_v50_pickle_loads_through_allow_list(model, x, tmp_path):
    from models.model import Model
    f = tmp_path / "yolov5_v50.pt"
    legacy = _as_v50_pickle(model).half()
    _upstream_save({"epoch": -1, "best_fitness": np.array([0.5]), "training_results": "0/2 ...", "model": legacy,
                    "optimizer": None, "wandb_id": None}, f)  # default pickler: whole module tree
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(f)
    assert "models.yolo.Model" in unsafe and "torch.nn.modules.conv.Conv2d" in unsafe
    with pytest.raises(pickle.UnpicklingError):  # really a full pickle that plain weights_only refuses
        torch.load(f, weights_only=True)

    ckpt = load_checkpoint(f)
    assert isinstance(ckpt["model"], Model) and ckpt["best_fitness"].tolist() == [0.5]
    loaded = attempt_load(f, fuse=False)
    assert loaded.cls_act == "sigmoid" and loaded.names == model.names
    reference = _infer(copy.deepcopy(model).half().float(), x)  # same fp16-rounded weights
    assert torch.equal(_infer(loaded, x), reference)
    torch.testing.assert_close(_infer(attempt_load(f), x), reference, rtol=1e-4, atol=1e-4)


def test_legacy_v6_v7_detect_layout_is_converted(model, x, tmp_path):
    import models.yolo
    legacy = _as_v50_pickle(model)
    head = legacy.model[-1]
    anchor_grid = head.anchor_grid.clone()
    del head._buffers["anchor_grid"]  # v6/v7: anchor_grid is a list attribute, not a buffer
    head.anchor_grid = [torch.zeros(1)] * head.nl
    head.inplace, head.onnx_dynamic = True, False
    head.grid = [torch.full((1, head.na, IMG // int(s), IMG // int(s), 2), -0.5) for s in head.stride]  # stale
    legacy.names = dict(enumerate(model.names))  # v7 stores a dict
    f = tmp_path / "yolov5_v7.pt"
    alias = getattr(models.yolo, "DetectionModel", None)
    assert alias is models.yolo.Model, "v7 pickles need models.yolo.DetectionModel (contract 10.1)"
    # pickle the class under its v7 name, as a v7 checkpoint does
    _upstream_save({"epoch": 9, "best_fitness": np.float64(0.3), "model": legacy, "ema": None, "opt": {},
                    "git": {"commit": "abc"}, "date": "2022"}, f, model_name="DetectionModel")
    assert "models.yolo.DetectionModel" in torch.serialization.get_unsafe_globals_in_checkpoint(f)

    loaded = attempt_load(f, fuse=False)
    loaded_head = loaded.model[-1]
    assert "anchor_grid" in loaded_head._buffers
    assert torch.equal(loaded_head.anchor_grid, anchor_grid)  # = anchors (grid units) * stride, in pixels
    assert loaded.names == model.names
    assert torch.equal(_infer(loaded, x), _infer(model, x))
    sd, yaml, names = checkpoint_state_dict(load_checkpoint(f))  # the transfer path sees the v5.0 keys
    assert set(sd) == set(model.state_dict()) and names == model.names and yaml["nc"] == 3


def test_checkpoint_state_dict_both_formats(model, tmp_path):
    legacy_f, project_f = tmp_path / "legacy.pt", tmp_path / "project.pt"
    _upstream_save({"model": _as_v50_pickle(model).half(), "ema": None}, legacy_f)
    save_checkpoint({"model": model_record(model, half=True), "ema": None}, project_f)
    sd_legacy, yaml_legacy, names_legacy = checkpoint_state_dict(load_checkpoint(legacy_f))
    sd_project, yaml_project, names_project = checkpoint_state_dict(load_checkpoint(project_f))
    assert sd_legacy.keys() == sd_project.keys() == model.state_dict().keys()
    for k, v in sd_project.items():
        assert torch.equal(v, sd_legacy[k]) and (v.dtype == torch.float32 or not v.is_floating_point())
    assert yaml_legacy["backbone"] == yaml_project["backbone"] and names_legacy == names_project == model.names
    with pytest.raises(CheckpointError, match="'ema'"):
        checkpoint_state_dict(load_checkpoint(project_f), key="ema")


# ---------------------------------------------------------------------------------------------- safety
class _ShellPayload:
    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return os.system, (f"touch {self.sentinel}",)


class _PathPayload:
    def __init__(self, sentinel):
        self.sentinel = pathlib.Path(sentinel)

    def __reduce__(self):
        return pathlib.Path.touch, (self.sentinel,)


class _HookPayload:  # a real function living in an allow-listed torch.nn.modules.* module: still refused
    def __reduce__(self):
        return nn.modules.module.register_module_forward_hook, (nn.Identity,)


@pytest.mark.parametrize("zip_format", [True, False])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, zip_format):
    sentinel = tmp_path / "pwned"
    f = tmp_path / "evil.pt"
    torch.save({"epoch": 0, "model": _ShellPayload(sentinel)}, f, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(UnsafeCheckpointError, match=rf"{os.system.__module__}\.system") as err:
        load_checkpoint(f)
    assert str(f) in str(err.value)
    with pytest.raises(UnsafeCheckpointError):
        attempt_load(f)
    _assert_sentinel_untouched(sentinel)


def test_malicious_getattr_and_non_module_globals_are_refused(tmp_path):
    sentinel = tmp_path / "pwned"
    f = tmp_path / "evil.pt"
    torch.save({"model": _PathPayload(sentinel)}, f)
    with pytest.raises(UnsafeCheckpointError, match=r"builtins\.getattr.*pathlib\.Path"):
        load_checkpoint(f)
    _assert_sentinel_untouched(sentinel)

    hooks_before = len(nn.modules.module._global_forward_hooks)
    torch.save({"model": _HookPayload()}, f)
    with pytest.raises(UnsafeCheckpointError, match=r"torch\.nn\.modules\.module\.register_module_forward_hook"):
        load_checkpoint(f)
    assert len(nn.modules.module._global_forward_hooks) == hooks_before


# ---------------------------------------------------------------------------------------------- bad files
def test_non_checkpoint_files_give_clear_errors(tmp_path):
    import cv2
    text = tmp_path / "notes.pt"
    text.write_text("epoch: 3\nthis is not a checkpoint\n")
    jpg = tmp_path / "image.jpg"
    cv2.imwrite(str(jpg), np.full((16, 16, 3), 127, np.uint8))
    good = tmp_path / "good.pt"
    save_checkpoint({"epoch": 1}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    for f in (text, jpg, truncated, empty):
        with pytest.raises(CheckpointError, match="is not a checkpoint") as err:
            load_checkpoint(f)
        assert isinstance(err.value, ValueError) and str(f) in str(err.value)
        assert "weights_only=False" not in str(err.value)  # never advise the unsafe path
    tensor_only = tmp_path / "tensor.pt"
    torch.save(torch.zeros(2), tensor_only)
    with pytest.raises(CheckpointError, match="holds a Tensor"):
        load_checkpoint(tensor_only)

    with pytest.raises(FileNotFoundError, match="weights not found: .*missing_weights.pt"):
        load_checkpoint(tmp_path / "missing_weights.pt")  # not an official name: nothing to download


# ---------------------------------------------------------------------------------------------- ensemble, strip
def test_ensemble_concatenates_outputs(model, other, soft, x, tmp_path):
    from models.model import Ensemble
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    save_checkpoint({"model": model_record(model)}, a)
    save_checkpoint({"model": model_record(other)}, b)
    ensemble = attempt_load([a, b], fuse=False)
    assert isinstance(ensemble, Ensemble) and len(ensemble) == 2
    assert ensemble.names == other.names and torch.equal(torch.as_tensor(ensemble.stride), model.stride)
    out, extra = ensemble(x)
    assert extra is None
    assert torch.equal(out, torch.cat([_infer(model, x), _infer(other, x)], 1))

    upstream, soft_f = tmp_path / "upstream.pt", tmp_path / "soft.pt"
    _upstream_save({"model": _as_v50_pickle(model)}, upstream)  # upstream pickles decode with sigmoid
    save_checkpoint({"model": model_record(soft)}, soft_f)
    with pytest.raises(ValueError, match="class activations.*softmax"):
        attempt_load([upstream, soft_f], fuse=False)


def test_strip_optimizer(model, other, x, tmp_path):
    ema = other
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    f, s = tmp_path / "last.pt", tmp_path / "stripped.pt"
    save_checkpoint({"epoch": 7, "best_fitness": 0.5, "model": model_record(model), "ema": model_record(ema),
                     "updates": 70, "optimizer": optimizer.state_dict(), "opt": {"epochs": 8}, "date": "d"}, f)
    strip_optimizer(f, s)
    x_ckpt = torch.load(s, weights_only=True)
    assert x_ckpt["epoch"] == -1 and x_ckpt["best_fitness"] == 0.5 and x_ckpt["opt"] == {"epochs": 8}
    assert x_ckpt["optimizer"] is None and x_ckpt["ema"] is None and x_ckpt["updates"] is None
    sd = x_ckpt["model"]["state_dict"]
    assert all(v.dtype == torch.float16 for v in sd.values() if v.is_floating_point())
    assert torch.equal(sd["model.0.conv.conv.weight"], ema.state_dict()["model.0.conv.conv.weight"].half())
    assert load_checkpoint(f)["optimizer"] is not None  # source untouched when s is given
    assert os.path.getsize(s) < os.path.getsize(f)

    # an upstream pickle comes out in the project format (loadable with plain weights_only=True)
    legacy = tmp_path / "upstream.pt"
    _upstream_save({"epoch": 3, "best_fitness": np.array([0.4]), "training_results": "r", "model": _as_v50_pickle(model),
                "ema": _as_v50_pickle(ema).half(), "updates": 9, "optimizer": optimizer.state_dict(),
                "wandb_id": "w"}, legacy)
    strip_optimizer(legacy)
    y = torch.load(legacy, weights_only=True)
    assert y["epoch"] == -1 and y["training_results"] is None and y["wandb_id"] is None and y["ema"] is None
    assert y["best_fitness"] == pytest.approx(0.4)
    assert torch.equal(_infer(attempt_load(legacy, fuse=False), x), _infer(copy.deepcopy(ema).half().float(), x))

    from utils.general import strip_optimizer as reexported
    assert reexported is strip_optimizer
