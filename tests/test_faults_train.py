"""train.py under bad input and faults: every flag checked up front, --weights / --resume / --data paths, one run
per folder, SIGINT / SIGTERM, full disks, failures after training; plus regression cases already handled
(corrupt images and labels, code in a model yaml, truncated checkpoints, a crash while saving).

Tiny 64 px datasets, one or two epochs, --workers 0, mostly in-process (train.cli) so the file stays fast.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import train
from engine.cli import FlagError
from engine.train import finish as finish_module
from engine.train import trainer as trainer_module
from engine.train import validation
from engine.train.options import resolve_weights, resume_checkpoint
from engine.train.run_lock import LOCK_NAME, RunFolderBusy, RunLock, _start_time
from train_helpers import (ROOT, env, epochs_in, free_port, make_dataset, stop_after_epoch, stop_worker, train_args,
                           train_cli, write_cfg, write_hyp)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    return dict(root=root, data=make_dataset(root / "ds"), cfg=write_cfg(root / "tiny.yaml"),
                hyp=write_hyp(root / "hyp.yaml"))


def args_for(tiny, project: Path, *extra: str, **kw) -> list:
    return train_args(tiny["data"], tiny["cfg"], tiny["hyp"], project, "--noplots", *extra, **kw)


def errors_of(log_lines) -> list:
    return [ln for ln in log_lines if "ERROR" in ln]


# ------------------------------------------------------------------------------------------------ flags
@pytest.mark.parametrize("flag, value", [
    ("--epochs", "0"), ("--epochs", "-1"), ("--batch-size", "0"), ("--batch-size", "-2"), ("--img-size", "16"),
    ("--workers", "-1"), ("--patience", "-1"), ("--save-period", "-2"), ("--label-smoothing", "1.5"),
    ("--freeze", "-1"), ("--seed", "-1"), ("--evolve", "0"),
])
def test_numeric_flags_checked_before_anything_is_built(flag, value, tiny, tmp_path, log_lines, monkeypatch):
    monkeypatch.setattr(trainer_module, "build_model", lambda *a: pytest.fail("model built despite a bad flag"))
    code = train_cli(args_for(tiny, tmp_path / "runs") + [flag, value])
    errors = errors_of(log_lines)
    assert code == 1 and len(errors) == 1 and flag in errors[0], log_lines
    assert not (tmp_path / "runs").exists()  # no run folder for a command that never started


def test_batch_minus_one_is_sixteen_and_contradicting_precisions_fail(tiny, tmp_path):
    opt = train.parse_opt(args=args_for(tiny, tmp_path / "runs", "--batch", "-1"))
    opt = train.workflow.prepare_options(opt, train.parse_opt(True, []))
    assert opt.batch_size == opt.total_batch_size == 16
    with pytest.raises(FlagError, match="--fp32 and --bf16"):
        train.workflow.prepare_options(train.parse_opt(args=["--fp32", "--bf16", "--cfg", str(tiny["cfg"])]),
                                       train.parse_opt(True, []))


# ------------------------------------------------------------------------------------------------ paths
@pytest.mark.parametrize("case", ["folder", "missing"])
def test_bad_weights_path_is_an_error_naming_it(case, tiny, tmp_path, log_lines):
    weights = tmp_path if case == "folder" else tmp_path / "my_finetuned.pth"
    code = train_cli(args_for(tiny, tmp_path / "runs") + ["--weights", str(weights)])
    errors = errors_of(log_lines)
    assert code == 1 and len(errors) == 1 and str(weights) in errors[0], log_lines
    assert ("is a directory" if case == "folder" else "not found") in errors[0]
    assert not (tmp_path / "runs").exists()


def test_weights_resolution_keeps_scratch_files_and_official_names(tmp_path):
    ckpt = tmp_path / "x.pt"
    ckpt.write_bytes(b"")
    assert resolve_weights("") == "" and resolve_weights(str(ckpt)) == str(ckpt)
    assert resolve_weights("yolov5s.pt") == "yolov5s.pt"  # downloaded when loaded, as in v5.0


def test_data_directory_says_directory(tiny, tmp_path, log_lines):
    args = args_for(tiny, tmp_path / "runs")
    args[args.index("--data") + 1] = str(tiny["data"].parent)
    assert train_cli(args) == 1
    assert "is a directory" in errors_of(log_lines)[0] and str(tiny["data"].parent) in errors_of(log_lines)[0]


def test_data_yaml_without_names_warns_naming_it(tmp_path, log_lines):
    from engine.train.model_setup import warn_without_names
    f = tmp_path / "nonames.yaml"
    f.write_text(yaml.safe_dump({"train": "a", "val": "a", "nc": 2}))
    warn_without_names(str(f))
    assert any("nonames.yaml" in ln and "names" in ln and "class0..class1" in ln for ln in log_lines), log_lines


def test_resume_accepts_a_run_folder(tmp_path):
    (tmp_path / "exp" / "weights").mkdir(parents=True)
    (tmp_path / "exp" / "weights" / "last.pt").write_bytes(b"x")
    assert resume_checkpoint(str(tmp_path / "exp")) == tmp_path / "exp" / "weights" / "last.pt"
    with pytest.raises(train.workflow.TrainError, match="not a training run folder"):
        resume_checkpoint(str(tmp_path))


# ------------------------------------------------------------------------------------------------ run folder lock
def _lock(folder: Path, pid: int, host: str = None, start=None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                                "start": start, "since": "then"}))


def test_second_training_into_a_live_run_folder_fails(tiny, tmp_path, log_lines):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _lock(tmp_path / "runs" / "exp", other.pid, start=_start_time(other.pid))
        code = train_cli(args_for(tiny, tmp_path / "runs", "--exist-ok"))
    finally:
        other.kill()
        other.wait()
    errors = errors_of(log_lines)
    assert code == 1 and len(errors) == 1 and f"PID {other.pid}" in errors[0] and "in use" in errors[0], log_lines
    assert not (tmp_path / "runs" / "exp" / "weights").exists()
    _lock(tmp_path / "other", 1, host="elsewhere")
    with pytest.raises(RunFolderBusy, match="host elsewhere"):
        RunLock(tmp_path / "other").acquire()


def test_stale_lock_of_a_dead_process_is_taken_over(tiny, tmp_path, log_lines):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _lock(tmp_path / "runs" / "exp", dead.pid)
    assert train_cli(args_for(tiny, tmp_path / "runs", "--exist-ok")) == 0, log_lines
    assert any("Taking over" in ln for ln in log_lines)
    assert (tmp_path / "runs" / "exp" / "weights" / "last.pt").is_file()
    assert not (tmp_path / "runs" / "exp" / LOCK_NAME).exists()  # released at the end


# ------------------------------------------------------------------------------------------------ interrupts
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_last_and_exits_with_its_code(signum, code, tiny, tmp_path, log_lines, monkeypatch):
    stop_after_epoch(monkeypatch, 0, signum)
    previous = signal.getsignal(signum)
    assert train_cli(args_for(tiny, tmp_path / "runs", epochs=3)) == code
    assert signal.getsignal(signum) is previous  # handlers restored
    last = tmp_path / "runs" / "exp" / "weights" / "last.pt"
    ck = torch.load(last, weights_only=True)
    assert ck["epoch"] == 0 and ck["optimizer"] is not None
    assert any(f"Resume with: python train.py --resume {last}" in ln for ln in log_lines), log_lines
    assert not list(last.parent.glob("*.tmp"))


def test_sigterm_mid_epoch_in_a_real_process_then_resume(tiny, tmp_path):
    """A real SIGTERM while batches run: exit 143 with no traceback, last.pt of the epoch before, resumable."""
    data = make_dataset(tmp_path / "ds", n=16)
    args = train_args(data, tiny["cfg"], tiny["hyp"], tmp_path / "runs", "--noplots", epochs=1, batch=2)
    log = tmp_path / "log.txt"
    with open(log, "w") as f:
        p = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=tmp_path, env=env(), stdout=f,
                             stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while "0/0" not in log.read_text() and p.poll() is None and time.time() < deadline:
            time.sleep(0.05)  # the progress bar shows epoch 0/0: batches are running
        p.send_signal(signal.SIGTERM)
        p.wait(120)
    out = log.read_text()
    assert p.returncode == 143, out[-3000:]
    assert "Traceback" not in out and "Resume with: python train.py --resume" in out
    last = tmp_path / "runs" / "exp" / "weights" / "last.pt"
    ck = torch.load(last, weights_only=True)
    assert ck["epoch"] == -1 and ck["optimizer"] is not None  # stopped inside epoch 0: epoch 0 runs again
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "--resume", str(last.parent.parent)], cwd=tmp_path,
                       env=env(), capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert epochs_in(tmp_path / "runs" / "exp" / "results.csv") == [0]


def test_ddp_ranks_stop_together():
    import torch.multiprocessing as mp
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=stop_worker, args=(r, port, q)) for r in range(2)]
    for p in procs:
        p.start()
    got = sorted(q.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(60)
    assert got == [(0, 0, signal.SIGTERM), (1, 0, signal.SIGTERM)]


# ------------------------------------------------------------------------------------------------ saving
def _failing_save_after(monkeypatch, n_ok: int, exc: BaseException) -> None:
    real, calls = torch.save, []

    def save(obj, f, *a, **k):
        if not (isinstance(obj, dict) and "format" in obj):  # not a checkpoint (e.g. the label cache)
            return real(obj, f, *a, **k)
        calls.append(1)
        if len(calls) > n_ok:
            f.write(b"partial")  # a half-written temp file, as a full disk leaves it
            raise exc
        return real(obj, f, *a, **k)
    monkeypatch.setattr(torch, "save", save)


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EACCES])
def test_disk_full_or_no_permission_while_saving(err, tiny, tmp_path, log_lines, monkeypatch):
    _failing_save_after(monkeypatch, 2, OSError(err, os.strerror(err)))  # epoch 0: last + best, then fail
    code = train_cli(args_for(tiny, tmp_path / "runs", epochs=2))
    errors = errors_of(log_lines)
    w = tmp_path / "runs" / "exp" / "weights"
    assert code == 1 and len(errors) == 1 and str(w / "last.pt") in errors[0], log_lines
    reason = {errno.ENOSPC: "no space left on the device", errno.EACCES: "permission denied"}[err]
    assert reason in errors[0] and "previous file is kept" in errors[0] and "\n" not in errors[0]
    assert torch.load(w / "last.pt", weights_only=True)["epoch"] == 0  # the previous file is kept
    assert sorted(p.name for p in w.iterdir()) == ["best.pt", "last.pt"]  # no temp files left


def test_crash_during_save_keeps_the_old_last(tmp_path, monkeypatch):
    from engine.checkpoint import save_checkpoint
    last = tmp_path / "last.pt"
    save_checkpoint({"epoch": 3}, last)
    _failing_save_after(monkeypatch, 0, RuntimeError("killed mid-write"))
    with pytest.raises(RuntimeError):
        save_checkpoint({"epoch": 4}, last)  # what Trainer.save writes every checkpoint with
    assert torch.load(last, weights_only=True)["epoch"] == 3 and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


# ------------------------------------------------------------------------------------------------ after training
def _fake_run(tmp_path: Path, epochs: int = 300) -> Path:
    from engine.checkpoint import save_checkpoint
    from models.model import Model
    from train_helpers import TINY_CFG
    from utils.loggers import Loggers
    run = tmp_path / "exp"
    (run / "weights").mkdir(parents=True)
    model = Model(dict(TINY_CFG), ch=3, nc=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for name in ("last.pt", "best.pt"):
        save_checkpoint({"epoch": epochs - 1, "model": model, "ema": model, "optimizer": opt.state_dict()},
                        run / "weights" / name)
    loggers = Loggers(run, tensorboard=False)
    for e in range(epochs):
        loggers.log_epoch(e, [0.1 / (e + 1)] * 3 + [e / epochs] * 4 + [0.05] * 3 + [0.01] * 3)
    return run


def test_finish_on_a_300_epoch_run_writes_results_png(tmp_path):
    run = _fake_run(tmp_path)
    results = finish_module.finish_training(run, plots=True, loggers=None, results=(0.5,) * 7)
    assert results == (0.5,) * 7 and (run / "results.png").stat().st_size > 0
    ck = torch.load(run / "weights" / "best.pt", weights_only=True)
    assert ck["optimizer"] is None and ck["epoch"] == -1  # stripped


def test_failing_plot_or_step_after_training_still_exits_0(tiny, tmp_path, log_lines, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("no fonts")
    monkeypatch.setattr(finish_module, "plot_results", broken)
    monkeypatch.setattr(finish_module, "strip_optimizer", broken)
    args = train_args(tiny["data"], tiny["cfg"], tiny["hyp"], tmp_path / "runs")  # plots on
    assert train_cli(args) == 0, log_lines
    assert any("results.png not drawn: RuntimeError: no fonts" in ln for ln in log_lines)
    errors = errors_of(log_lines)
    assert errors and all("stripping the optimizer" in e and "last.pt" in e for e in errors), errors


# ------------------------------------------------------------------------------------------------ --noval
def test_noval_validates_once(tiny, tmp_path, monkeypatch):
    calls = []
    real = validation.validate

    def counting(*a, **k):
        calls.append(k.get("plots"))
        return real(*a, **k)
    monkeypatch.setattr(validation, "validate", counting)
    assert train_cli(train_args(tiny["data"], tiny["cfg"], tiny["hyp"], tmp_path / "runs", "--noval",
                                epochs=2)) == 0
    assert calls == [True]  # the final epoch, with the plots; best.pt is that same epoch
    assert (tmp_path / "runs" / "exp" / "confusion_matrix.png").is_file()


# ------------------------------------------------------------------------------------------------ regressions
def test_corrupt_images_and_label_rows_are_reported_and_skipped(tmp_path, tiny, log_lines):
    data = make_dataset(tmp_path / "ds", n=8)
    imgs = tmp_path / "ds" / "images" / "train"
    jpg = (imgs / "im0.jpg").read_bytes()
    (imgs / "im0.jpg").write_bytes(jpg[: len(jpg) // 2])  # truncated JPEG
    (tmp_path / "ds" / "labels" / "train" / "im1.txt").write_text("0 0.5 0.5 0.2\n")  # 4 columns
    args = train_args(data, tiny["cfg"], tiny["hyp"], tmp_path / "runs", "--noplots")
    assert train_cli(args) == 0, log_lines
    text = "\n".join(log_lines)
    assert "im0.jpg" in text and "truncated" in text and "im1.jpg" in text


def test_code_in_a_model_yaml_is_refused(tiny, tmp_path, log_lines):
    cfg = yaml.safe_load(tiny["cfg"].read_text())
    cfg["head"][0][3] = ["__import__('os').system('touch pwned')", 1, 1]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    args = args_for(tiny, tmp_path / "runs")
    args[args.index("--cfg") + 1] = str(bad)
    assert train_cli(args) == 1
    assert "bad.yaml" in errors_of(log_lines)[0] and not Path("pwned").exists()


def test_truncated_checkpoint_as_weights(tiny, tmp_path, log_lines):
    from engine.checkpoint import save_checkpoint
    from models.model import Model
    from train_helpers import TINY_CFG
    f = tmp_path / "w.pt"
    save_checkpoint({"model": Model(dict(TINY_CFG), ch=3, nc=3)}, f)
    f.write_bytes(f.read_bytes()[:5000])
    assert train_cli(args_for(tiny, tmp_path / "runs") + ["--weights", str(f)]) == 1
    errors = errors_of(log_lines)
    assert len(errors) == 1 and "--weights" in errors[0] and str(f) in errors[0], errors


# ------------------------------------------------------------------------------------------------ issue 22
def _checkpoint(path: Path, cfg: dict, best_fitness: float = 0.0) -> Path:
    from engine.checkpoint import save_checkpoint
    from models.model import Model
    model = Model(dict(cfg), ch=3, nc=3)
    save_checkpoint({"epoch": -1, "best_fitness": best_fitness, "model": model, "ema": None, "optimizer": None}, path)
    return path


def test_transfer_share_warns_when_the_body_does_not_fit(log_lines):
    from engine.train.model_setup import check_transfer, transfer_share
    from models.model import Model
    from train_helpers import TINY_CFG
    from utils.torch_utils import intersect_dicts
    trained = Model(dict(TINY_CFG), ch=3, nc=3).state_dict()
    opt = train.parse_opt(True, ["--weights", "w.pt"])
    other_nc = Model(dict(TINY_CFG), ch=3, nc=5)  # fine-tuning to other classes: only the Detect outputs differ
    t = transfer_share(intersect_dicts(trained, other_nc.state_dict(), exclude=["anchor"]), other_nc)
    check_transfer(t, opt)
    assert t.backbone_matched == t.backbone_total and not t.body_missing
    assert not [ln for ln in log_lines if "WARNING" in ln]
    wider_head = dict(TINY_CFG, head=[list(r) for r in TINY_CFG["head"]])
    wider_head["head"][-2] = [-1, 1, "C3", [512, False]]  # layer 17 (and the Detect conv reading it) changes
    model = Model(wider_head, ch=3, nc=3)
    t = transfer_share(intersect_dicts(trained, model.state_dict()), model)
    check_transfer(t, opt)
    warning = [ln for ln in log_lines if "WARNING" in ln]
    assert len(warning) == 1 and "w.pt" in warning[0] and f"{t.matched}/{t.total}" in warning[0], warning
    assert "25 tensors of layer 17 " in warning[0] and t.share > 0.5


def test_checkpoint_that_does_not_fit_cfg_is_an_error_unless_allowed(tiny, tmp_path, log_lines):
    from train_helpers import TINY_CFG
    weights = _checkpoint(tmp_path / "p6.pt", dict(TINY_CFG, width_multiple=0.5))  # no tensor has the tiny shape
    args = args_for(tiny, tmp_path / "runs") + ["--weights", str(weights)]
    assert train_cli(args) == 1
    errors = errors_of(log_lines)
    assert len(errors) == 1 and f"--weights {weights}" in errors[0] and "--allow-partial-transfer" in errors[0]
    assert "none of the backbone" in errors[0] and "/" in errors[0], errors
    assert not (tmp_path / "runs").exists()  # a failed start leaves no run folder
    log_lines.clear()
    assert train_cli(args + ["--allow-partial-transfer"]) == 0, log_lines
    assert any("WARNING" in ln and "--allow-partial-transfer" in ln for ln in log_lines)


def test_unknown_hyp_keys_warn_with_the_closest_key(tmp_path, log_lines):
    from engine.train.evolve import EVOLVE_META
    from engine.train.hyp_keys import HYP_KEYS
    from engine.train.options import load_hyp
    hyp = write_hyp(tmp_path / "typo.yaml", lr_bogus=0.3, fl_gama=1.5)
    opt = train.parse_opt(True, ["--hyp", str(hyp)])
    loaded = load_hyp(str(hyp), opt)
    warnings = [ln for ln in log_lines if "WARNING" in ln]
    assert len(warnings) == 2 and all(f"--hyp {hyp}" in w for w in warnings), warnings
    assert "'lr_bogus'" in warnings[0] and "'fl_gama'" in warnings[1] and "did you mean 'fl_gamma'" in warnings[1]
    assert "fl_gama" not in loaded or loaded["fl_gamma"] == yaml.safe_load(hyp.read_text())["fl_gamma"]
    log_lines.clear()
    load_hyp(loaded, opt)  # --evolve's generations get the dict of the file already checked: no repeat
    assert not log_lines.text()
    files = [*(ROOT / "data" / "hyps").glob("*.yaml"), *(ROOT / "data").glob("hyp.*.yaml")]
    shipped = {k for f in files for k in yaml.safe_load(f.read_text())}
    assert shipped | set(EVOLVE_META) <= set(HYP_KEYS)  # no false alarm on the project's own files


def test_compare_checks_hyp_keys_of_the_base_and_variants(tmp_path, log_lines):
    from engine.compare.plan import check_hyps
    from engine.compare.variants import parse_variant
    check_hyps(str(write_hyp(tmp_path / "h.yaml", mosiac=1.0)), [parse_variant("ce fl_gama=1.5")])
    warnings = [ln for ln in log_lines if "WARNING" in ln]
    assert "h.yaml" in warnings[0] and "'mosaic'" in warnings[0], warnings
    assert "--variant 'ce fl_gama=1.5'" in warnings[1] and "'fl_gamma'" in warnings[1], warnings


def test_resume_a_finished_run_with_more_epochs_trains_on(tiny, tmp_path, log_lines, monkeypatch):
    from utils.torch_utils import one_cycle
    run = tmp_path / "runs" / "exp"
    assert train_cli(args_for(tiny, tmp_path / "runs", epochs=1)) == 0
    assert train_cli(["--resume", str(run)]) == 1  # finished, no --epochs: one line saying how to go on
    assert "add --epochs N with N > 1" in errors_of(log_lines)[-1], log_lines
    assert train_cli(["--resume", str(run), "--epochs", "1"]) == 1
    assert "trained 1 epochs already" in errors_of(log_lines)[-1]
    log_lines.clear()
    lrs, before_epoch = {}, trainer_module.Trainer.before_epoch

    def record_lr(self):  # the scheduled LR as each epoch begins (warmup changes it per batch afterwards)
        lrs[self.state.epoch] = self.optimizer.param_groups[0]["lr"]
        before_epoch(self)
    monkeypatch.setattr(trainer_module.Trainer, "before_epoch", record_lr)
    assert train_cli(["--resume", str(run), "--epochs", "3"]) == 0, log_lines
    assert epochs_in(run / "results.csv") == [0, 1, 2]
    assert yaml.safe_load((run / "opt.yaml").read_text())["epochs"] == 3
    hyp = yaml.safe_load((run / "hyp.yaml").read_text())
    lf = one_cycle(1, hyp["lrf"], 3)  # the schedule recomputed for 3 epochs, continued at epoch 1
    assert lrs == pytest.approx({1: hyp["lr0"] * lf(0), 2: hyp["lr0"] * lf(1)})  # epoch e at lf(e - 1), as v5.0
    assert torch.load(run / "weights" / "last.pt", weights_only=True)["optimizer"] is None  # finished again


@pytest.mark.parametrize("case", ["weights", "hyp", "cls_groups", "label"])
def test_failed_start_leaves_no_run_folder(case, tiny, tmp_path, log_lines):
    args = args_for(tiny, tmp_path / "runs")
    if case == "weights":
        bad = tmp_path / "w.pt"
        bad.write_bytes(b"not a checkpoint")
        args += ["--weights", str(bad)]
    elif case == "hyp":
        args[args.index("--hyp") + 1] = str(write_hyp(tmp_path / "h.yaml", cls_loss="softmax"))
    elif case == "cls_groups":
        args += ["--cls-loss", "grouped"]  # the dataset has no cls_groups
    else:
        args[args.index("--data") + 1] = str(make_dataset(tmp_path / "ds", max_class=7))
    assert train_cli(args) == 1 and len(errors_of(log_lines)) == 1, log_lines
    assert not (tmp_path / "runs").exists()
    assert train_cli(args_for(tiny, tmp_path / "runs")) == 0  # the next attempt gets the same name
    assert (tmp_path / "runs" / "exp" / "weights" / "last.pt").is_file()


def test_failed_start_in_an_exist_ok_folder_keeps_its_files(tiny, tmp_path, log_lines):
    run = tmp_path / "runs" / "exp"
    (run / "weights").mkdir(parents=True)
    old = {"hyp.yaml": "old hyps\n", "results.csv": "old rows\n", "weights/last.pt": "old weights"}
    for name, text in old.items():
        (run / name).write_text(text)
    args = args_for(tiny, tmp_path / "runs", "--exist-ok", "--cls-loss", "grouped")
    assert train_cli(args) == 1, log_lines
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == sorted(["weights", *old])
    assert all((run / name).read_text() == text for name, text in old.items())


def test_noval_logs_nan_for_epochs_not_validated_and_plots_skip_them(tiny, tmp_path, monkeypatch):
    from utils import plots
    assert train_cli(train_args(tiny["data"], tiny["cfg"], tiny["hyp"], tmp_path / "runs", "--noval", "--noplots",
                                epochs=2)) == 0
    rows = [[c.strip() for c in ln.split(",")] for ln in
            (tmp_path / "runs" / "exp" / "results.csv").read_text().splitlines()[1:]]
    assert rows[0][4:11] == ["nan"] * 7 and "nan" not in rows[1] and "nan" not in rows[0][1:4] + rows[0][11:]
    from utils.loggers import Loggers
    nan = float("nan")  # 8 epochs validated at 3 and 7 only; epoch 5 with empty cells (the other spelling)
    for e in range(8):
        Loggers(tmp_path, tensorboard=False).log_epoch(e, [0.1] * 3 + ([0.5] * 7 if e in (3, 7) else [nan] * 7)
                                                       + [0.01] * 3)
    csv = tmp_path / "results.csv"
    lines = csv.read_text().splitlines()
    lines[6] = lines[6].replace("nan", "")
    csv.write_text("\n".join(lines) + "\n")
    figures = []
    monkeypatch.setattr(plots, "_save_fig", lambda fig, path: figures.append(fig) or path)
    plots.plot_results(file=csv)
    ax = figures[0].axes
    map_lines = ax[8].get_lines()  # mAP@0.5: the validated epochs only, no zero line, no smoothed curve
    assert list(map_lines[0].get_xdata()) == [3, 7] and len(map_lines) == 1
    assert ax[8].get_xlim()[0] < 0 and ax[8].get_xlim()[1] > 7  # on the same epoch axis as the losses
    assert len(ax[0].get_lines()) == 2  # train box loss: 8 points, so also smoothed


def test_best_pt_is_written_when_fitness_stays_zero(tiny, tmp_path, monkeypatch):
    """Fine-tuning a checkpoint whose best_fitness (0.9) the new data never reaches: best.pt all the same."""
    from train_helpers import TINY_CFG
    weights = _checkpoint(tmp_path / "trained.pt", TINY_CFG, best_fitness=0.9)
    monkeypatch.setattr(validation, "validate", lambda *a, **k: ((0.0,) * 7, torch.zeros(3).numpy(), (0, 0, 0)))
    args = args_for(tiny, tmp_path / "runs", epochs=2) + ["--weights", str(weights)]
    assert train_cli(args) == 0
    best = tmp_path / "runs" / "exp" / "weights" / "best.pt"
    assert best.is_file() and torch.load(best, weights_only=True)["best_fitness"] == 0.0


def test_new_files_removes_only_what_a_start_added(tmp_path):
    from utils.files import NewFiles
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("x")
    run = tmp_path / "runs" / "exp"
    run.mkdir(parents=True)
    (run / "old.txt").write_text("old")
    (run / "link").symlink_to(outside)  # never followed
    new = NewFiles(run)
    (run / "weights").mkdir()
    (run / "weights" / "last.pt").write_text("new")
    (run / ".train.lock").write_text("new")
    new.remove()
    assert sorted(p.name for p in run.iterdir()) == ["link", "old.txt"] and (outside / "keep.txt").is_file()
    fresh = NewFiles(tmp_path / "a" / "b" / "exp")
    (tmp_path / "a" / "b" / "exp").mkdir(parents=True)
    (tmp_path / "a" / "other").mkdir()  # another run appeared beside: its parent stays
    fresh.remove()
    assert not (tmp_path / "a" / "b").exists() and (tmp_path / "a" / "other").is_dir()


def test_misspelt_data_yaml_keys_warn(tmp_path, log_lines):
    from data.config import warn_misspelt_keys
    warn_misspelt_keys({"train": "a", "vall": "b", "cls_group": [], "license": "CC BY 4.0", "url": "x"}, "d.yaml")
    warnings = [ln for ln in log_lines if "WARNING" in ln]
    assert len(warnings) == 2 and all("d.yaml" in w for w in warnings), warnings
    assert "'vall'" in warnings[0] and "'val'" in warnings[0] and "'cls_groups'" in warnings[1]
