"""How far a detector's confidences can be trusted, and how often a found object gets the wrong class.

Both numbers help choose the classification loss (``cls_loss: bce`` or ``ce``) for a dataset: a softmax head
must spread one unit of probability over the classes, a sigmoid head scores each class on its own, and the
two fail differently on look-alike classes. They are measured from val's per-image outputs after NMS, so they
work for any model val can run (PyTorch checkpoints of either loss, exported files).

Definitions
-----------
* **Population**: detections with confidence ``>= min_conf`` (default 0.25, detect.py's default threshold:
  the detections a user would actually see). val runs NMS at conf 0.001; the flood of near-zero detections
  would dominate every count-weighted number below and hide the difference between models.
* **Correct**: the detection is a true positive at IoU 0.5 in val's usual matching (``correct[:, 0]`` of
  ``process_batch``: same class required, labels taken greedily in decreasing confidence, COCO rule).
  Because that greedy order visits confident detections first, dropping the detections below ``min_conf``
  afterwards leaves the flags of the kept ones exactly as if they had been matched alone.
* **Reliability bins**: ``n_bins`` (default 10) bins over the confidence, either equal-width over [0, 1]
  (bin k is ``[k/B, (k+1)/B)``, the last one also holds 1.0) or equal-count (cut where runs of N / B sorted
  confidences start; equal confidences stay in one bin, so counts are roughly equal and bins may be fewer).
  Per bin: count ``n_b``, mean confidence ``conf_b``, accuracy ``acc_b`` (share of correct detections).
* **ECE** (expected calibration error) ``= sum_b (n_b / N) * |acc_b - conf_b|`` over non-empty bins,
  **MCE** (maximum calibration error) ``= max_b |acc_b - conf_b|``. A perfectly calibrated model has 0:
  among detections scored 0.8, 80 % are right. ``acc_b < conf_b`` is over-confidence.
* **Wrong-class rate**: the population is matched to the labels IGNORING class (greedy in decreasing
  confidence; each detection takes the not yet matched label of highest IoU, if that IoU is ``>= iou_thres``
  (0.5); each label is matched at most once). Among the matched detections, the share whose class differs
  from its label's. Reported overall, per true class (share of that class's matched detections), and per
  (true, predicted) pair, where ``share`` is the pair's count over the matched detections of the true class.
  It separates "found the object, named it wrongly" from localisation misses, which the TP flags mix up.

With nothing to measure (no detections, or no matches) the rates are NaN in Python and ``null`` in
:meth:`CalibrationStats.summary` (strict JSON has no NaN); counts are 0 and the plot is still drawn.

Usage (one call per image, with val's tensors)::

    stats = CalibrationStats(min_conf=0.25)
    stats.update(predn, labelsn, correct)      # (n, 6) detections, (m, 5) labels, (n, 10) or (n,) TP flags
    for line in stats.format_lines(names):
        LOGGER.info(line)
    json.dump(stats.summary(names), f)
    stats.plot(save_dir)                       # save_dir / "calibration.png"
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from utils.metrics import box_iou

Array = Union[np.ndarray, torch.Tensor, Sequence[float]]
Names = Union[Sequence[str], Dict[int, str], None]

MIN_CONF = 0.25  # detect.py's default --conf-thres
IOU_THRES = 0.5
N_BINS = 10
STRATEGIES = ("width", "count")
PLOT_NAME = "calibration.png"


def _numpy(x, dtype=None) -> np.ndarray:
    """numpy copy of a tensor / array / sequence (``None`` -> empty)."""
    if x is None:
        return np.zeros(0, dtype=dtype)
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        x = x.numpy()
    return np.asarray(x, dtype=dtype)


def _nan_to_none(x: float) -> Optional[float]:
    return None if x is None or math.isnan(x) else float(x)


def _class_name(names: Names, c: int) -> str:
    lookup = dict(enumerate(names)) if isinstance(names, (list, tuple)) else dict(names or {})
    return str(lookup.get(int(c), int(c)))


# --------------------------------------------------------------------------------------------------------
# reliability bins, ECE, MCE
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin statistics of (confidence, correct) pairs; empty bins have NaN ``mean_conf`` / ``accuracy``."""

    edges: np.ndarray  # (B + 1,) bin boundaries: k / B, or for equal-count bins see _count_groups
    counts: np.ndarray  # (B,) int
    mean_conf: np.ndarray  # (B,)
    accuracy: np.ndarray  # (B,)
    strategy: str = "width"

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    @property
    def gaps(self) -> np.ndarray:
        """``|accuracy - mean_conf|`` per bin (NaN for empty bins)."""
        return np.abs(self.accuracy - self.mean_conf)

    @property
    def ece(self) -> float:
        """Expected calibration error, NaN without detections."""
        if self.n == 0:
            return float("nan")
        full = self.counts > 0
        return float((self.counts[full] / self.n * self.gaps[full]).sum())

    @property
    def mce(self) -> float:
        """Maximum calibration error over non-empty bins, NaN without detections."""
        return float(self.gaps[self.counts > 0].max()) if self.n else float("nan")

    def rows(self) -> List[dict]:
        """JSON-ready table: one ``{lo, hi, count, mean_conf, accuracy}`` per bin (``None`` for empty bins)."""
        return [{"lo": float(self.edges[k]), "hi": float(self.edges[k + 1]), "count": int(self.counts[k]),
                 "mean_conf": _nan_to_none(self.mean_conf[k]), "accuracy": _nan_to_none(self.accuracy[k])}
                for k in range(len(self.counts))]


def _check_bins_args(conf: np.ndarray, correct: np.ndarray, n_bins: int, strategy: str) -> None:
    if conf.ndim != 1 or correct.shape != conf.shape:
        raise ValueError(f"reliability_bins: conf and correct must be 1-D of equal length, got shapes "
                         f"{conf.shape} and {correct.shape}")
    if int(n_bins) < 1:
        raise ValueError(f"reliability_bins: n_bins must be >= 1, got {n_bins}")
    if strategy not in STRATEGIES:
        raise ValueError(f"reliability_bins: strategy must be one of {', '.join(STRATEGIES)}, got '{strategy}'")


def _width_groups(conf: np.ndarray, n_bins: int) -> Tuple[np.ndarray, np.ndarray]:
    """Equal-width bins over [0, 1]: (edges, bin index of every confidence)."""
    # edges k / B (np.linspace gives 0.30000000000000004 for 3 / 10) and a search against those same edges
    # (floor(conf * B) puts e.g. 1 / 49 in bin 0), so a confidence equal to an edge opens the bin above it
    edges = np.arange(n_bins + 1) / n_bins
    index = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)
    return edges, index


def _count_groups(conf: np.ndarray, n_bins: int) -> Tuple[np.ndarray, np.ndarray]:
    """Equal-count bins: cuts at the values where runs of N / B sorted confidences start; equal confidences
    always share a bin (quantised exports produce many ties), so counts are only roughly equal and there can
    be fewer than B bins. Edges: halfway between neighbouring bins, the outer ones at the lowest and highest
    confidence (not 0 and 1, which would stretch the end bins in the plot)."""
    s = np.sort(conf)
    n, k = len(s), min(n_bins, len(s))
    cuts = np.unique(s[np.arange(1, k) * n // k])
    cuts = cuts[cuts > s[0]]
    index = np.searchsorted(cuts, conf, side="right")
    lows = np.concatenate((s[:1], cuts))  # smallest confidence of every bin
    highs = np.concatenate((s[np.searchsorted(s, cuts) - 1], s[-1:]))  # largest
    return np.concatenate((s[:1], (highs[:-1] + lows[1:]) / 2, s[-1:])), index


def reliability_bins(conf: Array, correct: Array, n_bins: int = N_BINS, strategy: str = "width"
                     ) -> ReliabilityBins:
    """Bin (confidence, correct) pairs by confidence; ``strategy`` is ``"width"`` or ``"count"`` (module doc).

    With no pairs both strategies return ``n_bins`` empty equal-width bins.
    """
    conf, correct = _numpy(conf, np.float64).reshape(-1), _numpy(correct, bool).reshape(-1)
    _check_bins_args(conf, correct, n_bins, strategy)
    n_bins = int(n_bins)
    edges, index = (_count_groups if strategy == "count" and len(conf) else _width_groups)(conf, n_bins)
    n_out = len(edges) - 1
    counts = np.bincount(index, minlength=n_out)
    with np.errstate(invalid="ignore", divide="ignore"):  # empty bins -> NaN
        mean_conf = np.bincount(index, weights=conf, minlength=n_out) / counts
        accuracy = np.bincount(index, weights=correct.astype(np.float64), minlength=n_out) / counts
    return ReliabilityBins(edges, counts, mean_conf, accuracy, strategy)


def expected_calibration_error(conf: Array, correct: Array, n_bins: int = N_BINS, strategy: str = "width"
                               ) -> float:
    """ECE of (confidence, correct) pairs; NaN when there are none."""
    return reliability_bins(conf, correct, n_bins, strategy).ece


# --------------------------------------------------------------------------------------------------------
# class-agnostic matching
# --------------------------------------------------------------------------------------------------------
def _greedy_pairs(iou: np.ndarray, conf: np.ndarray, iou_thres: float) -> Tuple[np.ndarray, np.ndarray]:
    """Detections in decreasing confidence (ties: input order) each take the free label of highest IoU."""
    free = np.ones(iou.shape[1], dtype=bool)
    det, lab = [], []
    order = np.argsort(-conf, kind="stable")
    for d in order[(iou[order] >= iou_thres).any(1)]:  # only detections that can match something
        cand = np.where(free, iou[d], -1.0)
        j = int(cand.argmax())
        if cand[j] >= iou_thres:
            free[j] = False
            det.append(d)
            lab.append(j)
            if not free.any():
                break
    return np.array(det, dtype=np.int64), np.array(lab, dtype=np.int64)


def _check_image(detections: np.ndarray, labels: np.ndarray) -> None:
    if detections.ndim != 2 or detections.shape[1] < 6:
        raise ValueError(f"detections must be (n, 6) [x1, y1, x2, y2, conf, cls], got shape {detections.shape}")
    if labels.ndim != 2 or labels.shape[1] != 5:
        raise ValueError(f"labels must be (m, 5) [cls, x1, y1, x2, y2], got shape {labels.shape}")


def _as_image(detections, labels) -> Tuple[np.ndarray, np.ndarray]:
    """float64 arrays (n, 6) and (m, 5); ``None`` or empty input becomes an empty array of the right shape."""
    det = _numpy(detections, np.float64)
    lab = _numpy(labels, np.float64)
    det = det.reshape(0, 6) if det.size == 0 else det
    lab = lab.reshape(0, 5) if lab.size == 0 else lab
    _check_image(det, lab)
    return det, lab


def class_agnostic_matches(detections: Array, labels: Array, iou_thres: float = IOU_THRES
                           ) -> Tuple[np.ndarray, np.ndarray]:
    """Classes of the detection-label pairs of one image matched ignoring class (module doc).

    ``detections`` (n, 6) [x1, y1, x2, y2, conf, cls], ``labels`` (m, 5) [cls, x1, y1, x2, y2], same pixel
    space, tensors or arrays. Returns ``(pred_cls, true_cls)``, int64 arrays of the matched pairs in the
    order they were matched (decreasing detection confidence).
    """
    det, lab = _as_image(detections, labels)
    if not len(det) or not len(lab):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    iou = box_iou(torch.from_numpy(det[:, :4]), torch.from_numpy(lab[:, 1:])).numpy()
    d, j = _greedy_pairs(iou, det[:, 4], iou_thres)
    return det[d, 5].astype(np.int64), lab[j, 0].astype(np.int64)


# --------------------------------------------------------------------------------------------------------
# accumulator over a validation run
# --------------------------------------------------------------------------------------------------------
class CalibrationStats:
    """Collects the population's confidences, TP flags and class-agnostic matches image by image."""

    def __init__(self, min_conf: float = MIN_CONF, iou_thres: float = IOU_THRES, n_bins: int = N_BINS,
                 strategy: str = "width"):
        if strategy not in STRATEGIES:
            raise ValueError(f"CalibrationStats: strategy must be one of {', '.join(STRATEGIES)}, got "
                             f"'{strategy}'")
        if int(n_bins) < 1:
            raise ValueError(f"CalibrationStats: n_bins must be >= 1, got {n_bins}")
        self.min_conf, self.iou_thres = float(min_conf), float(iou_thres)
        self.n_bins, self.strategy = int(n_bins), strategy
        self._conf: List[np.ndarray] = []
        self._correct: List[np.ndarray] = []
        self._pred_cls: List[np.ndarray] = []
        self._true_cls: List[np.ndarray] = []
        self._label_cls: List[np.ndarray] = []
        self.images = 0

    def update(self, detections: Optional[Array], labels: Optional[Array], correct: Optional[Array]) -> None:
        """Add one image: detections (n, 6), labels (m, 5) in the same pixels, ``correct`` (n, k) or (n,)
        TP flags whose first column is IoU 0.5 (val's ``process_batch``). ``None`` means empty."""
        det, lab = _as_image(detections, labels)
        ok = _numpy(correct, bool)
        ok = ok[:, 0] if ok.ndim == 2 else ok.reshape(-1)
        if len(ok) != len(det):
            raise ValueError(f"CalibrationStats.update: correct has {len(ok)} rows for {len(det)} detections")
        keep = det[:, 4] >= self.min_conf
        det, ok = det[keep], ok[keep]
        pred_cls, true_cls = class_agnostic_matches(det, lab, self.iou_thres)
        self._conf.append(det[:, 4])
        self._correct.append(ok)
        self._pred_cls.append(pred_cls)
        self._true_cls.append(true_cls)
        self._label_cls.append(lab[:, 0].astype(np.int64))
        self.images += 1

    # ---- aggregated numbers ----
    @staticmethod
    def _cat(parts: List[np.ndarray], dtype) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    def bins(self) -> ReliabilityBins:
        return reliability_bins(self._cat(self._conf, np.float64), self._cat(self._correct, bool), self.n_bins,
                                self.strategy)

    def matches(self) -> Tuple[np.ndarray, np.ndarray]:
        """(pred_cls, true_cls) of every class-agnostic match so far."""
        return self._cat(self._pred_cls, np.int64), self._cat(self._true_cls, np.int64)

    def wrong_class_rate(self) -> float:
        pred, true = self.matches()
        return float((pred != true).mean()) if len(true) else float("nan")

    def confused_pairs(self, names: Names = None) -> List[dict]:
        """Wrong-class pairs, most frequent first: ``{true, pred, true_name, pred_name, count, share}``."""
        pred, true = self.matches()
        wrong = pred != true
        if not wrong.any():
            return []
        pairs, counts = np.unique(np.stack((true[wrong], pred[wrong]), 1), axis=0, return_counts=True)
        matched = {int(c): int(n) for c, n in zip(*np.unique(true, return_counts=True))}
        rows = [{"true": int(t), "pred": int(p), "true_name": _class_name(names, t),
                 "pred_name": _class_name(names, p), "count": int(n), "share": float(n / matched[int(t)])}
                for (t, p), n in zip(pairs, counts)]
        return sorted(rows, key=lambda r: (-r["count"], -r["share"], r["true"], r["pred"]))

    def per_class(self, names: Names = None) -> List[dict]:
        """Per true class (with labels or matches): ``{class, name, labels, matched, wrong, wrong_rate}``."""
        pred, true = self.matches()
        label_cls = self._cat(self._label_cls, np.int64)
        rows = []
        for c in np.union1d(label_cls, true):
            on_c = true == c
            matched, wrong = int(on_c.sum()), int((pred[on_c] != c).sum())
            rows.append({"class": int(c), "name": _class_name(names, c), "labels": int((label_cls == c).sum()),
                         "matched": matched, "wrong": wrong, "wrong_rate": wrong / matched if matched else None})
        return rows

    def summary(self, names: Names = None) -> dict:
        """Everything as plain JSON types (NaN -> ``None``), with the definitions and parameters used."""
        bins = self.bins()
        pred, true = self.matches()
        conf, correct = self._cat(self._conf, np.float64), self._cat(self._correct, bool)
        return {
            "ece": _nan_to_none(bins.ece),
            "mce": _nan_to_none(bins.mce),
            "detections": bins.n,
            "images": self.images,
            "labels": int(sum(len(x) for x in self._label_cls)),
            "mean_conf": _nan_to_none(float(conf.mean())) if len(conf) else None,
            "accuracy": _nan_to_none(float(correct.mean())) if len(correct) else None,
            "bins": bins.rows(),
            "matched": int(len(true)),
            "wrong_class": int((pred != true).sum()),
            "wrong_class_rate": _nan_to_none(self.wrong_class_rate()),
            "confused_pairs": self.confused_pairs(names),
            "per_class": self.per_class(names),
            "params": {"min_conf": self.min_conf, "iou_thres": self.iou_thres, "n_bins": self.n_bins,
                       "strategy": self.strategy},
            "definitions": self.definitions(),
        }

    def definitions(self) -> Dict[str, str]:
        binning = "equal-width over [0, 1]" if self.strategy == "width" else "equal-count"
        return {
            "population": f"detections after NMS with confidence >= {self.min_conf:g}",
            "correct": "true positive at IoU 0.5, same class, greedy matching in decreasing confidence",
            "ece": f"sum over {self.n_bins} {binning} confidence bins of (n_bin / N) * |accuracy - mean_conf|",
            "mce": "max over non-empty bins of |accuracy - mean_conf|",
            "wrong_class_rate": f"share of detections matched to a label ignoring class (IoU >= "
                                f"{self.iou_thres:g}, greedy in decreasing confidence) whose class differs",
            "pair_share": "pair count / detections matched to labels of the true class",
        }

    # ---- reporting ----
    def format_lines(self, names: Names = None, top: int = 5) -> List[str]:
        """Lines to log after the per-class table: calibration, wrong-class rate, the ``top`` confused pairs."""
        bins = self.bins()
        pred, true = self.matches()
        binning = "equal-width" if self.strategy == "width" else "equal-count"
        lines = [f"{'Calibration':>20}  conf>={self.min_conf:g}: {bins.n} detections, ECE {_fmt(bins.ece)}, "
                 f"MCE {_fmt(bins.mce)} ({self.n_bins} {binning} bins, correct = TP@0.5)",
                 f"{'Wrong class':>20}  {int((pred != true).sum())} of {len(true)} detections matched ignoring "
                 f"class at IoU>={self.iou_thres:g}: {_fmt(self.wrong_class_rate())}"]
        pairs = self.confused_pairs(names)[:top]
        if pairs:
            text = [f"{r['true_name']} -> {r['pred_name']}" for r in pairs]
            w = max(20, *(len(t) for t in text))
            lines.append(f"{'true -> predicted':>{w}}  {'count':>7}  {'share of true':>13}")
            lines += [f"{t:>{w}}  {r['count']:>7}  {r['share']:>13.3f}" for t, r in zip(text, pairs)]
        return lines

    def plot(self, path: Union[str, Path] = ".") -> Path:
        """Write the reliability diagram; ``path`` is a ``.png`` file or a directory (-> ``calibration.png``)."""
        path = Path(path)
        path = path if path.suffix.lower() == ".png" else path / PLOT_NAME
        rate = self.wrong_class_rate()
        subtitle = f"wrong class {rate:.1%} of {len(self.matches()[1])} matched" if not math.isnan(rate) else \
            "wrong class: no matches"
        return plot_reliability(self.bins(), path, min_conf=self.min_conf, subtitle=subtitle)


def _fmt(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.3f}"


# --------------------------------------------------------------------------------------------------------
# reliability diagram
# --------------------------------------------------------------------------------------------------------
def plot_reliability(bins: ReliabilityBins, path: Union[str, Path], min_conf: float = 0.0, subtitle: str = ""
                     ) -> Path:
    """Accuracy per bin as bars against the diagonal, the calibration gap shaded, counts in a lower panel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6, 7), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1)})
    # a bin holding one repeated confidence has zero width: keep it visible
    left, width, full = bins.edges[:-1], np.maximum(np.diff(bins.edges), 0.005), bins.counts > 0
    bar, gap = dict(facecolor="tab:blue", edgecolor="black"), dict(facecolor="tab:red", alpha=0.3, hatch="//",
                                                                       edgecolor="tab:red")
    top.bar(left[full], bins.accuracy[full], width[full], align="edge", **bar)
    low = np.minimum(bins.accuracy, bins.mean_conf)
    top.bar(left[full], bins.gaps[full], width[full], bottom=low[full], align="edge", **gap)
    top.plot([0, 1], [0, 1], "--", color="0.3")
    handles = [Patch(**bar, label="accuracy (TP@0.5)"), Patch(**gap, label="gap to mean confidence"),
               Line2D([], [], ls="--", color="0.3", label="perfect calibration")]
    top.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=8, frameon=False)
    if min_conf > 0:
        for ax in (top, bottom):
            ax.axvspan(0, min_conf, color="0.92", zorder=0)
        top.text(min_conf / 2, 0.97, f"conf < {min_conf:g}\nnot counted", ha="center", va="top", fontsize=8,
                 color="0.4")
    if not bins.n:
        top.text(0.65, 0.25, f"no detections{f' with conf >= {min_conf:g}' if min_conf > 0 else ''}",
                 ha="center", va="center", fontsize=11, color="0.4")
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="Accuracy (share of TP@0.5)")
    title = f"Reliability: ECE {_fmt(bins.ece)}, MCE {_fmt(bins.mce)}, {bins.n} detections"
    fig.suptitle(title + (f"\n{subtitle}" if subtitle else ""), fontsize=10)

    bottom.bar(left, bins.counts, width, align="edge", color="0.6", edgecolor="black")
    for x, w, n in zip(left[full], width[full], bins.counts[full]):
        bottom.text(x + w / 2, n, str(int(n)), ha="center", va="bottom", fontsize=7)
    bottom.set(xlabel="Confidence", ylabel="Detections", ylim=(0, max(1, int(bins.counts.max(initial=0))) * 1.25))
    bottom.yaxis.set_major_locator(MaxNLocator(integer=True))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=200)
    return path
