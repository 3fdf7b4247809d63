"""The YOLOv5 model: the layers a model yaml describes (models/builder.py) ending in the Detect head.

``Model`` (alias ``DetectionModel``, v7.0) keeps upstream's attribute layout (``yaml``, ``model``, ``save``,
``names``, ``stride``) so that upstream checkpoints and scripts keep working; ``Ensemble`` runs several models on
one input.
"""
from __future__ import annotations

import math
from copy import deepcopy
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Union

import torch
import torch.nn as nn

from models.blocks.heads import NMS
from models.builder import ModelYamlError, parse_model
from models.detect import Detect, check_anchor_order
from utils.class_activation import check_activation
from utils.files import ROOT, check_file
from utils.log import LOGGER
from utils.plots import feature_visualization
from utils.text import load_yaml
from utils.torch_utils import (copy_attr, count_flops, detect_head, fold_batchnorms, initialize_weights, model_info,
                               scale_img, time_synchronized)

USUAL_STRIDES = ([8, 16, 32], [8, 16, 32, 64], [8, 16, 32, 64, 128])


def find_model_cfg(cfg: Union[str, Path]) -> Path:
    """A model yaml path: as given, else under models/ or models/hub/, else a unique match in the repository."""
    p = Path(cfg)
    for candidate in (p, ROOT / "models" / p, ROOT / "models" / "hub" / p):
        if candidate.is_file():
            return candidate
    return Path(check_file(str(cfg), what="model cfg"))


class Model(nn.Module):
    """A YOLOv5 model built from a yaml (path or dict): ``model`` (nn.Sequential of layers) + Detect head.

    ``forward(x)`` returns the raw per-level maps in training mode and ``(decoded, raw)`` in eval mode (see
    :class:`Detect`). ``set_class_activation("softmax")`` switches the head's class activation; ``cls_act``
    reads it.
    """

    autoshape_wrapper: Optional[Callable[[nn.Module], nn.Module]] = None  # engine.autoshape.AutoShape

    def __init__(self, cfg: Union[str, Path, dict] = "yolov5s.yaml", ch: int = 3, nc: Optional[int] = None,
                 anchors: Optional[float] = None):
        super().__init__()
        if isinstance(cfg, dict):
            self.yaml = deepcopy(cfg)
        else:
            path = find_model_cfg(cfg)
            self.yaml_file = path.name
            self.yaml = load_yaml(path, ModelYamlError)  # one line for bad syntax, a code tag or an encoding
            if not isinstance(self.yaml, dict):
                raise ModelYamlError(f"{path}: a model yaml must be a mapping, got {type(self.yaml).__name__}")

        ch = self.yaml["ch"] = self.yaml.get("ch", ch)
        if nc and nc != self.yaml.get("nc"):
            LOGGER.info(f"Overriding model.yaml nc={self.yaml.get('nc')} with nc={nc}")
            self.yaml["nc"] = nc
        if anchors:
            LOGGER.info(f"Overriding model.yaml anchors with anchors={anchors}")
            self.yaml["anchors"] = round(anchors)
        source = getattr(self, "yaml_file", None)
        self.model, self.save = parse_model(deepcopy(self.yaml), ch=[ch], source=source)
        self.names = [str(i) for i in range(self.yaml["nc"])]

        m = self.model[-1]
        if isinstance(m, Detect):
            s = 256
            feats = self._probe(torch.zeros(1, ch, s, s))
            m.stride = torch.tensor([s / f.shape[-2] for f in feats])
            m.anchors /= m.stride.view(-1, 1, 1)  # anchors buffer is in grid units from here on
            check_anchor_order(m)
            self.stride = m.stride
            self._initialize_biases()
            strides = [round(float(v)) for v in m.stride]
            if strides not in USUAL_STRIDES:
                LOGGER.warning(f"WARNING: {source or 'model'} builds Detect strides {strides}, not one of the usual "
                               f"{' / '.join(map(str, USUAL_STRIDES))}; check the yaml's downsampling layers")

        initialize_weights(self)
        self.info()
        LOGGER.info("")

    # ------------------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, augment: bool = False, profile: bool = False, visualize=False):
        """Train mode: raw per-level maps; eval: ``(decoded, raw)``; ``augment``: TTA ``(decoded, None)``.
        ``visualize`` (v6.0 argument): a directory to save per-layer feature-map images into."""
        if augment:
            return self._forward_augment(x)
        return self._forward_once(x, profile, visualize=visualize)

    def _forward_once(self, x: torch.Tensor, profile: bool = False, stop_at: Optional[nn.Module] = None,
                      visualize=False):
        """Run the layers in order; with ``stop_at``, return that layer's input instead of running it."""
        y, dt = [], []
        for m in self.model:
            if m.f != -1:  # input from earlier layers
                x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
            if m is stop_at:
                return x
            if profile:
                self._profile_layer(m, x, dt)
            x = m(x)
            y.append(x if m.i in self.save else None)
            if visualize:
                feature_visualization(x, m.type, m.i, save_dir=visualize)
        if profile:
            LOGGER.info(f"{sum(dt):.1f}ms total")
        return x

    def _probe(self, img: torch.Tensor) -> List[torch.Tensor]:
        """Feature maps entering the Detect head for ``img`` (only their shapes are used).

        A real eval-mode forward under no_grad (BatchNorm statistics untouched): 20 ms for yolov5s at 256, 0.2 s
        for yolov5x. A meta-device forward would skip the arithmetic, but its first torch.cat imports
        torch._dynamo, ~1 s of every start.
        """
        modes = {m: m.training for m in self.modules()}
        self.eval()
        try:
            with torch.no_grad():
                return self._forward_once(img, stop_at=self.model[-1])
        finally:
            for m, mode in modes.items():
                m.training = mode

    def _profile_layer(self, m: nn.Module, x, dt: List[float]) -> None:
        try:
            flops = count_flops(m, x) / 1e9
        except Exception:  # a layer that cannot be re-run standalone still gets its time
            flops = 0.0
        t = time_synchronized()
        for _ in range(10):
            m(x)
        dt.append((time_synchronized() - t) * 100)  # ms per run
        if m is self.model[0]:
            LOGGER.info(f"{'time (ms)':>10s} {'GFLOPs':>10s} {'params':>10s}  module")
        LOGGER.info(f"{dt[-1]:10.2f} {flops:10.2f} {m.np:10.0f}  {m.type}")

    def _forward_augment(self, x: torch.Tensor):
        """Test-time augmentation: scales 1, 0.83, 0.67 with a left-right flip at 0.83; predictions merged."""
        img_size = x.shape[-2:]
        gs = int(self.stride.max())
        y = []
        for si, fi in zip((1, 0.83, 0.67), (None, 3, None)):  # fi: tensor dim to flip (3 = left-right)
            xi = scale_img(x.flip(fi) if fi else x, si, gs=gs)
            out = self._forward_once(xi)
            yi = (out[0] if isinstance(out, tuple) else out).clone()
            yi[..., :4] /= si  # back to the input scale
            if fi == 2:
                yi[..., 1] = img_size[0] - yi[..., 1]
            elif fi == 3:
                yi[..., 0] = img_size[1] - yi[..., 0]
            y.append(yi)
        return torch.cat(y, 1), None

    # ------------------------------------------------------------------------------------------------------
    def _detect_head(self) -> Optional[Detect]:
        return detect_head(self)

    def _initialize_biases(self, cf: Optional[torch.Tensor] = None) -> None:
        """Prior on the head biases: ~8 objects per 640x640 image per level, class probability ~0.6/nc."""
        m = self._detect_head()
        with torch.no_grad():
            for mi, s in zip(m.m, m.stride):
                b = mi.bias.view(m.na, -1)
                b[:, 4] += math.log(8 / (640 / float(s)) ** 2)
                b[:, 5:] += math.log(0.6 / (m.nc - 0.99)) if cf is None else torch.log(cf / cf.sum())

    def _apply(self, fn, *args, **kwargs):
        # stride and grid are plain attributes (v5.0 layout), so move / cast them along with the buffers
        self = super()._apply(fn, *args, **kwargs)
        m = self._detect_head()
        if m is not None and isinstance(m.__dict__.get("stride"), torch.Tensor):
            m.stride = fn(m.stride)
            if isinstance(self.__dict__.get("stride"), torch.Tensor):
                self.stride = m.stride
            m.grid = [torch.zeros(1)] * m.nl  # rebuilt lazily on the new device / dtype
        return self

    def set_class_activation(self, act: str, groups: Optional[Any] = None) -> "Model":
        """Decode class scores with ``"sigmoid"`` (per class, BCE-trained), ``"softmax"`` (over classes,
        CE-trained) or ``"grouped"`` (``groups``: the ClassGroups / cls_groups spec it was trained with). Saved in
        project checkpoints as ``cls_act`` / ``cls_groups``."""
        m = self._detect_head()
        if m is None:
            raise ValueError("model has no Detect head")
        m.set_activation(check_activation(act), groups)
        return self

    @property
    def cls_act(self) -> str:
        """The head's class activation ("sigmoid" | "softmax" | "grouped")."""
        m = self._detect_head()
        return m.cls_act if m is not None else Detect.cls_act

    @property
    def cls_groups(self) -> Optional[list]:
        """The class groups of a 'grouped' head (spec list), else None."""
        return getattr(self._detect_head(), "cls_groups", None)

    def fuse(self) -> "Model":
        """Fold every BatchNorm into its preceding conv (Conv-style blocks and Conv2d+BN pairs in Sequentials)."""
        LOGGER.info("Fusing layers... ")
        fold_batchnorms(self)
        self.info()
        return self

    def nms(self, mode: bool = True) -> "Model":
        """Append (``mode=True``) or remove an NMS layer at the end of the model."""
        present = type(self.model[-1]) is NMS
        if mode and not present:
            LOGGER.info("Adding NMS... ")
            m = NMS()
            m.f = -1
            m.i = self.model[-1].i + 1
            m.type, m.np = f"{NMS.__module__}.NMS", 0
            self.model.add_module(name=str(m.i), module=m)
            self.eval()
        elif not mode and present:
            LOGGER.info("Removing NMS... ")
            self.model = self.model[:-1]
        return self

    def autoshape(self) -> nn.Module:
        """Wrap for inference on file / PIL / numpy inputs (letterbox, NMS, rescaling done for you).

        The wrapper (``AutoShape``) is a workflow of the engine layer, which the network does not import:
        engine/autoshape.py registers itself as ``Model.autoshape_wrapper`` when imported (``models.yolo``,
        ``models.common`` and ``hubconf`` import it).
        """
        if Model.autoshape_wrapper is None:
            raise RuntimeError("Model.autoshape() needs engine.autoshape: import engine.autoshape (or models.yolo)")
        LOGGER.info("Adding AutoShape... ")
        m = Model.autoshape_wrapper(self)
        copy_attr(m, self, include=("yaml", "nc", "hyp", "names", "stride"), exclude=())
        return m

    def info(self, verbose: bool = False, img_size: Union[int, Sequence[int]] = 640) -> None:
        model_info(self, verbose, img_size)
        m = self._detect_head()
        if m is not None:  # drop the grids the FLOPs pass cached
            m.grid = [torch.zeros(1)] * m.nl


DetectionModel = Model  # v7.0 name


class Ensemble(nn.ModuleList):
    """Several models run on the same input; their decoded predictions are concatenated (NMS ensemble)."""

    def forward(self, x: torch.Tensor, augment: bool = False, profile: bool = False):
        outs = [m(x, augment, profile) for m in self]
        y = [o[0] if isinstance(o, tuple) else o for o in outs]  # (decoded, raw) or decoded only (export)
        return torch.cat(y, 1), None

