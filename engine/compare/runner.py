"""Running the (variant, seed) runs: train.py then val.py as subprocesses, several at once, resumable.

Each run keeps its state in ``expN/runs/<run>/compare_run.json`` (its identity digest, whether training
finished, wall times) and its output in ``expN/logs/<run>.log``. When the comparison is started again, a run is

* skipped when its ``metrics.json`` exists and its digest matches (finished);
* only evaluated when training finished but evaluation did not;
* resumed with ``train.py --resume last.pt`` when it was interrupted with a checkpoint (restarted from scratch
  if that fails);
* trained from scratch otherwise (its folder is emptied first: nothing of another setting survives).
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

from tqdm import tqdm

from engine.compare.experiment import RUNS_DIR, Experiment, RunSpec
from utils.files import ROOT

RUN_FILE = "compare_run.json"
METRICS_FILE = "metrics.json"


@dataclass
class Execution:
    """How the runs are executed (not part of a comparison's identity)."""

    jobs: int = 1  # runs in parallel
    threads: int = 1  # torch / OpenMP threads of each process
    workers: int = 1  # dataloader workers of each process
    ddp: bool = False  # each training through torchrun, one run at a time
    nproc: int = 1  # torchrun processes per training
    train_script: Path = ROOT / "train.py"
    val_script: Path = ROOT / "val.py"
    python: str = sys.executable

    def to_dict(self) -> dict:
        return {"jobs": self.jobs, "threads_per_run": self.threads, "workers": self.workers, "ddp": self.ddp,
                "nproc_per_node": self.nproc, "train_script": str(self.train_script),
                "val_script": str(self.val_script)}


def plan_execution(jobs: Optional[int], threads: Optional[int], workers: Optional[int], ddp: bool,
                   cores: Optional[int] = None) -> Execution:
    """Default: one run per core, one thread each; ``ddp``: one run at a time over all cores."""
    if not cores:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if ddp:
        return Execution(jobs=1, threads=max(1, threads or 1), workers=workers if workers is not None else 1,
                         ddp=True, nproc=cores)
    jobs = max(1, jobs or cores)
    threads = max(1, threads or cores // jobs)
    return Execution(jobs=jobs, threads=threads, workers=workers if workers is not None else min(threads, 8))


@dataclass
class RunResult:
    run: RunSpec
    status: str  # finished | skipped | failed
    dir: Path
    log: Path
    metrics: Optional[dict] = None
    train_seconds: Optional[float] = None
    val_seconds: Optional[float] = None
    error: str = ""
    actions: List[str] = field(default_factory=list)  # what this invocation did: train, resume, val

    def to_dict(self) -> dict:
        return {"run": self.run.name, "variant": self.run.variant, "seed": self.run.seed, "status": self.status,
                "dir": str(self.dir), "log": str(self.log), "train_seconds": self.train_seconds,
                "val_seconds": self.val_seconds, "error": self.error, "actions": self.actions}


# --------------------------------------------------------------------------------------------------------
# run state
# --------------------------------------------------------------------------------------------------------
def read_state(run_dir: Path) -> dict:
    try:
        state = json.loads((run_dir / RUN_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def write_state(run_dir: Path, state: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / (RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(run_dir / RUN_FILE)


def weights_of(run_dir: Path) -> Optional[Path]:
    for name in ("best.pt", "last.pt"):
        if (run_dir / "weights" / name).is_file():
            return run_dir / "weights" / name
    return None


def load_metrics(run_dir: Path) -> Optional[dict]:
    try:
        m = json.loads((run_dir / METRICS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) else None


def run_stage(run: RunSpec, run_dir: Path) -> str:
    """What a run still needs: ``done``, ``val`` (evaluate only), ``resume`` or ``fresh``."""
    state = read_state(run_dir)
    if state.get("digest") != run.digest:
        return "fresh"
    if state.get("trained") and load_metrics(run_dir) is not None:
        return "done"
    if state.get("trained") and weights_of(run_dir):
        return "val"
    return "resume" if (run_dir / "weights" / "last.pt").is_file() else "fresh"


# --------------------------------------------------------------------------------------------------------
# subprocesses
# --------------------------------------------------------------------------------------------------------
class Processes:
    """The children alive now, so an interruption can end them (they run in their own sessions)."""

    def __init__(self):
        self._live: set = set()
        self._lock = threading.Lock()
        self.stopping = False

    def call(self, cmd: List[str], env: dict, log: Path) -> int:
        with open(log, "a") as f:
            f.write(f"\n$ {shlex.join(cmd)}\n")
            f.flush()
            with self._lock:
                if self.stopping:
                    return -signal.SIGTERM
                p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                     start_new_session=True)
                self._live.add(p)
            try:
                return p.wait()
            finally:
                with self._lock:
                    self._live.discard(p)

    def stop_all(self) -> None:
        with self._lock:
            self.stopping = True
            live = list(self._live)
        for p in live:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        for p in live:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def child_env(threads: int) -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1",
               TQDM_MININTERVAL="30")  # progress bars in a log file: one line every 30 s is enough
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def train_command(ex: Execution, args: List[str]) -> List[str]:
    if ex.ddp:
        return [ex.python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ex.nproc),
                str(ex.train_script), *args]
    return [ex.python, str(ex.train_script), *args]


# --------------------------------------------------------------------------------------------------------
# one run
# --------------------------------------------------------------------------------------------------------
def _train(exp: Experiment, run: RunSpec, ex: Execution, procs: Processes, resume: bool, hyp: Optional[str],
           result: RunResult) -> bool:
    """Train (or resume) one run; the state records the wall time and, on success, ``trained``."""
    run_dir, env = exp.run_dir(run), child_env(ex.threads)
    state = read_state(run_dir) if resume else {}
    if not resume:
        shutil.rmtree(run_dir, ignore_errors=True)
        state = {"digest": run.digest, "trained": False, "train_seconds": 0.0, "attempts": 0}
    state["attempts"] = state.get("attempts", 0) + 1
    write_state(run_dir, state)
    if resume:
        args = ["--resume", str(run_dir / "weights" / "last.pt"), "--workers", str(ex.workers)]
    else:
        args = run.train_args + (["--hyp", hyp] if hyp else []) + [
            "--workers", str(ex.workers), "--project", str(exp.dir / RUNS_DIR), "--name", run.name, "--exist-ok"]
    result.actions.append("resume" if resume else "train")
    t0 = time.time()
    rc = procs.call(train_command(ex, args), env, result.log)
    state["train_seconds"] = state.get("train_seconds", 0.0) + time.time() - t0
    state["trained"] = rc == 0 and weights_of(run_dir) is not None
    write_state(run_dir, state)
    if not state["trained"]:
        result.error = f"train.py exit code {rc}" if rc else "train.py wrote no weights"
    return state["trained"]


def _validate(exp: Experiment, run: RunSpec, ex: Execution, procs: Processes, result: RunResult) -> bool:
    run_dir = exp.run_dir(run)
    (run_dir / "metrics.json").unlink(missing_ok=True)
    args = run.val_args + ["--weights", str(weights_of(run_dir)), "--workers", str(ex.workers),
                           "--project", str(exp.dir / RUNS_DIR), "--name", run.name, "--exist-ok"]
    result.actions.append("val")
    t0 = time.time()
    rc = procs.call([ex.python, str(ex.val_script), *args], child_env(ex.threads), result.log)
    state = read_state(run_dir)
    state["val_seconds"] = time.time() - t0
    write_state(run_dir, state)
    if rc or load_metrics(run_dir) is None:
        result.error = f"val.py exit code {rc}" if rc else f"val.py wrote no {METRICS_FILE}"
        return False
    return True


def execute_run(exp: Experiment, run: RunSpec, ex: Execution, procs: Processes, hyp: Optional[str] = None
                ) -> RunResult:
    """Bring one run to ``finished`` (or report it ``failed``); a finished run is ``skipped``."""
    run_dir = exp.run_dir(run)
    result = RunResult(run, "failed", run_dir, exp.log_file(run))
    result.log.parent.mkdir(parents=True, exist_ok=True)
    stage = run_stage(run, run_dir)
    ok = stage in ("done", "val")
    if stage == "resume":
        ok = _train(exp, run, ex, procs, True, hyp, result)
    if not ok and not procs.stopping and stage != "done":  # fresh, or a resume that failed: start clean
        ok = _train(exp, run, ex, procs, False, hyp, result)
    if ok and stage != "done":
        ok = _validate(exp, run, ex, procs, result)
    if ok:
        result.error = ""
    state = read_state(run_dir)
    result.status = "skipped" if stage == "done" else "finished" if ok else "failed"
    result.metrics = load_metrics(run_dir) if ok else None
    result.train_seconds, result.val_seconds = state.get("train_seconds"), state.get("val_seconds")
    return result


# --------------------------------------------------------------------------------------------------------
# all runs
# --------------------------------------------------------------------------------------------------------
def _status_line(r: RunResult) -> str:
    if r.status == "failed":
        return f"{r.run.name}: FAILED ({r.error}), log {r.log}"
    m = (r.metrics or {}).get("metrics", {})
    if r.status == "skipped":
        what = "skipped (finished before)"
    else:
        times = [f"{k} {t:.0f}s" for k, t in (("train", r.train_seconds), ("val", r.val_seconds)) if t is not None]
        what = f"finished ({'+'.join(r.actions)}; {', '.join(times)})"
    return f"{r.run.name}: {what}, mAP@0.5 {_num(m.get('mAP50'))}, mAP@0.5:0.95 {_num(m.get('mAP50-95'))}"


def _num(x) -> str:
    return f"{x:.4f}" if isinstance(x, (int, float)) else "n/a"


def _echo(line: str) -> None:
    tqdm.write(line, file=sys.stderr)  # beside the progress bar, which lives on stderr


def run_all(exp: Experiment, ex: Execution, hyp_files: dict, echo: Callable[[str], None] = _echo
            ) -> List[RunResult]:
    """Every run of ``exp``, ``ex.jobs`` at a time, seeds interleaved across variants; results in plan order."""
    order = sorted(exp.runs, key=lambda r: (exp.seeds.index(r.seed), [v.name for v in exp.variants].index(r.variant)))
    procs = Processes()
    results = {}
    bar = tqdm(total=len(order), desc="Runs", unit="run", file=sys.stderr, dynamic_ncols=True)
    pool = ThreadPoolExecutor(max_workers=ex.jobs)
    try:
        futures = {pool.submit(execute_run, exp, r, ex, procs, hyp_files.get(r.variant)): r for r in order}
        for fut in as_completed(futures):
            r = fut.result()
            results[r.run.name] = r
            echo(_status_line(r))
            bar.update(1)
    except KeyboardInterrupt:
        procs.stop_all()  # children save nothing more; their last.pt lets the next invocation resume
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return [results[r.name] for r in exp.runs]
