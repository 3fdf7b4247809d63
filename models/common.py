"""Upstream import path ``models.common``: re-exports only; nothing in the project imports it.

The blocks live in models/blocks/ (conv.py, csp.py, pooling.py, heads.py, mobile.py); AutoShape / Detections and
DetectMultiBackend (v6.0+ path) in the engine. Upstream checkpoints that pickled ``models.common.<Block>`` are
resolved through the block registry (models/registry.py), not through this module.
"""
from engine.autoshape import AutoShape, Detections  # noqa: F401
from engine.backends import DetectMultiBackend  # noqa: F401
from models.blocks.conv import *  # noqa: F401,F403
from models.blocks.csp import *  # noqa: F401,F403
from models.blocks.experimental import CrossConv, MixConv2d, Sum  # noqa: F401
from models.blocks.heads import *  # noqa: F401,F403
from models.blocks.mobile import *  # noqa: F401,F403
from models.blocks.pooling import *  # noqa: F401,F403

autoShape = AutoShape  # v5.0 name
