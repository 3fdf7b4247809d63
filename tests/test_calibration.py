"""utils.calibration: ECE / MCE against hand-computed values, class-agnostic matching against a brute-force
reference, the wrong-class rate on a hand-made multi-image case, JSON summary and the reliability plot."""
import json

import numpy as np
import pytest
import torch

from utils.calibration import (CalibrationStats, class_agnostic_matches, expected_calibration_error,
                               reliability_bins)


# ---------------------------------------------------------------------------------------------------------
# reliability bins, ECE, MCE
# ---------------------------------------------------------------------------------------------------------
def test_perfectly_calibrated_has_zero_ece():
    # bin [0.2, 0.3): 4 x 0.25, 1 correct -> acc 0.25; bin [0.5, 0.6): 2 x 0.5, 1 correct -> 0.5;
    # bin [0.7, 0.8): 4 x 0.75, 3 correct -> 0.75. Every gap is 0 (all values exact in binary).
    conf = [0.25] * 4 + [0.5] * 2 + [0.75] * 4
    correct = [1, 0, 0, 0] + [1, 0] + [1, 1, 1, 0]
    bins = reliability_bins(conf, correct)
    assert bins.counts.tolist() == [0, 0, 4, 0, 0, 2, 0, 4, 0, 0]
    assert bins.ece == 0.0 and bins.mce == 0.0
    assert np.isnan(bins.accuracy[0]) and np.isnan(bins.mean_conf[0])  # empty bins


def test_over_confident_ece():
    # bin [0.9, 1.0): 0.95 x 4, 2 correct -> acc 0.5, gap |0.5 - 0.95| = 0.45
    # bin [0.6, 0.7): 0.62, 0.68 -> mean 0.65, none correct -> gap 0.65
    # ECE = 4/6 * 0.45 + 2/6 * 0.65 = 0.3 + 0.216667 = 0.516667; MCE = 0.65
    conf = torch.tensor([0.95, 0.95, 0.95, 0.95, 0.62, 0.68], dtype=torch.float64)
    correct = torch.tensor([True, True, False, False, False, False])
    bins = reliability_bins(conf, correct)
    assert bins.ece == pytest.approx(3.1 / 6)
    assert bins.mce == pytest.approx(0.65)
    assert expected_calibration_error(conf, correct) == pytest.approx(3.1 / 6)
    full = bins.counts > 0
    assert (bins.accuracy[full] < bins.mean_conf[full]).all()  # over-confidence: bars below the diagonal
    assert bins.mean_conf[6] == pytest.approx(0.65) and bins.accuracy[9] == 0.5


def test_under_confident_ece():
    # bin [0.3, 0.4): 0.32, 0.34, 0.36, 0.38 -> mean 0.35, all correct -> gap 0.65
    # bin [0.5, 0.6): 0.55 x 2, both correct -> gap 0.45
    # ECE = 4/6 * 0.65 + 2/6 * 0.45 = 0.433333 + 0.15 = 0.583333; MCE = 0.65
    conf = np.array([0.32, 0.34, 0.36, 0.38, 0.55, 0.55])
    bins = reliability_bins(conf, np.ones(6, bool))
    assert bins.ece == pytest.approx(3.5 / 6)
    assert bins.mce == pytest.approx(0.65)
    full = bins.counts > 0
    assert (bins.accuracy[full] > bins.mean_conf[full]).all()


def test_equal_count_bins():
    # sorted: 0.1 (F) 0.2 (F) | 0.3 (T) 0.4 (T) | 0.8 (T) 0.9 (F), 3 bins of 2
    # gaps: |0 - 0.15| = 0.15, |1 - 0.35| = 0.65, |0.5 - 0.85| = 0.35 -> ECE = 1.15 / 3, MCE = 0.65
    # edges: lowest conf, halfway between runs (0.25, 0.6), highest conf
    conf = [0.9, 0.1, 0.4, 0.8, 0.3, 0.2]
    correct = [0, 0, 1, 1, 1, 0]
    bins = reliability_bins(conf, correct, n_bins=3, strategy="count")
    assert bins.counts.tolist() == [2, 2, 2]
    assert bins.edges == pytest.approx([0.1, 0.25, 0.6, 0.9])
    assert bins.ece == pytest.approx(1.15 / 3)
    assert bins.mce == pytest.approx(0.65)
    # the same data in 3 equal-width bins: [0, 1/3) holds 0.1 0.2 0.3 (mean 0.2, acc 1/3), [1/3, 2/3) holds 0.4
    # (acc 1, gap 0.6), [2/3, 1] holds 0.8 0.9 (gap 0.35): ECE = 3/6 * 2/15 + 1/6 * 0.6 + 2/6 * 0.35 = 0.283333
    assert expected_calibration_error(conf, correct, n_bins=3) == pytest.approx(1 / 15 + 0.1 + 0.7 / 6)
    # 7 values in 3 bins: runs start at sorted positions 7 // 3 = 2 and 14 // 3 = 4 -> sizes 2, 2, 3;
    # fewer values than bins: one bin per value
    assert reliability_bins(np.linspace(0.3, 0.9, 7), np.ones(7), 3, "count").counts.tolist() == [2, 2, 3]
    assert reliability_bins([0.4, 0.6], [1, 0], 10, "count").counts.tolist() == [1, 1]


def test_equal_count_bins_keep_ties_together():
    # 3 runs of 2 would start at sorted positions 2 (0.5) and 4 (0.9): the cut at 0.5 is the lowest value and
    # is dropped, so the four 0.5s share bin 0 and the 0.9s form bin 1; edges min, (0.5 + 0.9) / 2, max
    bins = reliability_bins([0.9, 0.5, 0.5, 0.9, 0.5, 0.5], [1, 0, 1, 1, 1, 1], n_bins=3, strategy="count")
    assert bins.counts.tolist() == [4, 2]
    assert bins.edges == pytest.approx([0.5, 0.7, 0.9])
    # gaps |0.75 - 0.5| = 0.25 and |1 - 0.9| = 0.1 -> ECE = 4/6 * 0.25 + 2/6 * 0.1 = 0.2
    assert bins.ece == pytest.approx(0.2)
    same = reliability_bins([0.7] * 5, [1, 1, 0, 0, 0], n_bins=10, strategy="count")
    assert same.counts.tolist() == [5] and same.ece == pytest.approx(0.3)


def test_bin_edges_are_left_closed():
    bins = reliability_bins([0.0, 0.3, 0.7, 1.0], [1, 1, 1, 1])
    assert bins.edges[3] == 0.3  # k / B, not linspace's 0.30000000000000004
    assert bins.counts.tolist() == [1, 0, 0, 1, 0, 0, 0, 1, 0, 1]  # 0.3 opens bin 3, 1.0 is in the last bin
    assert reliability_bins([1 / 49], [1], n_bins=49).counts[1] == 1  # floor(conf * B) would give bin 0


def test_empty_and_invalid_inputs():
    for strategy in ("width", "count"):
        bins = reliability_bins([], [], strategy=strategy)
        assert bins.n == 0 and len(bins.counts) == 10
        assert np.isnan(bins.ece) and np.isnan(bins.mce)
    with pytest.raises(ValueError, match="strategy"):
        reliability_bins([0.5], [1], strategy="quantile")
    with pytest.raises(ValueError, match="n_bins"):
        reliability_bins([0.5], [1], n_bins=0)
    with pytest.raises(ValueError, match="equal length"):
        reliability_bins([0.5, 0.6], [1])


# ---------------------------------------------------------------------------------------------------------
# class-agnostic matching
# ---------------------------------------------------------------------------------------------------------
def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _reference_pairs(det: np.ndarray, lab: np.ndarray, thr: float) -> list:
    """Plain-Python greedy: (det index, label index) pairs in matching order."""
    free = list(range(len(lab)))
    pairs = []
    for d in sorted(range(len(det)), key=lambda i: -det[i, 4]):  # stable: ties keep input order
        best, best_iou = None, -1.0
        for j in free:
            v = _iou(det[d, :4], lab[j, 1:])
            if v > best_iou:
                best, best_iou = j, v
        if best is not None and best_iou >= thr:
            free.remove(best)
            pairs.append((d, best))
    return pairs


def _random_image(rng: np.random.Generator):
    m, n = rng.integers(0, 6), rng.integers(0, 9)
    xy = rng.uniform(0, 20, (m, 2))
    lab = np.concatenate((np.arange(m)[:, None], xy, xy + rng.uniform(2, 8, (m, 2))), 1)  # class = index
    det = np.zeros((n, 6))
    for i in range(n):
        if m and rng.random() < 0.7:  # a jittered copy of a label: overlaps, duplicates, near misses
            det[i, :4] = lab[rng.integers(m), 1:] + rng.uniform(-1, 1, 4)
        else:
            x, y = rng.uniform(0, 20, 2)
            det[i, :4] = x, y, x + rng.uniform(2, 8), y + rng.uniform(2, 8)
    det[:, 4] = rng.choice([0.3, 0.5, 0.7, 0.9], n)  # few values: confidence ties are common
    det[:, 5] = 100 + np.arange(n)  # class = 100 + index, so the returned classes identify the pairs
    return det, lab


def test_class_agnostic_matching_matches_brute_force():
    rng = np.random.default_rng(0)
    n_pairs = 0
    for case in range(300):
        det, lab = _random_image(rng)
        thr = (0.5, 0.3)[case % 2]
        to = torch.from_numpy if case % 3 == 0 else np.asarray  # tensors and arrays
        pred_cls, true_cls = class_agnostic_matches(to(det), to(lab), iou_thres=thr)
        got = list(zip((pred_cls - 100).tolist(), true_cls.tolist()))
        assert got == _reference_pairs(det, lab, thr), f"case {case}"
        n_pairs += len(got)
    assert n_pairs > 200  # the cases really exercise matching


def test_matching_rules_on_hand_made_image():
    labels = torch.tensor([[0., 0, 0, 10, 10], [1, 5, 0, 15, 10]])
    # det 0 (conf 0.9): IoU 80/120 = 0.667 with label 0, 70/130 = 0.538 with label 1 -> best IoU: label 0
    # det 1 (conf 0.8): label 0 is taken; IoU 80/120 with label 1 -> label 1
    # det 2 (conf 0.95, exact copy of label 1): most confident, so it takes label 1 first and det 1 falls back
    dets = torch.tensor([[2., 0, 12, 10, 0.9, 7], [3, 0, 13, 10, 0.8, 8]])
    assert [x.tolist() for x in class_agnostic_matches(dets, labels)] == [[7, 8], [0, 1]]
    dets = torch.cat((dets, torch.tensor([[5., 0, 15, 10, 0.95, 9]])))
    # det 2 -> label 1, det 0 -> label 0, det 1: both taken -> unmatched
    assert [x.tolist() for x in class_agnostic_matches(dets, labels)] == [[9, 7], [1, 0]]
    assert [len(x) for x in class_agnostic_matches(torch.zeros(0, 6), labels)] == [0, 0]
    assert [len(x) for x in class_agnostic_matches(dets, None)] == [0, 0]
    with pytest.raises(ValueError, match="detections must be"):
        class_agnostic_matches(torch.zeros(2, 4), labels)


# ---------------------------------------------------------------------------------------------------------
# accumulator: wrong-class rate, min_conf, summary, report, plot
# ---------------------------------------------------------------------------------------------------------
def _flags(*tp):
    """(n, 10) TP flags whose column 0 is ``tp``; the other columns disagree, so only column 0 may be used."""
    col0 = torch.tensor(tp, dtype=torch.bool).reshape(-1, 1)
    return torch.cat((col0, ~col0.expand(-1, 9)), 1)


def _t(rows, width):
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, width)


def _hand_made_run(stats: CalibrationStats) -> CalibrationStats:
    # image 1: labels cat(0), dog(1), bird(2)
    stats.update(_t([[0, 0, 10, 10, .9, 0],      # on the cat, right class
                     [20, 0, 30, 10, .8, 2],     # on the dog, called bird: wrong class
                     [60, 60, 70, 70, .7, 0],    # on nothing: unmatched, not part of the rate
                     [0, 0, 10, 9, .6, 1]], 6),  # duplicate on the cat (IoU 0.9), less confident: unmatched
                 _t([[0, 0, 0, 10, 10], [1, 20, 0, 30, 10], [2, 40, 0, 50, 10]], 5),  # bird: no detection
                 _flags(1, 0, 0, 0))
    # image 2: one dog. The more confident detection wins it although the other overlaps better (IoU 1.0 vs 0.8);
    # the third is below min_conf and is ignored altogether
    stats.update(_t([[0, 0, 10, 8, .5, 1], [0, 0, 10, 10, .4, 0], [0, 0, 10, 10, .1, 2]], 6),
                 _t([[1, 0, 0, 10, 10]], 5), _flags(1, 0, 0))
    stats.update(_t([[0, 0, 5, 5, .9, 1]], 6), None, _flags(0))  # image 3: no labels
    stats.update(None, _t([[2, 0, 0, 10, 10]], 5), None)  # image 4: a bird, no detections
    # image 5: each detection takes its best-IoU free label (see test_matching_rules_on_hand_made_image)
    stats.update(_t([[2, 0, 12, 10, .9, 0], [3, 0, 13, 10, .8, 1]], 6), _t([[0, 0, 0, 10, 10], [1, 5, 0, 15, 10]], 5),
                 _flags(1, 1))
    # image 6: two cats, both called dog
    stats.update(_t([[0, 0, 10, 10, .7, 1], [20, 20, 30, 30, .7, 1]], 6),
                 _t([[0, 0, 0, 10, 10], [0, 20, 20, 30, 30]], 5), _flags(0, 0))
    return stats


def test_wrong_class_rate_on_hand_made_images():
    # matched (true -> pred): img1 cat->cat, dog->bird; img2 dog->dog; img5 cat->cat, dog->dog; img6 2x cat->dog
    # -> 7 matched, 3 wrong. Matched per true class: cat 4 (2 wrong), dog 3 (1 wrong), bird 0 (2 labels).
    stats = _hand_made_run(CalibrationStats())
    pred, true = stats.matches()
    assert sorted(zip(true.tolist(), pred.tolist())) == [(0, 0), (0, 0), (0, 1), (0, 1), (1, 1), (1, 1), (1, 2)]
    assert stats.wrong_class_rate() == pytest.approx(3 / 7)
    names = ["cat", "dog", "bird"]
    assert stats.confused_pairs(names) == [
        {"true": 0, "pred": 1, "true_name": "cat", "pred_name": "dog", "count": 2, "share": pytest.approx(2 / 4)},
        {"true": 1, "pred": 2, "true_name": "dog", "pred_name": "bird", "count": 1, "share": pytest.approx(1 / 3)}]
    assert stats.per_class(names) == [
        {"class": 0, "name": "cat", "labels": 4, "matched": 4, "wrong": 2, "wrong_rate": pytest.approx(0.5)},
        {"class": 1, "name": "dog", "labels": 3, "matched": 3, "wrong": 1, "wrong_rate": pytest.approx(1 / 3)},
        {"class": 2, "name": "bird", "labels": 2, "matched": 0, "wrong": 0, "wrong_rate": None}]
    s = stats.summary(names)
    # detections >= 0.25: 4 + 2 + 1 + 0 + 2 + 2 = 11, of which correct (column 0): 1 + 1 + 0 + 2 + 0 = 4
    assert (s["detections"], s["images"], s["labels"], s["matched"], s["wrong_class"]) == (11, 6, 9, 7, 3)
    assert s["accuracy"] == pytest.approx(4 / 11)
    assert s["wrong_class_rate"] == pytest.approx(3 / 7)


def test_min_conf_filter():
    # kept with min_conf 0.5: 0.5 (wrong) -> bin 5 gap 0.5, 0.9 (right) -> bin 9 gap 0.1: ECE = 0.5 * 0.5 + 0.5 * 0.1
    # all four (min_conf 0): gaps 0.7 (0.3 right), 0.51 (0.49 right), 0.5, 0.1 -> ECE = 1.81 / 4
    det = _t([[0, 0, 1, 1, c, 0] for c in (0.3, 0.49, 0.5, 0.9)], 6).double()
    flags = _flags(1, 1, 0, 1)
    high, low = CalibrationStats(min_conf=0.5), CalibrationStats(min_conf=0.0)
    for stats in (high, low):
        stats.update(det, None, flags)
    assert high.bins().n == 2 and high.bins().ece == pytest.approx(0.3)
    assert low.bins().n == 4 and low.bins().ece == pytest.approx(1.81 / 4)
    assert CalibrationStats().min_conf == 0.25  # detect.py's default threshold
    # filtering after matching is exact: the greedy order is by confidence, so a low-confidence duplicate
    # never takes a label from a confident detection
    stats = CalibrationStats(min_conf=0.5)
    stats.update(_t([[0, 0, 10, 10, .3, 1], [0, 0, 10, 9, .6, 0]], 6), _t([[0, 0, 0, 10, 10]], 5), _flags(0, 1))
    assert stats.wrong_class_rate() == 0.0 and stats.summary()["matched"] == 1


def test_numpy_and_torch_inputs_agree():
    a, b = CalibrationStats(), CalibrationStats()
    _hand_made_run(a)

    class Numpy(CalibrationStats):  # the same images, every tensor handed over as a numpy array
        def update(self, detections, labels, correct):
            conv = [None if x is None else x.numpy() for x in (detections, labels, correct)]
            super().update(*conv)

    assert _hand_made_run(Numpy()).summary() == a.summary()
    with pytest.raises(ValueError, match="correct has 1 rows for 2 detections"):
        b.update(_t([[0, 0, 1, 1, .5, 0]] * 2, 6), None, _flags(1))
    with pytest.raises(ValueError, match="correct has 0 rows for 2 detections"):
        b.update(_t([[0, 0, 1, 1, .5, 0]] * 2, 6), None, None)


def test_summary_is_json_and_lines_read_well():
    names = {0: "cat", 1: "dog", 2: "bird"}
    stats = _hand_made_run(CalibrationStats())
    s = json.loads(json.dumps(stats.summary(names), allow_nan=False))
    assert s["ece"] == pytest.approx(stats.bins().ece) and s["params"]["min_conf"] == 0.25
    assert len(s["bins"]) == 10 and sum(r["count"] for r in s["bins"]) == 11
    assert set(s["definitions"]) >= {"population", "correct", "ece", "wrong_class_rate"}
    lines = stats.format_lines(names)
    assert "ECE" in lines[0] and "MCE" in lines[0] and "11 detections" in lines[0]
    assert "3 of 7" in lines[1] and "0.429" in lines[1]
    assert "cat -> dog" in lines[3] and "dog -> bird" in lines[4]  # most frequent pair first
    assert len({len(line) for line in lines[2:]}) == 1  # the pair table is aligned

    empty = CalibrationStats()
    s = json.loads(json.dumps(empty.summary(), allow_nan=False))
    assert s["ece"] is None and s["wrong_class_rate"] is None and s["detections"] == 0
    assert s["confused_pairs"] == [] and s["per_class"] == []
    assert "n/a" in empty.format_lines()[0] and len(empty.format_lines()) == 2


def test_plot_writes_png(tmp_path):
    stats = _hand_made_run(CalibrationStats())
    png = stats.plot(tmp_path / "a" / "calibration.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = CalibrationStats()
    empty.update(torch.zeros(0, 6), torch.zeros(0, 5), torch.zeros(0, 10, dtype=torch.bool))
    png = empty.plot(tmp_path)  # a directory: the standard file name inside it
    assert png == tmp_path / "calibration.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_logs_calibration_scalars_to_tensorboard(tmp_path):
    """The trainer passes each validation's metrics.json to TensorBoard as ECE and wrong-class-rate scalars."""
    import json
    from utils.loggers import Loggers

    class Recorder:
        def __init__(self):
            self.scalars = []

        def add_scalar(self, tag, value, step):
            self.scalars.append((tag, value, step))

    logger = Loggers(tmp_path, tensorboard=False)
    logger.tb = Recorder()
    logger.log_calibration(tmp_path, 4)  # no metrics.json yet: nothing logged, no error
    assert logger.tb.scalars == []
    (tmp_path / "metrics.json").write_text(json.dumps({"calibration": {"ece": 0.125, "wrong_class_rate": None}}))
    logger.log_calibration(tmp_path, 5)
    assert logger.tb.scalars == [("calibration/ECE", 0.125, 5)]  # a null rate (no matches) is not logged
