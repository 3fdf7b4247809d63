"""PyTorch Hub entry points.

Usage:
    import torch
    model = torch.hub.load('ultralytics/yolov5', 'yolov5s')                        # upstream repo (network)
    model = torch.hub.load('path/to/this/repo', 'custom', path='best.pt', source='local')  # any checkpoint
    results = model(['data/images/shapes1.jpg', numpy_rgb_image])                  # -> Detections
    results.print(); results.save(); results.pandas().xyxy[0]

Entry points take ``pretrained``, ``channels``, ``classes``, ``autoshape`` (wrap in AutoShape: file / PIL / numpy
inputs, letterbox, NMS, rescaling) and ``device``:

* ``yolov5s/m/l/x`` and ``yolov5s6/m6/l6/x6``: official v5.0 weights (``pretrained=True``) from
  ``./<name>.pt`` if it exists, else ``<repo>/weights/<name>.pt``, downloaded there when missing
  (utils/downloads.py). With ``classes != 80`` or ``channels != 3`` the model is built from its yaml and every
  weight of matching name and shape is transferred (the class-dependent head convs stay freshly initialised).
* ``yolov5_shufflenetv2``, ``yolov5_mobilenetv3small``, ``yolov5_mobilenetv3large``: the project's mobile configs.
  There are no official weights for them, so ``pretrained`` defaults to False. ``yolov5_shufflenetv2(
  pretrained=True, classes=8)`` loads the shipped demo detector trained on the synthetic shapes dataset
  (weights/demo-shufflenetv2-shapes.pt); other ``classes`` transfer its backbone and neck. MobileNetV3 with
  ``pretrained=True`` raises (no weights exist).
* ``custom(path)``: any checkpoint (project format or an upstream .pt), via ``models.experimental.attempt_load``.

``python hubconf.py`` runs the offline demo on data/images (``--model yolov5s`` etc. for official weights).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Union

ROOT = Path(__file__).resolve().parent
# torch.hub (source='local') puts the repo on sys.path only while it imports this file and calls the entry point.
# The model imports some helpers on first use (e.g. during inference), later: keep the repo importable.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

dependencies = ["torch", "torchvision", "yaml", "numpy", "cv2", "PIL", "tqdm"]  # checked by torch.hub

import torch  # noqa: E402

from engine.autoshape import AutoShape  # noqa: E402  (also registers Model.autoshape())
from engine.checkpoint import attempt_load  # noqa: E402
from engine.cli import run_cli  # noqa: E402
from engine.downloads import attempt_download  # noqa: E402
from models.model import Model  # noqa: E402
from utils.errors import MissingFileError  # noqa: E402
from utils.log import LOGGER, set_logging  # noqa: E402
from utils.torch_utils import detect_head, intersect_dicts  # noqa: E402

DeviceLike = Union[str, int, torch.device, None]
DEMO_WEIGHTS = ROOT / "weights" / "demo-shufflenetv2-shapes.pt"
DEMO_IMAGES = ROOT / "data" / "images"

# entry name -> (model yaml, weights source): 'official' (release asset), a path (shipped weights) or None
_MODELS = {
    **{f"yolov5{s}": (ROOT / "models" / f"yolov5{s}.yaml", "official") for s in "smlx"},
    **{f"yolov5{s}6": (ROOT / "models" / "hub" / f"yolov5{s}6.yaml", "official") for s in "smlx"},
    "yolov5_shufflenetv2": (ROOT / "models" / "yolov5-shufflenetv2.yaml", DEMO_WEIGHTS),
    "yolov5_mobilenetv3small": (ROOT / "models" / "yolov5-mobilenetv3small.yaml", None),
    "yolov5_mobilenetv3large": (ROOT / "models" / "yolov5-mobilenetv3large.yaml", None),
}


def _device(device: DeviceLike) -> torch.device:
    """torch.device from None (first GPU if any, else CPU), 'cpu', 'cuda:1', '0' or 0 (no environment changes)."""
    if device is None or device == "":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if isinstance(device, int) or (isinstance(device, str) and device.strip().isdigit()):
        return torch.device(f"cuda:{int(device)}")
    return torch.device(device)


def _weights_file(name: str, source) -> Path:
    """Local weights for entry ``name`` (downloading official ones when missing); clear error when none exist."""
    if source == "official":
        local = Path(f"{name}.pt")  # upstream hub behaviour: a copy in the working directory is used first
        return local if local.is_file() else Path(attempt_download(ROOT / "weights" / f"{name}.pt"))
    if source is None or not Path(source).is_file():
        shipped = f" (expected the shipped file {source})" if source is not None else ""
        raise MissingFileError(f"no pretrained weights exist for '{name}'{shipped}: call it with pretrained=False "
                                f"to build it untrained, or load your own checkpoint with custom(path=...)")
    return Path(source)


def _create(name: str, pretrained: bool = True, channels: int = 3, classes: int = 80, autoshape: bool = True,
            device: DeviceLike = None):
    """Model ``name`` (a key of ``_MODELS``), optionally with pretrained weights, wrapped in AutoShape."""
    if name not in _MODELS:
        raise ValueError(f"unknown hub model '{name}', expected one of {', '.join(_MODELS)}")
    cfg, source = _MODELS[name]
    dev = _device(device)
    if pretrained:
        weights = _weights_file(name, source)
        model = attempt_load(weights, map_location="cpu", fuse=False)
        nc = int(detect_head(model, required=True).nc)
        if channels == 3 and classes == nc:  # exactly the trained model
            model = model.fuse() if autoshape else model
        else:  # other classes / input channels: same architecture, transfer what fits
            trained = model
            model = Model(str(cfg), ch=channels, nc=classes)
            csd = intersect_dicts(trained.state_dict(), model.state_dict())
            model.load_state_dict(csd, strict=False)
            LOGGER.info(f"Transferred {len(csd)}/{len(model.state_dict())} items from {weights} "
                        f"(its nc={nc}, requested classes={classes}, channels={channels})")
    else:
        model = Model(str(cfg), ch=channels, nc=classes)
    model = model.to(dev)
    return model.autoshape() if autoshape else model


def custom(path: Union[str, Path, torch.nn.Module] = "path/to/model.pt", autoshape: bool = True,
           device: DeviceLike = None, path_or_model=None):
    """Model from a checkpoint file (project format or upstream .pt), AutoShape-wrapped by default.

    ``path_or_model`` is the v5.0 keyword (a path or an already built model) and wins when given.
    """
    source = path_or_model if path_or_model is not None else path
    dev = _device(device)
    if isinstance(source, torch.nn.Module):
        model = source.float().eval().to(dev)
    else:
        model = attempt_load(str(source), map_location=dev, fuse=autoshape)
    if not autoshape:
        return model
    if not hasattr(model, "autoshape"):  # an Ensemble (list of paths) or a foreign module
        return AutoShape(model)
    return model.autoshape()


def yolov5s(pretrained=True, channels=3, classes=80, autoshape=True, device=None):
    """YOLOv5-small, official v5.0 weights when pretrained (7.3 M parameters at 80 classes)."""
    return _create("yolov5s", pretrained, channels, classes, autoshape, device)


def yolov5m(pretrained=True, channels=3, classes=80, autoshape=True, device=None):
    """YOLOv5-medium, official v5.0 weights when pretrained."""
    return _create("yolov5m", pretrained, channels, classes, autoshape, device)


def yolov5l(pretrained=True, channels=3, classes=80, autoshape=True, device=None):
    """YOLOv5-large, official v5.0 weights when pretrained."""
    return _create("yolov5l", pretrained, channels, classes, autoshape, device)


def yolov5x(pretrained=True, channels=3, classes=80, autoshape=True, device=None):
    """YOLOv5-xlarge, official v5.0 weights when pretrained."""
    return _create("yolov5x", pretrained, channels, classes, autoshape, device)


def yolov5s6(pretrained=True, channels=3, classes=80, autoshape=True, device=None):
    """YOLOv5-small P6 (strides 8-64), official v5.0 weights when pretrained."""
    return _create("yolov5s6", pretrained, channels, classes, autoshape, device)


def yolov5m6(pretrained=True, channels=3, classes=80, autoshape=True, device=None):
    """YOLOv5-medium P6, official v5.0 weights when pretrained."""
    return _create("yolov5m6", pretrained, channels, classes, autoshape, device)


def yolov5l6(pretrained=True, channels=3, classes=80, autoshape=True, device=None):
    """YOLOv5-large P6, official v5.0 weights when pretrained."""
    return _create("yolov5l6", pretrained, channels, classes, autoshape, device)


def yolov5x6(pretrained=True, channels=3, classes=80, autoshape=True, device=None):
    """YOLOv5-xlarge P6, official v5.0 weights when pretrained."""
    return _create("yolov5x6", pretrained, channels, classes, autoshape, device)


def yolov5_shufflenetv2(pretrained=False, channels=3, classes=80, autoshape=True, device=None):
    """ShuffleNetV2-backbone YOLOv5; pretrained = the shipped shapes demo weights (8 classes)."""
    return _create("yolov5_shufflenetv2", pretrained, channels, classes, autoshape, device)


def yolov5_mobilenetv3small(pretrained=False, channels=3, classes=80, autoshape=True, device=None):
    """MobileNetV3-Small-backbone YOLOv5 (no pretrained weights exist)."""
    return _create("yolov5_mobilenetv3small", pretrained, channels, classes, autoshape, device)


def yolov5_mobilenetv3large(pretrained=False, channels=3, classes=80, autoshape=True, device=None):
    """MobileNetV3-Large-backbone YOLOv5 (no pretrained weights exist)."""
    return _create("yolov5_mobilenetv3large", pretrained, channels, classes, autoshape, device)


def _demo(model_name: Optional[str], size: int, save: bool) -> None:
    """Run a hub model on data/images given as a path, a PIL image and a numpy array; print (and save) results."""
    import numpy as np
    from PIL import Image

    if model_name:
        model = _create(model_name, pretrained=True)
    elif DEMO_WEIGHTS.is_file():
        model = custom(DEMO_WEIGHTS)
    else:  # no shipped weights (e.g. removed): the pipeline still runs, with an untrained model
        print(f"{DEMO_WEIGHTS} not found: running an untrained yolov5_shufflenetv2 (expect no detections)")
        model = yolov5_shufflenetv2(pretrained=False, classes=8)
    files = sorted(p for p in DEMO_IMAGES.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))
    if not files:
        raise MissingFileError(f"no images in {DEMO_IMAGES}")
    imgs = [str(files[0])]  # a file name
    imgs += [Image.open(f) for f in files[1:2]]  # a PIL image
    imgs += [np.asarray(Image.open(f).convert("RGB")) for f in files[2:]]  # numpy HWC RGB arrays
    results = model(imgs, size=size)
    results.print()
    if save:
        results.save()  # runs/hub/exp* (logs where)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Offline hub demo on data/images")
    ap.add_argument("--model", default="", choices=["", *_MODELS],
                    help=f"hub model with official weights ({', '.join(list(_MODELS)[:8])}); "
                         f"default: the shipped demo weights {DEMO_WEIGHTS.name}")
    ap.add_argument("--size", type=int, default=None,
                    help="inference size (long side, pixels); default 640, or 256 (its training size) for the demo")
    ap.add_argument("--nosave", action="store_true", help="do not save annotated images to runs/hub/exp*")
    args = ap.parse_args()
    set_logging()
    sys.exit(run_cli(lambda a: _demo(a.model or None, a.size or (640 if a.model else 256), not a.nosave), args))
