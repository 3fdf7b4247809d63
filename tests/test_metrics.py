"""utils.metrics: IoU variants against hand-computed values, AP / confusion matrix / fitness on small cases."""
import math

import numpy as np
import pytest
import torch

from utils.boxes import xyxy2xywh
from utils.metrics import (IOU_KINDS, ConfusionMatrix, ap_per_class, bbox_ioa, bbox_iou, box_iou, compute_ap,
                           fitness)

# ---------------------------------------------------------------------------------------------------------
# Hand-computed cases (xyxy). For each pair: intersection I, union U, enclosing box cw x ch, centre offset
# (dx, dy), sizes; the expected value of every kind is written out from those numbers.
# ---------------------------------------------------------------------------------------------------------
# A: (0,0,2,2) vs (1,1,3,3). I = 1, U = 4 + 4 - 1 = 7, IoU = 1/7. Enclosing (0,0,3,3): C = 9, c2 = 18.
#    Centres (1,1), (2,2): dx = dy = 1, rho2 = 2. Same sizes -> v = 0, no w/h penalty, shape cost 0.
#    SIoU: Lambda = 2*1*1/2 = 1 -> gamma = 1; rho_x = rho_y = (1/3)^2 = 1/9 -> Delta = 2 (1 - e^(-1/9)).
CASE_A = ((0., 0., 2., 2.), (1., 1., 3., 3.), {
    "iou": 1 / 7,
    "giou": 1 / 7 - (9 - 7) / 9,
    "diou": 1 / 7 - 2 / 18,
    "ciou": 1 / 7 - 2 / 18,
    "eiou": 1 / 7 - 2 / 18,
    "siou": 1 / 7 - 0.5 * (2 * (1 - math.exp(-1 / 9))),
})
# B: (0,0,2,2) vs (0,0,2,4). I = 4, U = 4 + 8 - 4 = 8, IoU = 0.5. Enclosing = box 2: C = 8 = U, c2 = 4 + 16 = 20.
#    Centres (1,1), (1,2): dx = 0, dy = 1, rho2 = 1. Sizes 2x2 and 2x4.
#    CIoU: v = 4/pi^2 (atan(2/4) - atan(2/2))^2 = 0.405285 * (0.463648 - 0.785398)^2 = 0.041956,
#          alpha = v / (1 - 0.5 + v) = 0.077416 -> penalty 0.003248.
#    EIoU: 1/20 + (2-2)^2/2^2 + (2-4)^2/4^2 = 0.05 + 0 + 0.25.
#    SIoU: Lambda = 0 (dx = 0) -> gamma = 2; rho_x = 0, rho_y = (1/4)^2 -> Delta = 1 - e^(-2/16) = 0.117503;
#          omega_w = 0, omega_h = 2/4 -> Omega = (1 - e^(-0.5))^4 = 0.393469^4 = 0.023969.
_V_B = 4 / math.pi ** 2 * (math.atan(2 / 4) - math.atan(2 / 2)) ** 2
CASE_B = ((0., 0., 2., 2.), (0., 0., 2., 4.), {
    "iou": 0.5,
    "giou": 0.5,
    "diou": 0.5 - 1 / 20,
    "ciou": 0.5 - 1 / 20 - _V_B * _V_B / (1 - 0.5 + _V_B),
    "eiou": 0.5 - 1 / 20 - 0.0 - 4 / 16,
    "siou": 0.5 - 0.5 * ((1 - math.exp(-2 / 16)) + (1 - math.exp(-0.5)) ** 4),
})
# C: disjoint (0,0,1,1) vs (2,0,3,1). I = 0, U = 2, IoU = 0. Enclosing (0,0,3,1): C = 3, c2 = 9 + 1 = 10.
#    Centres (0.5,0.5), (2.5,0.5): dx = 2, dy = 0, rho2 = 4. Same sizes.
#    SIoU: Lambda = 0 -> gamma = 2; rho_x = (2/3)^2 -> Delta = 1 - e^(-8/9) = 0.588888.
CASE_C = ((0., 0., 1., 1.), (2., 0., 3., 1.), {
    "iou": 0.0,
    "giou": 0.0 - (3 - 2) / 3,
    "diou": -4 / 10,
    "ciou": -4 / 10,
    "eiou": -4 / 10,
    "siou": -0.5 * (1 - math.exp(-8 / 9)),
})
HAND_CASES = [CASE_A, CASE_B, CASE_C]


def test_hand_numbers_spelled_out():
    # the decimal values quoted in the comments above, so a typo in an expression cannot hide
    assert CASE_B[2]["ciou"] == pytest.approx(0.45 - 0.003248, abs=1e-6)
    assert CASE_B[2]["siou"] == pytest.approx(0.5 - (0.117503 + 0.023969) / 2, abs=1e-6)
    assert CASE_A[2]["siou"] == pytest.approx(1 / 7 - 0.105161, abs=1e-6)
    assert CASE_C[2]["siou"] == pytest.approx(-0.294444, abs=1e-6)


@pytest.mark.parametrize("kind", IOU_KINDS)
@pytest.mark.parametrize("case", range(len(HAND_CASES)))
def test_bbox_iou_hand_cases(kind, case):
    b1, b2, expected = HAND_CASES[case]
    b1, b2 = torch.tensor(b1, dtype=torch.float64), torch.tensor(b2, dtype=torch.float64)
    got_xyxy = bbox_iou(b1, b2, xywh=False, kind=kind)
    got_xywh = bbox_iou(xyxy2xywh(b1), xyxy2xywh(b2), xywh=True, kind=kind)
    assert float(got_xyxy) == pytest.approx(expected[kind], abs=1e-6)
    assert float(got_xywh) == pytest.approx(expected[kind], abs=1e-6)


@pytest.mark.parametrize("kind", IOU_KINDS)
def test_bbox_iou_identical_boxes_is_one_and_symmetric(kind):
    torch.manual_seed(1)
    xy = torch.rand(50, 2) * 10
    wh = torch.rand(50, 2) * 5 + 0.1
    a = torch.cat((xy, wh), 1)
    assert torch.allclose(bbox_iou(a, a, kind=kind), torch.ones(50), atol=1e-5)
    b = torch.cat((xy + torch.randn(50, 2), wh * (0.5 + torch.rand(50, 2))), 1)
    assert torch.allclose(bbox_iou(a, b, kind=kind), bbox_iou(b, a, kind=kind), atol=1e-6)
    values = bbox_iou(a, b, kind=kind)
    assert (values <= 1 + 1e-6).all() and (values >= -1.5).all()


@pytest.mark.parametrize("kind", IOU_KINDS)
def test_bbox_iou_gradients_finite(kind):
    # includes identical centres (SIoU angle 0/0) and a zero-size prediction
    p = torch.tensor([[5.0, 5.0, 2.0, 3.0], [1.0, 1.0, 0.0, 0.0], [4.0, 4.0, 1.0, 1.0]], requires_grad=True)
    t = torch.tensor([[5.0, 5.0, 4.0, 1.0], [2.0, 2.0, 1.0, 1.0], [8.0, 9.0, 2.0, 2.0]])
    (1 - bbox_iou(p, t, kind=kind)).sum().backward()
    assert torch.isfinite(p.grad).all()


def test_bbox_iou_broadcasting():
    one = torch.tensor([1.0, 1.0, 2.0, 2.0])
    many = torch.tensor([[1.0, 1.0, 2.0, 2.0], [2.0, 1.0, 2.0, 2.0], [9.0, 9.0, 1.0, 1.0]])
    out = bbox_iou(one, many)
    assert out.shape == (3,)
    assert torch.allclose(out, torch.tensor([1.0, 1 / 3, 0.0]), atol=1e-6)  # shift by half a width: 2/6
    grid = bbox_iou(many[:, None], many[None], kind="giou")
    assert grid.shape == (3, 3)
    assert torch.allclose(grid.diagonal(), torch.ones(3), atol=1e-6)


def test_bbox_iou_upstream_flags_and_v5_layout():
    torch.manual_seed(2)
    p = torch.cat((torch.rand(20, 2) * 8, torch.rand(20, 2) * 3 + 0.2), 1)
    t = torch.cat((torch.rand(20, 2) * 8, torch.rand(20, 2) * 3 + 0.2), 1)
    for flag, kind in (("GIoU", "giou"), ("DIoU", "diou"), ("CIoU", "ciou")):
        new = bbox_iou(p, t, kind=kind)
        assert torch.equal(bbox_iou(p, t, **{flag: True}), new)
        # v5.0: bbox_iou(pbox.T, tbox, x1y1x2y2=False, CIoU=True), box 1 coordinate-first
        assert torch.allclose(bbox_iou(p.T, t, x1y1x2y2=False, **{flag: True}), new)
    p_xyxy, t_xyxy = torch.cat((p[:, :2] - p[:, 2:] / 2, p[:, :2] + p[:, 2:] / 2), 1), \
        torch.cat((t[:, :2] - t[:, 2:] / 2, t[:, :2] + t[:, 2:] / 2), 1)
    assert torch.allclose(bbox_iou(p_xyxy[0], t_xyxy, x1y1x2y2=True), bbox_iou(p[0], t), atol=1e-6)


def test_bbox_iou_bad_arguments():
    a = torch.zeros(4)
    with pytest.raises(ValueError, match="unknown kind 'wiou'"):
        bbox_iou(a, a, kind="wiou")
    with pytest.raises(ValueError, match="choose one"):
        bbox_iou(a, a, GIoU=True, CIoU=True)
    with pytest.raises(ValueError, match="4 coordinates"):
        bbox_iou(torch.zeros(5), a)


def test_box_iou_pairwise():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    expected = torch.tensor([[1 / 7, 1.0, 0.0],
                             [0.0, 1 / 4, 0.0]])  # (0,0,1,1) vs (1,1,3,3) touch at a corner only
    assert torch.allclose(box_iou(a, b), expected, atol=1e-6)


def test_bbox_ioa():
    out = bbox_ioa(np.array([0.0, 0.0, 2.0, 2.0]), np.array([[1.0, 1.0, 3.0, 3.0], [0.5, 0.5, 1.0, 1.0]]))
    assert np.allclose(out, [1 / 4, 1.0], atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# AP
# ---------------------------------------------------------------------------------------------------------
def test_compute_ap_perfect():
    assert compute_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0]))[0] == pytest.approx(1.0)


def test_compute_ap_hand_case():
    # 3 labels; predictions TP, FP, TP: recall 1/3, 1/3, 2/3, precision 1, 1/2, 2/3.
    # Padded: recall [0, 1/3, 1/3, 2/3, 2/3 + 0.01], envelope precision [1, 1, 2/3, 2/3, 0].
    # Samples at x = k/100: k = 0..33 -> 1, k = 34..66 -> 2/3, k = 67 (x = 0.67, one third of the way down the
    # last segment) -> 2/3 * 2/3 = 4/9, k >= 68 -> 0. Trapezoid (h = 0.01):
    # 0.01 * (1/2 + 33 * 1 + 33 * 2/3 + 4/9) = 0.559444.
    ap, mpre, mrec = compute_ap(np.array([1 / 3, 1 / 3, 2 / 3]), np.array([1.0, 0.5, 2 / 3]))
    assert ap == pytest.approx(0.01 * (0.5 + 33 + 22 + 4 / 9), abs=1e-9)
    assert np.allclose(mpre, [1, 1, 2 / 3, 2 / 3, 0])
    assert np.allclose(mrec, [0, 1 / 3, 1 / 3, 2 / 3, 2 / 3 + 0.01])


def test_ap_per_class(tmp_path):
    # class 0: 2 labels, predictions conf .9 TP, .8 TP -> AP 1.
    # class 1: 3 labels, predictions conf .7 TP, .6 FP: recall [1/3, 1/3], precision [1, 1/2];
    #   padded recall [0, 1/3, 1/3, 0.343333], envelope [1, 1, 1/2, 0]: samples k = 0..33 -> 1,
    #   k = 34 -> 1/2 * (1 - 2/3) = 1/6, then 0 -> AP = 0.01 * (1/2 + 33 + 1/6) = 0.336667.
    # Second IoU threshold: the class-0 second prediction is no longer a TP.
    tp = np.array([[1, 1], [1, 0], [1, 1], [0, 0]], dtype=bool)
    conf = np.array([0.9, 0.8, 0.7, 0.6])
    pred_cls = np.array([0, 0, 1, 1])
    target_cls = np.array([0, 0, 1, 1, 1])
    order = np.array([2, 0, 3, 1])  # unsorted input must not matter
    p, r, ap, f1, classes = ap_per_class(tp[order], conf[order], pred_cls[order], target_cls, plot=True,
                                         save_dir=tmp_path, names=["cat", "dog"])
    assert classes.tolist() == [0, 1]
    assert ap[0, 0] == pytest.approx(1.0)
    assert ap[1, 0] == pytest.approx(0.01 * (0.5 + 33 + 1 / 6), abs=1e-9)
    assert ap[1, 1] == pytest.approx(ap[1, 0])
    assert ap[0, 1] < 1.0
    # best mean F1 just below conf 0.7: class 0 P = R = 1, class 1 P ~ 1, R = 1/3
    assert p == pytest.approx([1.0, 1.0], abs=5e-3)
    assert r == pytest.approx([1.0, 1 / 3], abs=1e-6)
    assert f1 == pytest.approx([1.0, 0.5], abs=5e-3)
    for name in ("PR_curve.png", "F1_curve.png", "P_curve.png", "R_curve.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_ap_per_class_class_without_predictions():
    p, r, ap, f1, classes = ap_per_class(np.array([[1.0]]), np.array([0.5]), np.array([0]), np.array([0, 3]))
    assert classes.tolist() == [0, 3]
    assert ap[:, 0].tolist() == pytest.approx([1.0, 0.0])
    assert r[1] == 0.0


def test_fitness():
    x = np.array([[0.9, 0.8, 0.5, 0.3, 1.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0, 0, 0, 0]])
    assert fitness(x) == pytest.approx([0.1 * 0.5 + 0.9 * 0.3, 0.1])


def test_confusion_matrix(tmp_path):
    cm = ConfusionMatrix(nc=2)
    labels = torch.tensor([[0, 0, 0, 10, 10], [1, 20, 20, 30, 30], [1, 50, 50, 60, 60]], dtype=torch.float32)
    detections = torch.tensor([
        [0, 0, 10, 10, 0.9, 0],      # matches label 0, right class
        [20, 20, 30, 31, 0.8, 0],    # matches label 1 but predicts class 0
        [21, 21, 30, 30, 0.7, 1],    # also overlaps label 1, lower IoU -> unmatched -> background FP
        [80, 80, 90, 90, 0.6, 1],    # nothing there -> background FP
        [50, 50, 60, 60, 0.1, 1],    # below conf 0.25: ignored, so label 2 is a background FN
    ])
    cm.process_batch(detections, labels)
    expected = np.zeros((3, 3))
    expected[0, 0] = 1  # predicted 0, true 0
    expected[0, 1] = 1  # predicted 0, true 1
    expected[1, 2] = 2  # predicted 1, background
    expected[2, 1] = 1  # missed label of class 1
    assert np.array_equal(cm.matrix, expected)
    tp, fp = cm.tp_fp()
    assert tp.tolist() == [1, 0] and fp.tolist() == [1, 2]
    cm.process_batch(None, labels[:1])
    assert cm.matrix[2, 0] == 1
    path = cm.plot(tmp_path, names=["a", "b"])
    assert path.name == "confusion_matrix.png" and path.stat().st_size > 1000
    path.unlink()
    assert cm.plot(save_dir=tmp_path, names=(), normalize=False).stat().st_size > 1000
    assert not np.isnan(cm.matrix).any()  # plotting does not touch the counts
