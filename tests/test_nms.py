"""utils.nms.non_max_suppression: scores, filters, options, errors, and a brute-force greedy reference."""
import pytest
import torch

from utils.nms import non_max_suppression


def _row(x, y, w, h, obj, cls_probs):
    return [x, y, w, h, obj, *cls_probs]


def _pred(rows):
    return torch.tensor([rows], dtype=torch.float32)


def _iou_xyxy(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _reference_nms(pred, conf_thres, iou_thres, agnostic, multi_label):
    """Plain-python greedy NMS of one image written from the definition (no torchvision)."""
    candidates = []
    for row in pred.tolist():
        x, y, w, h, obj, *probs = row
        if obj <= conf_thres:
            continue
        box = [x - w / 2, y - h / 2, x + w / 2, y + h / 2]
        scores = [obj * p for p in probs]
        if multi_label:
            candidates += [(box, s, c) for c, s in enumerate(scores) if s > conf_thres]
        else:
            best = max(range(len(scores)), key=lambda c: scores[c])
            if scores[best] > conf_thres:
                candidates.append((box, scores[best], best))
    candidates.sort(key=lambda d: -d[1])
    kept = []
    for box, score, c in candidates:
        if all(_iou_xyxy(box, k[0]) <= iou_thres for k in kept if agnostic or k[2] == c):
            kept.append((box, score, c))
    return kept


def test_conf_is_obj_times_class_column_no_activation():
    # probabilities are used as given: 0.5 * 0.6 = 0.3 (a sigmoid or softmax here would change the number)
    out = non_max_suppression(_pred([_row(50, 50, 20, 10, 0.5, [0.1, 0.6, 0.3])]), conf_thres=0.25)[0]
    assert out.shape == (1, 6)
    assert out[0, :4].tolist() == [40, 45, 60, 55]
    assert out[0, 4].item() == pytest.approx(0.3)
    assert out[0, 5].item() == 1


def test_overlap_same_class_suppressed_other_class_kept_and_agnostic():
    rows = [_row(50, 50, 20, 20, 0.9, [0.9, 0.1]),
            _row(52, 50, 20, 20, 0.8, [0.9, 0.1]),   # same class, IoU ~0.82 -> suppressed
            _row(51, 50, 20, 20, 0.7, [0.1, 0.9])]   # other class -> kept unless agnostic
    out = non_max_suppression(_pred(rows), 0.25, 0.45)[0]
    assert out[:, 5].tolist() == [0, 1]
    assert out[:, 4].tolist() == pytest.approx([0.81, 0.63])
    out = non_max_suppression(_pred(rows), 0.25, 0.45, agnostic=True)[0]
    assert out[:, 5].tolist() == [0]


def test_classes_filter_multi_label_and_max_det():
    rows = [_row(50, 50, 20, 20, 0.9, [0.6, 0.5, 0.0]), _row(150, 150, 20, 20, 0.9, [0.0, 0.1, 0.9])]
    out = non_max_suppression(_pred(rows), 0.25, 0.45, multi_label=True)[0]
    assert sorted(out[:, 5].tolist()) == [0, 1, 2]  # box 1 yields two rows (0.54 and 0.45)
    out = non_max_suppression(_pred(rows), 0.25, 0.45, classes=[2])[0]
    assert out[:, 5].tolist() == [2]
    out = non_max_suppression(_pred(rows), 0.25, 0.45, max_det=1)[0]
    assert out.shape[0] == 1 and out[0, 4].item() == pytest.approx(0.81)


def test_single_class_both_activations():
    # nc == 1: a softmax head's class column is exactly 1 -> conf = obj; a sigmoid head's column scales it
    softmax_out = non_max_suppression(_pred([_row(50, 50, 20, 20, 0.7, [1.0])]), 0.25, 0.45, multi_label=True)[0]
    assert softmax_out[0, 4].item() == pytest.approx(0.7) and softmax_out[0, 5].item() == 0
    sigmoid_out = non_max_suppression(_pred([_row(50, 50, 20, 20, 0.7, [0.98])]), 0.25, 0.45)[0]
    assert sigmoid_out[0, 4].item() == pytest.approx(0.686)


def test_tuple_input_batch_and_empty():
    pred = torch.zeros((2, 10, 7))
    pred[1, 0] = torch.tensor(_row(50, 50, 10, 10, 0.9, [0.9, 0.1]))
    out = non_max_suppression((pred, [torch.zeros(1)]), 0.25, 0.45)
    assert len(out) == 2 and out[0].shape == (0, 6) and out[1].shape == (1, 6)


def test_autolabels_appended():
    pred = torch.zeros((1, 5, 8))  # nc = 3, nothing above threshold
    labels = [torch.tensor([[2.0, 100.0, 100.0, 40.0, 20.0]])]
    out = non_max_suppression(pred, 0.25, 0.45, labels=labels)[0]
    assert out.tolist() == [[80.0, 90.0, 120.0, 110.0, 1.0, 2.0]]


def test_threshold_validation():
    pred = torch.zeros((1, 3, 7))
    with pytest.raises(ValueError, match="conf_thres=1.5"):
        non_max_suppression(pred, conf_thres=1.5)
    with pytest.raises(ValueError, match="iou_thres=-0.1"):
        non_max_suppression(pred, iou_thres=-0.1)
    with pytest.raises(ValueError, match=r"\(bs, N, 5 \+ nc\)"):
        non_max_suppression(torch.zeros((3, 7)))


def test_large_coordinates_classes_stay_separate():
    # boxes far beyond 4096 px: identical boxes of two classes must both survive class-aware NMS
    rows = [_row(9000, 9000, 100, 100, 0.9, [0.9, 0.0]), _row(9000, 9000, 100, 100, 0.9, [0.0, 0.8])]
    out = non_max_suppression(_pred(rows), 0.25, 0.45)[0]
    assert sorted(out[:, 5].tolist()) == [0, 1]


@pytest.mark.parametrize("agnostic,multi_label", [(False, False), (True, False), (False, True)])
def test_matches_brute_force_reference(agnostic, multi_label):
    g = torch.Generator().manual_seed(3)
    n, nc = 300, 4
    xy = torch.rand(n, 2, generator=g) * 200
    wh = torch.rand(n, 2, generator=g) * 60 + 5
    obj = torch.rand(n, 1, generator=g)
    probs = torch.rand(n, nc, generator=g).softmax(1)
    pred = torch.cat((xy, wh, obj, probs), 1).double()
    out = non_max_suppression(pred[None], 0.05, 0.5, agnostic=agnostic, multi_label=multi_label, max_det=1000)[0]
    ref = _reference_nms(pred, 0.05, 0.5, agnostic, multi_label)
    assert out.shape[0] == len(ref) > 10
    got = sorted((round(r[4], 9), int(r[5]), tuple(round(v, 6) for v in r[:4])) for r in out.tolist())
    exp = sorted((round(s, 9), c, tuple(round(v, 6) for v in b)) for b, s, c in ref)
    assert got == exp
    assert (out[1:, 4] <= out[:-1, 4]).all()  # sorted by decreasing confidence
