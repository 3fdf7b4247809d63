"""Upstream import path ``utils.autoanchor``: re-exports only; the code is in :mod:`engine.autoanchor`."""
from engine.autoanchor import anchor_metrics, check_anchor_order, check_anchors, kmean_anchors  # noqa: F401
