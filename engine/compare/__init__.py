"""compare.py's engine: train every class-loss variant with several seeds, evaluate, and report with spreads.

    plan_experiment (plan.py)  -> Experiment: variants x seeds, identity hash, folder runs/compare/expN
    run_all (runner.py)        -> train.py / val.py subprocesses, resumable, in parallel
    build_report / write_report (report.py, stats.py, plots.py) -> report.json, report.md, PNG plots
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional, Sequence

from data.config import check_dataset
from data.diagnosis import diagnose_dataset
from engine.compare.experiment import Experiment, write_hyp_files, write_spec
from engine.compare.plan import default_hyp, plan_experiment
from engine.compare.report import build_report, write_report
from engine.compare.runner import Execution, RunResult, plan_execution, run_all
from utils.log import LOGGER, colorstr

__all__ = ["run_comparison", "plan_experiment", "plan_execution", "run_all", "build_report", "write_report",
           "Experiment", "Execution", "RunResult"]


def diagnose(data: str) -> dict:
    """The label diagnosis of the training split, printed; {} when the labels cannot be read."""
    structure = diagnose_dataset(check_dataset(data))
    lines = structure.lines()
    for ln in lines:
        LOGGER.info(f"{colorstr('Labels: ')}{ln}" if not ln.startswith("Labels:") else ln)
    return dict(structure.to_dict(), lines=lines)


def run_comparison(opt: argparse.Namespace, train_extra: List[str], command: Sequence[str],
                   execution: Optional[Execution] = None, val_script: Optional[str] = None) -> dict:
    """Plan, run (or resume) and report one comparison; returns the report dict (also in expN/report.json)."""
    exp = plan_experiment(opt, train_extra)
    ex = execution or plan_execution(opt.jobs, opt.threads_per_run, opt.workers, opt.ddp)
    if val_script:
        ex.val_script = Path(val_script).resolve()
    diagnosis = diagnose(exp.settings["data"])
    write_spec(exp, command, ex.to_dict())
    hyp_files = write_hyp_files(exp, exp.settings["hyp"], default_hyp())
    n = len(exp.runs)
    how = f"torchrun x{ex.nproc}, one run at a time" if ex.ddp else f"{ex.jobs} at a time, {ex.threads} thread(s) each"
    LOGGER.info(f"{colorstr('compare: ')}{len(exp.variants)} variants x {len(exp.seeds)} seeds = {n} runs in "
                f"{exp.dir} ({how})")
    results = run_all(exp, ex, hyp_files)
    report = build_report(exp, results, diagnosis, command, ex.to_dict())
    md = write_report(report, exp.dir)
    failed = [r for r in results if r.status == "failed"]
    LOGGER.info(f"{colorstr('compare: ')}{n - len(failed)}/{n} runs finished"
                + (f", {len(failed)} failed (see their logs)" if failed else "") + f"; report {md}")
    report["results"] = results
    return report
