"""The project logger and the small text helpers of its messages (colours, English plurals)."""
from __future__ import annotations

import logging

LOGGER = logging.getLogger("yolov5")

_COLORS = {
    "black": "\033[30m", "red": "\033[31m", "green": "\033[32m", "yellow": "\033[33m", "blue": "\033[34m",
    "magenta": "\033[35m", "cyan": "\033[36m", "white": "\033[37m", "bright_black": "\033[90m",
    "bright_red": "\033[91m", "bright_green": "\033[92m", "bright_yellow": "\033[93m", "bright_blue": "\033[94m",
    "bright_magenta": "\033[95m", "bright_cyan": "\033[96m", "bright_white": "\033[97m",
    "end": "\033[0m", "bold": "\033[1m", "underline": "\033[4m",
}


def set_logging(rank: int = -1, verbose: bool = True) -> logging.Logger:
    """Plain-message logging on rank 0 (or single process); warnings only on other DDP ranks."""
    level = logging.INFO if verbose and rank in (-1, 0) else logging.WARNING
    if not LOGGER.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        LOGGER.addHandler(handler)
        LOGGER.propagate = False
    LOGGER.setLevel(level)
    return LOGGER


set_logging()


def colorstr(*args: str) -> str:
    """``colorstr('blue', 'bold', 'text')`` -> text wrapped in ANSI codes (one argument = blue bold)."""
    *styles, text = args if len(args) > 1 else ("blue", "bold", args[0])
    return "".join(_COLORS[s] for s in styles) + f"{text}" + _COLORS["end"]


def count_noun(n: int, name: str) -> str:
    """'1 bus', '2 buses', '3 persons', '2 cyan crosses': a count and an English plural of a class name."""
    if n == 1:
        return f"{n} {name}"
    return f"{n} {name}{'es' if name.endswith(('s', 'x', 'z', 'ch', 'sh')) else 's'}"
