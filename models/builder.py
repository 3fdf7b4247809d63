"""Model yaml -> ``nn.Sequential`` (``parse_model``), treating the yaml strictly as data.

Upstream eval()s module names and string arguments. Here names resolve through the block registry
(models/registry.py: the blocks of the v5.0 / v6.0 yamls, the mobile blocks, ``Detect``) and torch.nn layers, and
string arguments through a small resolver (nc, anchors, None/True/False, numbers, lists of those; plain words such
as 'nearest' stay strings). Anything else (calls, attributes, operators, ``__import__(...)``) is rejected with a
:class:`ModelYamlError` that names the offending row; yaml text is never executed.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch.nn as nn
import yaml

from models import registry
from models.registry import Block
from utils.checks import make_divisible
from utils.errors import UserError
from utils.log import LOGGER

__all__ = ["ModelYamlError", "parse_model", "resolve_module", "resolve_arg", "known_modules"]


class ModelYamlError(UserError, ValueError):
    """A model yaml that cannot be built; the message names the yaml file (if known), section, index and row."""


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?)")


def known_modules() -> Dict[str, type]:
    """Every block a model yaml may name without an ``nn.`` prefix."""
    return {n: registry.yaml_block(n).cls for n in registry.yaml_names()}


def resolve_block(name: Any) -> Block:
    """The registry entry for a yaml ``module`` field: a known block name, ``nn.<Layer>`` / ``torch.nn.<Layer>``
    or a bare torch.nn layer name. Raises ValueError for anything else (including expressions)."""
    if isinstance(name, type) and issubclass(name, nn.Module):
        return Block(name, registry.rule_of(name), (name.__name__,))  # dicts built in Python may carry classes
    if not isinstance(name, str):
        raise ValueError(f"module must be a name string, got {type(name).__name__} {name!r}")
    text = name.strip()
    for prefix in ("torch.nn.", "nn."):
        if text.startswith(prefix):
            block = registry.torch_layer(text[len(prefix):]) if _NAME.fullmatch(text[len(prefix):]) else None
            if block is None:
                raise ValueError(f"'{name}' is not a torch.nn layer")
            return block
    if not _NAME.fullmatch(text):
        raise ValueError(f"module '{name}' is not a plain name (expressions are not evaluated)")
    block = registry.yaml_block(text) or registry.torch_layer(text)
    if block is None:
        close = difflib.get_close_matches(text, list(registry.yaml_names()), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown module '{name}'{hint}")
    return block


def resolve_module(name: Any) -> type:
    """Class for a yaml ``module`` field (see :func:`resolve_block`)."""
    return resolve_block(name).cls


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


@dataclass
class _Scale:
    """The yaml-wide numbers every row is built with."""

    gd: float  # depth multiple
    gw: float  # width multiple
    no: int  # Detect output channels per level (na * (5 + nc)), never width-scaled
    names: Dict[str, Any]  # what string arguments may refer to


def _scale_of(d: dict, source: str) -> _Scale:
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
    no = na * (nc + 5)
    names = {"nc": nc, "anchors": anchors, "na": na, "no": no, "None": None, "True": True, "False": False}
    return _Scale(gd, gw, no, names)


def _channels(block: Block, f: Any, args: list, n: int, ch: List[int], s: _Scale) -> Tuple[list, int, int]:
    """(constructor args, output width, repeats) of one row under its block's channel rule (models/registry.py)."""
    rule, name = block.rule, block.cls.__name__
    if rule in ("conv", "exact", "csp", "bn") and isinstance(f, list):
        raise ValueError(f"{name} takes one input, 'from' must be an int")
    if rule in ("conv", "exact", "csp"):
        if not args:
            raise ValueError(f"{name} needs the output channels as its first argument")
        c2 = args[0]
        if not isinstance(c2, (int, float)) or isinstance(c2, bool) or (rule == "exact" and c2 != int(c2)):
            raise ValueError(f"output channels must be a number, got {c2!r}")
        if rule == "exact":
            c2 = int(c2)  # torchvision's width as written: width_multiple does not apply
        elif c2 != s.no:  # a Detect-sized head conv keeps its width
            c2 = make_divisible(c2 * s.gw, 8)
        args = [ch[f], c2, *args[1:]]
        return ([*args[:2], n, *args[2:]], c2, 1) if rule == "csp" else (args, c2, n)
    if rule == "bn":
        return [ch[f]], ch[f], n
    if rule == "concat":
        return args, sum(ch[x] for x in (f if isinstance(f, list) else [f])), n
    if rule == "detect":
        if not isinstance(f, list):
            raise ValueError("Detect takes a list of input layers in 'from'")
        args = [*args, [ch[x] for x in f]]
        if len(args) > 1 and isinstance(args[1], int):  # anchors given as a count: placeholder lists
            args[1] = [list(range(args[1] * 2))] * len(f)
        return args, 0, n
    if rule == "contract":
        return args, ch[f] * args[0] ** 2, n
    if rule == "expand":
        return args, ch[f] // args[0] ** 2, n
    return args, ch[f] if isinstance(f, int) else ch[f[0]], n


def _build_row(i: int, row: Any, ch: List[int], s: _Scale, fail) -> Tuple[nn.Module, int, List[int]]:
    """(module with i / f / type / np set, output width, source layers) of one yaml row."""
    if not isinstance(row, (list, tuple)) or len(row) != 4:
        fail("a row must be [from, number, module, args]")
    f, n, m_name, args = row
    try:
        sources = _check_from(f, i)
        block = resolve_block(m_name)
        args = resolve_arg(list(args) if isinstance(args, (list, tuple)) else [args], s.names)
        if isinstance(n, bool) or not isinstance(n, (int, float)) or n < 1:
            raise ValueError(f"'number' must be a positive int, got {n!r}")
        n = max(round(n * s.gd), 1) if n > 1 else int(n)
        args, c2, n = _channels(block, f, args, n, ch, s)
    except ValueError as e:
        fail(str(e), e)
    m = block.cls
    try:
        m_ = nn.Sequential(*(m(*args) for _ in range(n))) if n > 1 else m(*args)
    except (TypeError, ValueError, RuntimeError, AssertionError, ZeroDivisionError, IndexError, KeyError) as e:
        fail(f"cannot build {m.__name__}{tuple(args)}: {type(e).__name__}: {e}", e)
    m_.i, m_.f, m_.type = i, f, block.type_name
    m_.np = sum(p.numel() for p in m_.parameters())
    LOGGER.info(f"{i:>3}{str(f):>18}{n:>3}{m_.np:10.0f}  {m_.type:<40}{str(args):<30}")
    return m_, c2, [j for j, x in zip(sources, f if isinstance(f, list) else [f]) if x != -1]


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
    s = _scale_of(d, source)
    LOGGER.info(f"\n{'':>3}{'from':>18}{'n':>3}{'params':>10}  {'module':<40}{'arguments':<30}")
    backbone, head = d["backbone"] or [], d["head"] or []
    layers, save, widths = [], set(), list(ch)
    for i, row in enumerate([*backbone, *head]):
        section, k = ("backbone", i) if i < len(backbone) else ("head", i - len(backbone))

        def fail(msg: str, cause: Optional[BaseException] = None):
            raise ModelYamlError(f"{source}: {section} row {k} (layer {i}) {row!r}: {msg}") from cause

        m, c2, sources = _build_row(i, row, widths, s, fail)
        layers.append(m)
        save.update(sources)
        widths = [c2] if i == 0 else [*widths, c2]  # from now on widths[k] is the output width of layer k
    return nn.Sequential(*layers), sorted(save)
