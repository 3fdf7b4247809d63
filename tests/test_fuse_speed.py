"""BN folding (Conv-style blocks, Sequential conv+BN pairs, pickled models), cascaded SPP pools, fast path."""
import pickle
import time

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.blocks.conv import Conv, DWConv
from models.blocks.csp import C3Ghost, GhostBottleneck
from models.blocks.pooling import SPP, SPPF, cascade_maxpools
from models.model import Model
from utils.torch_utils import fold_batchnorms, is_fused, prepare_for_inference


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Trained-like BN statistics, so that folding is not an identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) - 0.5)
    return model


def n_bn(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.fixture(scope="module")
def s_model():
    torch.manual_seed(0)
    return randomize_bn(Model("yolov5s.yaml")).eval()


def test_model_fuse_equivalence(s_model):
    x = torch.rand(1, 3, 96, 64)
    with torch.no_grad():
        y0, raw0 = s_model(x)
        fused = pickle.loads(pickle.dumps(s_model)).fuse()  # a copy: the fixture stays unfused
        y1, raw1 = fused(x)
    assert n_bn(s_model) == 59 and n_bn(fused) == 0
    assert all(not hasattr(m, "bn") for m in fused.modules() if isinstance(m, Conv))
    assert all(m.conv.bias is not None for m in fused.modules() if isinstance(m, Conv))
    for a, b in zip(raw0, raw1):  # logits
        assert (a - b).abs().max() < 1e-4
    assert torch.allclose(y0, y1, rtol=1e-5, atol=1e-4)  # decoded: pixels up to ~100 here
    assert is_fused(fused) and not is_fused(s_model)


def test_fuse_on_unpickled_v50_layout(s_model):
    """Modules restored by unpickling (no __init__) expose only the v5.0 attributes; fuse must work on them."""
    conv = s_model.model[1]
    clone = Conv.__new__(Conv)  # what unpickling does: no __init__, then the pickled __dict__
    clone.__dict__.update(pickle.loads(pickle.dumps(conv)).__dict__)
    assert set(clone._modules) == {"conv", "bn", "act"}
    x = torch.rand(1, 32, 16, 16)
    with torch.no_grad():
        ref = conv(x)
        assert fold_batchnorms(clone) == 1
        out = clone(x)
    assert "bn" not in clone._modules and clone.forward == clone.forward_fuse
    assert (ref - out).abs().max() < 1e-4
    assert Conv.fuseforward is Conv.forward_fuse  # v5.0 name kept for fused v5.0 pickles


def test_fuse_ghost_and_dwconv():
    torch.manual_seed(0)
    net = randomize_bn(nn.Sequential(DWConv(8, 16, 3, 1), GhostBottleneck(16, 16, 3, 2), C3Ghost(16, 16, 1))).eval()
    x = torch.rand(1, 8, 16, 16)
    with torch.no_grad():
        ref = net(x)
        fold_batchnorms(net)
        out = net(x)
    assert n_bn(net) == 0 and (ref - out).abs().max() < 1e-4


def test_fuse_sequential_conv_bn_pairs_in_mobile_blocks():
    from models.blocks.mobile import MOBILE_BLOCKS
    blocks = {cls.__name__: cls for cls in MOBILE_BLOCKS.values()}
    torch.manual_seed(0)
    net = nn.Sequential(
        blocks["conv_bn_hswish"](3, 16, 2),
        blocks["MobileNetV3_InvertedResidual"](16, 24, 72, 3, 2, 1, 1),
        blocks["MobileNetV3_InvertedResidual"](24, 24, 24, 5, 1, 0, 0),
        blocks["ShuffleNetV2_InvertedResidual"](24, 48, 2),
        blocks["ShuffleNetV2_InvertedResidual"](48, 48, 1),
    )
    randomize_bn(net).eval()
    before = n_bn(net)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        ref = net(x)
        folds = fold_batchnorms(net)
        out = net(x)
    assert before > 0 and folds == before and n_bn(net) == 0
    assert (ref - out).abs().max() < 1e-4


def test_fold_leaves_unpaired_bn():
    """A BN not preceded by a conv in the same Sequential (e.g. BottleneckCSP.bn over a concat) is kept."""
    net = nn.Sequential(nn.ReLU(), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))
    assert fold_batchnorms(net) == 1
    assert isinstance(net[1], nn.BatchNorm2d) and isinstance(net[3], nn.Identity)


def _reference_spp(spp: SPP, x: torch.Tensor) -> torch.Tensor:
    """SPP computed the plain way: every pool separately on cv1(x)."""
    y = spp.cv1(x)
    return spp.cv2(torch.cat([y] + [F.max_pool2d(y, k, 1, k // 2) for k in [m.kernel_size for m in spp.m]], 1))


@pytest.mark.parametrize("k", [(5, 9, 13), (3, 5, 7), (9, 5, 13), (3, 7, 13)])
@pytest.mark.parametrize("hw", [(20, 20), (7, 11), (3, 2)])  # includes maps smaller than the kernels
def test_spp_cascade_bit_identical(k, hw):
    torch.manual_seed(0)
    spp = randomize_bn(SPP(16, 16, k)).eval()
    x = torch.randn(2, 16, *hw)
    with torch.no_grad():
        assert torch.equal(spp(x), _reference_spp(spp, x))
        pools = cascade_maxpools(x, spp.m)
        for m, p in zip(spp.m, pools):
            assert torch.equal(p, m(x))


def test_spp_non_cascadable_pools_fall_back():
    x = torch.randn(1, 4, 12, 12)
    pools = [nn.MaxPool2d(3, 1, 1), nn.MaxPool2d(3, 2, 1), nn.MaxPool2d(4, 1, 2), nn.AvgPool2d(3, 1, 1)]
    out = cascade_maxpools(x, pools)
    for m, p in zip(pools, out):
        assert torch.equal(p, m(x))


def test_sppf_equals_spp():
    torch.manual_seed(0)
    spp = randomize_bn(SPP(16, 24, (5, 9, 13))).eval()
    sppf = SPPF(16, 24, 5).eval()
    sppf.load_state_dict(spp.state_dict())  # same cv1 / cv2 parameters; the pools have none
    x = torch.randn(1, 16, 13, 17)
    with torch.no_grad():
        assert torch.equal(sppf(x), _reference_spp(spp, x))


def test_spp_cascade_is_faster():
    """Cascaded pools read 3 x 25 window cells per pixel instead of 25 + 81 + 169; expect a clear speed-up."""
    x = torch.randn(1, 128, 40, 40)
    pools = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in (5, 9, 13))

    def best(fn, n=7):
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    with torch.inference_mode():
        separate = [best(lambda: [m(x) for m in pools]) for _ in range(2)]
        cascade = [best(lambda: cascade_maxpools(x, pools)) for _ in range(2)]
    assert min(cascade) < 0.8 * min(separate)


def test_prepare_for_inference(s_model):
    model = pickle.loads(pickle.dumps(s_model)).train()
    x = torch.rand(1, 3, 64, 64)
    fast = prepare_for_inference(model, "cpu")
    assert not fast.training and is_fused(fast)
    w = fast.model[1].conv.weight
    assert w.is_contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        y = fast(x.contiguous(memory_format=torch.channels_last))[0]
    with torch.no_grad():
        ref = s_model(x)[0]
    assert torch.allclose(y, ref, rtol=1e-5, atol=1e-4)
    assert prepare_for_inference(fast, "cpu") is fast  # already prepared: no second fuse
