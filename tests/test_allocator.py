"""utils/allocator.py: the glibc malloc settings train / val / detect apply at start-up."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from utils import allocator
from utils.allocator import DISABLE_ENV, SETTINGS, keep_freed_memory

ROOT = Path(__file__).resolve().parents[1]


class FakeLibc:
    """Records mallopt calls; ``accept`` = what mallopt answers (1 accepted, 0 refused)."""

    def __init__(self, accept: int = 1):
        self.calls, self.accept = [], accept

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.accept


def test_settings_applied_and_exported_once():
    env, libc = {}, FakeLibc()
    applied = keep_freed_memory(env, libc)
    assert libc.calls == [(-3, 1 << 30), (-1, 1 << 30), (-2, 64 << 20)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, M_TOP_PAD
    assert env == {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
                   "MALLOC_TOP_PAD_": str(64 << 20)} == {k: str(v) for k, v in applied.items()}
    assert keep_freed_memory(env, libc) == {} and len(libc.calls) == 3  # a second call changes nothing


def test_user_values_and_refusals_left_alone():
    env, libc = {"MALLOC_TOP_PAD_": "0"}, FakeLibc()
    assert set(keep_freed_memory(env, libc)) == {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"}
    assert env["MALLOC_TOP_PAD_"] == "0" and (-2, 64 << 20) not in libc.calls  # glibc read the user's at start
    env = {}
    assert keep_freed_memory(env, FakeLibc(accept=0)) == {} and env == {}  # refused: not exported either


@pytest.mark.parametrize("value, off", [("0", True), (" 0 ", True), ("1", False), ("", False)])
def test_disable_variable(value, off):
    env, libc = {DISABLE_ENV: value}, FakeLibc()
    assert bool(keep_freed_memory(env, libc)) != off
    assert (libc.calls == []) == off and set(env) == {DISABLE_ENV} | (set() if off else {s.env for s in SETTINGS})


def test_no_op_off_glibc(monkeypatch):
    env = {}
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.glibc() is None and keep_freed_memory(env) == {} and env == {}
    monkeypatch.setattr(allocator.sys, "platform", "linux")
    monkeypatch.setattr(allocator.os, "confstr", lambda name: None)  # musl: no GNU libc version
    assert allocator.glibc() is None and keep_freed_memory(env) == {} and env == {}

    def unknown(name):
        raise ValueError("unrecognized configuration name")
    monkeypatch.setattr(allocator.os, "confstr", unknown)  # a platform without CS_GNU_LIBC_VERSION
    assert allocator.glibc() is None


# Minor page faults of freeing and re-allocating a 64 MiB buffer 6 times, in this process, a forked worker (as
# DataLoader workers on Linux) and a spawned process (which only has the environment).
PROBE = textwrap.dedent("""
    import multiprocessing as mp, os, resource, sys
    sys.path.insert(0, sys.argv[1])
    from utils.allocator import keep_freed_memory

    def faults(q=None):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(6):
            b = bytearray(64 << 20)  # malloc + zero fill: every new page faults once
            del b
        n = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
        return q.put(n) if q is not None else n

    if __name__ == "__main__":
        keep_freed_memory()
        out = [faults()]
        for method in ("fork", "spawn"):
            q = mp.get_context(method).Queue()
            p = mp.get_context(method).Process(target=faults, args=(q,))
            p.start(); out.append(q.get()); p.join()
        print(*out, os.environ.get("MALLOC_MMAP_THRESHOLD_"))
""")


@pytest.mark.skipif(allocator.glibc() is None, reason="glibc only")
def test_fewer_page_faults_here_in_forked_and_spawned_children(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}  # in-process trainings set them

    def run(**extra):
        r = subprocess.run([sys.executable, str(script), str(ROOT)], env=clean | extra, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        *counts, threshold = r.stdout.split()
        return list(map(int, counts)), threshold

    default, unset = run(**{DISABLE_ENV: "0"})
    tuned, threshold = run()
    assert unset == "None" and threshold == str(1 << 30)
    pages = (64 << 20) // os.sysconf("SC_PAGE_SIZE")
    assert all(d > 5 * pages for d in default), default  # glibc's defaults: mmap + unmap every time
    assert all(t < 2 * pages for t in tuned), tuned  # tuned: the freed block is reused, in every kind of process
