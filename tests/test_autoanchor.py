"""AutoAnchor on the shapes dataset: metrics, k-means, evolution and replacement of a model's anchors."""
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.autoanchor import anchor_metrics, check_anchors, kmean_anchors, kmeans_np
from data.datasets import LoadImagesAndLabels
from data.shapes import generate_shapes

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shapes_ds(tmp_path_factory):
    root = generate_shapes(tmp_path_factory.mktemp("aa") / "shapes", n_train=40, n_val=2, img_size=160)
    return LoadImagesAndLabels(str(root / "images" / "train"), 160, rect=True, progress=False)


def test_anchor_metrics_by_hand():
    wh = np.array([[10, 10], [40, 40], [10, 30]], np.float32)
    bpr, aat = anchor_metrics(wh, np.array([[10, 10]]), thr=4.0)
    # ratios to the anchor: 1, 1/4 (not > 1/4), 1/3
    assert bpr == pytest.approx(2 / 3) and aat == pytest.approx(2 / 3)
    bpr, aat = anchor_metrics(wh, np.array([[10, 10], [40, 40]]), thr=4.0)
    assert bpr == 1.0 and aat == pytest.approx((1 + 1 + 1) / 3)


def test_kmeans_recovers_separated_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = np.concatenate([c + rng.normal(0, 0.3, (50, 2)) for c in centres])
    k = kmeans_np(x, 3, rng=np.random.default_rng(1))
    order = lambda a: a[np.argsort(np.round(a[:, 0]) * 100 + np.round(a[:, 1]))]  # noqa: E731
    np.testing.assert_allclose(order(k), order(centres), atol=0.15)
    with pytest.raises(ValueError, match="at least 5"):
        kmeans_np(x[:3], 5)


def test_kmean_anchors_fit_and_are_deterministic(shapes_ds):
    k0 = kmean_anchors(shapes_ds, n=9, img_size=160, gen=0, verbose=False)
    k = kmean_anchors(shapes_ds, n=9, img_size=160, gen=300, verbose=False)
    assert k.shape == (9, 2) and (np.diff(k.prod(1)) >= 0).all() and (k >= 2).all()
    np.testing.assert_array_equal(k, kmean_anchors(shapes_ds, n=9, img_size=160, gen=300, verbose=False))
    wh = np.concatenate([lb[:, 3:5] * 160 * s / s.max() for lb, s in zip(shapes_ds.labels, shapes_ds.shapes)])
    assert anchor_metrics(wh, k)[0] >= 0.98

    def fitness(a):  # mean best ratio of the matched labels, computed independently
        r = wh[:, None] / a[None]
        best = np.minimum(r, 1 / r).min(2).max(1)
        return (best * (best > 0.25)).mean()
    assert fitness(k) >= fitness(k0) - 1e-6  # evolution never makes the anchors worse
    # shapes are roughly square, so anchors should be too
    assert np.median(k[:, 0] / k[:, 1]) == pytest.approx(1.0, abs=0.25)


def test_check_anchors_replaces_bad_anchors_in_both_buffers(shapes_ds):
    from models.model import Model
    model = Model(str(ROOT / "models" / "yolov5-shufflenetv2.yaml"), nc=8)
    det = model.model[-1]
    before = det.anchor_grid.clone()
    bpr = check_anchors(shapes_ds, model, thr=4.0, imgsz=160)
    assert bpr >= 0.98 and torch.equal(det.anchor_grid, before)  # default anchors already fit: untouched

    det.anchor_grid[:] = det.anchor_grid * 30  # hopelessly large anchors
    det.anchors[:] = det.anchors * 30
    bpr = check_anchors(shapes_ds, model, thr=4.0, imgsz=160)
    assert bpr >= 0.98
    grid = det.anchor_grid.view(-1, 2)
    assert grid.max() < before.max()  # replaced by dataset-sized anchors
    # anchors (grid units) and anchor_grid (pixels) agree through the strides, areas grow with the stride
    torch.testing.assert_close(det.anchors * det.stride.view(-1, 1, 1), det.anchor_grid.view_as(det.anchors))
    assert (grid.prod(1).diff() >= 0).all()
