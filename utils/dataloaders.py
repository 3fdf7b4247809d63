"""Upstream import path ``utils.dataloaders`` (v7.0): re-exports only; nothing in the project imports it."""
from utils.datasets import *  # noqa: F401,F403
