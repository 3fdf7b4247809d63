"""``report.json`` (every number) and ``report.md`` (tables, verdicts, plots) of a comparison."""
from __future__ import annotations

import json
import shlex
import math
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from engine.compare.experiment import Experiment, flag_value
from engine.compare.plots import plot_metrics, plot_per_class, plot_train_time
from engine.compare.runner import RunResult
from engine.compare.stats import RULE, SE_FACTOR, Summary, caveat, pairwise, summarize
from utils.figures import try_plot

# key -> (label, higher is better, where in metrics.json or the run result)
METRICS = {
    "mAP50": ("mAP@0.5", True), "mAP50-95": ("mAP@0.5:0.95", True), "P": ("precision", True),
    "R": ("recall", True), "ece": ("ECE", False), "wrong_class_rate": ("wrong-class rate", False),
    "train_seconds": ("training time (s)", False),
}
TESTED = ("mAP50", "mAP50-95", "ece", "wrong_class_rate", "train_seconds")  # pairs are judged on these
PLOTTED = ("mAP50", "mAP50-95", "ece", "wrong_class_rate")


def run_values(r: RunResult) -> Dict[str, Optional[float]]:
    """The headline numbers of one run (None where missing)."""
    m = r.metrics or {}
    head, cal = m.get("metrics") or {}, m.get("calibration") or {}
    out = {k: head.get(k) for k in ("mAP50", "mAP50-95", "P", "R")}
    out.update(ece=cal.get("ece"), wrong_class_rate=cal.get("wrong_class_rate"))
    out["train_seconds"] = r.train_seconds if r.metrics is not None else None
    return out


def _per_class(results: Sequence[RunResult]) -> Dict[str, Dict[str, Dict[str, Summary]]]:
    """variant -> class name -> {"AP50", "AP"} summaries over the variant's finished seeds."""
    acc = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in results:
        for row in (r.metrics or {}).get("per_class") or []:
            name = str(row.get("name", row.get("class")))
            for k in ("AP50", "AP"):
                acc[r.run.variant][name][k].append(row.get(k))
    return {v: {c: {k: summarize(x) for k, x in d.items()} for c, d in cls.items()} for v, cls in acc.items()}


def _confusions(results: Sequence[RunResult], top: int = 5) -> Dict[str, List[dict]]:
    """variant -> most frequent wrong-class pairs summed over its seeds."""
    acc = defaultdict(lambda: defaultdict(int))
    for r in results:
        for p in ((r.metrics or {}).get("calibration") or {}).get("confused_pairs") or []:
            acc[r.run.variant][(p.get("true_name"), p.get("pred_name"))] += int(p.get("count", 0))
    return {v: [{"true": t, "pred": p, "count": n} for (t, p), n in sorted(d.items(), key=lambda kv: -kv[1])[:top]]
            for v, d in acc.items()}


def build_report(exp: Experiment, results: Sequence[RunResult], diagnosis: Optional[dict] = None,
                 command: Sequence[str] = (), execution: Optional[dict] = None) -> dict:
    """Every number of the comparison as one JSON-able dict."""
    names = [v.name for v in exp.variants]
    values = {r.run.name: run_values(r) for r in results}
    summaries = {k: {v: summarize([values[r.run.name][k] for r in results if r.run.variant == v]) for v in names}
                 for k in METRICS}
    per_class = _per_class(results)
    definitions = next((((r.metrics or {}).get("calibration") or {}).get("definitions") for r in results
                        if ((r.metrics or {}).get("calibration") or {}).get("definitions")), {})
    return {
        "experiment": str(exp.dir), "digest": exp.digest, "command": shlex.join(command), "settings": exp.settings,
        "execution": execution or {}, "budget": budget(exp), "diagnosis": diagnosis or {},
        "rule": RULE, "se_factor": SE_FACTOR,
        "variants": {v.name: {"spec": v.to_dict(),
                              "finished": sum(r.status != "failed" for r in results if r.run.variant == v.name),
                              "failed": sum(r.status == "failed" for r in results if r.run.variant == v.name),
                              "metrics": {k: summaries[k][v.name].to_dict() for k in METRICS},
                              "per_class": {c: {k: s.to_dict() for k, s in d.items()}
                                            for c, d in per_class.get(v.name, {}).items()}}
                     for v in exp.variants},
        "pairs": {k: pairwise(summaries[k], METRICS[k][1]) for k in TESTED},
        "confused_pairs": _confusions(results),
        "runs": [dict(r.to_dict(), **values[r.run.name]) for r in results],
        "definitions": definitions,
    }


def budget(exp: Experiment) -> dict:
    args = exp.settings["train_args"]
    return {"data": exp.settings["data"], "cfg": flag_value(args, "--cfg"), "weights": flag_value(args, "--weights"),
            "epochs": flag_value(args, "--epochs"), "img": exp.settings["img"],
            "batch": flag_value(args, "--batch-size") or flag_value(args, "--batch"), "seeds": exp.seeds,
            "other_train_args": args}


def write_plots(report: dict, folder: Path) -> List[str]:
    """The PNG figures next to report.md; names of those drawn."""
    variants = list(report["variants"])
    summ = {k: {v: Summary(report["variants"][v]["metrics"][k]["values"]) for v in variants} for k in METRICS}
    drawn = [try_plot("metrics.png", plot_metrics, {k: summ[k] for k in PLOTTED},
                      {k: METRICS[k][0] for k in PLOTTED}, folder / "metrics.png"),
             try_plot("train_time.png", plot_train_time, summ["train_seconds"], folder / "train_time.png")]
    classes = list(dict.fromkeys(c for v in variants for c in report["variants"][v]["per_class"]))
    if classes:
        pc = {v: {c: Summary(d["AP50"]["values"]) for c, d in report["variants"][v]["per_class"].items()}
              for v in variants}
        drawn.append(try_plot("per_class_ap.png", plot_per_class, pc, classes, folder / "per_class_ap.png"))
    return [Path(p).name for p in drawn if p]


def write_report(report: dict, folder: Path) -> Path:
    """``report.json`` and ``report.md`` (with the plots) into ``folder``; returns report.md's path."""
    report["plots"] = write_plots(report, folder)
    (folder / "report.json").write_text(json.dumps(_finite(report), indent=1, default=str))
    md = folder / "report.md"
    md.write_text("\n".join(markdown(report)) + "\n")
    return md


def _finite(x):
    """NaN / inf -> None, so report.json is strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


# --------------------------------------------------------------------------------------------------------
# markdown
# --------------------------------------------------------------------------------------------------------
def _f(x, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _ms(s: dict, digits: int = 3, scale: float = 1.0) -> str:
    """'mean ± std' of a Summary dict; more decimals for means near zero (an untrained model's mAP)."""
    if not s["n"]:
        return "n/a"
    mean = s["mean"] * scale
    digits = digits + 2 if 0 < abs(mean) < 10 ** -(digits - 1) else digits
    std = f" ± {s['std'] * scale:.{digits}f}" if s["std"] is not None else ""
    return f"{mean:.{digits}f}{std}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"] + \
        ["| " + " | ".join(map(str, r)) + " |" for r in rows]


def markdown(rep: dict) -> List[str]:
    """report.md, section by section."""
    b = rep["budget"]
    out = [f"# Class-loss comparison: {' vs '.join(rep['variants'])}", "",
           f"Folder `{rep['experiment']}`. Command: `{rep['command']}`", "",
           f"Budget: data `{b['data']}`, model `{b['cfg'] or b['weights']}`, {b['epochs'] or 'default'} epochs, "
           f"image size {' '.join(map(str, b['img']))}, batch {b['batch'] or 'default'}, seeds {b['seeds']}; "
           f"train.py arguments `{shlex.join(b['other_train_args'])}`. Variants: "
           + "; ".join(f"`{n}` = `{v['spec']['text']}`" for n, v in rep["variants"].items()) + ".", ""]
    if rep.get("diagnosis", {}).get("lines"):
        out += ["## What the labels say", "", "```", *rep["diagnosis"]["lines"], "```", ""]
    out += _summary_section(rep) + _pairs_section(rep) + _per_class_section(rep) + _confusion_section(rep)
    out += _runs_section(rep)
    if rep.get("plots"):
        out += ["## Plots", ""] + [f"![{p}]({p})" for p in rep["plots"]] + [""]
    if rep.get("definitions"):
        out += ["## Definitions (from the runs' metrics.json)", ""] + \
            [f"- **{k}**: {v}" for k, v in rep["definitions"].items()] + [""]
    return out


def _summary_section(rep: dict) -> List[str]:
    rows = []
    for n, v in rep["variants"].items():
        m = v["metrics"]
        rows.append([f"`{n}`", f"{v['finished']}" + (f" ({v['failed']} failed)" if v["failed"] else ""),
                     _ms(m["mAP50"]), _ms(m["mAP50-95"]), _ms(m["P"]), _ms(m["R"]), _ms(m["ece"]),
                     _ms(m["wrong_class_rate"]), _ms(m["train_seconds"], 1, 1 / 60)])
    header = ["variant", "runs", "mAP@0.5", "mAP@0.5:0.95", "P", "R", "ECE ↓", "wrong class ↓", "train min/run"]
    return ["## Results (mean ± standard deviation over seeds)", ""] + _table(header, rows) + \
        ["", "ECE: expected calibration error of the detections a user sees (conf >= 0.25): how far confidence is "
         "from the share of correct detections; 0 is perfectly calibrated. Wrong class: share of detections that "
         "sit on a labelled object (IoU >= 0.5, any class) but name the wrong class."] + _missing_note(rep) + [""]


def _missing_note(rep: dict) -> List[str]:
    """Why ECE / wrong-class rate can be n/a for a finished run."""
    empty = [n for n, v in rep["variants"].items() if v["finished"] and not v["metrics"]["ece"]["n"]]
    if not empty:
        return []
    return [f"ECE / wrong class n/a for {', '.join(f'`{n}`' for n in empty)}: no detection reached confidence "
            f"0.25 (or none sat on a label), so there is nothing to calibrate (typical of a barely trained model)."]


def _pairs_section(rep: dict) -> List[str]:
    rows = []
    for k, pairs in rep["pairs"].items():
        scale, digits = (1 / 60, 2) if k == "train_seconds" else (1.0, 4)
        label = "training time (min)" if k == "train_seconds" else METRICS[k][0]
        for p in pairs:
            verdict = p["verdict"] + (f": `{p['better']}` better" if p["better"] else "")
            rows.append([label, f"`{p['a']}`", f"`{p['b']}`",
                         _f(p["diff"] * scale if p["diff"] is not None else None, digits),
                         _f(SE_FACTOR * p["se"] * scale if p["se"] is not None else None, digits), verdict,
                         _f(p["p"], 3)])
    return ["## Is a difference larger than the seed spread?", "",
            f"Rule: {rep['rule']}. {caveat(_min_seeds(rep))}", ""] + _table(
        ["metric", "a", "b", "b − a", f"{SE_FACTOR:g}×SE", "verdict", "Welch p"], rows) + [""]


def _min_seeds(rep: dict) -> int:
    return min((v["metrics"]["mAP50"]["n"] for v in rep["variants"].values()), default=0)


def _per_class_section(rep: dict) -> List[str]:
    variants = list(rep["variants"])
    classes = list(dict.fromkeys(c for v in variants for c in rep["variants"][v]["per_class"]))
    if not classes:
        return []
    rows = [[c] + [_ms(rep["variants"][v]["per_class"].get(c, {}).get("AP50", {"n": 0})) for v in variants]
            for c in classes]
    return ["## Per-class AP@0.5 (mean ± std over seeds)", ""] + _table(["class"] + [f"`{v}`" for v in variants],
                                                                     rows) + [""]


def _confusion_section(rep: dict) -> List[str]:
    rows = [[f"`{v}`", "; ".join(f"{p['true']} → {p['pred']} ({p['count']})" for p in pairs) or "none"]
            for v, pairs in rep["confused_pairs"].items()]
    if not rows:
        return []
    return ["## Most frequent wrong classes (true → predicted, detections summed over seeds)", ""] + \
        _table(["variant", "pairs"], rows) + [""]


def _runs_section(rep: dict) -> List[str]:
    rows = [[r["run"], r["status"].upper() if r["status"] == "failed" else r["status"], _f(r["mAP50"]),
             _f(r["mAP50-95"]), _f(r["ece"]), _f(r["wrong_class_rate"]),
             _f(r["train_seconds"] / 60 if r["train_seconds"] is not None else None, 1),
             f"`{r['log']}`" + (f" ({r['error']})" if r["error"] else "")] for r in rep["runs"]]
    failed = [r for r in rep["runs"] if r["status"] == "failed"]
    note = [f"**{len(failed)} run(s) failed**; they are left out of the means above. See their logs."] if failed else []
    return ["## Runs", ""] + note + _table(["run", "status", "mAP@0.5", "mAP@0.5:0.95", "ECE", "wrong class",
                                           "train min", "log"], rows) + [""]
