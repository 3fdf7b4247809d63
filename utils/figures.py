"""Drawing figures without ever failing a run: ``try_plot`` turns a plot that cannot be drawn into one warning."""
from __future__ import annotations

from typing import Any, Callable, Optional

from utils.log import LOGGER


def try_plot(what: str, fn: Callable, *args, **kwargs) -> Optional[Any]:
    """Run the plotting call ``fn(*args, **kwargs)`` and return its result; a plot must never fail a run.

    Any ``Exception`` is logged as one warning line on the ``yolov5`` logger,
    ``WARNING: <what> not drawn: <ErrorType>: <first line of the message>`` (the traceback at DEBUG level),
    figures that ``fn`` left open are closed, and None is returned. KeyboardInterrupt and SystemExit are not
    Exceptions and pass through. Example: ``try_plot("results.png", plot_results, file=save_dir / "results.csv")``.
    """
    import matplotlib.pyplot as plt  # third-party and slow to import: loaded when something is drawn

    open_before = set(plt.get_fignums())
    try:
        return fn(*args, **kwargs)
    except Exception as e:
        lines = str(e).strip().splitlines()
        reason = type(e).__name__ + (f": {lines[0]}" if lines else "")
        LOGGER.warning(f"WARNING: {what} not drawn: {reason}")
        LOGGER.debug(f"{what} traceback", exc_info=True)
        for num in set(plt.get_fignums()) - open_before:  # a failed plot must not leak its figure
            plt.close(num)
        return None
