"""Upstream import path ``models.experimental``: re-exports only; nothing in the project imports it.

The experimental blocks live in models/blocks/experimental.py (GhostConv / GhostBottleneck, here in v5.0, in
models/blocks/), ``Ensemble`` in models/model.py and ``attempt_load`` in engine/checkpoint.py.
"""
from engine.checkpoint import attempt_load  # noqa: F401
from models.blocks.conv import Conv, DWConv, GhostConv  # noqa: F401
from models.blocks.csp import GhostBottleneck  # noqa: F401
from models.blocks.experimental import CrossConv, MixConv2d, Sum  # noqa: F401
from models.model import Ensemble  # noqa: F401
