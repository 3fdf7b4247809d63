"""Evaluation of a detector on a dataset split (TEMPORARY: see validator.py)."""
from engine.val.validator import run  # noqa: F401
