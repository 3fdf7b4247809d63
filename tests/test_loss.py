"""utils.loss.ComputeLoss against an independent loop-based computation of the v5.0 formulas, the CE options,
box-loss choices, the head activation (also through save / attempt_load) and the multi-label guard."""
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.loss import (BOX_LOSSES, CLS_ACTIVATION, ComputeLoss, SoftmaxCELoss, find_multilabel_boxes,
                        get_cls_loss, warn_multilabel)
from utils.metrics import bbox_iou

HYP_V50 = {  # data/hyp.scratch.yaml at v5.0, loss-related keys (+ label_smoothing written by train.py)
    "box": 0.05, "cls": 0.5, "cls_pw": 1.0, "obj": 1.0, "obj_pw": 1.0, "iou_t": 0.2, "anchor_t": 4.0,
    "fl_gamma": 0.0, "label_smoothing": 0.0,
}
ANCHORS_PX = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
STRIDES = [8.0, 16.0, 32.0]


class _Head(nn.Module):
    """Just the Detect attributes ComputeLoss reads (anchors in grid units, as after Model construction)."""

    def __init__(self, nc):
        super().__init__()
        self.nc, self.no, self.nl, self.na = nc, nc + 5, 3, 3
        anchors = torch.tensor(ANCHORS_PX, dtype=torch.float32).view(3, 3, 2)
        self.register_buffer("anchors", anchors / torch.tensor(STRIDES).view(3, 1, 1))
        self.stride = torch.tensor(STRIDES)
        self.m = nn.ModuleList(nn.Conv2d(1, 3 * self.no, 1) for _ in range(3))


class _Net(nn.Module):
    def __init__(self, nc, hyp):
        super().__init__()
        self.model = nn.Sequential(_Head(nc))
        self.hyp = dict(hyp)
        self.gr = 1.0


def _outputs(nc, bs=2, img=128, dtype=torch.float64, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(bs, 3, img // int(s), img // int(s), nc + 5, generator=g, dtype=dtype) * 1.5)
            .requires_grad_(requires_grad) for s in STRIDES]


def _targets(nc, bs=2, n=14, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed + 100)
    img = torch.randint(0, bs, (n, 1), generator=g).to(dtype)
    cls = torch.randint(0, nc, (n, 1), generator=g).to(dtype)
    xy = torch.rand(n, 2, generator=g, dtype=dtype) * 0.9 + 0.05
    wh = torch.rand(n, 2, generator=g, dtype=dtype) * 0.6 + 0.02
    return torch.cat((img, cls, xy, wh), 1)


# ---------------------------------------------------------------------------------------------------------
# independent reference: plain loops over offsets / anchors / targets, scalar formulas (contract section 5)
# ---------------------------------------------------------------------------------------------------------
def _ref_assign(p, targets, anchors_grid, anchor_t):
    """Per level: list of (b, a, gj, gi, tx, ty, tw, th, aw, ah, cls) in write order (offset, anchor, target)."""
    levels = []
    for i, pi in enumerate(p):
        ny, nx = pi.shape[2], pi.shape[3]
        rows = []
        for k, (ox, oy) in enumerate([(0, 0), (0.5, 0), (0, 0.5), (-0.5, 0), (0, -0.5)]):
            for a in range(anchors_grid.shape[1]):
                aw, ah = anchors_grid[i, a].tolist()
                for img, c, x, y, w, h in targets.tolist():
                    gx, gy, gw, gh = x * nx, y * ny, w * nx, h * ny
                    if max(gw / aw, aw / gw, gh / ah, ah / gh) >= anchor_t:
                        continue
                    near = [True,
                            gx % 1 < 0.5 and gx > 1,              # left neighbour
                            gy % 1 < 0.5 and gy > 1,              # upper neighbour
                            (nx - gx) % 1 < 0.5 and nx - gx > 1,  # right neighbour
                            (ny - gy) % 1 < 0.5 and ny - gy > 1]  # lower neighbour
                    if not near[k]:
                        continue
                    gi = min(max(math.floor(gx - ox), 0), nx - 1)
                    gj = min(max(math.floor(gy - oy), 0), ny - 1)
                    rows.append((int(img), a, gj, gi, gx - gi, gy - gj, gw, gh, aw, ah, int(c)))
        levels.append(rows)
    return levels


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


def _ciou(p, t, eps=1e-7):
    """CIoU of two (x, y, w, h) boxes, written out for scalars."""
    (px, py, pw, ph), (tx, ty, tw, th) = p, t
    ix = max(0.0, min(px + pw / 2, tx + tw / 2) - max(px - pw / 2, tx - tw / 2))
    iy = max(0.0, min(py + ph / 2, ty + th / 2) - max(py - ph / 2, ty - th / 2))
    inter = ix * iy
    union = pw * ph + tw * th - inter + eps
    iou = inter / union
    cw = max(px + pw / 2, tx + tw / 2) - min(px - pw / 2, tx - tw / 2)
    ch = max(py + ph / 2, ty + th / 2) - min(py - ph / 2, ty - th / 2)
    rho2 = (px - tx) ** 2 + (py - ty) ** 2
    v = 4 / math.pi ** 2 * (math.atan(tw / th) - math.atan(pw / ph)) ** 2
    alpha = v / (v - iou + 1 + eps)
    return iou - rho2 / (cw ** 2 + ch ** 2 + eps) - alpha * v


def _bce(x, t):
    """Element-wise BCE with logits (numpy, stable form)."""
    return np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))


def _reference_loss(p, targets, hyp, nc, anchors_grid, balance=(4.0, 1.0, 0.4)):
    eps_ls = hyp.get("label_smoothing", 0.0)
    cp, cn = 1 - 0.5 * eps_ls, 0.5 * eps_ls
    lbox = lobj = lcls = 0.0
    for i, rows in enumerate(_ref_assign(p, targets, anchors_grid, hyp["anchor_t"])):
        pi = p[i].detach().numpy()
        tobj = np.zeros(pi.shape[:4])
        if rows:
            box_terms, cls_terms = [], []
            for b, a, gj, gi, tx, ty, tw, th, aw, ah, c in rows:
                out = pi[b, a, gj, gi]
                pbox = (2 * _sigmoid(out[0]) - 0.5, 2 * _sigmoid(out[1]) - 0.5,
                        (2 * _sigmoid(out[2])) ** 2 * aw, (2 * _sigmoid(out[3])) ** 2 * ah)
                ciou = _ciou(pbox, (tx, ty, tw, th))
                box_terms.append(1 - ciou)
                tobj[b, a, gj, gi] = max(ciou, 0.0)  # gr = 1; later writes win
                if nc > 1:
                    t = np.full(nc, cn)
                    t[c] = cp
                    cls_terms.extend(_bce(out[5:], t))
            lbox += sum(box_terms) / len(box_terms)
            if nc > 1:
                lcls += sum(cls_terms) / len(cls_terms)
        lobj += _bce(pi[..., 4], tobj).mean() * balance[i]
    lbox, lobj, lcls = lbox * hyp["box"], lobj * hyp["obj"], lcls * hyp["cls"]
    total = lbox + lobj + lcls
    return total * p[0].shape[0], [lbox, lobj, lcls, total]


def _positives(p, targets, anchors_grid, anchor_t):
    """(logits (n, nc), classes (n,)) of the reference-selected positives of each level."""
    out = []
    for i, rows in enumerate(_ref_assign(p, targets, anchors_grid, anchor_t)):
        if rows:
            idx = torch.tensor([r[:4] for r in rows])
            logits = p[i][idx[:, 0], idx[:, 1], idx[:, 2], idx[:, 3], 5:]
            out.append((logits, torch.tensor([r[10] for r in rows])))
    return out


# ---------------------------------------------------------------------------------------------------------
# BCE: equality with the reference
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("nc,seed", [(4, 0), (80, 1), (1, 2)])
def test_bce_matches_reference_float64(nc, seed):
    net = _Net(nc, HYP_V50)
    p, targets = _outputs(nc, seed=seed), _targets(nc, seed=seed)
    loss, items = ComputeLoss(net)(p, targets)
    ref_loss, ref_items = _reference_loss(p, targets, HYP_V50, nc, net.model[0].anchors.double())
    assert loss.shape == (1,) and items.shape == (4,)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-6, abs=1e-6)
    assert items.tolist() == pytest.approx(ref_items, rel=1e-6, abs=1e-6)
    if nc == 1:
        assert items[2].item() == 0.0  # no class loss with a single class


def test_bce_matches_reference_float32_and_empty_targets():
    nc = 3
    net = _Net(nc, HYP_V50)
    p32, t32 = _outputs(nc, dtype=torch.float32, seed=3), _targets(nc, dtype=torch.float32, seed=3)
    loss, items = ComputeLoss(net)(p32, t32)
    ref_loss, ref_items = _reference_loss([x.double() for x in p32], t32.double(), HYP_V50, nc,
                                          net.model[0].anchors.double())
    assert loss.item() == pytest.approx(ref_loss, rel=1e-5)
    assert items.tolist() == pytest.approx(ref_items, rel=1e-5)
    # no targets: only objectness (all cells are negatives)
    loss, items = ComputeLoss(net)(p32, torch.zeros((0, 6)))
    ref_loss, ref_items = _reference_loss([x.double() for x in p32], torch.zeros((0, 6)).double(), HYP_V50, nc,
                                          net.model[0].anchors.double())
    assert items[0].item() == 0 and items[2].item() == 0
    assert loss.item() == pytest.approx(ref_loss, rel=1e-5)


def test_build_targets_matches_reference_assignment():
    nc = 5
    net = _Net(nc, HYP_V50)
    p, targets = _outputs(nc, seed=4), _targets(nc, n=30, seed=4)
    tcls, tbox, indices, anch = ComputeLoss(net).build_targets(p, targets)
    ref = _ref_assign(p, targets, net.model[0].anchors.double(), HYP_V50["anchor_t"])
    for i in range(3):
        got = torch.cat((torch.stack(indices[i], 1).double(), tbox[i], anch[i], tcls[i][:, None].double()), 1)
        exp = torch.tensor(ref[i], dtype=torch.float64).view(-1, 11)
        assert len(ref[i]) > 0
        assert torch.allclose(got, exp, atol=1e-9)  # same rows in the same (offset, anchor, target) order


def test_duplicate_cell_last_write_wins():
    # two targets in the same cell with the same anchor-compatible size: objectness target = IoU of the later one
    nc = 2
    net = _Net(nc, HYP_V50)
    p = _outputs(nc, seed=5)
    targets = torch.tensor([[0, 0, 0.52, 0.52, 0.10, 0.10], [0, 1, 0.53, 0.53, 0.12, 0.11]], dtype=torch.float64)
    loss, items = ComputeLoss(net)(p, targets)
    _, ref_items = _reference_loss(p, targets, HYP_V50, nc, net.model[0].anchors.double())
    assert items.tolist() == pytest.approx(ref_items, rel=1e-6, abs=1e-6)


# ---------------------------------------------------------------------------------------------------------
# CE
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_ce_against_torch_cross_entropy_on_selected_positives(smoothing):
    nc = 6
    hyp = dict(HYP_V50, cls_loss="ce", label_smoothing=smoothing)
    net = _Net(nc, hyp)
    p, targets = _outputs(nc, seed=6), _targets(nc, seed=6)
    loss, items = ComputeLoss(net)(p, targets)
    expected = sum(F.cross_entropy(logits, cls, label_smoothing=smoothing).item() / nc
                   for logits, cls in _positives(p, targets, net.model[0].anchors.double(), hyp["anchor_t"]))
    assert items[2].item() == pytest.approx(hyp["cls"] * expected, rel=1e-9)
    # box and objectness do not depend on the class loss
    _, bce_items = ComputeLoss(_Net(nc, dict(hyp, cls_loss="bce")))(p, targets)
    assert items[:2].tolist() == pytest.approx(bce_items[:2].tolist(), rel=1e-12)


def test_ce_label_smoothing_changes_loss_as_defined():
    nc = 6
    p, targets = _outputs(nc, seed=7), _targets(nc, seed=7)
    plain = ComputeLoss(_Net(nc, dict(HYP_V50, cls_loss="ce")))(p, targets)[1][2].item()
    smooth = ComputeLoss(_Net(nc, dict(HYP_V50, cls_loss="ce", label_smoothing=0.2)))(p, targets)[1][2].item()
    assert abs(smooth - plain) > 1e-3 * plain  # the reference fork ignores --label-smoothing
    # by hand: (1 - eps) * (-log p_c) + eps / nc * sum_k (-log p_k), per positive, then / nc
    expected = 0.0
    for logits, cls in _positives(p, targets, _Net(nc, HYP_V50).model[0].anchors.double(), 4.0):
        logp = torch.log_softmax(logits, 1)
        per = 0.8 * -logp[torch.arange(len(cls)), cls] + 0.2 / nc * -logp.sum(1)
        expected += per.mean().item() / nc
    assert smooth == pytest.approx(HYP_V50["cls"] * expected, rel=1e-9)


def test_softmax_focal_hand_computed():
    # logits (2, 0, -1), true class 0: exp = 7.389056, 1, 0.367879, sum 8.756935 -> p = 0.843795
    # CE = -ln 0.843795 = 0.169846; gamma 2: (1 - 0.843795)^2 = 0.024400 -> 0.0041443; / nc (3) = 0.0013814
    # second sample: logits (0, 0, 0), class 2: p = 1/3, CE = ln 3 = 1.098612, (2/3)^2 = 0.444444 -> 0.488272,
    # / 3 = 0.162757. Mean of the two: (0.0013814 + 0.162757) / 2 = 0.082069.
    crit = SoftmaxCELoss(nc=3, gamma=2.0)
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    got = crit(logits, torch.tensor([0, 2])).item()
    assert got == pytest.approx((0.0013814 + 0.162757) / 2, abs=2e-6)
    p0 = math.exp(2) / (math.exp(2) + 1 + math.exp(-1))
    exact = ((1 - p0) ** 2 * -math.log(p0) / 3 + (2 / 3) ** 2 * math.log(3) / 3) / 2
    assert got == pytest.approx(exact, rel=1e-12)


def test_focal_gamma_both_modes_runs_and_reduces_easy_examples():
    nc = 5
    p, targets = _outputs(nc, seed=8, requires_grad=True), _targets(nc, seed=8)
    for mode in ("bce", "ce"):
        plain = ComputeLoss(_Net(nc, dict(HYP_V50, cls_loss=mode)))(p, targets)[1]
        focal_loss, focal = ComputeLoss(_Net(nc, dict(HYP_V50, cls_loss=mode, fl_gamma=1.5)))(p, targets)
        assert focal[2] < plain[2] and focal[1] < plain[1]  # focal down-weights: cls and obj both smaller
        focal_loss.backward()
        assert all(torch.isfinite(x.grad).all() for x in p)
        for x in p:
            x.grad = None


@pytest.mark.parametrize("mode", ["bce", "ce"])
def test_gradients_finite_and_reach_class_logits(mode):
    nc = 7
    net = _Net(nc, dict(HYP_V50, cls_loss=mode, label_smoothing=0.1))
    p, targets = _outputs(nc, dtype=torch.float32, seed=9, requires_grad=True), _targets(nc, dtype=torch.float32)
    loss, _ = ComputeLoss(net)(p, targets)
    loss.backward()
    for x in p:
        assert torch.isfinite(x.grad).all()
    assert sum(x.grad[..., 5:].abs().sum() for x in p) > 0


def test_ce_single_class_has_no_class_loss():
    net = _Net(1, dict(HYP_V50, cls_loss="ce"))
    p, targets = _outputs(1, seed=10), _targets(1, seed=10)
    _, items = ComputeLoss(net)(p, targets)
    assert items[2].item() == 0.0
    assert "cls_act" not in vars(net.model[0])  # the loss never changes the model (the trainer sets the head)


def test_cls_pw_with_ce_is_ignored_with_warning(caplog):
    logger = logging.getLogger("yolov5")
    logger.addHandler(caplog.handler)
    try:
        ComputeLoss(_Net(4, dict(HYP_V50, cls_loss="ce", cls_pw=0.6)))
    finally:
        logger.removeHandler(caplog.handler)
    assert "cls_pw=0.6" in caplog.text and "ignored" in caplog.text


def test_hyp_selection_errors_and_defaults():
    assert get_cls_loss({}) == "bce" and get_cls_loss({"cls_loss": "CE"}) == "ce"
    with pytest.raises(ValueError, match=r"hyp\['cls_loss'\] = 'softmax'.*bce, ce"):
        ComputeLoss(_Net(3, dict(HYP_V50, cls_loss="softmax")))
    with pytest.raises(ValueError, match=r"hyp\['box_loss'\] = 'wiou'.*ciou"):
        ComputeLoss(_Net(3, dict(HYP_V50, box_loss="wiou")))
    with pytest.raises(KeyError, match="anchor_t"):
        ComputeLoss(_Net(3, {k: v for k, v in HYP_V50.items() if k != "anchor_t"}))
    net = _Net(3, HYP_V50)
    net.hyp = None
    with pytest.raises(AttributeError, match="model.hyp"):
        ComputeLoss(net)
    assert CLS_ACTIVATION == {"bce": "sigmoid", "ce": "softmax", "grouped": "grouped"}
    with pytest.raises(ValueError, match="grouped.*class groups"):  # grouped needs the head's groups
        ComputeLoss(_Net(3, dict(HYP_V50, cls_loss="grouped")))


# ---------------------------------------------------------------------------------------------------------
# box loss choice
# ---------------------------------------------------------------------------------------------------------
def test_every_box_loss_variant():
    nc = 3
    p, targets = _outputs(nc, seed=11), _targets(nc, seed=11)
    anchors = _Net(nc, HYP_V50).model[0].anchors.double()
    levels = _ref_assign(p, targets, anchors, 4.0)
    values = {}
    for kind in BOX_LOSSES:
        net = _Net(nc, dict(HYP_V50, box_loss=kind))
        _, items = ComputeLoss(net)(p, targets)
        expected = 0.0
        for i, rows in enumerate(levels):
            idx = torch.tensor([r[:4] for r in rows])
            out = p[i][idx[:, 0], idx[:, 1], idx[:, 2], idx[:, 3]]
            an = torch.tensor([r[8:10] for r in rows], dtype=torch.float64)
            pbox = torch.cat((2 * out[:, :2].sigmoid() - 0.5, (2 * out[:, 2:4].sigmoid()) ** 2 * an), 1)
            tbox = torch.tensor([r[4:8] for r in rows], dtype=torch.float64)
            expected += (1 - bbox_iou(pbox, tbox, kind=kind)).mean().item()
        assert items[0].item() == pytest.approx(HYP_V50["box"] * expected, rel=1e-9)
        values[kind] = items[0].item()
    assert len(set(round(v, 9) for v in values.values())) == len(BOX_LOSSES)
    assert values["ciou"] == pytest.approx(_reference_loss(p, targets, HYP_V50, nc, anchors)[1][0], rel=1e-6)


# ---------------------------------------------------------------------------------------------------------
# with the real model: initial magnitudes, activation end to end
# ---------------------------------------------------------------------------------------------------------
def _real_model(nc, hyp, width=0.125):
    """yolov5s (narrowed by default to keep the test fast: the head and its bias prior are the same)."""
    import yaml
    from models.model import Model
    with open(Path(__file__).resolve().parents[1] / "models" / "yolov5s.yaml") as f:
        cfg = yaml.safe_load(f)
    model = Model(dict(cfg, width_multiple=width if width is not None else cfg["width_multiple"]), nc=nc)
    model.hyp, model.gr, model.nc = dict(hyp), 1.0, nc
    return model


@pytest.mark.parametrize("nc,width", [(2, 0.125), (20, 0.125), (80, None)])
def test_ce_and_bce_class_terms_within_3x_at_init(nc, width):
    # Real head biases (_initialize_biases). Measured BCE / CE ratios: nc 2: 2.1, 5: 1.6, 10: 1.4, 20: 1.35,
    # 40: 1.3, 80: 1.24 (the same at any width). train.py rescales cls by nc/80 in both modes, so the ratio
    # of the two class terms is what matters. nc = 80 uses the full-width yolov5s.
    torch.manual_seed(0)
    model = _real_model(nc, HYP_V50, width).train()
    with torch.no_grad():
        p = model(torch.rand(2, 3, 128, 128))
    targets = _targets(nc, n=20, dtype=torch.float32, seed=12)
    bce = ComputeLoss(model)(p, targets)[1]
    model.hyp["cls_loss"] = "ce"
    ce = ComputeLoss(model)(p, targets)[1]
    ratio = (bce[2] / ce[2]).item()
    assert 1 / 3 < ratio < 3, f"nc={nc}: BCE {bce[2].item():.4f} vs CE {ce[2].item():.4f}"
    # and the CE class term stays in the range of box / objectness (the reference fork: ~60x larger)
    assert ce[2] < 3 * max(ce[0], ce[1])


def test_activation_round_trip_save_attempt_load(tmp_path):
    from engine.checkpoint import attempt_load
    from engine.checkpoint import model_record, save_checkpoint

    x = torch.rand(1, 3, 64, 64)
    groups = [[0, 1], {"classes": [2], "parent": 0}]  # 3 = an independent class
    for mode, act in CLS_ACTIVATION.items():
        model = _real_model(4, dict(HYP_V50, cls_loss=mode))
        model.set_class_activation(act, groups if act == "grouped" else None)  # what the trainer does
        ComputeLoss(model)
        assert model.cls_act == act  # and the loss leaves it alone
        path = save_checkpoint({"epoch": 0, "model": model_record(model), "ema": None}, tmp_path / f"{mode}.pt")
        loaded = attempt_load(path, map_location="cpu")
        assert loaded.cls_act == act
        with torch.no_grad():
            decoded = loaded(x)[0]
        class_sum = decoded[0, :, 5:].sum(-1)
        if act == "softmax":
            assert torch.allclose(class_sum, torch.ones_like(class_sum), atol=1e-5)
        elif act == "grouped":  # P(0) + P(1) = 1 (one exclusive group); P(2) = P(0) * sigmoid <= P(0)
            pair = decoded[0, :, 5] + decoded[0, :, 6]
            assert torch.allclose(pair, torch.ones_like(pair), atol=1e-5)
            assert (decoded[0, :, 7] <= decoded[0, :, 5] + 1e-6).all()
            assert loaded.cls_groups == model.cls_groups
        else:
            assert not torch.allclose(class_sum, torch.ones_like(class_sum), atol=1e-2)
        # the loaded model decodes exactly like the trained one (same activation on the same weights)
        with torch.no_grad():
            assert torch.allclose(model.eval()(x)[0], decoded, atol=1e-4)


def test_upstream_style_pickle_stays_sigmoid(tmp_path):
    from engine.checkpoint import attempt_load

    model = _real_model(3, HYP_V50)
    assert "cls_act" not in model.model[-1].__dict__  # never switched: like a pickled v5.0 Detect
    torch.save({"epoch": -1, "model": model.half(), "optimizer": None}, tmp_path / "up.pt")
    assert attempt_load(tmp_path / "up.pt", map_location="cpu").cls_act == "sigmoid"


def test_single_class_softmax_model_class_column_is_one():
    model = _real_model(1, dict(HYP_V50, cls_loss="ce"))
    model.set_class_activation("softmax")
    with torch.no_grad():
        decoded = model.eval()(torch.rand(1, 3, 64, 64))[0]
    assert torch.equal(decoded[..., 5], torch.ones_like(decoded[..., 5]))


# ---------------------------------------------------------------------------------------------------------
# multi-label guard
# ---------------------------------------------------------------------------------------------------------
def test_multilabel_detection_and_warning(caplog):
    box = [0.5, 0.5, 0.2, 0.3]
    labels = [
        np.array([[0, *box], [3, *box], [1, 0.1, 0.1, 0.1, 0.1]], dtype=np.float32),  # one multi-label box
        np.array([[2, *box], [2, *box]], dtype=np.float32),                        # duplicate, same class
        np.zeros((0, 5), dtype=np.float32),
        np.array([[0, *box], [1, *box], [2, *box], [0, 0.2, 0.2, 0.1, 0.1], [4, 0.2, 0.2, 0.1, 0.1]]),  # two
        np.array([[0, 0.5, 0.5, 0.2, 0.3], [1, 0.5, 0.5, 0.2, 0.31]]),              # different boxes
    ]
    files = [f"labels/{i}.txt" for i in range(len(labels))]
    assert find_multilabel_boxes(labels, files) == {"labels/0.txt": 1, "labels/3.txt": 2}

    logger = logging.getLogger("yolov5")
    logger.addHandler(caplog.handler)
    try:
        assert warn_multilabel(labels, files, "bce") == []
        assert caplog.text == ""
        assert warn_multilabel(labels, files, "ce") == ["labels/0.txt", "labels/3.txt"]
    finally:
        logger.removeHandler(caplog.handler)
    assert "cannot learn multi-label" in caplog.text
    assert "labels/0.txt (1)" in caplog.text and "labels/3.txt (2)" in caplog.text


def test_multilabel_warning_lists_first_files_and_count(caplog):
    box = [0.5, 0.5, 0.2, 0.3]
    labels = [np.array([[0, *box], [1, *box]])] * 25
    files = [f"img{i}.txt" for i in range(25)]
    logger = logging.getLogger("yolov5")
    logger.addHandler(caplog.handler)
    try:
        assert len(warn_multilabel(labels, files, "ce")) == 25
    finally:
        logger.removeHandler(caplog.handler)
    assert "img9.txt" in caplog.text and "img10.txt" not in caplog.text and "15 more files" in caplog.text
    with pytest.raises(ValueError, match="2 label arrays for 1 files"):
        find_multilabel_boxes(labels[:2], files[:1])
