"""Drawing figures without ever failing a run: ``try_plot`` turns a plot that cannot be drawn into one warning."""
from __future__ import annotations

import sys
from typing import Any, Callable, Optional

from utils.log import LOGGER


def pyplot():
    """``matplotlib.pyplot`` on the headless Agg backend (never opens windows; works in CI and in threads).

    Imported at the first figure, not at start-up: it costs 0.3 s, and train / val / detect import the plotting
    modules whether or not they draw anything.
    """
    if "matplotlib.pyplot" not in sys.modules:  # else keep the backend the user's program chose
        import matplotlib

        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def try_plot(what: str, fn: Callable, *args, **kwargs) -> Optional[Any]:
    """Run the plotting call ``fn(*args, **kwargs)`` and return its result; a plot must never fail a run.

    Any ``Exception`` is logged as one warning line on the ``yolov5`` logger,
    ``WARNING: <what> not drawn: <ErrorType>: <first line of the message>`` (the traceback at DEBUG level),
    figures that ``fn`` left open are closed, and None is returned. KeyboardInterrupt and SystemExit are not
    Exceptions and pass through. Example: ``try_plot("results.png", plot_results, file=save_dir / "results.csv")``.
    """
    plt = pyplot()
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
