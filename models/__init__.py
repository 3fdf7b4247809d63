"""The network: blocks (models/blocks/), the block registry, the yaml builder, the Detect head and Model.
Imports only torch and leaf utilities (utils/). Model yamls live next to the code (models/*.yaml, models/hub/).

Upstream import paths kept as re-exports only: models.common, models.experimental, models.yolo (also the
``python models/yolo.py --cfg`` model summary) and models/export.py (the v5.0 export command line).
"""
