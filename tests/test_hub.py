"""hubconf.py through torch.hub.load(<repo dir>, ..., source='local'), offline."""
from __future__ import annotations

from pathlib import Path

import cv2
import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _hub(entry: str, **kwargs):
    return torch.hub.load(str(ROOT), entry, source="local", verbose=False, **kwargs)


def _save(model, path: Path) -> Path:
    from engine.checkpoint import model_record, save_checkpoint
    return save_checkpoint({"epoch": -1, "model": model_record(model, half=True)}, path)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    """Project checkpoint of a narrow yolov5s (width 1/8) with 3 named classes."""
    from models.model import Model
    cfg = yaml.safe_load((ROOT / "models" / "yolov5s.yaml").read_text())
    cfg.update(width_multiple=0.125, nc=3)
    model = Model(cfg)
    model.names = ["alpha", "beta", "gamma"]
    return _save(model, tmp_path_factory.mktemp("hub") / "tiny.pt")


@pytest.fixture(scope="module")
def shapes_jpg(tmp_path_factory) -> Path:
    from data.shapes import render_image
    img, _ = render_image(seed=123, split=0, index=0, img_size=160)
    f = tmp_path_factory.mktemp("img") / "shapes.jpg"
    cv2.imwrite(str(f), img)
    return f


def test_custom_returns_autoshape_and_runs_on_path_and_numpy(tiny_ckpt, shapes_jpg):
    from engine.autoshape import AutoShape, Detections
    model = _hub("custom", path=str(tiny_ckpt), device="cpu")
    assert isinstance(model, AutoShape)
    assert model.names == ["alpha", "beta", "gamma"] and torch.equal(model.stride, torch.tensor([8.0, 16.0, 32.0]))
    model.conf = 0.001  # an untrained head scores ~0.005: keep many boxes so the comparison below means something

    from_path = model(str(shapes_jpg), size=160)
    rgb = cv2.imread(str(shapes_jpg))[..., ::-1]  # AutoShape takes numpy images as RGB, like PIL gives them
    from_array = model(rgb.copy(), size=160)
    for r in (from_path, from_array):
        assert isinstance(r, Detections) and len(r) == 1
        assert r.pred[0].ndim == 2 and r.pred[0].shape[1] == 6 and len(r.pred[0]) > 10
        h, w = rgb.shape[:2]
        boxes = r.xyxy[0][:, :4]
        assert boxes.min() >= 0 and (boxes[:, [0, 2]] <= w).all() and (boxes[:, [1, 3]] <= h).all()
        assert set(r.pred[0][:, 5].long().tolist()) <= {0, 1, 2}
    assert from_path.files == ["shapes.jpg"] and from_array.files == ["image0.jpg"]
    torch.testing.assert_close(from_path.pred[0], from_array.pred[0])  # same pixels -> same detections
    assert list(from_path.pandas().xyxy[0].columns) == ["xmin", "ymin", "xmax", "ymax", "confidence", "class", "name"]


def test_custom_without_autoshape_is_the_checkpoint_model(tiny_ckpt):
    from engine.checkpoint import attempt_load
    raw = _hub("custom", path=tiny_ckpt, autoshape=False, device="cpu")
    ref = attempt_load(tiny_ckpt, fuse=False)
    assert not raw.training and raw.names == ref.names
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(raw(x)[0], ref(x)[0])


def test_official_entry_prefers_local_file(tiny_ckpt, tmp_path, monkeypatch):
    """yolov5s(pretrained) takes ./yolov5s.pt when present: no download, the file's model as trained."""
    import shutil
    shutil.copy(tiny_ckpt, tmp_path / "yolov5s.pt")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("YOLOV5_WEIGHTS_URL", "http://127.0.0.1:9/unreachable")  # a download attempt would fail
    model = _hub("yolov5s", classes=3, autoshape=False, device="cpu")
    assert model.names == ["alpha", "beta", "gamma"] and model.yaml["width_multiple"] == 0.125


def test_pretrained_with_other_classes_transfers_matching_weights(tmp_path, monkeypatch):
    """classes != the weights' nc: every weight whose shape still fits is kept, only the class-dependent head
    convs are new (same rule for the official entries, shown here on the small ShuffleNetV2 config)."""
    import hubconf
    from models.model import Model
    cfg = hubconf._MODELS["yolov5_shufflenetv2"][0]
    ref = Model(str(cfg), nc=8)
    weights = _save(ref, tmp_path / "shapes8.pt")
    monkeypatch.setitem(hubconf._MODELS, "yolov5_shufflenetv2", (cfg, weights))
    ref_sd = {k: v.half().float() for k, v in ref.state_dict().items()}  # the checkpoint stores fp16

    same = hubconf.yolov5_shufflenetv2(pretrained=True, classes=8, autoshape=False, device="cpu")
    sd = same.state_dict()
    assert sd.keys() == ref_sd.keys() and all(torch.equal(sd[k], ref_sd[k]) for k in sd)

    three = hubconf.yolov5_shufflenetv2(pretrained=True, classes=3, autoshape=False, device="cpu")
    head = three.model[-1]
    assert head.nc == 3 and head.m[0].out_channels == 3 * 8
    sd = three.state_dict()
    new = sorted(k for k in sd if sd[k].shape != ref_sd[k].shape)
    assert new == [f"model.21.m.{i}.{p}" for i in range(3) for p in ("bias", "weight")]
    assert all(torch.equal(sd[k], ref_sd[k]) for k in sd if k not in new)


def test_mobile_entries(tmp_path, monkeypatch):
    import hubconf
    model = _hub("yolov5_shufflenetv2", classes=8, autoshape=False, device="cpu")  # pretrained=False default
    assert model.model[-1].nc == 8 and model.yaml["backbone"][1][2] == "ShuffleNetV2_InvertedResidual"
    with pytest.raises(FileNotFoundError, match="no pretrained weights exist for 'yolov5_mobilenetv3small'"):
        _hub("yolov5_mobilenetv3small", pretrained=True)
    monkeypatch.setitem(hubconf._MODELS, "yolov5_shufflenetv2",
                        (hubconf._MODELS["yolov5_shufflenetv2"][0], tmp_path / "absent.pt"))
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        hubconf.yolov5_shufflenetv2(pretrained=True)
    with pytest.raises(ValueError, match="unknown hub model"):
        hubconf._create("yolov9")


@pytest.mark.skipif(not (ROOT / "weights" / "demo-shufflenetv2-shapes.pt").is_file(), reason="demo weights absent")
def test_shipped_demo_weights(caplog):
    """The shipped detector finds the shapes of data/images with the right classes (checked against labels
    rendered by the same generator)."""
    import importlib.util

    from utils.metrics import box_iou
    from data.shapes import NAMES, render_image

    spec = importlib.util.spec_from_file_location("make_demo", ROOT / "scripts" / "make_demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)

    model = _hub("yolov5_shufflenetv2", pretrained=True, classes=8, device="cpu")
    assert model.names == NAMES
    assert (ROOT / "weights" / "demo-shufflenetv2-shapes.pt").stat().st_size < 2e6
    img, labels = render_image(seed=demo.DEMO_SEED, split=0, index=0, img_size=demo.DEMO_SIZE)
    h, w = img.shape[:2]
    det = model(img[..., ::-1].copy(), size=demo.DETECT_SIZE).pred[0]
    gt = torch.tensor(labels[:, 1:]) * torch.tensor([w, h, w, h])
    gt = torch.cat([gt[:, :2] - gt[:, 2:] / 2, gt[:, :2] + gt[:, 2:] / 2], 1)
    iou = box_iou(gt, det[:, :4].double())
    matched = [(iou[i].max() > 0.5) and int(det[iou[i].argmax(), 5]) == int(labels[i, 0]) for i in range(len(gt))]
    assert sum(matched) >= 0.75 * len(gt), (labels, det)


@pytest.mark.parametrize("native", [True, False])
def test_autoshape_runs_in_the_inference_precision(tiny_ckpt, shapes_jpg, monkeypatch, log_lines, native):
    """AutoShape prepares the model like detect.py (BatchNorm folded, channels_last on CPU) and runs it in the
    default inference precision: bf16 autocast exactly when the CPU has native bf16 (mocked both ways); the
    detections it returns stay fp32 and lie inside the image."""
    from utils.torch_utils import is_fused
    monkeypatch.setattr("utils.precision.cpu_bf16_native", lambda: native)
    model = _hub("custom", path=str(tiny_ckpt), device="cpu")
    assert f"AutoShape precision: {'bf16 autocast' if native else 'fp32'}, channels_last" in log_lines.text()
    assert is_fused(model.model)
    conv = next(m for m in model.model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)

    seen = []
    head = model.model.model[-1]
    handle = head.register_forward_pre_hook(lambda m, inp: seen.append((torch.is_autocast_enabled("cpu"),
                                                                         inp[0][0].dtype)))
    model.conf = 0.001
    r = model(str(shapes_jpg), size=160)
    handle.remove()
    assert seen == [(True, torch.bfloat16) if native else (False, torch.float32)]
    assert r.pred[0].dtype == torch.float32 and len(r.pred[0]) > 10
    assert r.xyxy[0][:, :4].min() >= 0 and (r.xyxy[0][:, [0, 2]] <= 160).all()


def test_autoshape_leaves_an_unfused_model_intact():
    """Wrapping folds BatchNorm for speed, but into a copy: the caller's model keeps its layers and numbers."""
    from engine.autoshape import AutoShape
    from models.model import Model
    from utils.precision import inference_precision
    from utils.torch_utils import is_fused
    cfg = yaml.safe_load((ROOT / "models" / "yolov5s.yaml").read_text())
    cfg.update(width_multiple=0.125, depth_multiple=0.33, nc=3)
    model = Model(cfg).eval()
    keys = set(model.state_dict())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)[0]
    wrapped = AutoShape(model, precision=inference_precision("cpu", fp32=True))  # numbers compared in fp32 on every CPU
    assert is_fused(wrapped.model) and not is_fused(model) and set(model.state_dict()) == keys
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], before)
        torch.testing.assert_close(wrapped(x)[0], before, rtol=1e-4, atol=1e-3)  # folded BN: same numbers
