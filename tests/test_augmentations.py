"""Augmentations: letterbox geometry, and every geometric transform moving boxes exactly like the pixels."""
import random

import cv2
import numpy as np
import pytest

from data.augmentations import (augment_hsv, box_candidates, letterbox, mixup, mosaic4, random_perspective)

GREY = 114


def _canvas_with_boxes(h, w, boxes, colors, bg=GREY):
    """Plain image with one solid rectangle per xyxy box."""
    im = np.full((h, w, 3), bg, np.uint8)
    for (x1, y1, x2, y2), c in zip(boxes, colors):
        im[int(y1):int(y2), int(x1):int(x2)] = c
    return im


def _extent(im, color, tol=40):
    """xyxy extent of the pixels close to ``color`` (None when absent)."""
    mask = (np.abs(im.astype(int) - np.array(color)).max(2) < tol)
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)


COLORS = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255), (255, 0, 255), (255, 255, 0)]


@pytest.mark.parametrize("hw, expect", [((1080, 810), (640, 480)),  # bus.jpg
                                        ((720, 1280), (384, 640))])  # zidane.jpg
def test_letterbox_auto_matches_upstream_inference_shapes(hw, expect):
    im = np.zeros((*hw, 3), np.uint8)
    out, ratio, (dw, dh) = letterbox(im, 640, stride=32, auto=True)
    assert out.shape[:2] == expect
    r = 640 / max(hw)
    assert ratio == (r, r)
    # the pads are the per-side remainders up to the stride multiple
    assert 2 * dh == pytest.approx(expect[0] - round(hw[0] * r))
    assert 2 * dw == pytest.approx(expect[1] - round(hw[1] * r))


def test_letterbox_square_places_resized_image_centred():
    im = (np.random.default_rng(0).random((50, 100, 3)) * 255).astype(np.uint8)
    out, ratio, (dw, dh) = letterbox(im, (128, 128), auto=False)
    assert out.shape == (128, 128, 3) and ratio == (1.28, 1.28)
    assert (dw, dh) == (0.0, 32.0)
    np.testing.assert_array_equal(out[32:96], cv2.resize(im, (128, 64), interpolation=cv2.INTER_LINEAR))
    assert (out[:32] == GREY).all() and (out[96:] == GREY).all()


def test_letterbox_odd_padding_and_no_scaleup_and_scalefill():
    im = np.zeros((31, 40, 3), np.uint8)
    out, ratio, (dw, dh) = letterbox(im, (64, 64), auto=False, scaleup=False)
    assert ratio == (1.0, 1.0) and out.shape == (64, 64, 3)
    assert (dw, dh) == (12.0, 16.5)
    assert (out[:16] == GREY).all() and (out[16:47, 12:52] == 0).all() and (out[47:] == GREY).all()  # 16 top, 17 bottom
    assert (out[:, :12] == GREY).all() and (out[:, 52:] == GREY).all()
    out, ratio, pad = letterbox(im, (64, 32), auto=False, scaleFill=True)
    assert out.shape == (64, 32, 3) and ratio == (32 / 40, 64 / 31) and pad == (0.0, 0.0)


def test_random_perspective_identity_when_disabled():
    im = (np.random.default_rng(1).random((64, 80, 3)) * 255).astype(np.uint8)
    t = np.array([[1, 10, 12, 30, 40]], np.float32)
    out, t2 = random_perspective(im, t.copy(), degrees=0, translate=0, scale=0, shear=0, perspective=0)
    np.testing.assert_array_equal(out, im)
    np.testing.assert_allclose(t2, t)


@pytest.mark.parametrize("seed", range(6))
def test_random_perspective_boxes_follow_pixels(seed):
    """Warped boxes are the extents of the warped rectangles (rotation, shear, scale, translation, crop)."""
    random.seed(seed)
    boxes = np.array([[50, 50, 90, 80], [110, 60, 150, 120], [60, 110, 100, 150]], float)
    im = _canvas_with_boxes(200, 200, boxes, COLORS)
    targets = np.concatenate([np.arange(3)[:, None], boxes], 1)
    out, t = random_perspective(im, targets.copy(), degrees=20, translate=0.1, scale=0.3, shear=5, perspective=0,
                                border=(-16, -16))
    assert out.shape == (168, 168, 3)
    inside = 0
    for c in range(3):
        ext = _extent(out, COLORS[c])
        if ext is None or ext[0] <= 0 or ext[1] <= 0 or ext[2] >= 168 or ext[3] >= 168:
            continue  # cut by the border: the clipped corner box is looser than the visible part (by design)
        inside += 1
        rows = t[t[:, 0] == c]
        assert len(rows) == 1, f"object {c} fully visible but its label was dropped"
        np.testing.assert_allclose(rows[0, 1:], ext, atol=2.5)
    assert inside, "the test needs at least one object fully inside the output"


def test_random_perspective_segments_give_tight_boxes():
    """With polygons, the new box is the extent of the warped polygon, tighter than the warped box corners."""
    random.seed(3)
    tri = np.array([[40, 20], [100, 100], [20, 90]], np.float32)
    im = np.full((128, 128, 3), GREY, np.uint8)
    cv2.fillPoly(im, [tri.astype(np.int32)], COLORS[0])
    box = np.array([[0, tri[:, 0].min(), tri[:, 1].min(), tri[:, 0].max(), tri[:, 1].max()]], np.float32)
    out, t = random_perspective(im, box.copy(), segments=[tri], degrees=30, translate=0, scale=0, shear=0)
    ext = _extent(out, COLORS[0])
    np.testing.assert_allclose(t[0, 1:], ext, atol=2.5)


def test_box_candidates_rules():
    before = np.array([[0, 0, 100, 100]] * 4, float).T
    after = np.array([[0, 0, 50, 50],  # 25 % area: kept
                      [0, 0, 2, 50],  # 2 px wide: dropped
                      [0, 0, 30, 30],  # 9 % area: dropped
                      [0, 0, 5, 110]], float).T  # aspect 22: dropped
    np.testing.assert_array_equal(box_candidates(before, after), [True, False, False, False])


def test_augment_hsv_zero_gain_is_identity_and_value_gain_scales_brightness():
    im = (np.random.default_rng(2).random((32, 32, 3)) * 200 + 20).astype(np.uint8)
    ref = im.copy()
    augment_hsv(im, 0, 0, 0)
    np.testing.assert_array_equal(im, ref)
    np.random.seed(0)
    gain = np.random.uniform(-1, 1, 3)[2] * 0.5 + 1  # the value gain augment_hsv will draw
    np.random.seed(0)
    augment_hsv(im, 0, 0, 0.5)
    v0 = cv2.cvtColor(ref, cv2.COLOR_BGR2HSV)[..., 2].astype(float)
    v1 = cv2.cvtColor(im, cv2.COLOR_BGR2HSV)[..., 2].astype(float)
    np.testing.assert_allclose(v1, np.clip(np.floor(v0 * gain), 0, 255), atol=2)


def test_mosaic4_places_tiles_and_labels_consistently():
    s = 64
    imgs, labels = [], []
    for i in range(4):
        h, w = 40 + 8 * i, 64 - 8 * i
        box = np.array([[w * 0.25, h * 0.25, w * 0.75, h * 0.75]])
        imgs.append(_canvas_with_boxes(h, w, box, [COLORS[i]], bg=10 * (i + 1)))
        labels.append(np.array([[i, 0.5, 0.5, 0.5, 0.5]], np.float32))
    canvas, lab, segs = mosaic4(imgs, labels, [[], [], [], []], s, (70, 60))
    assert canvas.shape == (128, 128, 3) and segs == []
    for row in lab:
        ext = _extent(canvas, COLORS[int(row[0])])
        np.testing.assert_allclose(row[1:], ext, atol=1)
    # the four images meet at the centre (xc, yc) = (70, 60): 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right
    assert [canvas[59, 69, 0], canvas[59, 70, 0], canvas[60, 69, 0], canvas[60, 70, 0]] == [10, 20, 30, 40]
    # outside the tiles the canvas stays grey: image 0 (40 x 64) covers x 6..70, y 20..60
    assert (canvas[:20] [:, :70] == GREY).all() and (canvas[20:60, 6:70, 0] != GREY).all()


def test_mixup_blends_and_concatenates():
    np.random.seed(0)
    a, b = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 200, np.uint8)
    la, lb = np.ones((2, 5)), np.zeros((3, 5))
    im, lab = mixup(a, la, b, lb)
    assert lab.shape == (5, 5)
    v = im[0, 0, 0]
    assert 0 < v < 200 and (im == v).all()
