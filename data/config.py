"""Dataset yaml handling: ``check_dataset`` resolves paths, class names and makes sure the data exists.

Relative paths are looked up in this order, the first existing one wins:
  1. the working directory (v5.0 behaviour, e.g. ``../coco128/images/train2017/`` from the repo root),
  2. the yaml file's directory,
  3. the repository root (v7.0 behaviour for a relative ``path:``).
When a ``path:`` root is given, ``train`` / ``val`` / ``test`` are joined onto it. When nothing exists yet,
the data is expected (and downloaded / generated) at the repository-root location.

Missing data:
  * ``generate: shapes`` builds the embedded synthetic dataset at ``path`` (see :mod:`data.shapes`); the
    mapping form ``generate: {name: shapes, n_train: 64, n_val: 16, img_size: 160}`` sets its size;
  * ``download: https://...zip`` fetches and unzips it into the parent of ``path`` (or next to the repository
    when there is no ``path:``, like v5.0's ``../``);
  * ``download: bash data/scripts/<name>.sh`` runs that script (no shell) from the repository root;
  * any other ``download`` value (e.g. python code, which v6.0 would exec) is refused; nothing from a yaml
    is ever evaluated.
A failure raises ``FileNotFoundError`` naming the yaml, the missing path(s) and the download source.
"""
from __future__ import annotations

import difflib
import shlex
import subprocess
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import List, Optional, Union


from data.shapes import DEFAULTS, SCHEMES, generate_shapes, is_generated
from utils.class_groups import parse_class_groups
from utils.errors import MissingFileError, UserError
from utils.log import LOGGER
from utils.text import load_yaml as load_yaml_file

ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("train", "val", "test")
DATA_KEYS = ("path", "train", "val", "test", "nc", "names", "download", "generate", "cls_groups")
DOWNLOAD_TIMEOUT = 30  # seconds to establish a download connection


class DatasetError(UserError, ValueError):
    """A dataset yaml that cannot be used (malformed keys, names / nc mismatch, bad generator or download)."""


def _candidates(p: Path, yaml_dir: Optional[Path]) -> List[Path]:
    bases = [Path.cwd()] + ([yaml_dir] if yaml_dir else []) + [ROOT]
    out: List[Path] = []
    for b in bases:
        c = (b / p).resolve()
        if c not in out:
            out.append(c)
    return out


def _resolve(p: Union[str, Path], yaml_dir: Optional[Path], root: Optional[Path] = None) -> Path:
    """Absolute path for a yaml entry (see the module docstring for the search order)."""
    p = Path(str(p)).expanduser()
    if p.is_absolute():
        return p
    if root is not None:
        return (root / p).resolve()
    return next((c for c in _candidates(p, yaml_dir) if c.exists()), (ROOT / p).resolve())


def load_yaml(file: Union[str, Path]) -> dict:
    """Read a data yaml (safe loader) into a dict; the file is searched like any yaml path."""
    file = Path(file)
    if file.is_dir():
        inside = sorted(p.name for p in file.glob("*.y*ml"))
        hint = f" (it holds {', '.join(inside)})" if inside else ""
        raise DatasetError(f"data yaml '{file}' is a directory, not a dataset yaml; pass the yaml file{hint}")
    if not file.is_file():
        for c in _candidates(file, None) + [ROOT / "data" / file.name]:
            if c.is_file():
                file = c
                break
        else:
            raise MissingFileError(f"data yaml not found: '{file}'")
    d = load_yaml_file(file, DatasetError)  # one line for bad syntax, a code tag or an encoding
    if not isinstance(d, dict):
        raise DatasetError(f"{file}: expected a mapping of keys (train, val, nc, names, ...), got {type(d).__name__}")
    d["yaml_file"] = str(file.resolve())
    return d


def _names_list(d: dict, where: str) -> List[str]:
    names, nc = d.get("names"), d.get("nc")
    if names is None:
        if nc is None:
            raise DatasetError(f"{where}: needs 'names' or 'nc'")
        LOGGER.warning(f"WARNING: {where} has no 'names': the {nc} classes are called class0..class{int(nc) - 1} "
                       f"in plots, labels and exported models; add 'names: [...]' to the yaml")
        return [f"class{i}" for i in range(int(nc))]
    if isinstance(names, dict):  # v7.0 form {0: person, 1: bicycle, ...}
        keys = sorted(int(k) for k in names)
        if keys != list(range(len(keys))):
            raise DatasetError(f"{where}: 'names' keys must be 0..{len(keys) - 1}, got {keys}")
        return [str(names[k]) for k in keys]
    if isinstance(names, (list, tuple)):
        return [str(x) for x in names]
    raise DatasetError(f"{where}: 'names' must be a list or a dict, got {type(names).__name__}")


def _missing(d: dict) -> List[str]:
    out = []
    for k in ("train", "val"):
        v = d.get(k)
        for p in v if isinstance(v, list) else ([v] if v else []):
            if not Path(p).exists():
                out.append(p)
    return out


def _download(source: str, d: dict, where: str, missing: List[str]) -> None:
    """Fetch a dataset from a URL or a ``bash data/scripts/x.sh`` command; raise a clear error on failure."""
    what = f"{where}: dataset not found, missing {missing}"
    source = str(source).strip()
    if source.startswith(("http://", "https://")):
        dest = Path(d["path"]).parent if d.get("path") else ROOT.parent
        LOGGER.info(f"Downloading {source} to {dest} ...")
        try:
            with urllib.request.urlopen(source, timeout=DOWNLOAD_TIMEOUT) as r:  # connect before touching disk
                dest.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(dir=dest) as tmp:
                    f = Path(tmp) / (Path(source.split("?")[0]).name or "data.zip")
                    with open(f, "wb") as out:
                        while chunk := r.read(1 << 20):
                            out.write(chunk)
                    if not zipfile.is_zipfile(f):
                        raise OSError(f"{f.name} is not a zip archive")
                    with zipfile.ZipFile(f) as z:
                        _safe_extract(z, dest)
        except Exception as e:  # network errors, HTTP errors, bad archives, read-only destination
            raise MissingFileError(f"{what}; download from {source} failed: {e}") from None
        return
    parts = shlex.split(source)
    if len(parts) >= 2 and parts[0] == "bash" and parts[1].endswith(".sh"):
        script = _resolve(parts[1], Path(d["yaml_file"]).parent if d.get("yaml_file") else None)
        if not script.is_file():
            raise MissingFileError(f"{what}; download script {parts[1]} not found")
        LOGGER.info(f"Running {source} ...")
        r = subprocess.run(["bash", str(script), *parts[2:]], cwd=ROOT)
        if r.returncode:
            raise MissingFileError(f"{what}; download command '{source}' failed with exit code {r.returncode}")
        return
    raise MissingFileError(f"{what}; its 'download' entry is neither an http(s) URL nor a 'bash <script>.sh' "
                            f"command and is not executed. Fetch the data by hand.")


def _safe_extract(z: zipfile.ZipFile, dest: Path) -> None:
    """Extract refusing members that would land outside ``dest`` (absolute paths, ``..``)."""
    dest = dest.resolve()
    for m in z.namelist():
        target = (dest / m).resolve()
        if dest not in target.parents and target != dest:
            raise OSError(f"unsafe path in archive: {m}")
    z.extractall(dest)


def _generate(spec: Union[str, dict], root: Optional[Path], where: str) -> None:
    """``generate: shapes`` or ``generate: {name: shapes, n_train: 64, n_val: 16, img_size: 160, seed: 0,
    scheme: groups}``."""
    args = dict(spec) if isinstance(spec, dict) else {"name": spec}
    kind = str(args.pop("name", ""))
    if kind != "shapes":
        raise DatasetError(f"{where}: unknown generator '{kind}' (known: shapes)")
    unknown = set(args) - {"n_train", "n_val", "img_size", "seed", "scheme"}
    if unknown:
        raise DatasetError(f"{where}: unknown 'generate' options {sorted(unknown)} "
                           f"(n_train, n_val, img_size, seed, scheme)")
    if root is None:
        raise DatasetError(f"{where}: 'generate: shapes' needs a 'path:' where the dataset is written")
    scheme = str(args.pop("scheme", "shapes"))
    if scheme not in SCHEMES:
        raise DatasetError(f"{where}: unknown shapes scheme '{scheme}' (known: {', '.join(SCHEMES)})")
    params = {**DEFAULTS, **{k: int(v) for k, v in args.items()}, "scheme": scheme}
    if not is_generated(root, **params):
        LOGGER.info(f"Generating the synthetic shapes dataset at {root} ...")
        generate_shapes(root, **params)


def warn_misspelt_keys(d: dict, where: str) -> None:
    """A key close to a dataset key (``vall``, ``cls_group``) is most likely a typo: one warning naming both.
    Other extra keys (a licence, a url) are the user's own and pass without a word."""
    for key in d:
        if key in DATA_KEYS or key == "yaml_file":
            continue
        near = difflib.get_close_matches(str(key), DATA_KEYS, n=1, cutoff=0.75)
        if near:
            LOGGER.warning(f"WARNING: {where}: unknown key '{key}' is ignored (did you mean '{near[0]}'?)")


def check_dataset(data: Union[str, Path, dict], autodownload: bool = True) -> dict:
    """Resolve a dataset yaml (path or dict) -> dict with absolute ``train`` / ``val`` / ``test``, ``nc``,
    ``names`` (list); generates the shapes dataset or downloads the data when missing (module docstring)."""
    d = load_yaml(data) if isinstance(data, (str, Path)) else dict(data)
    where = d.get("yaml_file") or "data dict"
    yaml_dir = Path(d["yaml_file"]).parent if d.get("yaml_file") else None
    warn_misspelt_keys(d, where)

    names = _names_list(d, where)
    nc = int(d["nc"]) if d.get("nc") is not None else len(names)
    if len(names) != nc:
        raise DatasetError(f"{where}: {len(names)} names for nc={nc}; they must match")
    d["names"], d["nc"] = names, nc
    if d.get("cls_groups") is not None:  # validated here, so a bad spec fails before anything is built
        d["cls_groups"] = parse_class_groups(d["cls_groups"], nc, names, where).to_spec()

    if "val" not in d and "train" not in d:
        raise DatasetError(f"{where}: needs 'train' and 'val' entries")
    root = None
    if d.get("path"):
        root = _resolve(d["path"], yaml_dir)
        d["path"] = str(root)
    for k in SPLITS:
        v = d.get(k)
        if v:
            entries = [str(_resolve(x, yaml_dir, root)) for x in (v if isinstance(v, list) else [v])]
            d[k] = entries if isinstance(v, list) else entries[0]

    if d.get("generate"):  # (re)generates only when absent or made with other parameters / generator version
        _generate(d["generate"], root, where)
    missing = _missing(d)
    if missing:
        if d.get("download") and autodownload:
            _download(d["download"], d, where, missing)
        else:
            src = f" (download source: {d['download']})" if d.get("download") else ""
            raise MissingFileError(f"{where}: dataset not found, missing {missing}{src}")
        still = _missing(d)
        if still:
            src = d.get("download") or d.get("generate")
            raise MissingFileError(f"{where}: dataset still missing {still} after fetching it from {src}")
    return d


if __name__ == "__main__":  # python -m data.config data/coco128.yaml
    import sys
    for a in sys.argv[1:]:
        print(check_dataset(a))
