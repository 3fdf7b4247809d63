"""From compare.py's options to an :class:`~engine.compare.experiment.Experiment`: settings, identity, runs."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional, Sequence

import yaml

from engine.cli import FlagError
from engine.compare.experiment import (PATH_FLAGS, Experiment, RunSpec, file_digest, find_experiment_dir,
                                       flag_value, short_hash)
from engine.compare.variants import Variant, build_variants, check_flags
from engine.train.hyp_keys import warn_unknown_keys
from utils.errors import MissingFileError
from utils.files import ROOT


def _existing(path: Optional[str], what: str) -> Optional[str]:
    """Absolute path of a file the user named (also found under the repository root), MissingFileError if none."""
    if not path:
        return None
    for p in (Path(path), ROOT / path):
        if p.is_file():
            return str(p.resolve())
    raise MissingFileError(f"{what} '{path}' not found")


def default_hyp() -> Path:
    """train.py's default hyp file (used as the base of a variant's KEY=VALUE overrides)."""
    return ROOT / "data" / "hyps" / "hyp.scratch.yaml"


def check_hyps(hyp: Optional[str], variants: Sequence[Variant]) -> None:
    """The base hyp yaml must be a mapping; its keys and the variants' KEY=VALUE keys are checked against the keys
    training reads (a warning with the closest key), before any folder is made or any run starts."""
    src = Path(hyp) if hyp else default_hyp()
    try:
        base = yaml.safe_load(src.read_text(errors="ignore"))
    except yaml.YAMLError as e:
        raise FlagError(f"--hyp {src}: not valid yaml ({str(e).splitlines()[0]})") from None
    if not isinstance(base, dict):
        raise FlagError(f"--hyp {src}: not a yaml mapping of hyperparameters")
    warn_unknown_keys(base, f"--hyp {src}")
    for v in variants:
        warn_unknown_keys(v.hyp, f"--variant '{v.text}'")


def seeds_of(opt: argparse.Namespace) -> List[int]:
    if opt.seeds < 1:
        raise FlagError(f"--seeds {opt.seeds}: must be >= 1 (the number of seeds per variant)")
    return list(range(opt.seed_start, opt.seed_start + opt.seeds))


def settings_of(opt: argparse.Namespace, train_extra: List[str]) -> dict:
    """Everything that changes results, normalised (absolute paths, file contents as hashes)."""
    check_flags(train_extra, "compare.py")
    data = _existing(opt.data, "--data")
    hyp = _existing(opt.hyp, "--hyp")
    digests = {"--data": file_digest(data), "--hyp": file_digest(hyp or str(default_hyp()))}
    for flag in PATH_FLAGS:
        v = flag_value(train_extra, flag)
        if v:
            digests[flag] = file_digest(v) or file_digest(str(ROOT / v)) or v
    return {"data": data, "img": list(opt.img_size), "hyp": hyp, "train_args": list(train_extra),
            "device": opt.device, "files": digests, "ddp": bool(opt.ddp),
            "single_cls": "--single-cls" in train_extra}


def _run_digest(settings: dict, variant: dict, seed: int) -> str:
    common = {k: v for k, v in settings.items() if k not in ("variants", "seeds")}
    return short_hash({"common": common, "variant": {k: v for k, v in variant.items() if k != "text"},
                       "seed": seed})


def plan_experiment(opt: argparse.Namespace, train_extra: List[str]) -> Experiment:
    """The runs of this comparison (variants x seeds), the identity and the experiment folder."""
    variants = build_variants(opt.cls_loss, opt.variant)
    seeds = seeds_of(opt)
    settings = settings_of(opt, train_extra)
    check_hyps(settings["hyp"], variants)
    settings["variants"] = [v.to_dict() for v in variants]
    settings["seeds"] = seeds
    runs = []
    for v in variants:
        for s in seeds:
            vd = v.to_dict()
            runs.append(RunSpec(v.name, s, f"{v.name}-s{s}", train_args(settings, vd, s), val_args(settings),
                                _run_digest(settings, vd, s)))
    exp = Experiment(settings, variants, seeds, runs)
    exp.digest = short_hash(settings)
    exp.dir = find_experiment_dir(Path(opt.project), opt.name, exp.digest, opt.exist_ok, opt.fresh)
    return exp


def train_args(settings: dict, variant: dict, seed: int) -> List[str]:
    """train.py arguments of one run, without --hyp for overrides and the output folder (added at launch)."""
    args = list(settings["train_args"]) + ["--data", settings["data"], "--img", *map(str, settings["img"])]
    if settings["hyp"]:
        args += ["--hyp", settings["hyp"]]
    if settings["device"]:
        args += ["--device", settings["device"]]
    return args + ["--cls-loss", variant["cls_loss"], *variant["flags"], "--seed", str(seed)]


def val_args(settings: dict) -> List[str]:
    """val.py arguments: the same data and (test) image size as training."""
    args = ["--data", settings["data"], "--img", str(settings["img"][-1])]
    if settings["device"]:
        args += ["--device", settings["device"]]
    return args + (["--single-cls"] if settings["single_cls"] else [])
