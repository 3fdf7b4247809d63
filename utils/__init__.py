"""Leaf utilities: logging, files, boxes, NMS, metrics, calibration, plots, torch helpers, precision, the class
activation and the training loss. They import nothing from models/, data/ or engine/ (tests/test_architecture.py).

Upstream import paths kept here as re-exports only: utils.general, utils.datasets, utils.dataloaders,
utils.augmentations, utils.autoanchor, utils.downloads, utils.google_utils.
"""
