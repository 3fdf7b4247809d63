"""The Detect head: per level a 1x1 conv to ``na * (5 + nc)`` channels, decoded to pixel boxes and scores.

The decode (:func:`decode_level`) is also what exported raw-head files are decoded with (engine/backends.py), so a
model gives the same numbers whichever way it runs.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence

import torch
import torch.nn as nn

from utils.class_activation import check_activation, class_scores
from utils.class_groups import ClassGroups, GroupedActivation
from utils.log import LOGGER


def make_grid(nx: int, ny: int, like: torch.Tensor) -> torch.Tensor:
    """(1, 1, ny, nx, 2) tensor of (x, y) cell indices, on ``like``'s device and dtype."""
    yv, xv = torch.meshgrid(torch.arange(ny, device=like.device), torch.arange(nx, device=like.device),
                            indexing="ij")
    return torch.stack((xv, yv), 2).view(1, 1, ny, nx, 2).to(like.dtype)


def decode_level(p: torch.Tensor, grid: torch.Tensor, stride, anchor_grid: torch.Tensor, cls_act: str,
                 in_place: bool = False, grouped: Optional[nn.Module] = None) -> torch.Tensor:
    """Raw level map (bs, na, ny, nx, 5 + nc) -> [x, y, w, h] in input pixels, objectness, class scores.

    Box and objectness channels use a sigmoid, the class channels ``cls_act`` (``grouped``: the module applying
    it). ``in_place`` writes the box formulas into the fresh activation output (inference: no extra copies);
    otherwise the graph is out-of-place, which autograd and exporters need.
    """
    if cls_act == "sigmoid":
        y = p.sigmoid()
    else:
        y = torch.cat((p[..., :5].sigmoid(), class_scores(p[..., 5:], cls_act, grouped)), -1)
    xy = (y[..., 0:2] * 2 - 0.5 + grid) * stride  # cell offset in (-0.5, 1.5)
    wh = (y[..., 2:4] * 2) ** 2 * anchor_grid  # (0, 4) x anchor
    if in_place:
        y[..., 0:2] = xy
        y[..., 2:4] = wh
        return y
    return torch.cat((xy, wh, y[..., 4:]), -1)


class Detect(nn.Module):
    """Detection head. Training mode returns the raw per-level maps ``(bs, na, ny, nx, no)``; eval mode returns
    ``(decoded (bs, N, no), raw list)`` with rows ``[x, y, w, h, obj, class scores...]`` in input pixels; with the
    class attribute ``export = True`` only the decoded tensor.

    ``cls_act`` is the class activation ('sigmoid' per class, BCE-trained; 'softmax' over the classes, CE-trained;
    'grouped' with ``cls_groups``; see utils/class_activation.py). The class-level defaults keep modules unpickled
    from upstream checkpoints decoding as upstream did; :meth:`set_activation` sets them per instance and project
    checkpoints store them.
    """

    stride = None  # set by Model from a probe forward
    export = False  # True: forward returns only the decoded tensor (graph for ONNX / TorchScript)
    cls_act = "sigmoid"
    cls_groups = None  # the class groups of 'grouped' (ClassGroups.to_spec() form), else None

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
        raw, z = [], []
        for i in range(self.nl):
            p = self.m[i](x[i])
            bs, _, ny, nx = p.shape
            p = p.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            raw.append(p)
            if decode:
                z.append(self._decode(i, p).view(bs, -1, self.no))
        if not decode:
            return raw
        if self.export:
            return torch.cat(z, 1)
        return torch.cat(z, 1), raw

    def set_activation(self, act: str, groups: Optional[Any] = None) -> None:
        """Decode class scores with ``act``; 'grouped' needs ``groups`` (a ClassGroups or its spec list)."""
        check_activation(act)
        self.__dict__.pop("grouped", None)
        if "grouped" in self._modules:
            del self._modules["grouped"]
        if act == "grouped":
            if groups is None:
                raise ValueError("class activation 'grouped' needs the class groups (cls_groups)")
            groups = groups if isinstance(groups, ClassGroups) else ClassGroups.from_spec(groups, self.nc)
            self.grouped = GroupedActivation(groups).to(self.anchors.device)
            self.cls_groups = groups.to_spec()
        else:
            self.cls_groups = None
        self.cls_act = act

    def _decode(self, i: int, p: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled(p.device.type):
            p = p.float()  # decode in fp32: bf16/fp16 cannot hold pixel coordinates to better than a few px
        traced = self.export or torch.jit.is_tracing()
        grid = make_grid(p.shape[3], p.shape[2], p) if traced else self._cached_grid(i, p)
        in_place = not traced and not (torch.is_grad_enabled() and p.requires_grad)
        return decode_level(p, grid, self.stride[i], self.anchor_grid[i], self.cls_act, in_place,
                            getattr(self, "grouped", None))

    def _cached_grid(self, i: int, p: torch.Tensor) -> torch.Tensor:
        """The level-i grid, rebuilt when the map size, device or dtype changed (or it was made in inference mode
        and is now needed with autograd)."""
        g = self.grid[i]
        if (g.shape[2:4] != p.shape[2:4] or g.device != p.device or g.dtype != p.dtype
                or (g.is_inference() and not torch.is_inference_mode_enabled())):
            self.grid[i] = make_grid(p.shape[3], p.shape[2], p)
        return self.grid[i]


def check_anchor_order(m: Detect) -> None:
    """Flip the anchor levels when their areas do not grow with the stride (e.g. anchors listed P5 first)."""
    area = m.anchor_grid.prod(-1).view(-1)
    da = area[-1] - area[0]
    ds = m.stride[-1] - m.stride[0]
    if da.sign() != ds.sign():
        LOGGER.info("Reversing anchor order")
        m.anchors[:] = m.anchors.flip(0)
        m.anchor_grid[:] = m.anchor_grid.flip(0)
