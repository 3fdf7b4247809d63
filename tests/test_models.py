"""Model build figures, Detect decoding (sigmoid / softmax / export), Model features, torch_utils helpers."""
import gc
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from models.detect import Detect
from models.model import DetectionModel, Model
from utils.torch_utils import (ModelEMA, count_flops, fuse_conv_and_bn, intersect_dicts, scale_img,
                               select_device)

# (config, params at nc=80, strides) from the upstream v5.0 measurements (contract header)
CONFIGS = [("yolov5s.yaml", 7276605, [8, 16, 32]), ("yolov5m.yaml", 21375645, [8, 16, 32]),
           ("yolov5l.yaml", 47056765, [8, 16, 32]), ("yolov5x.yaml", 87775965, [8, 16, 32]),
           ("yolov5s6.yaml", 12667836, [8, 16, 32, 64]), ("yolov5m6.yaml", 35917020, [8, 16, 32, 64]),
           ("yolov5l6.yaml", 77263228, [8, 16, 32, 64]), ("yolov5x6.yaml", 141821340, [8, 16, 32, 64])]


@pytest.fixture(scope="module")
def yolov5s():
    torch.manual_seed(0)
    return Model("yolov5s.yaml")


@pytest.mark.parametrize("cfg,params,strides", CONFIGS)
def test_shipped_config_params_and_strides(cfg, params, strides):
    m = Model(cfg)
    assert sum(p.numel() for p in m.parameters()) == params
    assert m.stride.tolist() == strides
    det = m.model[-1]
    assert det.nl == len(strides) and det.na == 3 and det.no == 85
    # anchors buffer in grid units, anchor_grid in pixels
    assert torch.allclose(det.anchors * det.stride.view(-1, 1, 1), det.anchor_grid.view(det.nl, 3, 2))
    del m, det
    gc.collect()


def test_summary_lines_unfused_and_fused(log_lines):
    torch.manual_seed(0)
    m = Model("yolov5s.yaml")
    assert "Model Summary: 283 layers, 7276605 parameters, 7276605 gradients, 17.1 GFLOPS" in log_lines
    m.eval().fuse()
    fused = [line for line in log_lines if line.startswith("Model Summary: 224 layers, 7266973 parameters")]
    assert fused and fused[-1].endswith("17.0 GFLOPS")
    assert "Fusing layers... " in log_lines


def test_flop_counter_rules():
    conv = nn.Conv2d(3, 8, 3, 1, 1, bias=True)
    assert count_flops(conv, torch.zeros(1, 3, 10, 10)) == 2 * 8 * 100 * (3 * 9 + 1)
    dw = nn.Conv2d(8, 8, 3, 2, 1, groups=8, bias=False)
    assert count_flops(dw, torch.zeros(1, 8, 10, 10)) == 2 * 8 * 25 * 9
    seq = nn.Sequential(nn.BatchNorm2d(4), nn.SiLU(), nn.MaxPool2d(3, 1, 1), nn.Flatten(), nn.Linear(4 * 36, 5))
    assert count_flops(seq, torch.zeros(1, 4, 6, 6)) == 2 * (2 * 4 * 36 + 4 * 36 * 5)


def test_initial_biases(yolov5s):
    det = yolov5s.model[-1]
    for conv, s, c_in in zip(det.m, det.stride, (128, 256, 512)):
        b = conv.bias.detach().view(det.na, -1)
        bound = 1 / math.sqrt(c_in)  # PyTorch default bias init range, the prior is added on top
        obj_prior = math.log(8 / (640 / float(s)) ** 2)
        assert (b[:, 4] - obj_prior).abs().max() <= bound
        assert (b[:, 5:] - math.log(0.6 / (80 - 0.99))).abs().max() <= bound
    assert abs(math.log(8 / (640 / 8) ** 2) - (-6.6846)) < 1e-4  # the documented figures


def test_single_class_bias_prior():
    d = {"nc": 1, "depth_multiple": 0.33, "width_multiple": 0.25, "anchors": [[10, 13, 16, 30, 33, 23]],
         "backbone": [[-1, 1, "Conv", [32, 3, 2]], [-1, 1, "Conv", [32, 3, 2]], [-1, 1, "Conv", [64, 3, 2]]],
         "head": [[[-1], 1, "Detect", ["nc", "anchors"]]]}
    m = Model(d)
    b = m.model[-1].m[0].bias.detach().view(3, -1)
    assert (b[:, 5] - math.log(0.6 / 0.01)).abs().max() <= 1 / math.sqrt(16)
    assert m.names == ["0"] and m.stride.tolist() == [8.0]


class _Const(nn.Module):
    """Stands in for a Detect level conv: returns a fixed raw map whatever the input."""

    def __init__(self, t):
        super().__init__()
        self.t = t

    def forward(self, x):
        return self.t


def _hand_head(nc, raw):
    det = Detect(nc=nc, anchors=[[10, 13, 16, 30]], ch=[4])
    det.stride = torch.tensor([8.0])
    det.m[0] = _Const(raw)
    return det.eval()


def _sig(v):
    return 1 / (1 + math.exp(-v))


def test_sigmoid_decoding_by_hand():
    nc, na, ny, nx = 2, 2, 3, 4
    raw = torch.zeros(1, na * (nc + 5), ny, nx)
    vals = [0.3, -1.2, 0.7, -0.4, 2.0, 1.5, -0.5]  # tx, ty, tw, th, obj, cls0, cls1
    a, gy, gx = 1, 1, 2
    for c, v in enumerate(vals):
        raw[0, a * (nc + 5) + c, gy, gx] = v
    y, maps = _hand_head(nc, raw)(raw)
    assert y.shape == (1, na * ny * nx, nc + 5) and maps[0].shape == (1, na, ny, nx, nc + 5)
    row = y[0, a * ny * nx + gy * nx + gx]
    expected = [(2 * _sig(0.3) - 0.5 + gx) * 8, (2 * _sig(-1.2) - 0.5 + gy) * 8,
                (2 * _sig(0.7)) ** 2 * 16, (2 * _sig(-0.4)) ** 2 * 30, _sig(2.0), _sig(1.5), _sig(-0.5)]
    assert torch.allclose(row, torch.tensor(expected), atol=1e-5)
    # an all-zero cell of anchor 0 at (x=3, y=2): centre of the cell, anchor-sized box, probabilities 0.5
    row0 = y[0, 0 * ny * nx + 2 * nx + 3]
    assert torch.allclose(row0, torch.tensor([28.0, 20.0, 10.0, 13.0, 0.5, 0.5, 0.5]), atol=1e-6)


def test_softmax_decoding_by_hand():
    nc, na, ny, nx = 3, 2, 2, 2
    torch.manual_seed(1)
    raw = torch.randn(1, na * (nc + 5), ny, nx) * 2
    det = _hand_head(nc, raw)
    sig, _ = det(raw)
    det.cls_act = "softmax"
    soft, _ = det(raw)
    assert torch.allclose(soft[..., 5:].sum(-1), torch.ones(1, na * ny * nx), atol=1e-6)
    assert torch.allclose(soft[..., :5], sig[..., :5], atol=1e-5)  # box + objectness stay sigmoid
    logits = raw[0, 1 * (nc + 5) + 5: 2 * (nc + 5), 1, 0].tolist()  # anchor 1, cell (y=1, x=0)
    e = [math.exp(v) for v in logits]
    row = soft[0, 1 * ny * nx + 1 * nx + 0, 5:]
    assert torch.allclose(row, torch.tensor([v / sum(e) for v in e]), atol=1e-6)
    assert Detect.cls_act == "sigmoid"  # the instance setting does not leak to the class


def test_softmax_single_class_is_one():
    raw = torch.randn(1, 2 * 6, 2, 3)
    det = _hand_head(1, raw)
    det.cls_act = "softmax"
    y, _ = det(raw)
    assert torch.equal(y[..., 5], torch.ones_like(y[..., 5]))


def test_export_mode_returns_decoded_only(monkeypatch):
    raw = torch.randn(2, 2 * 7, 3, 4)
    det = _hand_head(2, raw)
    y_eval, _ = det(raw)
    monkeypatch.setattr(Detect, "export", True)
    out = det.train()(raw)  # export decodes even in train mode
    assert isinstance(out, torch.Tensor) and torch.equal(out, y_eval)


def test_set_class_activation_and_property(yolov5s):
    assert yolov5s.cls_act == "sigmoid"
    yolov5s.set_class_activation("softmax")
    assert yolov5s.cls_act == "softmax" and yolov5s.model[-1].cls_act == "softmax"
    with pytest.raises(ValueError, match="sigmoid"):
        yolov5s.set_class_activation("relu")
    with pytest.raises(AttributeError):
        yolov5s.cls_act = "sigmoid"  # read-only: use set_class_activation
    yolov5s.set_class_activation("sigmoid")
    assert DetectionModel is Model


def test_train_and_eval_outputs(yolov5s):
    x = torch.rand(2, 3, 64, 96)
    yolov5s.train()
    maps = yolov5s(x)
    assert [tuple(t.shape) for t in maps] == [(2, 3, 8, 12, 85), (2, 3, 4, 6, 85), (2, 3, 2, 3, 85)]
    yolov5s.eval()
    with torch.no_grad():
        y, raw = yolov5s(x)
        assert y.shape == (2, 3 * (96 + 24 + 6), 85)
        ya, none = yolov5s(x, augment=True)
    assert none is None and ya.shape == (2, 3 * y.shape[1], 85)  # each scale padded back to 64x96
    assert torch.allclose(ya[:, :y.shape[1]], y)  # scale 1, no flip = the plain forward
    y_grad, _ = yolov5s(x)  # grad enabled: the out-of-place decode, same numbers, differentiable
    assert torch.allclose(y_grad, y, atol=1e-4) and y_grad.requires_grad
    y_grad[..., :4].sum().backward()
    assert yolov5s.model[-1].m[0].weight.grad is not None
    yolov5s.zero_grad(set_to_none=True)


def test_tta_undoes_the_flip(yolov5s):
    """The second TTA block is the 0.83-scaled, left-right flipped pass mapped back to input coordinates."""
    m = yolov5s.eval()
    x = torch.rand(1, 3, 64, 64)

    def fwd(z):
        with torch.no_grad():
            return m._forward_once(z)[0]

    with torch.no_grad():
        ya, _ = m(x, augment=True)
    n = fwd(x).shape[1]
    flipped = ya[:, n:2 * n]
    direct = fwd(scale_img(x.flip(3), 0.83, gs=32))
    direct[..., :4] /= 0.83
    direct[..., 0] = 64 - direct[..., 0]
    assert torch.allclose(flipped, direct, atol=1e-4)


def test_unusual_strides_warn(log_lines):
    d = {"nc": 2, "depth_multiple": 1.0, "width_multiple": 1.0, "anchors": [[4, 5, 8, 10], [13, 16, 23, 29]],
         "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [32, 3, 2]]],
         "head": [[[1, 2], 1, "Detect", ["nc", "anchors"]]]}
    m = Model(d)
    assert m.stride.tolist() == [4.0, 8.0]
    assert any("[4, 8]" in line and "strides" in line for line in log_lines)


def test_reversed_anchors_are_reordered(log_lines):
    d = {"nc": 2, "depth_multiple": 1.0, "width_multiple": 1.0,
         "anchors": [[116, 90, 156, 198], [10, 13, 16, 30]],  # large anchors listed first
         "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [32, 3, 2]],
                      [-1, 1, "Conv", [32, 3, 2]]],
         "head": [[[2, 3], 1, "Detect", ["nc", "anchors"]]]}
    m = Model(d)
    assert "Reversing anchor order" in log_lines
    assert m.model[-1].anchor_grid.view(2, 2, 2)[0].tolist() == [[10.0, 13.0], [16.0, 30.0]]


def test_nc_and_anchor_overrides():
    m = Model("yolov5s.yaml", nc=3, anchors=2)
    det = m.model[-1]
    assert det.nc == 3 and det.na == 2 and m.yaml["nc"] == 3 and m.yaml["anchors"] == 2
    assert m.names == ["0", "1", "2"]


def test_nms_layer(yolov5s):
    yolov5s.nms()
    assert type(yolov5s.model[-1]).__name__ == "NMS" and not yolov5s.training
    with torch.no_grad():
        out = yolov5s(torch.rand(1, 3, 64, 64))
    assert isinstance(out, list) and out[0].shape[1] == 6
    yolov5s.nms(False)
    assert isinstance(yolov5s.model[-1], Detect)


def _img(h=120, w=160, seed=0):
    rng = np.random.default_rng(seed)
    im = np.full((h, w, 3), 60, np.uint8)
    im[20:80, 30:110] = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    return im


def test_autoshape_numpy_file_and_pil(tmp_path, yolov5s):
    pytest.importorskip("data.augmentations")
    pytest.importorskip("utils.nms")
    from PIL import Image

    from models.common import AutoShape, Detections, autoShape
    assert autoShape is AutoShape
    model = yolov5s.autoshape()
    model.conf = 0.0  # an untrained model: keep every candidate so boxes exist
    im = _img()
    d = model(im, size=96)
    assert isinstance(d, Detections) and len(d) == 1 and d.files == ["image0.jpg"]
    boxes = d.xyxy[0]
    assert boxes.ndim == 2 and boxes.shape[1] == 6 and len(boxes) > 0
    # boxes are scaled back to the 120x160 original and clipped to it
    assert boxes[:, [0, 2]].min() >= 0 and boxes[:, [0, 2]].max() <= 160
    assert boxes[:, [1, 3]].min() >= 0 and boxes[:, [1, 3]].max() <= 120
    assert torch.allclose(d.xyxyn[0][:, :4] * torch.tensor([160, 120, 160, 120]), boxes[:, :4])
    assert torch.allclose(d.xywh[0][:, 2], boxes[:, 2] - boxes[:, 0])
    assert len(d.t) == 3

    f = tmp_path / "pic.png"
    Image.fromarray(im).save(f)
    for src in (str(f), Image.open(f)):  # same pixels through the path and PIL readers
        d1 = model(src, size=96)
        assert d1.files == ["pic.jpg"] and torch.allclose(d1.xyxy[0], boxes)
    d2 = model([im, im[:60]], size=96)  # a batch letterboxed to one shape: 72x96 -> stride multiples 96x96
    assert len(d2) == 2 and d2.files == ["image0.jpg", "image1.jpg"]
    assert d2.s[2:] == (96, 96) and d2.xyxy[1][:, [1, 3]].max() <= 60

    df = d.pandas().xyxy[0]
    assert list(df.columns) == ["xmin", "ymin", "xmax", "ymax", "confidence", "class", "name"]
    assert len(df) == len(boxes)
    assert [len(x) for x in d2.tolist()] == [1, 1]
    out_dir = d.save(save_dir=tmp_path / "exp")
    assert (Path(out_dir) / "image0.jpg").is_file()
    before = im.copy()
    rendered = d.render()[0]
    assert rendered.shape == im.shape and not np.array_equal(rendered, im)
    assert np.array_equal(im, before)  # the caller's array is not drawn on


# ------------------------------------------------------------------------------------------------------------
# utils.torch_utils
# ------------------------------------------------------------------------------------------------------------
def test_select_device(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert select_device("cpu") == torch.device("cpu")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "-1"
    with pytest.raises(ValueError, match="invalid --device 'gpu7'"):
        select_device("gpu7")
    if not torch.cuda.is_available():
        assert select_device("") == torch.device("cpu")
        with pytest.raises(RuntimeError, match="--device '0' requests CUDA.*not available"):
            select_device("0")
        with pytest.raises(RuntimeError, match="CUDA"):
            select_device("0,1")
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"  # set like upstream before the check


def test_model_ema_decay_formula():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    ema = ModelEMA(model)
    e0 = {k: v.clone() for k, v in ema.ema.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model[1].running_mean.fill_(2.0)
        model[1].num_batches_tracked.fill_(7)
    for u in (1, 2):
        ema.update(model)
        d = 0.9999 * (1 - math.exp(-u / 2000))
        msd = model.state_dict()
        for k, v in e0.items():
            if v.dtype.is_floating_point:
                e0[k] = d * v + (1 - d) * msd[k]
    for k, v in ema.ema.state_dict().items():
        if v.dtype.is_floating_point:
            assert torch.allclose(v, e0[k], atol=1e-7), k
    assert ema.ema.state_dict()["1.num_batches_tracked"].item() == 0  # integer buffers are not averaged
    assert ema.updates == 2 and not any(p.requires_grad for p in ema.ema.parameters())


def test_model_ema_follows_head_activation(yolov5s):
    ema = ModelEMA(yolov5s)
    yolov5s.set_class_activation("softmax")
    ema.update(yolov5s)
    assert ema.ema.cls_act == "softmax"
    yolov5s.set_class_activation("sigmoid")


def test_intersect_dicts():
    a = {"x.anchor": torch.zeros(2), "x.w": torch.zeros(3), "y": torch.zeros(4), "z": torch.zeros(1)}
    b = {"x.anchor": torch.zeros(2), "x.w": torch.zeros(3), "y": torch.zeros(5)}
    assert set(intersect_dicts(a, b, exclude=["anchor"])) == {"x.w"}
    assert set(intersect_dicts(a, b)) == {"x.anchor", "x.w"}


def test_fuse_conv_and_bn_numerics():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, 2, 1, bias=True)
    bn = nn.BatchNorm2d(6, eps=1e-3)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    bn.eval()
    x = torch.randn(2, 4, 9, 9)
    fused = fuse_conv_and_bn(conv, bn)
    assert torch.allclose(fused(x), bn(conv(x)), atol=1e-5)
    # the formula written out for one output channel
    s = bn.weight[2] / torch.sqrt(bn.running_var[2] + 1e-3)
    assert torch.allclose(fused.bias[2], (conv.bias[2] - bn.running_mean[2]) * s + bn.bias[2])


def test_scale_img():
    img = torch.rand(1, 3, 64, 96)
    assert scale_img(img, 1.0) is img
    out = scale_img(img, 0.83, gs=32)
    assert out.shape == (1, 3, 64, 96)  # 53x79 content padded to stride multiples
    assert torch.all(out[..., 53:, :] == 0.447) and torch.all(out[..., :, 79:] == 0.447)
    assert scale_img(img, 0.5).shape == (1, 3, 32, 64)  # 32x48 -> ceil to multiples of 32
    assert scale_img(img, 0.5, same_shape=True).shape == (1, 3, 64, 96)  # padded back to the input shape


def test_activations_match_torch():
    from utils.activations import Hardswish, SiLU
    x = torch.linspace(-6, 6, 101)
    assert torch.allclose(SiLU()(x), nn.functional.silu(x), atol=1e-6)
    assert torch.allclose(Hardswish()(x), nn.functional.hardswish(x), atol=1e-6)


def test_state_dict_keys_follow_upstream_layout(yolov5s):
    keys = set(yolov5s.state_dict())
    for k in ("model.0.conv.conv.weight", "model.0.conv.bn.running_mean", "model.2.cv1.conv.weight",
              "model.2.m.0.cv2.bn.bias", "model.8.cv2.conv.weight", "model.24.m.0.weight", "model.24.m.2.bias",
              "model.24.anchors", "model.24.anchor_grid"):
        assert k in keys, k
    assert yolov5s.state_dict()["model.24.anchor_grid"].shape == (3, 1, 3, 1, 1, 2)


def test_eval_model_traces_like_eager():
    """torch.jit.trace of an eval (not export-mode) model: the tracer must see the out-of-place decode with a
    grid built from the input, not the cached grid and in-place writes of the eager fast path."""
    model = Model("yolov5-shufflenetv2.yaml", nc=3).eval()
    x = torch.rand(1, 3, 96, 128)
    traced = torch.jit.trace(model, x, strict=False)
    with torch.no_grad():
        expected = model(x)[0]
    assert torch.equal(traced(x)[0], expected)
