"""PyTorch helpers: device selection, model statistics (parameters, FLOPs), BN folding, EMA, inference prep."""
from __future__ import annotations

import math
import os
import random
import re
import sys
import time
from contextlib import contextmanager
from copy import deepcopy
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from utils.log import LOGGER

__all__ = [
    "select_device", "time_synchronized", "time_sync", "is_parallel", "de_parallel", "intersect_dicts",
    "ModelEMA", "torch_distributed_zero_first", "model_info", "count_flops", "fuse_conv_and_bn", "fold_batchnorms",
    "is_fused", "initialize_weights", "scale_img", "copy_attr", "prepare_for_inference", "find_modules",
    "sparsity", "prune", "detect_head", "Profile", "init_torch_seeds", "init_seeds", "use_deterministic_kernels",
    "one_cycle", "smart_inference_mode", "load_classifier", "profile",
]


# ----------------------------------------------------------------------------------------------------------
# devices, timing, distributed
# ----------------------------------------------------------------------------------------------------------
def select_device(device: Union[str, int, torch.device] = "", batch_size: Optional[int] = None) -> torch.device:
    """Resolve a ``--device`` value: '' (first GPU if any, else CPU), 'cpu', '0' or '0,1,2,3' (CUDA indices).

    Like upstream, a CUDA request sets ``CUDA_VISIBLE_DEVICES`` to the given indices (and 'cpu' hides every GPU),
    so the returned device is always ``cuda:0`` or ``cpu``. Requesting CUDA on a machine without it raises.
    """
    if isinstance(device, torch.device):
        device = "cpu" if device.type == "cpu" else str(device.index if device.index is not None else "")
    spec = str(device).strip().lower().replace("cuda:", "").replace(" ", "")
    cpu = spec == "cpu"
    if spec == "cuda":
        spec = ""  # any visible GPU, but CUDA is required
        want_cuda = True
    else:
        want_cuda = bool(spec) and not cpu
    if spec and not cpu and not re.fullmatch(r"\d+(,\d+)*", spec):
        raise ValueError(f"invalid --device '{device}': use '', 'cpu', a CUDA index like '0' or a list like '0,1'")

    if cpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"  # hide GPUs from this process (takes effect before CUDA init)
    elif spec:
        os.environ["CUDA_VISIBLE_DEVICES"] = spec
    if want_cuda and not torch.cuda.is_available():
        raise RuntimeError(f"--device '{device}' requests CUDA, but CUDA is not available on this machine "
                           f"(torch {torch.__version__}); use --device cpu")

    use_cuda = not cpu and torch.cuda.is_available()
    msg = f"YOLOv5 torch {torch.__version__} "
    if use_cuda:
        n = torch.cuda.device_count()
        if n > 1 and batch_size:
            if batch_size % n:
                raise ValueError(f"--batch-size {batch_size} must be a multiple of the GPU count {n}")
        for i in range(n):
            p = torch.cuda.get_device_properties(i)
            msg += f"{'' if i == 0 else ' ' * len(msg)}CUDA:{i} ({p.name}, {p.total_memory / 1024 ** 2:.0f}MB)\n"
    else:
        msg += "CPU\n"
    LOGGER.info(msg.rstrip())
    return torch.device("cuda:0" if use_cuda else "cpu")


def time_synchronized() -> float:
    """Wall time after waiting for queued CUDA work (accurate per-step timing)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.time()


time_sync = time_synchronized  # v6.0 name


class Profile:
    """Accumulating timer: ``with t: ...`` adds the block's wall time (after waiting for CUDA) to ``t.total``.

    One instance per stage (pre-process, inference, NMS) collects the time of every batch; ``t.last`` is the
    most recent block and ``t.ms(n)`` the mean per item in milliseconds.
    """

    def __init__(self, device: Optional[torch.device] = None):
        self.total, self.last, self._start = 0.0, 0.0, 0.0
        self.cuda = device is not None and torch.device(device).type == "cuda"

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def __enter__(self) -> "Profile":
        self._start = self._now()
        return self

    def __exit__(self, *exc) -> None:
        self.last = self._now() - self._start
        self.total += self.last

    def ms(self, n: int) -> float:
        """Mean milliseconds per item over ``n`` items."""
        return self.total / max(n, 1) * 1e3


def is_parallel(model: nn.Module) -> bool:
    return isinstance(model, (nn.parallel.DataParallel, nn.parallel.DistributedDataParallel))


def de_parallel(model: nn.Module) -> nn.Module:
    """The wrapped module of a DP/DDP model, else the model itself."""
    return model.module if is_parallel(model) else model


@contextmanager
def torch_distributed_zero_first(local_rank: int) -> Iterator[None]:
    """Let rank 0 run the body first (e.g. dataset caching) while the other ranks wait at a barrier."""
    if local_rank not in (-1, 0):
        dist.barrier()
    yield
    if local_rank == 0:
        dist.barrier()


def init_torch_seeds(seed: int = 0) -> None:
    """Seed torch; seed 0 additionally selects deterministic cuDNN kernels (slower, reproducible)."""
    torch.manual_seed(seed)
    if seed == 0:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    else:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = True, False


def use_deterministic_kernels() -> None:
    """``torch.use_deterministic_algorithms(True, warn_only=True)``, without its two costs on CPU.

    It imports ``torch._inductor`` to set inductor's flag too (1-1.7 s when nothing imported it before, for
    ``torch.compile``, which nothing here uses: the flag is set only if inductor is loaded already). And it fills
    every new tensor with NaN, a debugging aid that is not part of determinism: one extra write pass over every
    activation and gradient, which made training steps and validation batches 20-25 % slower. The kernels chosen
    are the same.
    """
    if "torch._inductor.config" in sys.modules or not hasattr(torch._C, "_set_deterministic_algorithms"):
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch._C._set_deterministic_algorithms(True, warn_only=True)
    if hasattr(torch.utils, "deterministic"):
        torch.utils.deterministic.fill_uninitialized_memory = False


def init_seeds(seed: int = 0, deterministic: bool = False) -> None:
    """Seed python, numpy and torch; ``deterministic`` also asks torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        use_deterministic_kernels()
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
        os.environ["PYTHONHASHSEED"] = str(seed)


def one_cycle(y1: float = 0.0, y2: float = 1.0, steps: int = 100):
    """Cosine ramp from y1 to y2 over ``steps`` (the v5.0 one-cycle LR lambda)."""
    return lambda x: ((1 - math.cos(x * math.pi / steps)) / 2) * (y2 - y1) + y1


def smart_inference_mode():
    """Decorator: ``torch.inference_mode`` (no autograd bookkeeping at all)."""
    return torch.inference_mode()


# ----------------------------------------------------------------------------------------------------------
# state dicts / attributes / EMA
# ----------------------------------------------------------------------------------------------------------
def intersect_dicts(da: Dict[str, torch.Tensor], db: Dict[str, torch.Tensor], exclude: Iterable[str] = ()) -> dict:
    """Entries of ``da`` whose key is in ``db`` with the same shape and contains none of the ``exclude`` words."""
    exclude = tuple(exclude)
    return {k: v for k, v in da.items()
            if k in db and not any(x in k for x in exclude) and v.shape == db[k].shape}


def copy_attr(a: object, b: object, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> None:
    """Copy public instance attributes of ``b`` onto ``a`` (only ``include`` when given, never ``exclude``)."""
    for k, v in b.__dict__.items():
        if (include and k not in include) or k.startswith("_") or k in exclude:
            continue
        setattr(a, k, v)


def detect_head(model: nn.Module, required: bool = False) -> Optional[nn.Module]:
    """The Detect head of a model, also inside DDP / EMA / AutoShape / Ensemble wrappers (the last one found).

    Recognised by what a head holds (``anchors``, ``nl``, ``na``), so leaf code needs no import
    of models/. ``required``: raise TypeError instead of returning None.
    """
    for m in reversed(list(de_parallel(model).modules())):
        if all(hasattr(m, a) for a in ("anchors", "nl", "na")):
            return m
    if required:
        raise TypeError(f"expected a YOLOv5 model with a Detect layer, got {type(model).__name__}")
    return None


class ModelEMA:
    """Exponential moving average of every float entry of a model's state_dict.

    decay(u) = decay * (1 - exp(-u / 2000)) for the u-th update, so early updates follow the model closely.
    The EMA copy is kept in FP32 eval mode with gradients off; ``update`` also mirrors the head's class
    activation (set by ComputeLoss after the EMA may have been created).
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, updates: int = 0):
        self.ema = deepcopy(de_parallel(model)).eval()
        self.updates = updates
        self.decay_base = decay
        for p in self.ema.parameters():
            p.requires_grad_(False)

    def decay(self, updates: int) -> float:
        return self.decay_base * (1 - math.exp(-updates / 2000))

    def update(self, model: nn.Module) -> None:
        with torch.no_grad():
            self.updates += 1
            d = self.decay(self.updates)
            msd = de_parallel(model).state_dict()
            for k, v in self.ema.state_dict().items():
                if v.dtype.is_floating_point:
                    v.mul_(d).add_(msd[k].detach().to(v.dtype), alpha=1 - d)
        self._sync_head(model)

    def update_attr(self, model: nn.Module, include: Sequence[str] = (),
                    exclude: Sequence[str] = ("process_group", "reducer")) -> None:
        copy_attr(self.ema, de_parallel(model), include, exclude)
        self._sync_head(model)

    def _sync_head(self, model: nn.Module) -> None:
        """Decode like the trained model: copy the head's class activation (and groups) onto the EMA's head."""
        src, dst = detect_head(model), detect_head(self.ema)
        if src is None or dst is None or "cls_act" not in src.__dict__:
            return
        if (dst.__dict__.get("cls_act"), dst.__dict__.get("cls_groups")) != (src.cls_act, src.cls_groups):
            dst.set_activation(src.cls_act, src.cls_groups)


# ----------------------------------------------------------------------------------------------------------
# statistics: parameters and FLOPs
# ----------------------------------------------------------------------------------------------------------
def _conv_macs(m: nn.Conv2d, inputs, output: torch.Tensor) -> float:
    k = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1] + (1 if m.bias is not None else 0)
    return output.numel() * k


def _bn_macs(m: nn.Module, inputs, output: torch.Tensor) -> float:
    return 2 * output.numel()


def _linear_macs(m: nn.Linear, inputs, output: torch.Tensor) -> float:
    return m.in_features * output.numel()


# Counting rules matching the figures upstream printed with thop (every other module counts 0).
_MAC_RULES = {nn.Conv2d: _conv_macs, nn.BatchNorm2d: _bn_macs, nn.Linear: _linear_macs}


def count_flops(model: nn.Module, *inputs: torch.Tensor) -> float:
    """FLOPs (= 2 x multiply-accumulates) of one forward of ``model`` on ``inputs``, counted with forward hooks.

    Conv2d: out_elements x (cin/groups x kh x kw + bias); BatchNorm2d: 2 x elements; Linear: in x out_elements.
    The forward runs in eval mode under no_grad, so BatchNorm running statistics are not touched; callers pass
    a small input and scale (model_info counts at the model's stride and scales to the image size). A meta-device
    forward would skip the arithmetic, but its first torch.cat imports torch._dynamo (~1 s), far more than a real
    forward at that size costs.
    """
    total = [0.0]
    handles = []
    for m in model.modules():
        rule = _MAC_RULES.get(type(m))
        if rule is not None:
            handles.append(m.register_forward_hook(
                lambda mod, inp, out, rule=rule: total.__setitem__(0, total[0] + rule(mod, inp, out))))
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    return 2 * total[0]


def model_info(model: nn.Module, verbose: bool = False, img_size: Union[int, Sequence[int]] = 640) -> None:
    """Log ``Model Summary: N layers, P parameters, G gradients, F GFLOPS`` (FLOPs at ``img_size``).

    FLOPs are counted on a square zero image of side max(stride, 32) and scaled to ``img_size``, so building a
    model never runs a full-size forward.
    """
    params = list(model.parameters())
    n_p = sum(p.numel() for p in params)
    n_g = sum(p.numel() for p in params if p.requires_grad)
    if verbose:
        LOGGER.info(f"{'layer':>5} {'name':>40} {'gradient':>9} {'parameters':>12} {'shape':>20} "
                    f"{'mu':>10} {'sigma':>10}")
        for i, (name, p) in enumerate(model.named_parameters()):
            name = name.replace("module_list.", "")
            LOGGER.info(f"{i:5g} {name:>40} {str(p.requires_grad):>9} {p.numel():12g} {str(list(p.shape)):>20} "
                        f"{p.mean().item():10.3g} {p.std().item() if p.numel() > 1 else 0.0:10.3g}")
    fs = ""
    try:
        stride = max(int(model.stride.max()), 32) if hasattr(model, "stride") else 32
        ch = model.yaml.get("ch", 3) if isinstance(getattr(model, "yaml", None), dict) else 3
        p0 = params[0]
        img = torch.zeros((1, ch, stride, stride), device=p0.device, dtype=p0.dtype)
        gflops = count_flops(model, img) / 1e9
        size = img_size if isinstance(img_size, (list, tuple)) else [img_size, img_size]
        fs = f", {gflops * size[0] / stride * size[1] / stride:.1f} GFLOPS"
    except Exception as e:  # FLOPs are informative only: a model that cannot run a tiny image still gets a summary
        LOGGER.debug(f"FLOPs not computed: {e}")
    LOGGER.info(f"Model Summary: {len(list(model.modules()))} layers, {n_p} parameters, {n_g} gradients{fs}")


def profile(x: Union[torch.Tensor, List[torch.Tensor]], ops: Union[nn.Module, List[nn.Module]], n: int = 10,
            device: Optional[torch.device] = None) -> List[dict]:
    """Time forward (and backward when possible) of each op on each input; log and return the figures."""
    device = device or torch.device("cpu")
    xs = x if isinstance(x, list) else [x]
    ops = ops if isinstance(ops, list) else [ops]
    LOGGER.info(f"{'Params':>12s}{'GFLOPS':>12s}{'forward (ms)':>16s}{'backward (ms)':>16s}"
                f"{'input':>24s}{'output':>24s}")
    results = []
    for xi in xs:
        xi = xi.to(device).requires_grad_(xi.is_floating_point())
        for m in ops:
            m = m.to(device) if isinstance(m, nn.Module) else m
            flops = count_flops(m, xi) / 1e9 if isinstance(m, nn.Module) else 0.0
            tf = tb = 0.0
            for _ in range(n):
                t0 = time_synchronized()
                y = m(xi)
                t1 = time_synchronized()
                try:
                    (sum(yi.sum() for yi in y) if isinstance(y, (list, tuple)) else y.sum()).backward()
                    tb += (time_synchronized() - t1) * 1000 / n
                except RuntimeError:
                    tb = float("nan")
                tf += (t1 - t0) * 1000 / n
            n_p = sum(p.numel() for p in m.parameters()) if isinstance(m, nn.Module) else 0
            s_out = tuple(y.shape) if isinstance(y, torch.Tensor) else "list"
            LOGGER.info(f"{n_p:12}{flops:12.4g}{tf:16.4g}{tb:16.4g}{str(tuple(xi.shape)):>24s}{str(s_out):>24s}")
            results.append({"params": n_p, "gflops": flops, "forward_ms": tf, "backward_ms": tb})
    return results


# ----------------------------------------------------------------------------------------------------------
# initialisation, fusion, inference preparation
# ----------------------------------------------------------------------------------------------------------
def initialize_weights(model: nn.Module) -> None:
    """Upstream init: convs keep PyTorch defaults; BN eps 1e-3 / momentum 0.03; ReLU-family activations in place."""
    for m in model.modules():
        t = type(m)
        if t is nn.BatchNorm2d:
            m.eps = 1e-3
            m.momentum = 0.03
        elif t in (nn.Hardswish, nn.LeakyReLU, nn.ReLU, nn.ReLU6):
            m.inplace = True


def find_modules(model: nn.Module, mclass: type = nn.Conv2d) -> List[int]:
    """Indices (in ``model.module_list``) of the layers of type ``mclass``."""
    return [i for i, m in enumerate(model.module_list) if isinstance(m, mclass)]


def sparsity(model: nn.Module) -> float:
    """Fraction of parameters that are exactly zero."""
    a = b = 0
    for p in model.parameters():
        a += p.numel()
        b += int((p == 0).sum())
    return b / max(a, 1)


def prune(model: nn.Module, amount: float = 0.3) -> None:
    """L1-unstructured pruning of every Conv2d weight (made permanent)."""
    import torch.nn.utils.prune as tprune
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            tprune.l1_unstructured(m, name="weight", amount=amount)
            tprune.remove(m, "weight")
    LOGGER.info(f"Model pruned to {sparsity(model):.3g} global sparsity")


def fuse_conv_and_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A biased Conv2d equal to ``bn(conv(x))`` with BN in eval mode (running statistics).

    W' = W * g / sqrt(var + eps) per output channel; b' = (b - mean) * g / sqrt(var + eps) + beta.
    """
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, kernel_size=conv.kernel_size, stride=conv.stride,
                      padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,
                      padding_mode=getattr(conv, "padding_mode", "zeros"))
    fused = fused.requires_grad_(False).to(device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        w = conv.weight.float()
        var, mean = bn.running_var.float(), bn.running_mean.float()
        gamma = bn.weight.float() if bn.weight is not None else torch.ones_like(var)
        beta = bn.bias.float() if bn.bias is not None else torch.zeros_like(var)
        scale = gamma / torch.sqrt(var + bn.eps)
        b = conv.bias.float() if conv.bias is not None else torch.zeros_like(mean)
        fused.weight.copy_((w * scale.view(-1, 1, 1, 1)).to(fused.weight.dtype))
        fused.bias.copy_(((b - mean) * scale + beta).to(fused.bias.dtype))
    return fused


def _has_conv_bn(m: nn.Module) -> bool:
    return isinstance(getattr(m, "conv", None), nn.Conv2d) and isinstance(getattr(m, "bn", None), nn.BatchNorm2d) \
        and m.bn.num_features == m.conv.out_channels


def _sequential_pairs(seq: nn.Sequential) -> Iterator[tuple]:
    items = list(seq._modules.items())
    for (n1, m1), (n2, m2) in zip(items, items[1:]):
        if type(m1) is nn.Conv2d and isinstance(m2, nn.BatchNorm2d) and m2.num_features == m1.out_channels:
            yield n1, n2


def fold_batchnorms(model: nn.Module) -> int:
    """Fold every BatchNorm2d that directly follows a Conv2d into it; returns the number of folds.

    (a) modules with ``conv`` + ``bn`` attributes (Conv, DWConv, ...): ``conv`` becomes the fused biased conv;
        with a ``forward_fuse`` (or v5.0 ``fuseforward``) method ``bn`` is deleted and forward switched to it,
        otherwise ``bn`` becomes ``nn.Identity`` so the module's own forward stays valid;
    (b) inside any ``nn.Sequential``: a Conv2d directly followed by a BatchNorm2d -> fused conv + ``nn.Identity``.
    Works on modules unpickled from upstream checkpoints (only their v5.0 attributes are used).
    """
    n = 0
    for m in list(model.modules()):
        if _has_conv_bn(m):
            m.conv = fuse_conv_and_bn(m.conv, m.bn)
            fused_forward = getattr(m, "forward_fuse", None) or getattr(m, "fuseforward", None)
            if fused_forward is not None:
                delattr(m, "bn")
                m.forward = fused_forward  # instance attribute, as upstream: the module now skips BN
            else:
                m.bn = nn.Identity()
            n += 1
        if isinstance(m, nn.Sequential):
            for n1, n2 in list(_sequential_pairs(m)):
                m._modules[n1] = fuse_conv_and_bn(m._modules[n1], m._modules[n2])
                m._modules[n2] = nn.Identity()
                n += 1
    return n


def is_fused(model: nn.Module) -> bool:
    """True when no foldable Conv2d + BatchNorm2d pair is left."""
    for m in model.modules():
        if _has_conv_bn(m) or (isinstance(m, nn.Sequential) and next(_sequential_pairs(m), None) is not None):
            return False
    return True


def prepare_for_inference(model: nn.Module, device: Union[str, torch.device] = "cpu") -> nn.Module:
    """The fast inference path used by detect / val: fold BN (if not done yet), eval, channels_last on CPU.

    Run the returned model under ``torch.inference_mode()`` and feed it channels_last inputs on CPU
    (``x.contiguous(memory_format=torch.channels_last)``) for the fastest oneDNN kernels.
    """
    device = torch.device(device)
    model = model.to(device)
    if not is_fused(model):
        if hasattr(model, "fuse"):
            model.fuse()
        else:
            for m in model.modules():  # e.g. an Ensemble of Models
                if m is not model and hasattr(m, "fuse") and not is_fused(m):
                    m.fuse()
            fold_batchnorms(model)  # anything not covered by a sub-model's own fuse()
    model.eval()
    for m in model.modules():
        # Conv-style blocks compute act(conv(x)): the activation input is a fresh tensor, so it can be
        # overwritten (saves one allocation + write per layer, ~5% on CPU)
        if (getattr(m, "forward_fuse", None) is not None
                and isinstance(getattr(m, "act", None), (nn.SiLU, nn.Hardswish, nn.ReLU, nn.LeakyReLU))):
            m.act.inplace = True
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    return model


def scale_img(img: torch.Tensor, ratio: float = 1.0, same_shape: bool = False, gs: int = 32) -> torch.Tensor:
    """Resize a (B,C,H,W) batch by ``ratio``; unless ``same_shape``, pad (value 0.447) up to multiples of ``gs``."""
    if ratio == 1.0:
        return img
    h, w = img.shape[2:]
    s = (int(h * ratio), int(w * ratio))
    img = F.interpolate(img, size=s, mode="bilinear", align_corners=False)
    if not same_shape:
        h, w = (math.ceil(x * ratio / gs) * gs for x in (h, w))
    return F.pad(img, [0, w - s[1], 0, h - s[0]], value=0.447)


def load_classifier(name: str = "resnet101", n: int = 2) -> nn.Module:
    """A torchvision classifier with an ``n``-class head (second-stage classifier of detect.py).

    Built without downloading pretrained weights: the caller loads its own state_dict (as detect.py does).
    """
    import torchvision
    model = getattr(torchvision.models, name)(weights=None)
    fc = model.fc
    model.fc = nn.Linear(fc.in_features, n, bias=True)
    nn.init.zeros_(model.fc.bias)
    nn.init.zeros_(model.fc.weight)
    return model
