"""Model yaml -> ``nn.Sequential`` (``parse_model``), treating the yaml strictly as data.

Upstream eval()s module names and string arguments. Here names resolve through an explicit table (the blocks
of models.common / models.experimental / models.mobile, ``Detect``, and torch.nn layers) and string arguments
through a small resolver (nc, anchors, None/True/False, numbers, lists of those; plain words such as 'nearest'
stay strings). Anything else (calls, attributes, operators, ``__import__(...)``) is rejected with a
:class:`ModelYamlError` that names the offending row; yaml text is never executed.
"""
from __future__ import annotations

import difflib
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch.nn as nn
import yaml

from models import common, experimental
from utils.general import LOGGER, make_divisible

__all__ = ["ModelYamlError", "parse_model", "resolve_module", "resolve_arg", "known_modules"]


class ModelYamlError(ValueError):
    """A model yaml that cannot be built; the message names the yaml file (if known), section, index and row."""


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?)")

_COMMON_NAMES = ("Conv", "DWConv", "Focus", "Bottleneck", "BottleneckCSP", "C3", "C3TR", "TransformerLayer",
                 "TransformerBlock", "SPP", "SPPF", "C3SPP", "C3Ghost", "GhostConv", "GhostBottleneck", "Concat",
                 "Contract", "Expand", "NMS", "Classify")
_EXPERIMENTAL_NAMES = ("CrossConv", "Sum", "MixConv2d")


def _mobile_blocks() -> Dict[str, type]:
    try:
        from models import mobile
    except ModuleNotFoundError as e:  # tolerated only while models/mobile.py does not exist
        if e.name != "models.mobile":
            raise
        return {}
    return dict(getattr(mobile, "MOBILE_BLOCKS", {}))


def known_modules() -> Dict[str, type]:
    """Every block a model yaml may name without an ``nn.`` prefix."""
    from models.yolo import Detect  # models.yolo imports this module, so resolve the head lazily
    table = {n: getattr(common, n) for n in _COMMON_NAMES}
    table.update({n: getattr(experimental, n) for n in _EXPERIMENTAL_NAMES})
    table.update(_mobile_blocks())
    table["Detect"] = Detect
    return table


def _torch_layer(name: str) -> Optional[type]:
    cls = getattr(nn, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, nn.Module) else None


def resolve_module(name: Any, table: Optional[Dict[str, type]] = None) -> type:
    """Class for a yaml ``module`` field: a known block name, ``nn.<Layer>`` / ``torch.nn.<Layer>`` or a bare
    torch.nn layer name. Raises ValueError for anything else (including expressions)."""
    table = known_modules() if table is None else table
    if isinstance(name, type) and issubclass(name, nn.Module):
        return name  # dicts built in Python may carry the class itself
    if not isinstance(name, str):
        raise ValueError(f"module must be a name string, got {type(name).__name__} {name!r}")
    text = name.strip()
    for prefix in ("torch.nn.", "nn."):
        if text.startswith(prefix):
            base = text[len(prefix):]
            if _NAME.fullmatch(base) and not base.startswith("_") and _torch_layer(base):
                return _torch_layer(base)
            raise ValueError(f"'{name}' is not a torch.nn layer")
    if not _NAME.fullmatch(text):
        raise ValueError(f"module '{name}' is not a plain name (expressions are not evaluated)")
    if text in table:
        return table[text]
    if not text.startswith("_") and _torch_layer(text):
        return _torch_layer(text)
    close = difflib.get_close_matches(text, list(table), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown module '{name}'{hint}")


def resolve_arg(a: Any, names: Dict[str, Any]) -> Any:
    """Value of one yaml argument: numbers / bools / None as they are, lists element-wise, strings via ``names``
    (nc, anchors, None, True, False ...), numeric strings as numbers, ``'[...]'`` strings as lists, plain words
    as themselves (e.g. 'nearest'). Strings that look like code raise ValueError."""
    if a is None or isinstance(a, (bool, int, float)):
        return a
    if isinstance(a, (list, tuple)):
        return [resolve_arg(x, names) for x in a]
    if isinstance(a, dict):
        return {k: resolve_arg(v, names) for k, v in a.items()}
    if not isinstance(a, str):
        raise ValueError(f"unsupported argument type {type(a).__name__}: {a!r}")
    text = a.strip()
    if text in names:
        return names[text]
    if _NUMBER.fullmatch(text):
        v = float(text)
        return int(v) if re.fullmatch(r"[+-]?\d+", text) else v
    if text.startswith("[") and text.endswith("]") and not any(c in text for c in "()"):
        try:
            value = yaml.safe_load(text)  # a data parser, not Python evaluation
        except yaml.YAMLError as e:
            raise ValueError(f"argument {a!r} is not a valid list: {e}") from None
        return resolve_arg(value, names)
    if _NAME.fullmatch(text) and not text.startswith("_"):
        return text  # plain words such as 'nearest' are meant as strings
    raise ValueError(f"argument {a!r} is not a name, number or list (expressions are not evaluated)")


def _number(d: dict, key: str, source: str) -> float:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
        raise ModelYamlError(f"{source}: '{key}' must be a positive number, got {v!r}")
    return v


def _check_from(f: Any, i: int) -> List[int]:
    """Absolute source layers of a ``from`` field (-1 = input for layer 0); raises ValueError if invalid."""
    items = f if isinstance(f, list) else [f]
    if not items or any(isinstance(x, bool) or not isinstance(x, int) for x in items):
        raise ValueError(f"'from' must be an int or a list of ints, got {f!r}")
    out = []
    for x in items:
        j = x if x >= 0 else i + x
        if i == 0 and x == -1:
            out.append(-1)  # the input image
        elif not 0 <= j < i:
            where = "a later layer (or itself)" if j >= i else "before the first layer"
            raise ValueError(f"'from' index {x} of layer {i} refers to {where}")
        else:
            out.append(j)
    return out


def parse_model(d: dict, ch: Sequence[int], source: Optional[str] = None) -> Tuple[nn.Sequential, List[int]]:
    """Build the layers of a model yaml dict.

    Args:
        d: the yaml dict (``nc``, ``depth_multiple``, ``width_multiple``, ``anchors``, ``backbone``, ``head``).
        ch: ``[input channels]``.
        source: yaml file name used in error messages (defaults to ``d['yaml_file']`` when present).
    Returns:
        ``(nn.Sequential of layers, sorted list of layer indices whose outputs later layers read)``.
    Each layer gets the attributes ``i`` (index), ``f`` (from), ``type`` (class path) and ``np`` (parameters).
    """
    source = source or d.get("yaml_file") or "model yaml"
    for key in ("anchors", "backbone", "head"):
        if key not in d:
            raise ModelYamlError(f"{source}: missing top-level key '{key}'")
    nc = d.get("nc")
    if isinstance(nc, bool) or not isinstance(nc, int) or nc < 1:
        raise ModelYamlError(f"{source}: 'nc' must be a positive int, got {nc!r}")
    gd, gw = _number(d, "depth_multiple", source), _number(d, "width_multiple", source)
    anchors = d["anchors"]
    if isinstance(anchors, (list, tuple)) and anchors and isinstance(anchors[0], (list, tuple)):
        na = len(anchors[0]) // 2
    elif isinstance(anchors, int) and not isinstance(anchors, bool) and anchors > 0:
        na = anchors
    else:
        raise ModelYamlError(f"{source}: 'anchors' must be a list of per-level lists or an int, got {anchors!r}")
    no = na * (nc + 5)  # Detect output channels: never width-scaled
    names = {"nc": nc, "anchors": anchors, "na": na, "no": no, "None": None, "True": True, "False": False}

    table = known_modules()
    from models.yolo import Detect
    mobile = set(_mobile_blocks().values())
    conv_like = {common.Conv, common.GhostConv, common.Bottleneck, common.GhostBottleneck, common.SPP,
                 common.SPPF, common.DWConv, experimental.MixConv2d, common.Focus, experimental.CrossConv,
                 common.BottleneckCSP, common.C3, common.C3TR, common.C3SPP, common.C3Ghost} | mobile
    repeat_insert = {common.BottleneckCSP, common.C3, common.C3TR, common.C3Ghost}

    LOGGER.info(f"\n{'':>3}{'from':>18}{'n':>3}{'params':>10}  {'module':<40}{'arguments':<30}")
    rows = [("backbone", r) for r in d["backbone"] or []] + [("head", r) for r in d["head"] or []]
    n_backbone = len(d["backbone"] or [])
    layers, save, c2 = [], [], ch[-1]
    ch = list(ch)
    for i, (section, row) in enumerate(rows):
        k = i if section == "backbone" else i - n_backbone

        def fail(msg: str, cause: Optional[BaseException] = None):
            err = ModelYamlError(f"{source}: {section} row {k} (layer {i}) {row!r}: {msg}")
            raise err from cause

        if not isinstance(row, (list, tuple)) or len(row) != 4:
            fail("a row must be [from, number, module, args]")
        f, n, m_name, args = row
        try:
            sources = _check_from(f, i)
            m = resolve_module(m_name, table)
            args = resolve_arg(list(args) if isinstance(args, (list, tuple)) else [args], names)
        except ValueError as e:
            fail(str(e), e)
        if isinstance(n, bool) or not isinstance(n, (int, float)) or n < 1:
            fail(f"'number' must be a positive int, got {n!r}")
        n = max(round(n * gd), 1) if n > 1 else int(n)

        if m in conv_like or m is nn.BatchNorm2d:
            if isinstance(f, list):
                fail(f"{m.__name__} takes one input, 'from' must be an int")
        if m in conv_like:
            if not args:
                fail(f"{m.__name__} needs the output channels as its first argument")
            c1, c2 = ch[f], args[0]
            if not isinstance(c2, (int, float)) or isinstance(c2, bool):
                fail(f"output channels must be a number, got {c2!r}")
            if c2 != no:  # the Detect-sized output of a head conv is kept as is
                c2 = make_divisible(c2 * gw, 8)
            args = [c1, c2, *args[1:]]
            if m in repeat_insert:
                args.insert(2, n)  # the block builds its own n repeats
                n = 1
        elif m is nn.BatchNorm2d:
            args = [ch[f]]
        elif m is common.Concat:
            c2 = sum(ch[x] for x in (f if isinstance(f, list) else [f]))
        elif m is Detect:
            if not isinstance(f, list):
                fail("Detect takes a list of input layers in 'from'")
            args.append([ch[x] for x in f])
            if len(args) > 1 and isinstance(args[1], int):  # anchors given as a count: placeholder lists
                args[1] = [list(range(args[1] * 2))] * len(f)
        elif m is common.Contract:
            c2 = ch[f] * args[0] ** 2
        elif m is common.Expand:
            c2 = ch[f] // args[0] ** 2
        else:
            c2 = ch[f] if isinstance(f, int) else ch[f[0]]

        try:
            m_ = nn.Sequential(*(m(*args) for _ in range(n))) if n > 1 else m(*args)
        except (TypeError, ValueError, RuntimeError, AssertionError, ZeroDivisionError, IndexError, KeyError) as e:
            fail(f"cannot build {m.__name__}{tuple(args)}: {type(e).__name__}: {e}", e)

        t = f"{m.__module__}.{m.__qualname__}".replace("__main__.", "")
        m_.i, m_.f, m_.type, m_.np = i, f, t, sum(p.numel() for p in m_.parameters())
        LOGGER.info(f"{i:>3}{str(f):>18}{n:>3}{m_.np:10.0f}  {t:<40}{str(args):<30}")
        save.extend(j for j, x in zip(sources, f if isinstance(f, list) else [f]) if x != -1)
        layers.append(m_)
        if i == 0:
            ch = []  # from now on ch[k] is the output width of layer k
        ch.append(c2)
    return nn.Sequential(*layers), sorted(set(save))
