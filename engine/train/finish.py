"""After the last epoch: strip the optimizers, validate best.pt, draw results.png, close the loggers.

A completed training must never turn into a failure here: plots go through ``try_plot`` (one warning), and any
other error in these steps is reported as one ERROR line naming the step and the weights already saved; the run
still ends with exit status 0 (the weights were written before any of this ran).
"""
from __future__ import annotations

import multiprocessing as mp
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple

from engine.checkpoint import strip_optimizer
from utils.figures import try_plot
from utils.log import LOGGER, colorstr
from utils.loggers import Loggers
from utils.plots import plot_results

Results = Tuple[float, ...]
FINAL_PLOTS = ("results.png", "confusion_matrix.png", "F1_curve.png", "PR_curve.png", "P_curve.png", "R_curve.png")


def plot_in_background(what: str, fn: Callable, *args: Any) -> Optional[BaseProcess]:
    """Draw a figure in a forked process, off the path to the first batch (labels.jpg took ~60% of the set-up
    time); drawn in line where fork does not exist. The trainer joins it before the final plots."""
    if "fork" not in mp.get_all_start_methods():
        try_plot(what, fn, *args)
        return None
    process = mp.get_context("fork").Process(target=try_plot, args=(what, fn, *args), daemon=True)
    process.start()
    return process


def join_background(process: Optional[BaseProcess], timeout: float = 300.0) -> None:
    if process is not None:
        process.join(timeout)
        if process.is_alive():
            process.terminate()


def _saved(weights: Sequence[Path]) -> str:
    found = [str(w) for w in weights if w.exists()]
    return ", ".join(found) if found else "none"


def guarded(what: str, weights: Sequence[Path], fn: Callable, *args: Any, **kwargs: Any) -> Optional[Any]:
    """``fn(*args, **kwargs)``, or None after one ERROR line naming ``what`` failed and the weights that are saved."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - training is complete: report, keep going, exit 0
        reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        LOGGER.error(f"{colorstr('red', 'bold', 'ERROR:')} after training: {what} failed ({reason}); "
                     f"training completed and these weights are saved: {_saved(weights)}")
        LOGGER.debug(f"{what} traceback", exc_info=True)
        return None


def finish_training(save_dir: Path, plots: bool, loggers: Optional[Loggers], results: Results,
                    validate_best: Optional[Callable[[Path], Any]] = None, epoch: int = 0) -> Results:
    """The end-of-training steps on run folder ``save_dir``; returns the final results (of best.pt if validated).

    ``validate_best(best_path)`` returns the validator's ``(results, maps, times)``; None skips the validation
    (--evolve, or best.pt is the last epoch, which the final epoch already validated with plots).
    """
    save_dir = Path(save_dir)
    last, best = save_dir / "weights" / "last.pt", save_dir / "weights" / "best.pt"
    weights: List[Path] = [last, best]
    for f in weights:
        if f.exists():
            guarded(f"stripping the optimizer from {f}", weights, strip_optimizer, f)
    if validate_best is not None and best.exists():
        out = guarded(f"validating {best}", weights, validate_best, best)
        results = tuple(out[0]) if out else results
    if plots:
        try_plot("results.png", plot_results, file=save_dir / "results.csv")
    if loggers is not None:
        guarded("adding the final plots to TensorBoard", weights, loggers.log_images,
                [save_dir / f for f in FINAL_PLOTS], epoch)
        guarded("closing the loggers", weights, loggers.close)
    LOGGER.info(f"Results saved to {colorstr('bold', save_dir)}\nWeights: {_saved(weights)}")
    return results
