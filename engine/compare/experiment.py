"""The experiment: every (variant, seed) run of one comparison, its folder ``runs/compare/expN`` and its identity.

The identity is a hash of the normalised settings that change results (data, model, image size, budget, seeds,
variants and the content of the files they name), stored in ``expN/compare.yaml``. Re-running the same command
finds the folder with the same hash and carries on there; how many runs go in parallel does not change it.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml

from engine.compare.variants import Variant
from utils.errors import UserError
from utils.files import increment_path
from utils.log import LOGGER
from utils.text import load_yaml

SPEC_FILE = "compare.yaml"
RUNS_DIR = "runs"  # expN/runs/<variant>-s<seed>: train.py --project expN/runs --name <variant>-s<seed>
HYPS_DIR = "hyps"
LOGS_DIR = "logs"
PATH_FLAGS = ("--cfg", "--weights")  # train.py flags naming files whose content is part of the identity
HASH_FILE_LIMIT = 64 << 20  # files larger than this are identified by size and modification time


def file_digest(path: str) -> Optional[str]:
    """sha1 of a file's content (size + mtime for big files); None when ``path`` is not a file."""
    p = Path(path)
    if not path or not p.is_file():
        return None
    st = p.stat()
    if st.st_size > HASH_FILE_LIMIT:
        return f"size{st.st_size}-mtime{int(st.st_mtime)}"
    return hashlib.sha1(p.read_bytes()).hexdigest()


def short_hash(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def flag_value(args: Sequence[str], flag: str) -> Optional[str]:
    """The value given to ``flag`` in an argument list (``--flag v`` or ``--flag=v``), the last one wins."""
    value = None
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith(flag + "="):
            value = a.split("=", 1)[1]
    return value


@dataclass
class RunSpec:
    """One training + evaluation: variant x seed, with the exact commands (paths relative to nothing)."""

    variant: str
    seed: int
    name: str  # folder name under expN/runs
    train_args: List[str]  # train.py arguments, without the output folder (added when launched)
    val_args: List[str]  # val.py arguments, without weights and output folder
    digest: str = ""  # identity of this run: its arguments and the content of the files they name

    def to_dict(self) -> dict:
        return {"variant": self.variant, "seed": self.seed, "name": self.name, "train_args": self.train_args,
                "val_args": self.val_args, "digest": self.digest}


@dataclass
class Experiment:
    """The plan of one comparison and where it lives."""

    settings: dict  # normalised settings (the identity)
    variants: List[Variant]
    seeds: List[int]
    runs: List[RunSpec]
    hyp_files: Dict[str, dict] = field(default_factory=dict)  # variant -> hyp dict to write (overrides only)
    digest: str = ""
    dir: Optional[Path] = None

    def run_dir(self, run: RunSpec) -> Path:
        return self.dir / RUNS_DIR / run.name

    def log_file(self, run: RunSpec) -> Path:
        return self.dir / LOGS_DIR / f"{run.name}.log"


def load_spec(folder: Path) -> Optional[dict]:
    f = folder / SPEC_FILE
    if not f.is_file():
        return None
    try:
        spec = load_yaml(f)
    except (OSError, UserError):
        return None
    return spec if isinstance(spec, dict) else None


def find_experiment_dir(project: Path, name: Optional[str], digest: str, exist_ok: bool, fresh: bool) -> Path:
    """The folder of this comparison: an existing one with the same identity, else a new ``project/name[N]``.

    ``name`` None: any ``project/exp*`` with the same hash is reused. A given ``name``: only ``project/name``
    (``--exist-ok`` reuses it even with other settings: runs whose settings changed are redone).
    """
    base = name or "exp"
    if not fresh:
        candidates = [project / name] if name else sorted(project.glob("exp*"), key=lambda p: p.stat().st_mtime)
        for c in candidates:
            spec = load_spec(c)
            if spec and spec.get("digest") == digest:
                return c
    if name and exist_ok and (project / name).exists() and not fresh:
        LOGGER.info(f"{project / name} holds a comparison with other settings (--exist-ok): runs whose own "
                    f"settings match are kept, the others are redone")
    return increment_path(project / base, exist_ok=exist_ok and not fresh)


def write_spec(exp: Experiment, command: Sequence[str], execution: dict) -> None:
    """``compare.yaml``: identity hash, settings, the command and how it was executed (not part of the hash)."""
    exp.dir.mkdir(parents=True, exist_ok=True)
    old = load_spec(exp.dir) or {}
    doc = {
        "digest": exp.digest,
        "created": old.get("created") if old.get("digest") == exp.digest else time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(command),
        "cwd": os.getcwd(),
        "settings": exp.settings,
        "execution": execution,
        "runs": [r.to_dict() for r in exp.runs],
    }
    (exp.dir / SPEC_FILE).write_text(yaml.safe_dump(doc, sort_keys=False, width=120))


def write_hyp_files(exp: Experiment, base_hyp: Optional[str], default_hyp: Path) -> Dict[str, str]:
    """Write ``expN/hyps/<variant>.yaml`` for variants with hyp overrides; variant -> path."""
    out = {}
    for v in exp.variants:
        if not v.hyp:
            continue
        src = Path(base_hyp) if base_hyp else default_hyp
        hyp = load_yaml(src, what="--hyp ") or {}
        hyp.update(v.hyp)
        f = exp.dir / HYPS_DIR / f"{v.name}.yaml"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"# {src} with {v.hyp} (compare.py variant '{v.text}')\n" + yaml.safe_dump(hyp, sort_keys=False))
        out[v.name] = str(f.resolve())
    return out
