"""The baseline checkout of the benchmarks that compare this code with an earlier commit in the same run
(``benchmarks/bench_train.py --whole``, ``benchmarks/bench_dataloader.py``)."""
from __future__ import annotations

import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Union

from utils.errors import UserError
from utils.files import ROOT


@contextmanager
def baseline_checkout(path: Optional[Union[str, Path]], commit: str) -> Iterator[Path]:
    """The checkout at ``path`` when given, else a temporary detached ``git worktree`` of ``commit`` of this
    repository, removed again afterwards."""
    if path:
        yield Path(path).resolve()
        return
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        wt = Path(tmp) / "baseline"
        r = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(wt), commit],
                           capture_output=True, text=True)
        if r.returncode:
            raise UserError(f"git worktree add of {commit} failed (pass --baseline DIR instead): {r.stderr.strip()}")
        try:
            yield wt
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(wt)], capture_output=True)
