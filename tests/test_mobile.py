"""ShuffleNetV2 / MobileNetV3 blocks (models/mobile.py) and the mobile model configs.

Block behaviour is checked against hand-computed references (permutations, formulas, parameter-count
formulas); the reference-fork configs of shared/spec/mobile-blocks.md are written to yaml by the test and must
build with the published parameter counts and strides; the shipped configs must build, fuse every BN and export.
"""
import logging
from copy import deepcopy
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.blocks.mobile import (MOBILE_BLOCKS, MobileNetV3_InvertedResidual, SELayer, ShuffleNetV2_InvertedResidual,
                           StemBlock, channel_shuffle, conv_bn_hswish, conv_bn_relu_maxpool, h_sigmoid, h_swish)

ROOT = Path(__file__).resolve().parents[1]


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def randomize_bn(model: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics and affine terms so fusing is actually exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=g) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(c, generator=g) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.1)


# ----------------------------------------------------------------------------------------------- helpers


def test_channel_shuffle_matches_hand_permutation():
    c = 8
    x = torch.arange(c, dtype=torch.float32).view(1, c, 1, 1).expand(2, c, 3, 5).contiguous()
    expected_order = [0, 4, 1, 5, 2, 6, 3, 7]  # groups of 4 interleaved
    out = channel_shuffle(x, 2)
    assert out.shape == x.shape
    assert out[0, :, 0, 0].tolist() == expected_order
    torch.testing.assert_close(out, x[:, expected_order])
    # channels_last input gives the same values
    torch.testing.assert_close(channel_shuffle(x.to(memory_format=torch.channels_last), 2), out)
    # 3 groups of 2: 0, 2, 4, 1, 3, 5
    y = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(y, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]


def test_hard_activations_match_formula():
    x = torch.linspace(-6, 6, 241)
    ref_sig = torch.clamp(x + 3, 0, 6) / 6
    torch.testing.assert_close(h_sigmoid()(x), ref_sig)
    torch.testing.assert_close(h_swish()(x), x * ref_sig)
    torch.testing.assert_close(h_swish()(x), F.hardswish(x))
    assert h_sigmoid()(torch.tensor([-3.0, 0.0, 3.0])).tolist() == [0.0, 0.5, 1.0]


def test_se_layer_structure_and_gate():
    c = 16
    se = SELayer(c)
    linears = [m for m in se.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 4), (4, 16)]
    assert all(m.bias is not None for m in linears)
    assert n_params(se) == 16 * 4 + 4 + 4 * 16 + 16
    x = torch.randn(2, c, 5, 7)
    for m in linears:
        nn.init.zeros_(m.weight)
        nn.init.zeros_(m.bias)
    torch.testing.assert_close(se(x), 0.5 * x)  # h_sigmoid(0) = 0.5
    # the gate is the global mean pushed through the MLP, one scalar per (image, channel)
    torch.manual_seed(1)
    se = SELayer(c)
    fc1, fc2 = [m for m in se.modules() if isinstance(m, nn.Linear)]
    gate = torch.clamp(fc2(F.relu(fc1(x.mean((2, 3))))) + 3, 0, 6) / 6
    torch.testing.assert_close(se(x), x * gate[:, :, None, None])


# ----------------------------------------------------------------------------------------------- blocks


def test_conv_bn_relu_maxpool():
    m = conv_bn_relu_maxpool(3, 24).eval()
    y = m(torch.randn(2, 3, 64, 96))
    assert y.shape == (2, 24, 16, 24)  # net stride 4
    assert (y >= 0).all()  # ReLU before the pool
    assert n_params(m) == 3 * 24 * 9 + 2 * 24  # bias-free conv + BN affine
    assert MOBILE_BLOCKS["conv_bn_act_maxpool"] is MOBILE_BLOCKS["conv_bn_relu_maxpool"] is conv_bn_relu_maxpool


def _types(seq: nn.Sequential) -> list:
    return [type(m).__name__ for m in seq]


def test_shufflenet_downsampling_unit():
    c1, c2 = 24, 64
    m = ShuffleNetV2_InvertedResidual(c1, c2, 2).eval()
    assert m(torch.randn(1, c1, 32, 48)).shape == (1, c2, 16, 24)
    # no activation after the depthwise convs; all convs bias-free
    assert _types(m.branch1) == ["Conv2d", "BatchNorm2d", "Conv2d", "BatchNorm2d", "ReLU"]
    assert _types(m.branch2) == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d",
                                 "Conv2d", "BatchNorm2d", "ReLU"]
    assert m.branch1[0].groups == c1 and m.branch2[3].groups == c2 // 2
    assert all(c.bias is None for c in m.modules() if isinstance(c, nn.Conv2d))
    cb = c2 // 2
    expected = (9 * c1 + 2 * c1 + c1 * cb + 2 * cb) + (c1 * cb + 2 * cb + 9 * cb + 2 * cb + cb * cb + 2 * cb)
    assert n_params(m) == expected
    # stride 3 is allowed by the contract
    assert ShuffleNetV2_InvertedResidual(c1, c2, 3)(torch.randn(1, c1, 30, 30)).shape == (1, c2, 10, 10)


def test_shufflenet_stride1_unit_keeps_first_half():
    c = 32
    m = ShuffleNetV2_InvertedResidual(c, c, 1).eval()
    x = torch.randn(2, c, 8, 8)
    y = m(x)
    assert y.shape == x.shape
    # after the shuffle the untouched first half sits on the even channels, the branch output on the odd ones
    torch.testing.assert_close(y[:, 0::2], x[:, : c // 2])
    torch.testing.assert_close(y[:, 1::2], m.branch2(x[:, c // 2:]))
    assert n_params(m) == 2 * (16 * 16 + 2 * 16) + 9 * 16 + 2 * 16
    with pytest.raises(ValueError, match="c1 == c2"):
        ShuffleNetV2_InvertedResidual(16, 32, 1)
    with pytest.raises(ValueError, match="stride"):
        ShuffleNetV2_InvertedResidual(16, 32, 4)
    assert MOBILE_BLOCKS["Shuffle_Block"] is ShuffleNetV2_InvertedResidual


def test_conv_bn_hswish():
    m = conv_bn_hswish(3, 16, 2).eval()
    x = torch.randn(1, 3, 32, 32)
    y = m(x)
    assert y.shape == (1, 16, 16, 16)
    assert n_params(m) == 3 * 16 * 9 + 2 * 16
    conv, bn = m[0], m[1]
    torch.testing.assert_close(y, F.hardswish(bn(conv(x))))
    assert conv_bn_hswish(3, 16, 1)(x).shape == (1, 16, 32, 32)


def _zero_last_bn(m: nn.Module) -> None:
    bn = [b for b in m.modules() if isinstance(b, nn.BatchNorm2d)][-1]
    nn.init.zeros_(bn.weight)
    nn.init.zeros_(bn.bias)


@pytest.mark.parametrize("c1,c2,hidden,k,s,se,hs,residual", [
    (16, 16, 16, 3, 1, 0, 0, True),  # no expansion, residual
    (16, 16, 16, 3, 2, 1, 0, False),  # no expansion, stride 2
    (24, 24, 88, 3, 1, 0, 0, True),  # expansion, residual
    (24, 40, 96, 5, 2, 1, 1, False),  # expansion, stride 2, SE + h_swish
    (40, 48, 120, 5, 1, 1, 1, False),  # stride 1 but c1 != c2
])
def test_mobilenetv3_unit(c1, c2, hidden, k, s, se, hs, residual):
    m = MobileNetV3_InvertedResidual(c1, c2, hidden, k, s, se, hs).eval()
    x = torch.randn(2, c1, 16, 16)
    y = m(x)
    assert y.shape == (2, c2, 16 // s, 16 // s)
    convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
    assert len(convs) == (2 if c1 == hidden else 3)
    dw = convs[0] if c1 == hidden else convs[1]
    assert dw.groups == hidden and dw.kernel_size == (k, k) and dw.stride == (s, s) and dw.padding == (k // 2, k // 2)
    assert all(c.bias is None for c in convs)
    assert any(isinstance(a, SELayer) for a in m.modules()) == bool(se)
    act = h_swish if hs else nn.ReLU
    n_act = sum(isinstance(a, (h_swish, nn.ReLU)) and not _inside_se(m, a) for a in m.modules())
    assert n_act == 2 - (c1 == hidden) and any(isinstance(a, act) for a in m.modules())
    if not hs:
        assert not any(isinstance(a, h_swish) for a in m.modules())
    # parameter count from the layer list
    expected = (0 if c1 == hidden else c1 * hidden + 2 * hidden) + k * k * hidden + 2 * hidden \
        + (2 * hidden * (hidden // 4) + hidden // 4 + hidden if se else 0) + hidden * c2 + 2 * c2
    assert n_params(m) == expected
    # with the projection BN zeroed the branch outputs 0: residual units return x, the others 0
    _zero_last_bn(m)
    torch.testing.assert_close(m(x), x if residual else torch.zeros_like(y))


def _inside_se(block: nn.Module, act: nn.Module) -> bool:
    return any(act is sub for se in block.modules() if isinstance(se, SELayer) for sub in se.modules())


def test_mobilenetv3_expansion_order():
    """Expansion path: expand + BN + act, depthwise + BN, SE, act, project + BN (act after SE)."""
    m = MobileNetV3_InvertedResidual(24, 40, 96, 5, 2, 1, 1)
    assert _types(m.conv) == ["Conv2d", "BatchNorm2d", "h_swish", "Conv2d", "BatchNorm2d", "SELayer", "h_swish",
                              "Conv2d", "BatchNorm2d"]
    m = MobileNetV3_InvertedResidual(16, 16, 16, 3, 2, 1, 0)
    assert _types(m.conv) == ["Conv2d", "BatchNorm2d", "ReLU", "SELayer", "Conv2d", "BatchNorm2d"]


def test_stem_block():
    m = StemBlock(3, 32, 3, 2).eval()
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 32, 16, 16)  # net stride 4
    # odd sizes: the ceil-mode pool keeps both paths the same size
    assert m(torch.randn(1, 3, 66, 70)).shape == (1, 32, 17, 18)
    conv_params = 3 * 32 * 9 + 32 * 16 + 16 * 32 * 9 + 64 * 32  # Conv weights
    bn_params = 2 * (32 + 16 + 32 + 32)
    assert n_params(m) == conv_params + bn_params


def test_registry_and_star_export():
    import models.blocks.mobile as mobile
    names = {"conv_bn_relu_maxpool", "conv_bn_act_maxpool", "ShuffleNetV2_InvertedResidual", "Shuffle_Block",
             "StemBlock", "conv_bn_hswish", "MobileNetV3_InvertedResidual",
             # torchvision-exact backbones (models/yolov5-tv-*.yaml, tests/test_tv_backbones.py)
             "InputNormalize", "TVConvBNAct", "TVShuffleNetV2Unit", "TVMobileNetV3Block"}
    assert set(MOBILE_BLOCKS) == names
    for name in names | {"h_sigmoid", "h_swish", "SELayer", "channel_shuffle", "MOBILE_BLOCKS"}:
        assert name in mobile.__all__ and hasattr(mobile, name)
    import models.common as common
    for name, cls in MOBILE_BLOCKS.items():
        assert getattr(common, name) is cls


def test_blocks_export_torchscript_and_onnx(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    net = nn.Sequential(
        conv_bn_relu_maxpool(3, 16),
        ShuffleNetV2_InvertedResidual(16, 32, 2),
        ShuffleNetV2_InvertedResidual(32, 32, 1),
        MobileNetV3_InvertedResidual(32, 32, 32, 3, 1, 1, 1),
        MobileNetV3_InvertedResidual(32, 40, 96, 5, 2, 1, 1),
        conv_bn_hswish(40, 16, 1),
        StemBlock(16, 16),
    ).eval()
    randomize_bn(net)
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        y = net(x)
        traced = torch.jit.trace(net, x)
        torch.testing.assert_close(traced(x), y)
    f = tmp_path / "blocks.onnx"
    torch.onnx.export(net, (x,), str(f), opset_version=13, dynamo=False, input_names=["images"],
                      dynamic_axes={"images": {2: "h", 3: "w"}})
    onnx.checker.check_model(onnx.load(str(f)))
    sess = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
    x2 = torch.randn(1, 3, 128, 96)  # another size through the dynamic axes: shapes come from the tensor
    for inp in (x, x2):
        out = sess.run(None, {"images": inp.numpy()})[0]
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(out), net(inp), atol=1e-4, rtol=1e-4)


# ----------------------------------------------------------------------------------------------- configs

FACE = [[4, 5, 8, 10, 13, 16], [23, 29, 43, 55, 73, 105], [146, 217, 231, 300, 335, 433]]
COCO = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
SHUFFLE = "ShuffleNetV2_InvertedResidual"
MNV3 = "MobileNetV3_InvertedResidual"
MNV3_SMALL = [[16, 16, 3, 2, 1, 0], [24, 72, 3, 2, 0, 0], [24, 88, 3, 1, 0, 0], [40, 96, 5, 2, 1, 1],
              [40, 240, 5, 1, 1, 1], [40, 240, 5, 1, 1, 1], [48, 120, 5, 1, 1, 1], [48, 144, 5, 1, 1, 1],
              [96, 288, 5, 2, 1, 1], [96, 576, 5, 1, 1, 1], [96, 576, 5, 1, 1, 1]]
MNV3_LARGE = [[16, 16, 3, 1, 0, 0], [24, 64, 3, 2, 0, 0], [24, 72, 3, 1, 0, 0], [40, 72, 5, 2, 1, 0],
              [40, 120, 5, 1, 1, 0], [40, 120, 5, 1, 1, 0], [80, 240, 3, 2, 0, 1], [80, 200, 3, 1, 0, 1],
              [80, 184, 3, 1, 0, 1], [80, 184, 3, 1, 0, 1], [112, 480, 3, 1, 1, 1], [112, 672, 3, 1, 1, 1],
              [160, 672, 5, 1, 1, 1], [160, 672, 5, 2, 1, 1], [160, 960, 5, 1, 1, 1]]
UP = [None, 2, "nearest"]


def _pan_head(p3: int, p4: int, p5: int, widths: tuple) -> list:
    """v5.0 yolov5s PANet head rows on backbone taps p3/p4/p5 (p5 = last backbone row)."""
    w5, w4, w3 = widths  # Conv/C3 widths at the P5-reduce, P4 and P3 stages (yolov5s: 512 -> 256, 256, 128)
    h = p5 + 1  # index of the first head row
    return [[-1, 1, "Conv", [w4, 1, 1]], [-1, 1, "nn.Upsample", UP], [[-1, p4], 1, "Concat", [1]],
            [-1, 1, "C3", [w4, False]],
            [-1, 1, "Conv", [w3, 1, 1]], [-1, 1, "nn.Upsample", UP], [[-1, p3], 1, "Concat", [1]],
            [-1, 1, "C3", [w3, False]],
            [-1, 1, "Conv", [w3, 3, 2]], [[-1, h + 4], 1, "Concat", [1]], [-1, 1, "C3", [w4, False]],
            [-1, 1, "Conv", [w4, 3, 2]], [[-1, h], 1, "Concat", [1]], [-1, 1, "C3", [w5, False]],
            [[h + 7, h + 10, h + 13], 1, "Detect", ["nc", "anchors"]]]


def _shufflenet_ref(row0: list) -> dict:
    backbone = [[-1, 1, *row0], [-1, 1, SHUFFLE, [128, 2]], [-1, 3, SHUFFLE, [128, 1]], [-1, 1, SHUFFLE, [256, 2]],
                [-1, 7, SHUFFLE, [256, 1]], [-1, 1, SHUFFLE, [512, 2]], [-1, 3, SHUFFLE, [512, 1]]]
    return {"nc": 80, "depth_multiple": 1.0, "width_multiple": 0.5, "anchors": FACE, "backbone": backbone,
            "head": _pan_head(2, 4, 6, (128, 128, 128))}


def _mnv3_ref(row0: list, rows: list, p3: int, p4: int, gw: float = 1.0, nc: int = 80) -> dict:
    backbone = [[-1, 1, *row0]] + [[-1, 1, MNV3, r] for r in rows]
    return {"nc": nc, "depth_multiple": 1.0, "width_multiple": gw, "anchors": COCO, "backbone": backbone,
            "head": _pan_head(p3, p4, len(rows), (512, 256, 128))}


# name: (yaml dict, params, Detect strides) -- figures from shared/spec/mobile-blocks.md
REFERENCE_CONFIGS = {
    "yolov5-shufflenetv2": (_shufflenet_ref(["conv_bn_act_maxpool", [3]]), 485_117, [8, 16, 32]),
    "yolov5-shufflenetv2-stem": (_shufflenet_ref(["StemBlock", [32, 3, 2]]), 487_821, [8, 16, 32]),
    "yolov5-shufflenetv2-focus": (_shufflenet_ref(["Focus", [64, 3]]), 490_205, [4, 8, 16]),
    "yolov5-mobilenetv3small": (_mnv3_ref(["conv_bn_hswish", [16, 2]], MNV3_SMALL, 3, 8), 3_755_819, [8, 16, 32]),
    "yolov5-mobilenetv3large": (_mnv3_ref(["conv_bn_hswish", [16, 2]], MNV3_LARGE, 6, 13), 5_416_699, [8, 16, 32]),
    "mobilenetv3small-stem": (_mnv3_ref(["StemBlock", [32, 3, 2]], MNV3_SMALL, 3, 8, gw=0.5, nc=1), 1_378_788,
                              [16, 32, 64]),
}


def _write_yaml(d: dict, path: Path) -> Path:
    """Write a model yaml the way the hub files look: flow-style rows, bare module names, `None` as text."""
    lines = [f"nc: {d['nc']}", f"depth_multiple: {d['depth_multiple']}", f"width_multiple: {d['width_multiple']}",
             "anchors:"] + [f"  - {a}" for a in d["anchors"]]
    for section in ("backbone", "head"):
        lines.append(f"{section}:")
        for f, n, m, args in d[section]:
            args = "[" + ", ".join(a if a in ("nc", "anchors") else repr(a) for a in args) + "]"
            lines.append(f"  - [{f}, {n}, {m}, {args}]")
    path.write_text("\n".join(lines) + "\n")
    return path


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _build(cfg, **kw):
    """Build a Model, returning it with everything logged on the project logger meanwhile."""
    from models.model import Model
    handler = _Records()
    logger = logging.getLogger("yolov5")
    logger.addHandler(handler)
    try:
        model = Model(cfg, **kw)
    finally:
        logger.removeHandler(handler)
    return model, handler.messages


_BUILT = {}  # name -> (model, log messages): each config is built once per session (building runs a forward)


def _reference_model(name: str, tmp_dir: Path):
    if name not in _BUILT:
        _BUILT[name] = _build(str(_write_yaml(REFERENCE_CONFIGS[name][0], tmp_dir / f"{name}.yaml")))
    return _BUILT[name]


def _shipped_model(name: str):
    if name not in _BUILT:
        _BUILT[name] = _build(str(ROOT / "models" / name))
    return _BUILT[name]


@pytest.mark.parametrize("name", list(REFERENCE_CONFIGS))
def test_reference_configs_build_with_published_counts(name, tmp_path):
    _, params, strides = REFERENCE_CONFIGS[name]
    model, messages = _reference_model(name, tmp_path)
    assert n_params(model) == params
    assert model.stride.tolist() == strides
    unusual = strides != [8, 16, 32]
    warned = any("stride" in m.lower() for m in messages)
    assert warned == unusual, messages


def _flops(model: nn.Module, size: int) -> float:
    """GFLOPs (2 x multiply-adds of Conv2d / Linear layers) of one forward at size x size."""
    macs = []

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            macs.append(out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1])
        else:
            macs.append(out.numel() * m.in_features)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return 2 * sum(macs) / 1e9


SHIPPED = {  # file: (params at nc=80, max GFLOPs at 640)
    "yolov5-shufflenetv2.yaml": (486_781, 2.5),
    "yolov5-mobilenetv3small.yaml": (3_755_819, 7.0),
    "yolov5-mobilenetv3large.yaml": (5_416_699, 10.0),
}


@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_configs(name):
    params, max_gflops = SHIPPED[name]
    model, messages = _shipped_model(name)
    assert n_params(model) == params
    assert model.stride.tolist() == [8, 16, 32]
    assert not any("stride" in m.lower() for m in messages)
    # every map size at 160 px is exactly a quarter (per side) of that at 640 px, so FLOPs scale by 16
    assert 16 * _flops(model, 160) < max_gflops
    model = deepcopy(model).train()
    out = model(torch.zeros(2, 3, 96, 128))
    assert [tuple(o.shape) for o in out] == [(2, 3, 96 // s, 128 // s, 85) for s in (8, 16, 32)]
    if "shufflenet" in name:
        assert params < 1_000_000  # the small default config


# between them these three use every block: conv_bn_relu_maxpool, both ShuffleNetV2 units, conv_bn_hswish,
# StemBlock and all MobileNetV3 paths (with / without expansion, SE, h_swish / ReLU, residual)
@pytest.mark.parametrize("name", ["yolov5-shufflenetv2.yaml", "yolov5-mobilenetv3large.yaml", "mobilenetv3small-stem"])
def test_fuse_removes_every_batchnorm(name, tmp_path):
    model = _shipped_model(name)[0] if name in SHIPPED else _reference_model(name, tmp_path)[0]
    model = deepcopy(model)
    randomize_bn(model)
    model.eval()
    x = torch.rand(1, 3, 128, 64)
    with torch.no_grad():
        ref_decoded, ref_raw = model(x)
        assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        model.fuse()
        assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        decoded, raw = model(x)
    for a, b in zip(raw, ref_raw):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(decoded, ref_decoded, atol=1e-3, rtol=1e-4)  # pixels: raw error x stride
