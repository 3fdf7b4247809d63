"""The dataset check's report folder: ``report.md``, ``report.json``, ``class_counts.png``, ``box_sizes.png``;
and the short form printed at the start of training (report written into the run folder)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from data.dataset_check import CheckReport, CheckSettings, run_checks, split_from_dataset
from utils.figures import try_plot
from utils.log import LOGGER

REPORT_DIR = "dataset_check"  # inside a training run folder


def markdown(report: CheckReport) -> str:
    """The report as a markdown page: splits, per-class table, then the findings with examples."""
    s = report.settings
    splits = list(report.splits)
    lines = ["# Dataset check", "",
             f"Settings: --img {s.img_size}, --min-boxes {s.min_boxes}, --min-pixels {s.min_pixels:g}, "
             f"--max-aspect {s.max_aspect:g}", "",
             "| split | images | boxes | label files found | missing | empty | dropped |",
             "|---|---|---|---|---|---|---|"]
    for name, d in report.splits.items():
        lf = d["label_files"]
        lines.append(f"| {name} | {d['images']} | {d['boxes']} | {lf['found']} | {lf['missing']} | {lf['empty']} | "
                     f"{lf['dropped']} |")
    lines += ["", "## Classes", "", "| id | class | " + " | ".join(f"{n} boxes (images)" for n in splits) + " |",
              "|---|---|" + "---|" * len(splits)]
    for c, name in enumerate(report.names):
        cells = [f"{report.splits[n]['boxes_per_class'][c]} ({report.splits[n]['images_per_class'][c]})"
                 for n in splits]
        lines.append(f"| {c} | {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Findings", ""]
    if not report.findings:
        lines.append("Nothing found.")
    for f in report.findings:
        lines.append(f"- **{f.severity.upper()}** {f.message}")
        lines += [f"  - `{e}`" for e in f.examples]
        if f.count > len(f.examples) and f.examples:
            lines.append(f"  - ... {f.count - len(f.examples)} more")
    return "\n".join(lines) + "\n"


def plot_class_counts(report: CheckReport, file: Path) -> None:
    """Boxes per class, one bar per split, the --min-boxes line dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nc, splits = len(report.names), list(report.splits)
    fig, ax = plt.subplots(figsize=(max(6.0, min(0.35 * nc * len(splits), 24.0)), 4))
    width = 0.8 / max(len(splits), 1)
    for k, name in enumerate(splits):
        ax.bar(np.arange(nc) + (k - (len(splits) - 1) / 2) * width, report.splits[name]["boxes_per_class"],
               width, label=name)
    ax.axhline(report.settings.min_boxes, color="red", linestyle="--", linewidth=1,
               label=f"{report.settings.min_boxes} boxes")
    ax.set_ylabel("boxes")
    if nc <= 40:
        ax.set_xticks(range(nc))
        ax.set_xticklabels(report.names, rotation=90, fontsize=7)
    else:
        ax.set_xlabel("class id")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(file, dpi=120)
    plt.close(fig)


def plot_box_sizes(report: CheckReport, file: Path) -> None:
    """Box width against height in pixels at --img (log axes), the --min-pixels limits dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, wh in report.box_sizes.items():
        if len(wh):
            wh = np.clip(wh, 0.1, None)
            ax.scatter(wh[:, 0], wh[:, 1], s=2, alpha=0.4, label=name, rasterized=True)
    m = report.settings.min_pixels
    ax.axvline(m, color="red", linestyle="--", linewidth=1)
    ax.axhline(m, color="red", linestyle="--", linewidth=1, label=f"{m:g} px")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"box width (px at --img {report.settings.img_size})")
    ax.set_ylabel("box height (px)")
    ax.legend(fontsize=7, markerscale=4)
    fig.tight_layout()
    fig.savefig(file, dpi=120)
    plt.close(fig)


def write_report(report: CheckReport, folder: Union[str, Path], plots: bool = True) -> Path:
    """Write the report files into ``folder`` (created); returns the markdown file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report.to_dict(), indent=1) + "\n")
    md = folder / "report.md"
    md.write_text(markdown(report))
    if plots:
        try_plot("class_counts.png", plot_class_counts, report, folder / "class_counts.png")
        try_plot("box_sizes.png", plot_box_sizes, report, folder / "box_sizes.png")
    return md


def check_training_data(datasets: Dict[str, Any], names: Sequence[str], img_size: int, save_dir: Union[str, Path]
                        ) -> Optional[CheckReport]:
    """The check of the loaded training splits (nothing re-read but the image hashes): printed in short, with
    report.md and report.json in ``save_dir/dataset_check`` (the plots of class counts and box sizes are the run's
    labels.jpg, already drawn). It only informs: a failure is one warning line, never a failed training."""
    try:
        splits = [split_from_dataset(name, ds) for name, ds in datasets.items() if ds is not None]
        report = run_checks(splits, list(names), CheckSettings(img_size=img_size))
        md = write_report(report, Path(save_dir) / REPORT_DIR, plots=False)
    except Exception as e:  # e.g. a full disk for the report
        LOGGER.warning(f"WARNING: dataset check not done: {type(e).__name__}: {e}")
        LOGGER.debug("dataset check traceback", exc_info=True)
        return None
    for line in report.short_lines():
        (LOGGER.warning if "WARNING" in line else LOGGER.info)(line)
    LOGGER.info(f"Dataset report: {md}")
    return report


def summary_lines(report: CheckReport) -> List[str]:
    """The check's findings as printable lines (the command line prints these, the report has the examples)."""
    out = report.short_lines()[:1]
    for f in report.findings:
        out.append(f"  {f.severity.upper()}: {f.message}")
    return out
