"""Plotting: box drawing, batch mosaics, label statistics, training curves, evolution and study plots.

Everything renders with OpenCV or with matplotlib's non-interactive Agg backend, so it works headless.
Colours are RGB tuples unless ``bgr=True`` is asked for; images handed to :class:`Annotator` are drawn in place.
"""
from __future__ import annotations

import math
import warnings
import zipfile
from copy import deepcopy
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import cv2
import numpy as np
import torch

from utils.boxes import clip_coords, xywh2xyxy, xyxy2xywh
from utils.files import increment_path
from utils.figures import pyplot, try_plot  # noqa: F401  (try_plot re-exported: callers draw through it)
from utils.log import LOGGER
from utils.metrics import fitness
from utils.text import load_yaml

Array = Union[np.ndarray, torch.Tensor]

Names = Union[Sequence[str], dict, None]

RESULT_TITLES = ("Box", "Objectness", "Classification", "Precision", "Recall",
                 "val Box", "val Objectness", "val Classification", "mAP@0.5", "mAP@0.5:0.95")


class Colors:
    """A fixed palette of 20 well separated colours; ``colors(i)`` cycles through it."""

    # picked by hand to stay distinguishable on photos and on each other
    HEX = ("E6194B", "3CB44B", "FFE119", "4363D8", "F58231", "911EB4", "46F0F0", "F032E6", "BCF60C", "FABEBE",
           "008080", "E6BEFF", "9A6324", "FFD8B1", "800000", "AAFFC3", "808000", "FF6F61", "000075", "00B3FF")

    def __init__(self) -> None:
        self.palette = [tuple(int(h[k:k + 2], 16) for k in (0, 2, 4)) for h in self.HEX]
        self.n = len(self.palette)

    def __call__(self, i: int, bgr: bool = False) -> tuple:
        c = self.palette[int(i) % self.n]
        return (c[2], c[1], c[0]) if bgr else c


colors = Colors()


def color_list() -> list:
    """v5.0 helper: the palette as a list of RGB tuples."""
    return list(colors.palette)


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().float().numpy()
    return np.asarray(x)


def _name(names: Names, c: int) -> str:
    """Class name for index ``c`` from a list or dict, falling back to the number."""
    try:
        return str(names[c]) if names is not None and len(names) else str(c)
    except (IndexError, KeyError):
        return str(c)


class Annotator:
    """Draw boxes, labels and text on an HxWx3 uint8 image (in place) with OpenCV.

    ``line_width`` defaults to ~0.3% of the image size (at least 2 px). ``font``/``pil`` are accepted for
    upstream call compatibility; drawing always uses OpenCV's Hershey font (no font file download).
    """

    def __init__(self, im, line_width: Optional[int] = None, font_size: Optional[float] = None,
                 font: str = "Arial.ttf", pil: bool = False, example: str = "abc") -> None:
        im = np.asarray(im)
        if im.ndim != 3 or im.shape[2] != 3:
            raise ValueError(f"Annotator needs an HxWx3 image, got shape {im.shape}")
        self.im = im if im.flags.writeable and im.flags.c_contiguous else np.ascontiguousarray(im)
        self.lw = line_width or max(round(sum(im.shape[:2]) / 2 * 0.003), 2)
        self.tf = max(self.lw - 1, 1)  # text thickness
        self.fs = font_size / 30 if font_size else self.lw / 3  # cv2 font scale

    def box_label(self, box, label: str = "", color=(128, 128, 128), txt_color=(255, 255, 255)) -> None:
        """Rectangle ``box`` (x1, y1, x2, y2) with an optional filled label tag above (or inside) its top edge."""
        x1, y1, x2, y2 = (int(round(float(v))) for v in box[:4])
        cv2.rectangle(self.im, (x1, y1), (x2, y2), color, thickness=self.lw, lineType=cv2.LINE_AA)
        if label:
            (w, h), _ = cv2.getTextSize(label, 0, fontScale=self.fs, thickness=self.tf)
            outside = y1 - h - 3 >= 0  # room for the tag above the box?
            ty2 = y1 - h - 3 if outside else y1 + h + 3
            cv2.rectangle(self.im, (x1, y1), (x1 + w, ty2), color, -1, cv2.LINE_AA)
            cv2.putText(self.im, label, (x1, y1 - 2 if outside else y1 + h + 2), 0, self.fs, txt_color,
                        thickness=self.tf, lineType=cv2.LINE_AA)

    def rectangle(self, xy, fill=None, outline=None, width: int = 1) -> None:
        x1, y1, x2, y2 = (int(round(float(v))) for v in xy[:4])
        if fill is not None:
            cv2.rectangle(self.im, (x1, y1), (x2, y2), tuple(fill), -1)
        if outline is not None:
            cv2.rectangle(self.im, (x1, y1), (x2, y2), tuple(outline), width)

    def text(self, xy, text: str, txt_color=(255, 255, 255), anchor: str = "top") -> None:
        """Text whose top-left corner is at ``xy`` (``anchor='bottom'``: bottom-left)."""
        (_, h), _ = cv2.getTextSize(text, 0, fontScale=self.fs, thickness=self.tf)
        x, y = int(xy[0]), int(xy[1]) + (h if anchor == "top" else 0)
        cv2.putText(self.im, text, (x, y), 0, self.fs, txt_color, thickness=self.tf, lineType=cv2.LINE_AA)

    def result(self) -> np.ndarray:
        return self.im


def plot_one_box(x, img: np.ndarray, color=None, label: Optional[str] = None, line_thickness: Optional[int] = 3):
    """v5.0 API: draw one xyxy box (and label) on ``img`` in place."""
    if color is None:
        color = tuple(int(c) for c in np.random.randint(0, 255, 3))
    Annotator(img, line_width=line_thickness).box_label(x, label or "", color=color)


def plot_images(images: Array, targets: Array, paths: Optional[Sequence[str]] = None,
                fname: Union[str, Path, None] = "images.jpg", names: Names = None, max_size: int = 1920,
                max_subplots: int = 16) -> np.ndarray:
    """Mosaic of a batch with its boxes; saved to ``fname`` (when given) and returned as an RGB array.

    ``images`` (B, 3, H, W) RGB, uint8 or float in [0, 1]. ``targets`` (N, 6) ``[img, cls, x, y, w, h]`` labels
    or (N, 7) predictions with a trailing confidence (drawn when conf > 0.25); boxes are centre-xywh either
    normalised to [0, 1] or in pixels of the batch images.
    """
    images = _to_numpy(images).astype(np.float32, copy=True)
    targets = _to_numpy(targets)
    targets = targets.reshape(-1, targets.shape[-1]).astype(np.float64) if targets.size else np.zeros((0, 6))
    if images.ndim != 4 or not len(images):
        raise ValueError(f"plot_images expects a non-empty (B, 3, H, W) batch, got shape {images.shape}")
    if images.size and images.max() <= 1.0:
        images *= 255  # de-normalise
    bs, _, h, w = images.shape
    bs = min(bs, max_subplots)
    ns = math.ceil(bs ** 0.5)  # tiles per side

    mosaic = np.full((ns * h, ns * w, 3), 255, dtype=np.uint8)
    for i in range(bs):
        x0, y0 = w * (i % ns), h * (i // ns)
        mosaic[y0:y0 + h, x0:x0 + w] = images[i].transpose(1, 2, 0).clip(0, 255).astype(np.uint8)

    scale = max_size / ns / max(h, w)
    if scale < 1:  # keep the whole mosaic within max_size pixels
        h, w = math.ceil(scale * h), math.ceil(scale * w)
        mosaic = cv2.resize(mosaic, (ns * w, ns * h), interpolation=cv2.INTER_AREA)

    annotator = Annotator(mosaic, line_width=max(round(min(h, w) / 200), 1))
    for i in range(bs):
        x0, y0 = w * (i % ns), h * (i // ns)
        annotator.rectangle((x0, y0, x0 + w, y0 + h), outline=(255, 255, 255), width=2)
        if paths is not None and i < len(paths):
            annotator.text((x0 + 3, y0 + 3), Path(paths[i]).name[:40], txt_color=(220, 220, 220))
        ti = targets[targets[:, 0] == i] if len(targets) else targets
        if not len(ti):
            continue
        boxes = xywh2xyxy(ti[:, 2:6].astype(np.float64))
        if boxes.max() <= 1.01:  # normalised
            boxes[:, [0, 2]] *= w
            boxes[:, [1, 3]] *= h
        elif scale < 1:  # pixels of the original tile size
            boxes *= scale
        boxes[:, [0, 2]] += x0
        boxes[:, [1, 3]] += y0
        is_pred = ti.shape[1] >= 7
        for j, box in enumerate(boxes):
            c = int(ti[j, 1])
            if is_pred and ti[j, 6] <= 0.25:
                continue
            label = _name(names, c) + (f" {ti[j, 6]:.1f}" if is_pred else "")
            annotator.box_label(box, label, color=colors(c))
    mosaic = annotator.result()
    if fname:
        Path(fname).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(fname), mosaic[..., ::-1])  # RGB -> BGR for OpenCV
    return mosaic


def output_to_target(output: Iterable[Array], max_det: int = 300) -> np.ndarray:
    """NMS output (list of (n, 6) [x1, y1, x2, y2, conf, cls] per image) -> (N, 7) [img, cls, x, y, w, h, conf]."""
    rows = []
    for i, o in enumerate(output):
        o = _to_numpy(o)[:max_det].reshape(-1, 6).astype(np.float64)
        if len(o):
            rows.append(np.concatenate([np.full((len(o), 1), i), o[:, 5:6], xyxy2xywh(o[:, :4]), o[:, 4:5]], 1))
    return np.concatenate(rows, 0) if rows else np.zeros((0, 7))


def _save_fig(fig, path: Path, dpi: int = 200) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def _class_bars(ax, counts: np.ndarray, width: float = 0.8) -> None:
    """Bar per class in the class colour, as one collection: fast for thousands of classes."""
    from matplotlib.collections import PolyCollection

    x0 = np.arange(len(counts)) - width / 2
    boxes = [((x, 0), (x, h), (x + width, h), (x + width, 0)) for x, h in zip(x0, counts)]
    ax.add_collection(PolyCollection(boxes, facecolors=[np.array(colors(k)) / 255 for k in range(len(counts))]))
    ax.set_xlim(-0.5 - width / 2, len(counts) - 0.5 + width / 2)
    ax.set_ylim(0, max(int(counts.max(initial=0)), 1) * 1.05)


def plot_labels(labels: Array, names: Names = (), save_dir: Union[str, Path] = Path(""), loggers=None) -> None:
    """Dataset label statistics: ``labels.jpg`` (class counts, box shapes, centres, sizes) and
    ``labels_correlogram.jpg`` (pairwise histograms of x, y, width, height).

    ``labels`` is (N, 5) ``[cls, x, y, w, h]`` normalised, e.g. ``np.concatenate(dataset.labels, 0)``.
    """
    save_dir = Path(save_dir)
    labels = _to_numpy(labels).reshape(-1, 5).astype(np.float64)
    LOGGER.info("Plotting labels... ")
    c, b = labels[:, 0].astype(int), labels[:, 1:]
    nc = max(int(c.max()) + 1 if len(c) else 0, len(names) if names is not None else 0, 1)
    cols = ("x", "y", "width", "height")

    # correlogram: histograms on the diagonal, 2-D histograms elsewhere
    fig, ax = pyplot().subplots(4, 4, figsize=(8, 8))
    for i in range(4):
        for j in range(4):
            a = ax[i, j]
            if i == j:
                a.hist(b[:, i], bins=50, range=(0, 1), color="#4363D8", histtype="stepfilled")
            elif len(b):
                a.hist2d(b[:, j], b[:, i], bins=40, range=((0, 1), (0, 1)), cmap="Blues", cmin=1, vmin=0)
            a.set_xlim(0, 1)
            if i != j:
                a.set_ylim(0, 1)
            a.set_xlabel(cols[j] if i == 3 else "")
            a.set_ylabel(cols[i] if j == 0 else "")
            a.tick_params(labelsize=6)
    fig.tight_layout()
    _save_fig(fig, save_dir / "labels_correlogram.jpg")

    fig, ax = pyplot().subplots(2, 2, figsize=(8, 8))
    ax = ax.ravel()
    counts = np.bincount(c, minlength=nc) if len(c) else np.zeros(nc, dtype=int)
    _class_bars(ax[0], counts)
    ax[0].set_ylabel("instances")
    if 0 < nc < 30:
        ax[0].set_xticks(range(nc))
        ax[0].set_xticklabels([_name(names, k) for k in range(nc)], rotation=90, fontsize=8)
    else:
        ax[0].set_xlabel("classes")

    # box shapes, all centred in one square canvas
    canvas = np.full((1000, 1000, 3), 255, dtype=np.uint8)
    for k, (cls, wh) in enumerate(zip(c[:1000], b[:1000, 2:])):
        x1, y1, x2, y2 = (500 + np.array([-wh[0], -wh[1], wh[0], wh[1]]) * 500).round().astype(int)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colors(cls), 2)
    ax[1].imshow(canvas)
    ax[1].axis("off")
    for a, (p, q), xl, yl in ((ax[2], (0, 1), "x", "y"), (ax[3], (2, 3), "width", "height")):
        if len(b):
            a.hist2d(b[:, p], b[:, q], bins=50, range=((0, 1), (0, 1)), cmap="Blues", cmin=1, vmin=0)
        a.set_xlim(0, 1)
        a.set_ylim(0, 1)
        a.set_xlabel(xl)
        a.set_ylabel(yl)
    fig.tight_layout()
    _save_fig(fig, save_dir / "labels.jpg")


def moving_average(y: Array, window: int) -> np.ndarray:
    """Centred moving average with the length of ``y``: point i is the mean of the samples of
    ``y[i - window // 2 : i + (window - 1) // 2 + 1]`` that exist.

    An even window cannot be centred on a sample; it takes the extra sample from before. Near the ends the
    window holds fewer samples (no padding), so an end value is not over-weighted and a series shorter than
    the window still keeps its length. A NaN spoils only the windows that contain it.
    """
    y = _to_numpy(y).astype(np.float64)
    if y.ndim != 1:
        raise ValueError(f"moving_average: expected a 1-D series, got shape {y.shape}")
    if window < 1:
        raise ValueError(f"moving_average: window must be >= 1, got {window}")
    if not len(y):
        return y
    after = (window - 1) // 2  # samples after i; the other window // 2 come before it
    ones = np.ones(window)
    # 'full' convolution: element j sums y[j - window + 1 .. j], i.e. the window ending at i + after
    sums = np.convolve(y, ones)[after:after + len(y)]
    counts = np.convolve(np.ones(len(y)), ones)[after:after + len(y)]
    return sums / counts


def _smooth(y: Array, f: float = 0.05) -> np.ndarray:
    """``y`` smoothed by a centred moving average over an odd window of about ``f`` of its length."""
    return moving_average(y, 2 * round(len(y) * f / 2) + 1)


def _load_table(f: Path, **kwargs) -> np.ndarray:
    """``np.loadtxt`` as 2-D with errors that name the file; a file without data rows is an error too."""
    try:
        with warnings.catch_warnings():  # numpy warns on empty input; the check below says it better
            warnings.simplefilter("ignore", UserWarning)
            data = np.loadtxt(f, ndmin=2, **kwargs)
    except ValueError as e:
        raise ValueError(f"{f}: {e}") from e
    if not len(data):
        raise ValueError(f"{f}: no data rows")
    return data


def _float_or_nan(text: str) -> float:
    """A results.csv cell; an empty one (not measured) is NaN."""
    return float(text.strip() or "nan")


def _read_results(f: Path):
    """(titles, epochs, columns (n, 10)) from a v6 results.csv or a v5.0 results.txt."""
    if f.suffix == ".csv":
        with open(f) as fh:
            header = [s.strip() for s in fh.readline().split(",")]
        data = _load_table(f, delimiter=",", skiprows=1, converters=_float_or_nan)
        order = [1, 2, 3, 4, 5, 8, 9, 10, 6, 7]  # train losses, P, R, val losses, mAPs
        if data.shape[1] < 11 or len(header) < 11:
            raise ValueError(f"{f}: expected 'epoch' + at least 10 result columns, found {len(header)} names and "
                             f"{data.shape[1]} columns")
        return [header[j] for j in order], data[:, 0], data[:, order]
    # v5.0 results.txt: epoch/epochs, mem, box, obj, cls, total, targets, size, P, R, mAP.5, mAP, vbox, vobj, vcls
    data = _load_table(f, usecols=(2, 3, 4, 8, 9, 12, 13, 14, 10, 11))
    return list(RESULT_TITLES), np.arange(len(data)), data


def plot_results(file: Union[str, Path] = "path/to/results.csv", dir: Union[str, Path] = "") -> Path:
    """``results.png``: 2x5 grid of losses and metrics per epoch from ``results.csv`` (or v5.0 ``results.txt``).

    Empty or ``nan`` cells (epochs that were not validated) are left out of the lines and the smoothed curves.

    With ``file`` it plots that file; with ``dir`` every ``results*.csv`` / ``results*.txt`` inside it.
    Saved next to the data.
    """
    if file and Path(file).is_file():
        files = [Path(file)]
        save_dir = Path(file).parent
    else:
        save_dir = Path(file).parent if file and not dir else Path(dir)
        files = sorted(save_dir.glob("results*.csv")) + sorted(save_dir.glob("results*.txt"))
    if not files:
        raise FileNotFoundError(f"No results.csv / results.txt found in {save_dir.resolve()}, nothing to plot")
    fig, ax = pyplot().subplots(2, 5, figsize=(12, 6))
    ax = ax.ravel()
    epochs = set()
    for f in files:
        titles, x, y = _read_results(f)
        epochs.update(x.tolist())
        for i in range(10):
            ok = np.isfinite(y[:, i])  # NaN: not measured that epoch (--noval), not a zero
            ax[i].plot(x[ok], y[ok, i], marker=".", label=f.stem, linewidth=2, markersize=6)
            if ok.sum() > 5:
                ax[i].plot(x[ok], _smooth(y[ok, i]), ":", label="smooth", linewidth=1.5)
            ax[i].set_title(titles[i], fontsize=11)
    if len(epochs) == 1:  # one epoch: a tick at it, not the -0.04 .. 0.04 matplotlib spreads around a point
        for a in ax:
            a.set_xticks(sorted(epochs))
    else:  # every panel spans all epochs, also one whose few points are the validated epochs (--noval)
        lo, hi = min(epochs), max(epochs)
        for a in ax:
            a.set_xlim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    return _save_fig(fig, save_dir / "results.png")


def _evolve_grid(keys: Sequence[str], x: np.ndarray, fit: np.ndarray, path: Path) -> Path:
    """One scatter per hyperparameter: its value vs fitness, best generation marked."""
    best = int(np.argmax(fit))
    n = len(keys)
    cols = math.ceil(n ** 0.5)
    rows = math.ceil(n / cols) if n else 1
    fig = pyplot().figure(figsize=(2.5 * cols, 2.5 * rows))
    for i, k in enumerate(keys):
        v = x[:, i]
        a = fig.add_subplot(rows, cols, i + 1)
        a.scatter(v, fit, c=fit, cmap="viridis", s=12, alpha=0.8, edgecolors="none")
        a.plot(v[best], fit[best], "k+", markersize=15)
        a.set_title(f"{k} = {v[best]:.3g}", fontsize=9)
        a.tick_params(labelsize=7)
    fig.tight_layout()
    out = _save_fig(fig, path)
    LOGGER.info(f"Saved {out}")
    return out


def plot_evolve(evolve_csv: Union[str, Path] = "path/to/evolve.csv") -> Path:
    """v6 ``evolve.png`` from ``evolve.csv`` (7 result columns, then one column per hyperparameter)."""

    evolve_csv = Path(evolve_csv)
    if not evolve_csv.is_file():
        raise FileNotFoundError(f"evolve file not found: {evolve_csv}")
    with open(evolve_csv) as f:
        keys = [s.strip() for s in f.readline().split(",")]
    x = _load_table(evolve_csv, delimiter=",", skiprows=1)
    if len(keys) != x.shape[1] or x.shape[1] < 8:
        raise ValueError(f"{evolve_csv}: expected 7 result + at least 1 hyperparameter columns, found "
                         f"{len(keys)} names and {x.shape[1]} columns")
    return _evolve_grid(keys[7:], x[:, 7:], np.asarray(fitness(x)).reshape(-1), evolve_csv.with_suffix(".png"))


def plot_evolution(yaml_file: Union[str, Path] = "data/hyp.finetune.yaml",
                   evolve_file: Union[str, Path] = "evolve.txt") -> Path:
    """v5.0 ``evolve.png`` from ``evolve.txt`` (7 results + hyperparameters in ``yaml_file`` key order)."""

    hyp = load_yaml(yaml_file)
    evolve_file = Path(evolve_file)
    if not evolve_file.is_file():
        raise FileNotFoundError(f"evolve file not found: {evolve_file}")
    x = _load_table(evolve_file)
    keys = list(hyp)[: x.shape[1] - 7]
    if not keys:
        raise ValueError(f"{evolve_file}: no hyperparameter columns after the 7 result columns "
                         f"({x.shape[1]} columns, {len(hyp)} keys in {yaml_file})")
    return _evolve_grid(keys, x[:, 7:7 + len(keys)], np.asarray(fitness(x)).reshape(-1),
                        evolve_file.with_suffix(".png"))


def plot_study_txt(path: Union[str, Path] = "", x: Optional[Sequence[int]] = None,
                   files: Optional[Sequence[Union[str, Path]]] = None) -> Path:
    """``study.png`` from ``study_*.txt`` files written by ``val.py --task study``.

    Each row: P, R, mAP@.5, mAP@.5:.95, 3 val losses, pre-process/inference/NMS ms, for image size ``x[row]``.
    """
    d = Path(path) if path else Path(".")
    files = [Path(f) for f in files] if files else sorted(d.glob("study*.txt"))
    if not files:
        raise FileNotFoundError(f"No study*.txt files in {d.resolve()}")
    fig, ax = pyplot().subplots(1, 3, figsize=(13, 4))
    for f in files:
        y = _load_table(f)
        sizes = np.asarray(x[: len(y)] if x is not None else np.arange(len(y)))
        y = y[: len(sizes)]
        label = f.stem.replace("study_", "")
        ax[0].plot(sizes, y[:, 3], ".-", label=f"{label} mAP@.5:.95")
        ax[0].plot(sizes, y[:, 2], ".--", label=f"{label} mAP@.5")
        ax[1].plot(sizes, y[:, 8], ".-", label=label)
        ax[2].plot(y[:, 8], y[:, 3], ".-", label=label)
    ax[0].set(xlabel="image size (pixels)", ylabel="mAP", title="accuracy vs size")
    ax[1].set(xlabel="image size (pixels)", ylabel="inference ms / image", title="speed vs size")
    ax[2].set(xlabel="inference ms / image", ylabel="COCO-style mAP@.5:.95", title="accuracy vs speed")
    for a in ax:
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    out = _save_fig(fig, (files[0].parent if not path else d) / "study.png", dpi=200)
    LOGGER.info(f"Saved {out}")
    return out


plot_val_study = plot_study_txt  # v6 name


def zip_files(files: Sequence[Union[str, Path]], zip_path: Union[str, Path]) -> Path:
    """Bundle ``files`` into ``zip_path`` (used for ``study.zip``)."""
    zip_path = Path(zip_path)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for f in files:
            z.write(f, arcname=Path(f).name)
    return zip_path


def plot_lr_scheduler(optimizer, scheduler, epochs: int = 300, save_dir: Union[str, Path] = "") -> Path:
    """``LR.png``: the learning rate the scheduler would give over ``epochs`` (on copies; originals untouched)."""
    optimizer, scheduler = deepcopy(optimizer), deepcopy(scheduler)
    lrs = []
    with warnings.catch_warnings():  # the copies lose torch's step-order bookkeeping; its warning is moot here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(epochs):
            optimizer.step()  # parameters have no gradients: nothing changes but the schedule
            scheduler.step()
            lrs.append(optimizer.param_groups[0]["lr"])
    fig, a = pyplot().subplots(figsize=(6, 4))
    a.plot(lrs, ".-", label="LR")
    a.set(xlabel="epoch", ylabel="LR", xlim=(0, max(epochs, 1)), ylim=(0, None))
    a.grid(alpha=0.3)
    fig.tight_layout()
    return _save_fig(fig, Path(save_dir) / "LR.png")


def save_one_box(xyxy, im: np.ndarray, file: Union[str, Path] = Path("im.jpg"), gain: float = 1.02, pad: int = 10,
                 square: bool = False, BGR: bool = False, save: bool = True) -> np.ndarray:
    """Crop box ``xyxy`` out of the BGR image ``im``, enlarged by ``gain`` and ``pad`` pixels and clipped.

    ``square`` makes the crop square (longest side). The crop is saved (colours preserved) to ``file``, or to
    ``file`` with a 2, 3, ... suffix when it exists, and returned in BGR (``BGR=True``) or RGB order.
    """
    b = xyxy2xywh(torch.as_tensor(xyxy, dtype=torch.float32).view(-1, 4))
    if square:
        b[:, 2:] = b[:, 2:].max(1, keepdim=True)[0]
    b[:, 2:] = b[:, 2:] * gain + pad
    box = xywh2xyxy(b).long()
    clip_coords(box, im.shape[:2])
    x1, y1, x2, y2 = (int(v) for v in box[0])
    crop = im[y1:y2, x1:x2]
    if save:
        file = Path(file)
        file.parent.mkdir(parents=True, exist_ok=True)
        out = increment_path(file).with_suffix(".jpg")
        cv2.imwrite(str(out), crop)
    return crop if BGR else crop[..., ::-1]


def feature_visualization(x: torch.Tensor, module_type: str, stage: int, n: int = 32,
                          save_dir: Union[str, Path] = Path("runs/detect/exp")) -> Optional[Path]:
    """Save the first ``n`` channels of feature map ``x`` (1, C, H, W) of layer ``stage`` as a PNG grid."""
    if "Detect" in module_type or x.dim() != 4:
        return None
    _, channels, height, width = x.shape
    if height <= 1 or width <= 1:
        return None
    f = Path(save_dir) / f"stage{stage}_{module_type.split('.')[-1]}_features.png"
    blocks = torch.chunk(x[0].detach().float().cpu(), channels, dim=0)
    n = min(n, channels)
    rows = math.ceil(n / 8)
    fig, ax = pyplot().subplots(rows, 8, figsize=(8 * 1.2, rows * 1.2), squeeze=False)
    ax = ax.ravel()
    for i in range(len(ax)):
        if i < n:
            ax[i].imshow(blocks[i].squeeze(0).numpy())
        ax[i].axis("off")
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    LOGGER.info(f"Saving {f}... ({n}/{channels})")
    return _save_fig(fig, f, dpi=300)
