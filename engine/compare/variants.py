"""Variants of a comparison: a class loss plus hyperparameter overrides and extra train.py flags.

Syntax of one ``--variant`` string (tokens separated by spaces, shell-quoted as a whole)::

    LOSS [name=NAME] [KEY=VALUE ...] [--train-flag [VALUE] ...]

* ``LOSS``: ``bce``, ``ce`` or ``grouped`` (becomes ``--cls-loss LOSS``);
* ``KEY=VALUE``: a hyperparameter of the hyp yaml, e.g. ``fl_gamma=1.5`` (the comparison writes one hyp file per
  variant: the base ``--hyp`` with these keys replaced);
* ``--flag ...``: passed to train.py as written, e.g. ``--label-smoothing 0.05``;
* ``name=NAME``: the variant's name (default: the loss and its options, e.g. ``ce_fl_gamma1.5``).

Examples: ``"ce fl_gamma=1.5"``, ``"bce --label-smoothing 0.05"``, ``"ce name=ce-smooth --label-smoothing 0.1"``.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import yaml

from engine.cli import FlagError

CLS_LOSSES = ("bce", "ce", "grouped")
# train.py flags a variant must not set: the comparison owns them (seeds, output folders, the loss itself)
RESERVED_FLAGS = ("--seed", "--project", "--name", "--exist-ok", "--resume", "--cls-loss", "--evolve", "--hyp",
                  "--data", "--img", "--img-size", "--imgsz", "--local_rank", "--local-rank")
INSTEAD = {  # what to use instead of a reserved train.py flag
    "--seed": "use --seeds / --seed-start", "--cls-loss": "use --cls-loss / --variant LOSS",
    "--hyp": "use KEY=VALUE in a variant, or compare.py --hyp", "--resume": "run the same command again",
    "--project": "use compare.py --project / --name", "--name": "use compare.py --project / --name",
    "--exist-ok": "use compare.py --exist-ok", "--data": "use compare.py --data",
    "--img": "use compare.py --img", "--img-size": "use compare.py --img", "--imgsz": "use compare.py --img",
}
_SAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


@dataclass
class Variant:
    """One arm of the comparison."""

    name: str
    cls_loss: str
    hyp: Dict[str, object] = field(default_factory=dict)  # hyp key -> value overrides
    flags: List[str] = field(default_factory=list)  # extra train.py arguments
    text: str = ""  # as the user wrote it

    def to_dict(self) -> dict:
        return {"name": self.name, "cls_loss": self.cls_loss, "hyp": dict(self.hyp), "flags": list(self.flags),
                "text": self.text}


def _value(text: str):
    """A hyp value as yaml reads it (``1.5`` -> float, ``true`` -> bool, else the string)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _default_name(loss: str, hyp: Dict[str, object], flags: Sequence[str]) -> str:
    parts = [loss] + [f"{k}{v}" for k, v in hyp.items()]
    parts += [_SAFE.sub("", f.lstrip("-")) for f in flags]
    return _SAFE.sub("_", "_".join(p for p in parts if p))


def check_flags(flags: Sequence[str], where: str) -> None:
    """Refuse train.py flags the comparison sets itself (also as ``--flag=value`` or an abbreviation)."""
    for f in flags:
        if not f.startswith("--"):
            continue
        key = f.split("=", 1)[0]
        hit = [r for r in RESERVED_FLAGS if r == key or (len(key) > 3 and r.startswith(key))]
        if hit:
            raise FlagError(f"{where}: {key} cannot be passed to train.py here: "
                            f"{INSTEAD.get(hit[0], 'compare.py runs plain trainings')}")


def parse_variant(text: str) -> Variant:
    """One ``--variant`` string -> :class:`Variant` (syntax in the module docstring); FlagError when malformed."""
    try:
        tokens = shlex.split(text)
    except ValueError as e:
        raise FlagError(f"--variant '{text}': {e}") from None
    if not tokens or tokens[0] not in CLS_LOSSES:
        raise FlagError(f"--variant '{text}': must start with a class loss, one of {', '.join(CLS_LOSSES)} "
                        f"(e.g. --variant \"ce fl_gamma=1.5\")")
    loss, rest = tokens[0], tokens[1:]
    name, hyp, flags = "", {}, []
    for i, tok in enumerate(rest):
        if tok.startswith("-"):
            flags = rest[i:]
            break
        if "=" not in tok:
            raise FlagError(f"--variant '{text}': '{tok}' is neither KEY=VALUE nor a --flag")
        key, val = tok.split("=", 1)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise FlagError(f"--variant '{text}': '{key}' is not a hyperparameter name")
        if key == "name":
            name = val
        elif key == "cls_loss":
            raise FlagError(f"--variant '{text}': the class loss is the first word, not cls_loss=")
        else:
            hyp[key] = _value(val)
    check_flags(flags, f"--variant '{text}'")
    name = name or _default_name(loss, hyp, flags)
    if not name or _SAFE.search(name):
        raise FlagError(f"--variant '{text}': name '{name}' may only hold letters, digits and _ . + -")
    return Variant(name, loss, hyp, list(flags), text)


def build_variants(cls_losses: Sequence[str], variant_texts: Sequence[str]) -> List[Variant]:
    """``--cls-loss a b`` (plain variants) then every ``--variant``; names must be unique; at least two."""
    variants = [parse_variant(loss) for loss in cls_losses or ()] + [parse_variant(t) for t in variant_texts or ()]
    if not variants:
        variants = [parse_variant("bce"), parse_variant("ce")]
    seen: Dict[str, str] = {}
    for v in variants:
        if v.name in seen:
            raise FlagError(f"two variants are named '{v.name}' ('{seen[v.name]}' and '{v.text}'); give one a "
                            f"name=NAME")
        seen[v.name] = v.text
    if len(variants) < 2:
        raise FlagError(f"a comparison needs at least two variants, got {[v.text for v in variants]}")
    return variants
