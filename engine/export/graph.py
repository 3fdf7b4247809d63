"""The graphs that get exported: what each runtime is handed instead of the training-time ``Model``.

* :class:`ExportModel` -- the detector through its own ``Detect`` decode (grid built from the input shape, so a
  trace stays shape-generic). TorchScript, the lite interpreter and ONNX take it as it is.
* :class:`FlatDecode` -- the same numbers and row order for one fixed input size, written for converters: the
  grid / stride / anchor terms are constant tensors (no ``arange`` / ``meshgrid``: ncnn cannot load a
  shape-generic grid), tensors stay 3-D after the head convs, ``(2s)**2`` is a product (TFLite has no ``pow``),
  and boxes and scores are separate branches joined by one final concat (the concat int8 must keep in float);
  grouped class activations gather with constant 0/1 matrices (ncnn has no gather).
* :class:`RawHead` -- the per-level head maps ``(bs, na, ny, nx, no)`` without any decode (``export.py --train``);
  the runners' callers decode them in Python (engine/backends.decode_raw_outputs).

Module names matter: TFLite int8 scopes are regexes over the torch module path, so the network up to the head
sits in ``features`` (a ``Features``), the head convs in ``head`` and the decode arithmetic in the top module.
"""
from __future__ import annotations

import copy
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn

from models.blocks.conv import Focus
from utils.class_groups import ClassGroups, GroupedActivation
from utils.torch_utils import detect_head


class ExportModel(nn.Module):
    """The detector returning only the decoded tensor, or (``raw``) the tuple of level maps."""

    def __init__(self, model: nn.Module, raw: bool = False):
        super().__init__()
        self.model = model
        self.raw = raw

    def forward(self, x: torch.Tensor):
        y = self.model(x)
        if self.raw:  # eval-mode Model returns (decoded, [raw level maps])
            return tuple(y[1])
        return y[0] if isinstance(y, (tuple, list)) else y


class FocusConv(nn.Module):
    """A fused Focus (space-to-depth, then a k x k stride-1 conv) as the equivalent 2k x 2k stride-2 conv.

    Focus output (i, j) sums ``W[o, q*c1 + c, u, v] * x[c, 2(i + u - p) + dy_q, 2(j + v - p) + dx_q]`` over the
    four pixel phases q = (dy, dx): a stride-2 conv whose kernel tap (2u + dy, 2v + dx) is that weight, padding 2p.
    ncnn has no strided slice, so Focus itself does not convert there.
    """

    def __init__(self, focus: nn.Module):
        super().__init__()
        conv = focus.conv.conv
        k, p, c1 = conv.kernel_size[0], conv.padding[0], conv.in_channels // 4
        self.conv = nn.Conv2d(c1, conv.out_channels, 2 * k, 2, 2 * p, bias=conv.bias is not None)
        weight = torch.zeros_like(self.conv.weight)
        for q, (dy, dx) in enumerate(((0, 0), (1, 0), (0, 1), (1, 1))):  # Focus's phase order
            weight[:, :, dy::2, dx::2] = conv.weight.detach()[:, q * c1:(q + 1) * c1]
        self.conv.weight.data.copy_(weight)
        if conv.bias is not None:
            self.conv.bias.data.copy_(conv.bias.detach())
        self.act = focus.conv.act
        for attr in ("f", "i", "type", "np"):  # Model's layer routing reads these
            if hasattr(focus, attr):
                setattr(self, attr, getattr(focus, attr))

    @staticmethod
    def applies(m: nn.Module) -> bool:
        """A fused Focus with a square stride-1 ungrouped conv (what the yolov5 yaml stems hold)."""
        conv = getattr(getattr(m, "conv", None), "conv", None)
        return (isinstance(m, Focus) and isinstance(conv, nn.Conv2d) and not hasattr(m.conv, "bn")
                and conv.stride == (1, 1) and conv.groups == 1 and conv.kernel_size[0] == conv.kernel_size[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


def focus_to_conv(model: nn.Module) -> int:
    """Replace every fused Focus of ``model`` (in place) by its :class:`FocusConv`; returns how many."""
    n = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if FocusConv.applies(child):
                setattr(parent, name, FocusConv(child))
                n += 1
    return n


class Features(nn.Module):
    """The network up to the Detect head: ``x`` -> the list of feature maps the head convs read."""

    def __init__(self, model: nn.Module, head: nn.Module):
        super().__init__()
        self.model = model
        self.__dict__["stop"] = head  # a plain attribute: a module registered twice confuses pnnx

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self.model._forward_once(x, stop_at=self.stop)


class _Converted(nn.Module):
    """Shared set-up of FlatDecode / RawHead: a float copy with Focus rewritten, the head convs moved out."""

    def __init__(self, model: nn.Module):
        super().__init__()
        model = copy.deepcopy(model).float().eval()
        focus_to_conv(model)
        det = detect_head(model, required=True)
        self.head = det.m  # the per-level 1x1 convs, registered here only (Detect is never run)
        del det._modules["m"]
        self.features = Features(model, det)
        self.na, self.no, self.nc = int(det.na), int(det.no), int(det.nc)
        self.__dict__["det"] = det

    def level_maps(self, x: torch.Tensor) -> List[torch.Tensor]:
        """(bs, na * no, ny, nx) per level."""
        return [conv(f) for conv, f in zip(self.head, self.features(x))]


class RawHead(_Converted):
    """Model -> the per-level raw maps (bs, na, ny, nx, no): Detect's training-mode output."""

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(m.view(m.shape[0], self.na, self.no, m.shape[2], m.shape[3]).permute(0, 1, 3, 4, 2)
                     for m in self.level_maps(x))


def decode_constants(det: nn.Module, imgsz: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(xy_off (1, N, 2), gain (1, N, 4)) for an input of ``imgsz``: box xy = sigmoid * 2 * stride + xy_off with
    ``xy_off = (grid - 0.5) * stride``; box wh = (sigmoid * 4 * anchor) * sigmoid. Rows in Detect's order."""
    h, w = int(imgsz[0]), int(imgsz[1])
    offsets, gains = [], []
    for i, s in enumerate(float(s) for s in det.stride):
        ny, nx = round(h / s), round(w / s)
        gy, gx = torch.meshgrid(torch.arange(ny), torch.arange(nx), indexing="ij")
        grid = torch.stack((gx, gy), -1).view(1, 1, ny * nx, 2).float().expand(1, det.na, ny * nx, 2)
        anchor = det.anchor_grid[i].detach().float().cpu().view(1, det.na, 1, 2).expand(1, det.na, ny * nx, 2)
        offsets.append(((grid - 0.5) * s).reshape(1, -1, 2))
        gains.append(torch.cat((torch.full_like(anchor, 2.0 * s), 4.0 * anchor), -1).reshape(1, -1, 4))
    return torch.cat(offsets, 1), torch.cat(gains, 1)


class GatherFreeGrouped(nn.Module):
    """:class:`GroupedActivation` without ``index_select`` (ncnn has no gather layer): the two class permutations
    and the parent lookup are products with constant 0/1 matrices, exact in float32 (every output is one input
    times 1 plus zeros); the sigmoid / per-group softmax slices are the same."""

    def __init__(self, act: GroupedActivation):
        super().__init__()
        nc = act.nc
        self.mode, self.depth, self.n_single, self.group_sizes = act.mode, act.depth, act.n_single, act.group_sizes
        eye = torch.eye(nc)
        self.register_buffer("to_order", eye[:, act.order.cpu()])  # x @ to_order == x[..., order]
        self.register_buffer("to_classes", eye[:, act.inverse.cpu()])
        parent = act.parent_index.cpu()
        child = torch.nonzero(parent < nc).squeeze(1)
        to_parent = torch.zeros(nc, nc)
        to_parent[parent[child], child] = 1.0  # (p @ to_parent)[c] == p[parent[c]]
        self.register_buffer("to_parent", to_parent)
        self.register_buffer("root", (parent == nc).float())  # top-level classes: P(parent) = 1

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        if self.mode == "softmax":
            return logits.softmax(-1)
        if self.mode == "sigmoid":
            return logits.sigmoid()
        x = torch.matmul(logits, self.to_order)
        parts = [x[..., :self.n_single].sigmoid()] if self.n_single else []
        start = self.n_single
        for k in self.group_sizes:
            parts.append(x[..., start:start + k].softmax(-1))
            start += k
        cond = torch.matmul(torch.cat(parts, -1), self.to_classes)  # P(class | parent), class order
        prob = cond
        for _ in range(self.depth):
            prob = cond * (torch.matmul(prob, self.to_parent) + self.root)
        return prob


class FlatDecode(_Converted):
    """Model -> decoded (bs, N, 5 + nc) for one input size, in converter-friendly ops (module docstring)."""

    def __init__(self, model: nn.Module, imgsz: Sequence[int]):
        super().__init__(model)
        self.cls_act = str(self.det.cls_act)
        # a fresh module rather than Detect's own: the head is not registered twice
        groups = ClassGroups.from_spec(self.det.cls_groups, self.nc) if self.cls_act == "grouped" else None
        self.grouped = GatherFreeGrouped(GroupedActivation(groups)) if groups is not None else None
        xy_off, gain = decode_constants(self.det, imgsz)
        self.register_buffer("xy_off", xy_off)
        self.register_buffer("gain", gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (bs, na*no, ny, nx) -> (bs, na, no, ny*nx) -> (bs, na, ny*nx, no) -> (bs, N, no): Detect's row order
        flat = [m.reshape(m.shape[0], self.na, self.no, -1).permute(0, 1, 3, 2).reshape(m.shape[0], -1, self.no)
                for m in self.level_maps(x)]
        p = torch.cat(flat, 1)
        sig = p[..., :4].sigmoid()
        box = sig * self.gain
        xy = box[..., :2] + self.xy_off
        wh = box[..., 2:4] * sig[..., 2:4]  # (2 sigmoid)^2 * anchor, written without pow
        obj = p[..., 4:5].sigmoid()
        logits = p[..., 5:]
        if self.cls_act == "softmax":
            cls = logits.softmax(-1)
        elif self.cls_act == "grouped":
            cls = self.grouped(logits)
        else:
            cls = logits.sigmoid()
        return torch.cat((xy, wh, obj, cls), -1)
