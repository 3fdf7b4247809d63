"""YOLOv5 detection head (``Detect``) and model (``Model``, alias ``DetectionModel``).

Usage:
    python models/yolo.py --cfg yolov5s.yaml [--device cpu] [--profile] [--fuse]
"""
from __future__ import annotations

import argparse
import math
import sys
from copy import deepcopy
from pathlib import Path
from typing import List, Optional, Sequence, Union

FILE = Path(__file__).resolve()
ROOT = FILE.parents[1]
if str(ROOT) not in sys.path:  # allow `python models/yolo.py` from anywhere
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import yaml  # noqa: E402

from models.common import *  # noqa: F401,F403,E402  (upstream namespace: every block is reachable from here)
from models.experimental import *  # noqa: F401,F403,E402
from models.yaml_parser import ModelYamlError, parse_model  # noqa: F401,E402
from utils.general import LOGGER, check_file, make_divisible, set_logging  # noqa: F401,E402
from utils.torch_utils import (copy_attr, count_flops, fold_batchnorms, initialize_weights, model_info,  # noqa: E402
                               scale_img, select_device, time_synchronized)

CLASS_ACTIVATIONS = ("sigmoid", "softmax")
USUAL_STRIDES = ([8, 16, 32], [8, 16, 32, 64], [8, 16, 32, 64, 128])


class Detect(nn.Module):
    """Detection head: per level a 1x1 conv to ``na * (nc + 5)`` channels, decoded to pixels at inference.

    Outputs per level ``(bs, na, ny, nx, no)`` raw maps in training mode; in eval mode
    ``(decoded (bs, N, no), raw list)`` with decoded rows ``[x, y, w, h, obj, class probabilities...]`` in
    input pixels. When the class attribute ``export`` is True only the decoded tensor is returned.

    Class activation: box and objectness channels always use a sigmoid; the class channels (5:) use a sigmoid
    per class (``cls_act = "sigmoid"``, upstream behaviour, BCE-trained) or a softmax over classes
    (``"softmax"``, for models trained with the cross-entropy class loss). The class-level default is
    "sigmoid", so modules unpickled from upstream checkpoints keep upstream decoding. Switch a model with
    ``Model.set_class_activation("softmax")`` (ComputeLoss does it for ``cls_loss: ce``); the value is stored
    as ``cls_act`` in project checkpoints (utils/checkpoint.py) and restored on load.
    """

    stride = None  # set by Model from a probe forward
    export = False  # True: forward returns only the decoded tensor (graph for ONNX / TorchScript)
    cls_act = "sigmoid"  # "sigmoid" | "softmax" (instances override it via Model.set_class_activation)

    def __init__(self, nc: int = 80, anchors: Sequence[Sequence[float]] = (), ch: Sequence[int] = ()):
        super().__init__()
        self.nc = nc
        self.no = nc + 5  # x, y, w, h, obj, classes
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        self.grid = [torch.zeros(1)] * self.nl  # built lazily for each feature-map size
        a = torch.tensor(anchors, dtype=torch.float32).view(self.nl, -1, 2)
        self.register_buffer("anchors", a)  # pixels here; grid units once Model divides by the strides
        self.register_buffer("anchor_grid", a.clone().view(self.nl, 1, -1, 1, 1, 2))  # pixels
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)

    def forward(self, x: List[torch.Tensor]):
        decode = self.export or not self.training
        softmax = self.cls_act == "softmax"
        raw, z = [], []
        for i in range(self.nl):
            p = self.m[i](x[i])
            bs, _, ny, nx = p.shape
            p = p.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            raw.append(p)
            if decode:
                z.append(self._decode(i, p, softmax).view(bs, -1, self.no))
        if not decode:
            return raw
        if self.export:
            return torch.cat(z, 1)
        return torch.cat(z, 1), raw

    def _decode(self, i: int, p: torch.Tensor, softmax: bool) -> torch.Tensor:
        """Raw level-i map (bs, na, ny, nx, no) -> pixels xywh, objectness, class probabilities."""
        ny, nx = p.shape[2:4]
        if torch.is_autocast_enabled(p.device.type):
            p = p.float()  # decode in fp32: bf16/fp16 cannot hold pixel coordinates to better than a few px
        traced = self.export or torch.jit.is_tracing()
        if traced:
            grid = self._make_grid(nx, ny, p)  # traced from the input shape: dynamic sizes export correctly
        else:
            g = self.grid[i]
            if (g.shape[2:4] != p.shape[2:4] or g.device != p.device or g.dtype != p.dtype
                    or (g.is_inference() and not torch.is_inference_mode_enabled())):
                self.grid[i] = self._make_grid(nx, ny, p)
            grid = self.grid[i]
        if softmax:
            y = torch.cat((p[..., :5].sigmoid(), p[..., 5:].softmax(-1)), -1)
        else:
            y = p.sigmoid()
        stride, anchors = self.stride[i], self.anchor_grid[i]
        if traced or (torch.is_grad_enabled() and p.requires_grad):
            # out-of-place: autograd-safe, and a plain graph for tracers / exporters
            xy = (y[..., 0:2] * 2 - 0.5 + grid) * stride  # cell offset in (-0.5, 1.5)
            wh = (y[..., 2:4] * 2) ** 2 * anchors  # (0, 4) x anchor
            return torch.cat((xy, wh, y[..., 4:]), -1)
        # inference: the same formulas written in place into the fresh sigmoid output (no extra copies)
        y[..., 0:2] = (y[..., 0:2] * 2 - 0.5 + grid) * stride
        y[..., 2:4] = (y[..., 2:4] * 2) ** 2 * anchors
        return y

    @staticmethod
    def _make_grid(nx: int, ny: int, like: torch.Tensor) -> torch.Tensor:
        """(1, 1, ny, nx, 2) tensor of (x, y) cell indices."""
        yv, xv = torch.meshgrid(torch.arange(ny, device=like.device), torch.arange(nx, device=like.device),
                                indexing="ij")
        return torch.stack((xv, yv), 2).view(1, 1, ny, nx, 2).to(like.dtype)


def check_anchor_order(m: Detect) -> None:
    """Flip the anchor levels when their areas do not grow with the stride (e.g. anchors listed P5 first)."""
    area = m.anchor_grid.prod(-1).view(-1)
    da = area[-1] - area[0]
    ds = m.stride[-1] - m.stride[0]
    if da.sign() != ds.sign():
        LOGGER.info("Reversing anchor order")
        m.anchors[:] = m.anchors.flip(0)
        m.anchor_grid[:] = m.anchor_grid.flip(0)


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

    def __init__(self, cfg: Union[str, Path, dict] = "yolov5s.yaml", ch: int = 3, nc: Optional[int] = None,
                 anchors: Optional[float] = None):
        super().__init__()
        if isinstance(cfg, dict):
            self.yaml = deepcopy(cfg)
        else:
            path = find_model_cfg(cfg)
            self.yaml_file = path.name
            try:
                with open(path, encoding="utf-8", errors="ignore") as f:
                    self.yaml = yaml.safe_load(f)
            except yaml.YAMLError as e:
                raise ModelYamlError(f"{path}: not valid yaml: {e}") from None
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
        if visualize:
            from utils.plots import feature_visualization
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

        Runs on the meta device (shapes without arithmetic, so building even x6 costs no real forward); a
        block whose forward needs real values falls back to a real eval-mode forward (BN stats untouched).
        """
        modes = {m: m.training for m in self.modules()}
        self.eval()
        try:
            try:
                return self._probe_meta(img)
            except Exception:  # e.g. data-dependent Python control flow in a custom block
                with torch.no_grad():
                    return self._forward_once(img, stop_at=self.model[-1])
        finally:
            for m, mode in modes.items():
                m.training = mode

    def _probe_meta(self, img: torch.Tensor) -> List[torch.Tensor]:
        from torch.func import functional_call

        runner = _HeadInputs(self)
        meta = {f"model.{k}": torch.empty_like(v, device="meta")
                for k, v in [*self.named_parameters(), *self.named_buffers()]}
        with torch.no_grad():
            return functional_call(runner, meta, (img.to("meta"),))

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
        for m in reversed(self.model):
            if isinstance(m, Detect):
                return m
        return None

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

    def set_class_activation(self, act: str) -> "Model":
        """Decode class scores with ``"sigmoid"`` (per class, BCE-trained) or ``"softmax"`` (over classes,
        CE-trained). Saved in project checkpoints as ``cls_act``."""
        if act not in CLASS_ACTIVATIONS:
            raise ValueError(f"class activation must be one of {CLASS_ACTIVATIONS}, got {act!r}")
        m = self._detect_head()
        if m is None:
            raise ValueError("model has no Detect head")
        m.cls_act = act
        return self

    @property
    def cls_act(self) -> str:
        """The head's class activation ("sigmoid" | "softmax")."""
        m = self._detect_head()
        return m.cls_act if m is not None else Detect.cls_act

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

    def autoshape(self) -> AutoShape:
        """Wrap for inference on file / PIL / numpy inputs (letterbox, NMS, rescaling done for you)."""
        LOGGER.info("Adding AutoShape... ")
        m = AutoShape(self)
        copy_attr(m, self, include=("yaml", "nc", "hyp", "names", "stride"), exclude=())
        return m

    def info(self, verbose: bool = False, img_size: Union[int, Sequence[int]] = 640) -> None:
        model_info(self, verbose, img_size)
        m = self._detect_head()
        if m is not None:  # drop grids cached by the (meta-device) FLOPs pass
            m.grid = [torch.zeros(1)] * m.nl


DetectionModel = Model  # v7.0 name


class _HeadInputs(nn.Module):
    """Runs a Model up to its Detect layer and returns that layer's inputs (used by the stride probe)."""

    def __init__(self, model: Model):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self.model._forward_once(x, stop_at=self.model.model[-1])


def main(argv: Optional[Sequence[str]] = None) -> Model:
    parser = argparse.ArgumentParser(description="Build a model from its yaml and print its layers")
    parser.add_argument("--cfg", type=str, default="yolov5s.yaml", help="model.yaml")
    parser.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    parser.add_argument("--profile", action="store_true", help="profile each layer on a 640x640 image")
    parser.add_argument("--fuse", action="store_true", help="also print the summary of the fused model")
    opt = parser.parse_args(argv)
    set_logging()
    cfg = find_model_cfg(opt.cfg)
    device = select_device(opt.device)
    model = Model(cfg).to(device)
    model.train()
    if opt.profile:
        img = torch.rand(1, model.yaml["ch"], 640, 640, device=device)
        model.eval()
        with torch.inference_mode():
            model(img, profile=True)
    if opt.fuse:
        model.eval().fuse()
    return model


if __name__ == "__main__":
    # Run through the importable module so that classes are models.yolo.Detect etc., not __main__ copies.
    from models.yolo import main as _main

    _main()
