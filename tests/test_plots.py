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
