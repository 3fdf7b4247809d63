"""Upstream import path ``models.yolo`` (re-exports only; nothing in the project imports it), and the model
summary command:

    python models/yolo.py --cfg yolov5s.yaml [--device cpu] [--profile] [--fuse]

``Detect`` lives in models/detect.py, ``Model`` in models/model.py, ``parse_model`` in models/builder.py.
"""
import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow `python models/yolo.py` from anywhere
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import engine.autoshape  # noqa: E402,F401  (registers Model.autoshape())
from engine.cli import run_cli  # noqa: E402
from models.blocks.conv import *  # noqa: F401,F403,E402  (upstream namespace: every block is reachable here)
from models.blocks.csp import *  # noqa: F401,F403,E402
from models.blocks.experimental import *  # noqa: F401,F403,E402
from models.blocks.heads import *  # noqa: F401,F403,E402
from models.blocks.mobile import *  # noqa: F401,F403,E402
from models.blocks.pooling import *  # noqa: F401,F403,E402
from models.builder import ModelYamlError, parse_model  # noqa: F401,E402
from models.detect import Detect, check_anchor_order  # noqa: F401,E402
from models.model import USUAL_STRIDES, DetectionModel, Ensemble, Model, find_model_cfg  # noqa: F401,E402
from utils.class_activation import CLS_ACTIVATIONS as CLASS_ACTIVATIONS  # noqa: F401,E402
from utils.log import LOGGER, set_logging  # noqa: F401,E402
from utils.torch_utils import select_device  # noqa: E402


def parse_opt(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Build a model from its yaml and print its layers")
    parser.add_argument("--cfg", type=str, default="yolov5s.yaml", help="model.yaml")
    parser.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    parser.add_argument("--profile", action="store_true", help="profile each layer on a 640x640 image")
    parser.add_argument("--fuse", action="store_true", help="also print the summary of the fused model")
    return parser.parse_args(argv)


def main(opt: argparse.Namespace) -> Model:
    set_logging()
    model = Model(find_model_cfg(opt.cfg)).to(select_device(opt.device))
    model.train()
    if opt.profile:
        img = torch.rand(1, model.yaml["ch"], 640, 640, device=next(model.parameters()).device)
        model.eval()
        with torch.inference_mode():
            model(img, profile=True)
    if opt.fuse:
        model.eval().fuse()
    return model


if __name__ == "__main__":
    sys.exit(run_cli(main, parse_opt()))
