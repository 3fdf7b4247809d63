"""The comparison's figures (PNG): headline metrics, per-class AP, training time; seeds as dots, mean +- std bars."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from engine.compare.stats import Summary

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def _bars(ax, names: Sequence[str], summaries: Sequence[Summary], title: str, scale: float = 1.0) -> None:
    """One panel: a bar per variant (mean), its std as an error bar, every seed as a dot."""
    x = np.arange(len(names))
    means = [s.mean * scale if s.mean is not None else 0.0 for s in summaries]
    errs = [s.std * scale if s.std is not None else 0.0 for s in summaries]
    ax.bar(x, means, yerr=errs, capsize=4, color=[_color(i) for i in range(len(names))], alpha=0.6)
    for i, s in enumerate(summaries):
        if s.values:
            jitter = np.linspace(-0.12, 0.12, len(s.values)) if len(s.values) > 1 else [0.0]
            ax.plot(i + np.asarray(jitter), np.asarray(s.values) * scale, "k.", ms=6)
        if s.mean is None:
            ax.text(i, 0, "no run", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=20 if max(map(len, names)) > 8 else 0, ha="right" if
                       max(map(len, names)) > 8 else "center", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)


def plot_metrics(metrics: Dict[str, Dict[str, Summary]], labels: Dict[str, str], path: Path) -> Path:
    """Panels of ``metrics[key][variant]`` (one per key, titled ``labels[key]``)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(metrics)
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.6), squeeze=False)
    for ax, k in zip(axes[0], keys):
        names = list(metrics[k])
        _bars(ax, names, [metrics[k][n] for n in names], labels[k])
    fig.suptitle("mean +- std over seeds (dots: single seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_per_class(per_class: Dict[str, Dict[str, Summary]], classes: List[str], path: Path,
                   metric: str = "AP@0.5") -> Path:
    """Horizontal grouped bars: per class, one bar per variant (mean, std error bar)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(per_class)
    h = 0.8 / max(len(variants), 1)
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.22 * len(classes) * max(len(variants), 1) + 1.2)))
    y = np.arange(len(classes))
    for i, v in enumerate(variants):
        s = [per_class[v].get(c, Summary([])) for c in classes]
        ax.barh(y + (i - (len(variants) - 1) / 2) * h, [x.mean or 0.0 for x in s], height=h,
                xerr=[x.std or 0.0 for x in s], capsize=2, color=_color(i), alpha=0.75, label=v,
                error_kw={"elinewidth": 0.8})
    ax.set_yticks(y)
    ax.set_yticklabels(classes, fontsize=7 if len(classes) > 20 else 9)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"{metric} (mean +- std over seeds)")
    ax.legend(fontsize=8, loc="best")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_train_time(times: Dict[str, Summary], path: Path) -> Path:
    """Training wall time per run (dots) and per variant (mean +- std), in minutes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(3.5, 1.2 * len(times) + 1.5), 3.4))
    names = list(times)
    _bars(ax, names, [times[n] for n in names], "training time per run (min)", scale=1 / 60)
    ax.set_ylabel("minutes")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
