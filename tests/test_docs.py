"""The documentation: the README stays short and keeps the quick-start commands, the MkDocs site builds with no
broken link or anchor, and every script command shown in a ```bash block names an existing script and only flags
that script's ``--help`` lists."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Set

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
README_MAX_BYTES = 12 * 1024

MAIN_COMMAND = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt && python train.py "
    "--data data/shapes.yaml --cfg models/yolov5-shufflenetv2.yaml --hyp data/hyps/hyp.shapes.yaml --weights '' "
    "--img 256 --batch 32 --epochs 30 --optimizer Adam --cls-loss ce --cache --noval --device cpu --name shapes "
    "--exist-ok && python val.py --data data/shapes.yaml --weights runs/train/shapes/weights/best.pt --img 256")
# the main command's final line; its milliseconds depend on the machine the output was taken on
MAIN_FINAL_LINE = re.compile(r"^Speed: [\d.]+ms pre-process, [\d.]+ms inference, [\d.]+ms NMS per image "
                             r"at shape \(32, 3, 256, 256\)$", re.M)
TEST_COMMAND_PREFIX = "python3 -m venv .venv && . .venv/bin/activate && pip install "

# a ```bash (```python, ```yaml) fence, possibly indented inside a list item, and its body
FENCE = r"^(?P<indent>[ \t]*)```{lang}[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$"
BASH_FENCE = re.compile(FENCE.format(lang="bash"), re.M | re.S)
# option strings as argparse prints them in --help (usage line, option list, descriptions)
HELP_OPTION = re.compile(r"(?<![\w-])--[A-Za-z0-9][\w-]*")
SHELL_KEYWORDS = {"do", "then", "else", "time", "exec", "!"}
PYTHONS = {"python", "python3"}
LAUNCHER_MODULES = {"torch.distributed.launch", "torch.distributed.run"}
# compare.py hands every flag it does not know to train.py
PASSES_FLAGS_TO = {"compare.py": "train.py"}


@dataclass(frozen=True)
class Invocation:
    """One command of a bash block that runs a project file: ``python x.py --flags``, ``torchrun ... x.py``,
    ``bash x.sh`` or ``pip install -r x.txt``."""
    where: str  # page:line
    kind: str  # "script" | "files"
    path: str  # the script, or the files separated by spaces
    flags: tuple


def fenced_blocks(text: str, fence: re.Pattern = BASH_FENCE) -> Iterator[tuple]:
    """(line number of the block's first line, dedented body) of every ```bash fence (or ``fence``)."""
    for m in fence.finditer(text):
        line = text.count("\n", 0, m.start("body")) + 1
        yield line, textwrap.dedent(m.group("body"))


def shell_commands(body: str) -> Iterator[tuple]:
    """(line offset, tokens) of every simple command of a bash block: ``\\`` continuations joined, comments
    dropped, split at ``&&``, ``||``, ``;`` and ``|``."""
    offset = 0
    for logical in re.split(r"(?<!\\)\n", body):
        lex = shlex.shlex(logical.replace("\\\n", " "), posix=True, punctuation_chars=";&|")
        lex.whitespace_split = True
        lex.commenters = "#"
        command: List[str] = []
        for tok in lex:
            if tok and set(tok) <= set(";&|"):
                if command:
                    yield offset, command
                command = []
            else:
                command.append(tok)
        if command:
            yield offset, command
        offset += logical.count("\n") + 1


def _flags(tokens: Iterable[str]) -> tuple:
    return tuple(t.split("=", 1)[0] for t in tokens if t.startswith("--") and len(t) > 2)


def invocation(tokens: List[str], where: str) -> Optional[Invocation]:
    """What a command runs, or None when it runs nothing of the project (cd, cp, mkdocs, python -m pytest, ...)."""
    while tokens and (tokens[0] in SHELL_KEYWORDS or re.fullmatch(r"[A-Za-z_]\w*=\S*", tokens[0])):
        tokens = tokens[1:]  # 'do python ...', 'OMP_NUM_THREADS=1 python ...'
    if not tokens:
        return None
    prog, args = Path(tokens[0]).name, tokens[1:]
    if prog in PYTHONS:
        if args[:1] == ["-c"] or (args[:1] == ["-m"] and args[1:2] and args[1] not in LAUNCHER_MODULES):
            return None  # python -m pytest / pip / venv, python -c ...
    elif prog == "torchrun":
        pass
    elif prog == "bash" and args and not args[0].startswith("-"):
        return Invocation(where, "files", args[0], ())
    elif prog == "pip" and args[:1] == ["install"]:
        reqs = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-r"]
        return Invocation(where, "files", " ".join(reqs), ()) if reqs else None
    else:
        return None
    scripts = [i for i, a in enumerate(args) if a.endswith(".py") and not a.startswith("-")]
    if not scripts:
        return None
    i = scripts[0]
    return Invocation(where, "script", args[i], _flags(args[i + 1:]))


def invocations(text: str, page: str) -> List[Invocation]:
    found = []
    for line, body in fenced_blocks(text):
        for offset, tokens in shell_commands(body):
            inv = invocation(tokens, f"{page}:{line + offset}")
            if inv is not None:
                found.append(inv)
    return found


def doc_pages() -> List[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def all_invocations() -> List[Invocation]:
    return [inv for p in doc_pages()
            for inv in invocations(p.read_text(encoding="utf-8"), p.relative_to(ROOT).as_posix())]


# --help of many scripts, in one interpreter (torch is imported once): each script runs as __main__ with
# argv [script, --help]; argparse prints the help and raises SystemExit before the script does anything.
_HELP_RUNNER = r"""
import contextlib, io, json, os, runpy, sys
class _Exec(Exception):
    pass
def _no_exec(*a, **k):
    raise _Exec("exec")
for name in ("execv", "execve", "execvp", "execvpe", "execl", "execle", "execlp", "execlpe"):
    setattr(os, name, _no_exec)
out = {}
for script in json.loads(sys.argv[1]):
    buf = io.StringIO()
    sys.argv = [script, "--help"]
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
            runpy.run_path(script, run_name="__main__")
        out[script] = None  # ran without exiting: no argparse --help
    except SystemExit as e:
        out[script] = buf.getvalue() if e.code in (0, None) else None
    except BaseException:
        out[script] = None
print("\n@@HELP@@" + json.dumps(out))
"""


def script_helps(scripts: Iterable[str]) -> Dict[str, Optional[str]]:
    """``--help`` output of each script (None when it has none); one interpreter for all, a separate one for a
    script that failed there."""
    scripts = sorted(set(scripts))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", _HELP_RUNNER, json.dumps(scripts)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    helps = json.loads(r.stdout.rsplit("@@HELP@@", 1)[1]) if "@@HELP@@" in r.stdout else {}
    for s in scripts:
        if helps.get(s) is None:
            one = subprocess.run([sys.executable, s, "--help"], cwd=ROOT, env=env, capture_output=True, text=True,
                                 timeout=120)
            helps[s] = one.stdout if one.returncode == 0 and "usage:" in one.stdout else None
    return helps


def help_options(help_text: str) -> Set[str]:
    return set(HELP_OPTION.findall(help_text))


def accepts(flag: str, options: Set[str]) -> bool:
    """argparse's rule: the exact option, or an abbreviation of exactly one."""
    return flag in options or len([o for o in options if o.startswith(flag)]) == 1


def problems(invs: Iterable[Invocation], helps: Dict[str, Optional[str]]) -> List[str]:
    """One line per documented command that would not run: missing file, script without --help, unknown flag."""
    out = []
    for inv in invs:
        paths = inv.path.split() if inv.kind == "files" else [inv.path]
        missing = [p for p in paths if not (ROOT / p).exists()]
        if missing:
            out.append(f"{inv.where}: {', '.join(missing)} does not exist")
            continue
        if inv.kind != "script" or not inv.flags:
            continue
        text = helps.get(inv.path)
        if text is None:
            out.append(f"{inv.where}: {inv.path} --help prints no usage, but the docs give it {list(inv.flags)}")
            continue
        options = help_options(text)
        if inv.path in PASSES_FLAGS_TO:
            options |= help_options(helps.get(PASSES_FLAGS_TO[inv.path]) or "")
        bad = [f for f in inv.flags if not accepts(f, options)]
        if bad:
            out.append(f"{inv.where}: {inv.path} has no {', '.join(bad)} (not in its --help)")
    return out


def needed_scripts(invs: Iterable[Invocation]) -> Set[str]:
    need = {i.path for i in invs if i.kind == "script" and i.flags and (ROOT / i.path).exists()}
    return need | {PASSES_FLAGS_TO[s] for s in need if s in PASSES_FLAGS_TO}


@pytest.fixture(scope="module")
def docs_invocations() -> List[Invocation]:
    return all_invocations()


@pytest.fixture(scope="module")
def helps(docs_invocations) -> Dict[str, Optional[str]]:
    return script_helps(needed_scripts(docs_invocations) | {"train.py"})


# ---------------------------------------------------------------------------------------------------- the README

def test_readme_is_short_and_keeps_the_quick_start():
    text = README.read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= README_MAX_BYTES, f"README.md is {len(text.encode())} bytes (max 12 KB)"
    blocks = [body.strip() for _, body in fenced_blocks(text)]
    assert MAIN_COMMAND in blocks, "the README lost the quick-start main command (verbatim)"
    assert MAIN_FINAL_LINE.search(text), "the README lost the main command's expected final line"
    assert "mkdocs serve" in text
    assert "docs/demo.jpg" in text and (DOCS / "demo.jpg").is_file()
    quick_start = (DOCS / "quick-start.md").read_text(encoding="utf-8")
    assert MAIN_COMMAND in quick_start and MAIN_FINAL_LINE.search(quick_start)


def test_readme_test_command_does_what_ci_does():
    """The README's test command installs the requirement files .ci/run installs, then runs python -m pytest."""
    ci = (ROOT / ".ci" / "run").read_text()
    ci_reqs = set(re.findall(r"-r\s+(\S+\.txt)", ci))
    assert ci_reqs >= {"requirements.txt", "requirements-test.txt", "requirements-export.txt"}
    assert re.search(r"^python -m pytest\s*$", ci, re.M)
    commands = [b.strip() for _, b in fenced_blocks(README.read_text()) if b.strip().startswith(TEST_COMMAND_PREFIX)
                and b.strip().endswith("&& python -m pytest")]
    assert len(commands) == 1, "the README's test command (venv, pip install -r ..., python -m pytest) is missing"
    assert set(re.findall(r"-r\s+(\S+\.txt)", commands[0])) == ci_reqs


def test_requirements_pin_the_site_generator():
    reqs = (ROOT / "requirements-test.txt").read_text()
    assert re.search(r"^mkdocs==\S+", reqs, re.M) and re.search(r"^mkdocs-material==\S+", reqs, re.M)


# ------------------------------------------------------------------------------------------------------ the site

def test_site_builds_strict(tmp_path):
    """mkdocs build --strict: a broken internal link or anchor, or a page missing from the nav, fails."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                        "-d", str(tmp_path / "site")], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    pages = {p.relative_to(tmp_path / "site").as_posix() for p in (tmp_path / "site").rglob("index.html")}
    for md in DOCS.glob("*.md"):
        expected = "index.html" if md.stem == "index" else f"{md.stem}/index.html"
        assert expected in pages, f"{md.name} was not built"


# ------------------------------------------------------------------------------------------- documented commands

@pytest.mark.slow  # the --help of ~15 scripts: ~5 s of CPU in one interpreter
def test_documented_commands_run_as_shown(docs_invocations, helps):
    """Every python/torchrun/bash/pip command in a ```bash block of the README and the pages names an existing
    file, and every --flag given to a project script is one its --help lists."""
    scripts = {i.path for i in docs_invocations if i.kind == "script"}
    assert len(docs_invocations) > 40 and {"train.py", "val.py", "detect.py", "export.py", "compare.py"} <= scripts
    assert problems(docs_invocations, helps) == []


def test_python_and_yaml_examples_parse():
    """The ```python snippets are valid Python and the ```yaml examples valid yaml."""
    for page in doc_pages():
        text = page.read_text(encoding="utf-8")
        for line, body in fenced_blocks(text, re.compile(FENCE.format(lang="python"), re.M | re.S)):
            compile(body, f"{page.name}:{line}", "exec")
        for line, body in fenced_blocks(text, re.compile(FENCE.format(lang="yaml"), re.M | re.S)):
            assert isinstance(yaml.safe_load(body), dict), f"{page.name}:{line}"


BAD_PAGE = """
Text.

```bash
python3 -m venv .venv && . .venv/bin/activate && python train.py --data data/shapes.yaml \\
    --epochz 3 && python no_such_script.py --img 3
torchrun --nproc_per_node 2 train.py --batch 64 --bogus-flag   # --not-a-flag in a comment
OMP_NUM_THREADS=1 python compare.py --seeds 3 --epochs 2 --cls-loss bce ce --variant "ce --label-smoothing 0.1"
for w in a b; do python train.py --img 64 --no-such=1; done
pip install -r requirements.txt -r no-such-requirements.txt
```

- in a list:

  ```bash
  python -m pytest -n 0 --whatever && bash data/scripts/no_such.sh
  ```
"""


def test_checker_catches_typos_and_missing_scripts(helps):
    invs = invocations(BAD_PAGE, "bad.md")
    got = [(i.path, i.flags) for i in invs]
    assert got == [
        ("train.py", ("--data", "--epochz")),
        ("no_such_script.py", ("--img",)),
        ("train.py", ("--batch", "--bogus-flag")),
        ("compare.py", ("--seeds", "--epochs", "--cls-loss", "--variant")),
        ("train.py", ("--img", "--no-such")),
        ("requirements.txt no-such-requirements.txt", ()),
        ("data/scripts/no_such.sh", ()),
    ]
    found = problems(invs, helps)
    assert found == [
        "bad.md:5: train.py has no --epochz (not in its --help)",
        "bad.md:5: no_such_script.py does not exist",
        "bad.md:7: train.py has no --bogus-flag (not in its --help)",
        "bad.md:9: train.py has no --no-such (not in its --help)",
        "bad.md:10: no-such-requirements.txt does not exist",
        "bad.md:16: data/scripts/no_such.sh does not exist",
    ], found


def test_abbreviations_follow_argparse():
    options = {"--img-size", "--imgsz", "--img", "--batch-size", "--cache", "--cache-images"}
    assert accepts("--img", options) and accepts("--batch", options) and accepts("--cache", options)
    assert not accepts("--im", options)  # ambiguous: argparse refuses it too
    assert not accepts("--bat", set()) and not accepts("--imgs", {"--img"})
