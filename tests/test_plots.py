"""utils/plots.py: files are produced, readable and show what they should (boxes where the boxes are)."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from utils import plots
from utils.plots import (Annotator, colors, feature_visualization, output_to_target, plot_images, plot_labels,
                         plot_lr_scheduler, plot_one_box, plot_results, plot_study_txt, save_one_box)


def _read(path: Path) -> np.ndarray:
    assert path.is_file(), f"{path} was not written"
    im = cv2.imread(str(path))
    assert im is not None, f"{path} is not a readable image"
    return im


def _non_trivial(im: np.ndarray) -> None:
    """A plot that drew something has many distinct colours, not a blank canvas."""
    assert im.std() > 5
    packed = im.reshape(-1, 3).astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
    assert len(np.unique(packed)) > 20


def test_colors_palette_cycles_and_bgr_reverses():
    assert len(plots.color_list()) == colors.n == 20
    assert len(set(colors.palette)) == 20  # all distinct
    assert colors(3) == colors(23)
    assert colors(5, bgr=True) == colors(5)[::-1]
    assert all(0 <= v <= 255 for c in colors.palette for v in c)


def test_annotator_draws_box_outline_and_label_only_where_asked():
    im = np.zeros((120, 160, 3), dtype=np.uint8)
    a = Annotator(im, line_width=2)
    a.box_label((40, 50, 100, 100), "cat 0.9", color=(255, 0, 0))
    out = a.result()
    assert out is im  # drawn in place
    assert (out[75, 40] == (255, 0, 0)).all() and (out[50, 70] == (255, 0, 0)).all()  # left and top edges
    assert (out[75, 70] == 0).all()  # inside the box untouched
    assert out[:50, 40:100].any()  # label tag drawn above the box
    assert not out[:, 120:].any()  # nothing right of the box and its tag
    with pytest.raises(ValueError, match="HxWx3"):
        Annotator(np.zeros((10, 10), dtype=np.uint8))


def test_plot_one_box_v50_api():
    im = np.zeros((64, 64, 3), dtype=np.uint8)
    plot_one_box([10, 10, 50, 50], im, color=(0, 255, 0), label=None, line_thickness=1)
    assert im[30, 9:12, 1].max() > 200 and not im[30, 9:12, [0, 2]].any()  # anti-aliased green edge
    assert not im[30, 30].any()


def test_output_to_target_round_trip():
    out = [torch.tensor([[10., 20., 30., 60., 0.9, 2.]]), torch.zeros((0, 6)),
           torch.tensor([[0., 0., 4., 2., 0.5, 1.], [1., 1., 3., 3., 0.4, 0.]])]
    t = output_to_target(out)
    assert t.shape == (3, 7)
    np.testing.assert_allclose(t[0], [0, 2, 20, 40, 20, 40, 0.9], rtol=1e-6)
    np.testing.assert_allclose(t[1], [2, 1, 2, 1, 4, 2, 0.5], rtol=1e-6)
    assert output_to_target([torch.zeros((0, 6))]).shape == (0, 7)


def test_plot_images_labels_and_predictions(tmp_path):
    imgs = torch.zeros((4, 3, 64, 96), dtype=torch.uint8)  # black tiles, 2x2 mosaic
    labels = torch.tensor([[0, 1, 0.5, 0.5, 0.5, 0.5],     # normalised
                           [3, 0, 0.25, 0.25, 0.25, 0.25]])
    f = tmp_path / "batch_labels.jpg"
    mosaic = plot_images(imgs, labels, paths=["a.jpg", "b.jpg", "c.jpg", "d.jpg"], fname=f, names=["x", "y"])
    assert mosaic.shape == (128, 192, 3)
    assert np.abs(_read(f)[..., ::-1].astype(int) - mosaic).mean() < 5  # the saved file is this mosaic (RGB)
    im = mosaic.astype(int)
    # tile 0 box left edge at x = 24, from y 16 to 48, drawn in the colour of class 1
    edge = im[24:44, 23:26].reshape(-1, 3)
    assert (np.abs(edge - colors(1)).sum(1) < 40).sum() >= 15
    assert not im[36:44, 30:60].any()  # box interior stays black
    # tile 3 (bottom right) has a class 0 box with its left edge at x = 96 + 12, y 64 + 8 .. 64 + 24
    assert (np.abs(im[64 + 12:64 + 22, 96 + 11:96 + 14].reshape(-1, 3) - colors(0)).sum(1) < 40).sum() >= 8
    assert not mosaic[64:, :96][20:62, 2:94].any()  # tile 2 has no labels (only its file name on top)

    # predictions in pixels with conf: the low-confidence one must not be drawn
    preds = np.array([[1, 0, 48, 32, 40, 30, 0.9], [2, 1, 48, 32, 40, 30, 0.1]])
    m2 = plot_images(imgs.float() / 255, preds, fname=None)
    tile1, tile2 = m2[:64, 96:192], m2[64:, :96]
    assert tile1[10:54, 20:80].any()
    assert not tile2[2:62, 2:94].any()


def test_plot_images_downscales_to_max_size(tmp_path):
    imgs = np.full((2, 3, 200, 300), 128, dtype=np.uint8)
    t = np.array([[1, 0, 150, 100, 100, 60]], dtype=float)  # pixel box
    m = plot_images(imgs, t, fname=tmp_path / "m.jpg", max_size=200)
    assert max(m.shape[:2]) <= 200
    assert (tmp_path / "m.jpg").stat().st_size > 500


def test_plot_labels_writes_both_figures(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    labels = np.column_stack([rng.integers(0, 3, n), rng.uniform(0.2, 0.8, (n, 2)), rng.uniform(0.05, 0.3, (n, 2))])
    plot_labels(labels, names=["a", "b", "c"], save_dir=tmp_path)
    _non_trivial(_read(tmp_path / "labels.jpg"))
    _non_trivial(_read(tmp_path / "labels_correlogram.jpg"))


def _results_csv(path: Path, epochs: int = 8) -> None:
    tags = ["train/box_loss", "train/obj_loss", "train/cls_loss", "metrics/precision", "metrics/recall",
            "metrics/mAP_0.5", "metrics/mAP_0.5:0.95", "val/box_loss", "val/obj_loss", "val/cls_loss",
            "x/lr0", "x/lr1", "x/lr2"]
    lines = [",".join(f"{k:>20s}" for k in ["epoch"] + tags)]
    for e in range(epochs):
        vals = [e] + [0.1 / (e + 1)] * 3 + [0.1 * e] * 4 + [0.05 / (e + 1)] * 3 + [0.01] * 3
        lines.append(",".join("%20.5g" % v for v in vals))
    path.write_text("\n".join(lines) + "\n")


def test_plot_results_from_csv_and_v50_txt(tmp_path):
    _results_csv(tmp_path / "results.csv")
    out = plot_results(file=tmp_path / "results.csv")
    assert out == tmp_path / "results.png"
    _non_trivial(_read(out))

    d = tmp_path / "v5"
    d.mkdir()
    rows = [f"{e}/9 0.5G " + " ".join(["%10.4g" % (0.1 / (e + 1))] * 4) + " 12 640 "
            + " ".join(["%10.4g" % (0.1 * e)] * 4) + " " + " ".join(["%10.4g" % 0.03] * 3) for e in range(10)]
    (d / "results.txt").write_text("\n".join(rows) + "\n")
    _non_trivial(_read(plot_results(file="", dir=d)))

    with pytest.raises(FileNotFoundError, match="results"):
        plot_results(file="", dir=tmp_path / "empty")


def test_plot_evolve_and_plot_evolution(tmp_path):
    pytest.importorskip("utils.metrics")
    rng = np.random.default_rng(1)
    keys = ["metrics/precision", "metrics/recall", "metrics/mAP_0.5", "metrics/mAP_0.5:0.95",
            "val/box_loss", "val/obj_loss", "val/cls_loss", "lr0", "momentum", "mosaic"]
    x = rng.uniform(0, 1, (12, len(keys)))
    csv = tmp_path / "evolve.csv"
    csv.write_text(",".join(f"{k:>20s}" for k in keys) + "\n"
                   + "\n".join(",".join("%20.5g" % v for v in r) for r in x) + "\n")
    _non_trivial(_read(plots.plot_evolve(csv)))

    hyp = tmp_path / "hyp.yaml"
    hyp.write_text("lr0: 0.01\nmomentum: 0.937\nmosaic: 1.0\n")
    txt = tmp_path / "evolve.txt"
    np.savetxt(txt, x, fmt="%10.4g")
    out = plots.plot_evolution(hyp, evolve_file=txt)
    assert out == tmp_path / "evolve.png"
    _non_trivial(_read(out))


def test_save_one_box_crop_rule_and_numbered_files(tmp_path):
    yy, xx = np.mgrid[0:80, 0:100]
    im = np.stack([xx * 2, yy * 3, np.full_like(xx, 200)], -1).astype(np.uint8)  # smooth: jpeg keeps it
    f = tmp_path / "crops" / "person" / "im.jpg"
    crop = save_one_box([20, 30, 40, 50], im, file=f, BGR=True)
    # 20x20 box centred at (30, 40) -> side 20 * 1.02 + 10 = 30.4 -> corners 14.8..45.2 / 24.8..55.2 (truncated)
    np.testing.assert_array_equal(crop, im[24:55, 14:45])
    rgb = save_one_box([20, 30, 40, 50], im, file=f, BGR=False)
    np.testing.assert_array_equal(rgb, crop[..., ::-1])
    save_one_box([20, 30, 40, 50], im, file=f)
    assert sorted(p.name for p in f.parent.iterdir()) == ["im.jpg", "im2.jpg", "im3.jpg"]
    saved = cv2.imread(str(f))
    assert saved.shape == crop.shape and np.abs(saved.astype(int) - crop).mean() < 3  # BGR kept (jpeg loss only)
    # clipped at the border, square option
    edge = save_one_box([0, 0, 10, 30], im, square=True, save=False, BGR=True)
    # square side 30 * 1.02 + 10 = 40.6 around (5, 15): x -15.3..25.3, y -5.3..35.3, clipped at 0
    assert edge.shape[:2] == (35, 25)
    assert not list(tmp_path.glob("*.jpg"))


def test_feature_visualization(tmp_path):
    x = torch.randn(1, 12, 8, 8)
    f = feature_visualization(x, "models.common.C3", stage=2, n=32, save_dir=tmp_path)
    assert f == tmp_path / "stage2_C3_features.png"
    _non_trivial(_read(f))
    assert feature_visualization(x, "models.yolo.Detect", 3, save_dir=tmp_path) is None


def test_plot_study_and_lr_scheduler(tmp_path):
    x = [256, 384, 512]
    rows = np.array([[0.5, 0.4, 0.3 + 0.1 * i, 0.2 + 0.1 * i, 0, 0, 0, 0.1, 5.0 * (i + 1), 1.0] for i in range(3)])
    np.savetxt(tmp_path / "study_data_w.txt", rows, fmt="%10.4g")
    out = plot_study_txt(tmp_path, x=x)
    assert out == tmp_path / "study.png"
    _non_trivial(_read(out))

    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1 - e / 20)
    _read(plot_lr_scheduler(opt, sched, epochs=20, save_dir=tmp_path))
    assert opt.param_groups[0]["lr"] == 0.1  # the real optimizer was not stepped


# ---------------------------------------------------------------------------------------------------------
# issue 16: every plot survives every count (1..1000 epochs, 0 / 1 / 1000 classes, 0 detections, ...)
# ---------------------------------------------------------------------------------------------------------
def _reference_moving_average(y: np.ndarray, window: int) -> np.ndarray:
    """Loop version of the documented rule: mean of the existing samples i - window//2 .. i + (window-1)//2."""
    return np.array([y[max(0, i - window // 2): i + (window - 1) // 2 + 1].mean() for i in range(len(y))])


def test_smoothing_keeps_the_length_for_every_n():
    rng = np.random.default_rng(0)
    y_all = rng.normal(size=1000)
    for n in range(1, 1001):
        y = y_all[:n]
        for f in (0.05, 0.1, 0.3):  # 0.05 is what plot_results uses; even windows hit n = 55..74, 95..114, 300
            assert len(plots._smooth(y, f)) == n, (n, f)
        for window in (1, 2, 3, 4, 16, 17):
            assert len(plots.moving_average(y, window)) == n, (n, window)
    assert plots.moving_average(np.zeros(0), 5).shape == (0,)
    with pytest.raises(ValueError, match="window"):
        plots.moving_average(y_all, 0)


def test_smoothing_is_a_centred_moving_average():
    y = np.array([1.0, 2, 3, 4, 10])
    # hand-computed: window 3 -> (1+2)/2, (1+2+3)/3, (2+3+4)/3, (3+4+10)/3, (4+10)/2
    np.testing.assert_allclose(plots.moving_average(y, 3), [1.5, 2, 3, 17 / 3, 7])
    # even window 2: the sample itself and the one before it
    np.testing.assert_allclose(plots.moving_average(y, 2), [1, 1.5, 2.5, 3.5, 7])
    np.testing.assert_allclose(plots.moving_average(y, 11), np.full(5, 4.0))  # window > 2n: the global mean
    rng = np.random.default_rng(1)
    for n in (1, 7, 55, 100, 300):
        y = rng.normal(size=n).cumsum()
        for window in (1, 2, 3, 4, 16, 17, n, 2 * n + 1):
            np.testing.assert_allclose(plots.moving_average(y, window), _reference_moving_average(y, window),
                                       rtol=1e-12, atol=1e-12, err_msg=f"n={n} window={window}")
    # plot_results' smoothing: an odd window of about 5 % of the epochs
    for n, window in ((10, 1), (100, 5), (300, 17), (1000, 51)):
        y = rng.normal(size=n)
        np.testing.assert_allclose(plots._smooth(y), _reference_moving_average(y, window), rtol=1e-12, atol=1e-12)
    # a NaN epoch spoils only the windows that contain it
    y = np.arange(10.0)
    y[2] = np.nan
    out = plots.moving_average(y, 3)
    assert np.isnan(out[1:4]).all() and np.isfinite(np.delete(out, [1, 2, 3])).all()


@pytest.fixture
def saved_figures(monkeypatch):
    """Figures handed to plots._save_fig (still inspectable after being closed), in order."""
    figs = []
    original = plots._save_fig

    def keep(fig, path, *args, **kwargs):
        figs.append(fig)
        return original(fig, path, *args, **kwargs)

    monkeypatch.setattr(plots, "_save_fig", keep)
    return figs


def _write_results_csv(save_dir: Path, epochs: int) -> Path:
    """results.csv exactly as training writes it (through Loggers): decaying losses, rising metrics."""
    from utils.loggers import Loggers

    rng = np.random.default_rng(epochs)
    logger = Loggers(save_dir, tensorboard=False)
    for e in range(epochs):
        t = e / max(epochs, 1)
        losses = 0.05 * np.exp(-3 * t) + 0.02 + rng.normal(0, 0.002, 6)
        metrics = 0.7 * (1 - np.exp(-5 * t)) + rng.normal(0, 0.01, 4)
        logger.log_epoch(e, [*losses[:3], *metrics, *losses[3:], 0.01, 0.01, 0.01])
    return logger.csv


@pytest.mark.parametrize("epochs", [1, 2, 55, 100, 300, 1000])
def test_plot_results_any_number_of_epochs(tmp_path, saved_figures, epochs):
    csv = _write_results_csv(tmp_path, epochs)
    out = plot_results(file=csv)
    assert out == tmp_path / "results.png"
    _read(out)
    axes = saved_figures[-1].axes
    assert len(axes) == 10
    for a in axes:
        lines = a.get_lines()
        assert len(lines) == (2 if epochs > 5 else 1)  # data, then its smoothed copy
        for line in lines:
            assert len(line.get_xdata()) == len(line.get_ydata()) == epochs
    if epochs == 1:
        assert list(axes[0].get_xticks()) == [0]  # one tick at the single epoch
    if epochs == 300:  # the smoothed mAP follows the data: no shift, no end effects
        data, smooth = (np.asarray(line.get_ydata()) for line in axes[9].get_lines())
        assert np.abs(smooth - data).max() < 0.05


def test_plot_results_v50_txt_one_and_100_epochs(tmp_path, saved_figures):
    for name, epochs in (("results.txt", 100), ("results_short.txt", 1)):  # both drawn into one results.png
        rows = [f"{e}/{epochs - 1} 0.5G " + " ".join(["%10.4g" % (0.1 / (e + 1))] * 4) + " 12 640 "
                + " ".join(["%10.4g" % (0.01 * e)] * 4) + " " + " ".join(["%10.4g" % 0.03] * 3)
                for e in range(epochs)]
        (tmp_path / name).write_text("\n".join(rows) + "\n")
    _read(plot_results(file="", dir=tmp_path))
    lengths = [len(line.get_xdata()) for line in saved_figures[-1].axes[0].get_lines()]
    assert lengths == [100, 100, 1]  # 100 epochs and their smoothed copy, then the single epoch


def test_plot_results_without_rows_names_the_file(tmp_path):
    csv = _write_results_csv(tmp_path, 1)
    csv.write_text(csv.read_text().splitlines()[0] + "\n")  # header only: the run died in epoch 0
    with pytest.raises(ValueError, match=r"results\.csv: no data rows"):
        plot_results(file=csv)


def _random_labels(n: int, nc: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.integers(0, nc, n), rng.uniform(0.1, 0.9, (n, 2)), rng.uniform(0.02, 0.4, (n, 2))])


def _class_bar_heights(ax) -> np.ndarray:
    """Heights of the class-count bars drawn by plot_labels (one polygon per class)."""
    (bars,) = ax.collections
    return np.array([p.vertices[:, 1].max() for p in bars.get_paths()])


@pytest.mark.parametrize("nc", [1, 1000])
def test_plot_labels_one_and_a_thousand_classes(tmp_path, saved_figures, nc):
    labels = _random_labels(2000, nc)
    plot_labels(labels, names=[f"class{i}" for i in range(nc)], save_dir=tmp_path)
    _non_trivial(_read(tmp_path / "labels.jpg"))
    _non_trivial(_read(tmp_path / "labels_correlogram.jpg"))
    counts_ax = saved_figures[-1].axes[0]
    np.testing.assert_array_equal(_class_bar_heights(counts_ax), np.bincount(labels[:, 0].astype(int), minlength=nc))
    if nc == 1:
        assert [t.get_text() for t in counts_ax.get_xticklabels()] == ["class0"]


def test_plot_labels_without_labels(tmp_path, saved_figures):
    plot_labels(np.zeros((0, 5)), names=["a", "b"], save_dir=tmp_path)
    _read(tmp_path / "labels.jpg")
    _read(tmp_path / "labels_correlogram.jpg")
    assert _class_bar_heights(saved_figures[-1].axes[0]).tolist() == [0, 0]


CURVES = ("PR_curve.png", "F1_curve.png", "P_curve.png", "R_curve.png")


def test_pr_curves_with_no_detections_and_one_class(tmp_path, recwarn):
    from utils.metrics import ap_per_class, plot_mc_curve, plot_pr_curve

    # no detections at all, labels of two classes: every metric is 0, the four curves are still drawn
    p, r, ap, f1, classes = ap_per_class(np.zeros((0, 10)), np.zeros(0), np.zeros(0), np.array([0, 0, 1]),
                                         plot=True, save_dir=tmp_path / "none", names=["a", "b"])
    assert classes.tolist() == [0, 1] and ap.shape == (2, 10)
    assert not (p.any() or r.any() or ap.any() or f1.any())
    # no detections and no labels: no classes, the curves are empty axes (and no legend)
    out = ap_per_class(np.zeros((0, 10)), np.zeros(0), np.zeros(0), np.zeros(0), names={})
    assert all(len(v) == 0 for v in out)
    px = np.linspace(0, 1, 1000)
    plot_pr_curve(px, np.zeros((0, 1000)), np.zeros((0, 10)), tmp_path / "empty" / "PR_curve.png")
    plot_mc_curve(px, np.zeros((0, 1000)), tmp_path / "empty" / "F1_curve.png", ylabel="F1")
    # one class: 2 labels, one TP at 0.9 then one FP at 0.3 -> best F1 is P = 1, R = 1/2
    p, r, ap, f1, classes = ap_per_class(np.array([[1] * 10, [0] * 10]), np.array([0.9, 0.3]), np.zeros(2),
                                         np.zeros(2), plot=True, save_dir=tmp_path / "one", names={0: "person"})
    assert classes.tolist() == [0]
    assert p == pytest.approx([1.0], abs=1e-3) and r == pytest.approx([0.5])
    for d in ("none", "one"):
        for name in CURVES:
            _read(tmp_path / d / name)
    _read(tmp_path / "empty" / "PR_curve.png")
    _read(tmp_path / "empty" / "F1_curve.png")
    assert not [w for w in recwarn if "legend" in str(w.message)]  # no 'No artists with labels' warnings


def test_confusion_matrix_one_class(tmp_path):
    from utils.metrics import ConfusionMatrix

    cm = ConfusionMatrix(nc=1)
    labels = torch.tensor([[0, 0, 0, 10, 10], [0, 50, 50, 60, 60]], dtype=torch.float32)
    detections = torch.tensor([[0, 0, 10, 10, 0.9, 0], [80, 80, 90, 90, 0.8, 0]])  # one TP, one background FP
    cm.process_batch(detections, labels)
    cm.process_batch(None, torch.zeros((0, 5)))  # an image without labels or detections changes nothing
    assert cm.matrix.tolist() == [[1, 1], [1, 0]]  # [TP, FP], [FN, -]
    tp, fp = cm.tp_fp()
    assert tp.tolist() == [1] and fp.tolist() == [1]
    for names in (["person"], None):
        path = cm.plot(tmp_path / "cm", names=names)
        _non_trivial(_read(path))
        path.unlink()


def _evolve_rows(n: int) -> tuple:
    keys = ["metrics/precision", "metrics/recall", "metrics/mAP_0.5", "metrics/mAP_0.5:0.95",
            "val/box_loss", "val/obj_loss", "val/cls_loss", "lr0", "momentum", "mosaic"]
    return keys, np.random.default_rng(2).uniform(0, 1, (n, len(keys)))


def test_evolve_plots_with_one_generation(tmp_path, saved_figures):
    keys, x = _evolve_rows(1)
    csv = tmp_path / "evolve.csv"
    csv.write_text(",".join(f"{k:>20s}" for k in keys) + "\n" + ",".join("%20.5g" % v for v in x[0]) + "\n")
    _read(plots.plot_evolve(csv))
    assert [a.get_title() for a in saved_figures[-1].axes] == [f"{k} = {v:.3g}" for k, v in zip(keys[7:], x[0, 7:])]

    hyp = tmp_path / "hyp.yaml"
    hyp.write_text("lr0: 0.01\nmomentum: 0.937\nmosaic: 1.0\n")
    txt = tmp_path / "evolve.txt"
    np.savetxt(txt, x, fmt="%10.4g")
    _read(plots.plot_evolution(hyp, evolve_file=txt))
    assert len(saved_figures[-1].axes) == 3

    csv.write_text(csv.read_text().splitlines()[0] + "\n")  # zero generations: a clear error, not argmax([])
    with pytest.raises(ValueError, match=r"evolve\.csv: no data rows"):
        plots.plot_evolve(csv)


def test_plot_images_batch_of_one_and_no_targets(tmp_path):
    img = torch.full((1, 3, 48, 64), 90, dtype=torch.uint8)
    for targets in (torch.zeros((0, 6)), np.zeros((0, 7)), []):
        mosaic = plot_images(img, targets, fname=tmp_path / "one.jpg")
        assert mosaic.shape == (48, 64, 3)
        assert (mosaic[3:-3, 3:-3] == 90).all()  # only the tile border is drawn
    mosaic = plot_images(img, torch.tensor([[0, 0, 0.5, 0.5, 0.5, 0.5]]), fname=tmp_path / "one.jpg")
    assert (np.abs(mosaic[20:28, 16].astype(int) - colors(0)).sum(1) < 40).all()  # left edge of the box
    _read(tmp_path / "one.jpg")
    with pytest.raises(ValueError, match="non-empty"):
        plot_images(torch.zeros((0, 3, 48, 64)), torch.zeros((0, 6)), fname=None)


def test_try_plot_turns_a_failed_plot_into_one_warning(tmp_path, log_lines):
    import matplotlib.pyplot as plt

    csv = _write_results_csv(tmp_path, 1)
    csv.write_text(csv.read_text().splitlines()[0] + "\n")
    assert plots.try_plot("results.png", plot_results, file=csv) is None
    assert len(log_lines) == 1
    assert log_lines[0].startswith("WARNING: results.png not drawn: ValueError: ")
    assert "no data rows" in log_lines[0]
    log_lines.clear()

    def half_drawn():
        plt.subplots()
        raise RuntimeError("first line\nsecond line")

    open_before = plt.get_fignums()
    assert plots.try_plot("labels.jpg", half_drawn) is None
    assert log_lines == ["WARNING: labels.jpg not drawn: RuntimeError: first line"]
    assert plt.get_fignums() == open_before  # the failed plot's figure was closed
    log_lines.clear()

    assert plots.try_plot("sum", lambda a, b=0: a + b, 1, b=2) == 3  # success: result back, nothing logged
    assert not log_lines


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_try_plot_lets_interrupts_through(log_lines, exc):
    def interrupted():
        raise exc()

    with pytest.raises(exc):
        plots.try_plot("results.png", interrupted)
    assert not log_lines


def test_ap_per_class_keeps_its_metrics_when_a_curve_fails(tmp_path, monkeypatch, log_lines):
    from utils import metrics

    def broken(*args, **kwargs):
        raise RuntimeError("no display")

    monkeypatch.setattr(metrics, "plot_pr_curve", broken)
    p, r, ap, f1, classes = metrics.ap_per_class(np.array([[1.0]]), np.array([0.9]), np.zeros(1), np.zeros(1),
                                                 plot=True, save_dir=tmp_path)
    assert ap[0, 0] > 0.9 and p == pytest.approx([1.0])
    assert log_lines == ["WARNING: PR_curve.png not drawn: RuntimeError: no display"]
    assert not (tmp_path / "PR_curve.png").exists() and (tmp_path / "F1_curve.png").is_file()
