"""train.py --resume after a SIGKILL mid-epoch, and CPU DDP (gloo) with torchrun, incl. --sync-bn."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp
import yaml

from train_helpers import ROOT, env, free_port, make_dataset, run_train, train_args, write_cfg, write_hyp


def epochs_in(csv):
    return [int(float(ln.split(",")[0])) for ln in csv.read_text().splitlines()[1:] if ln.strip()]


def test_sigkill_mid_epoch_then_resume(tmp_path):
    data = make_dataset(tmp_path / "ds", n=32)
    cfg, hyp = write_cfg(tmp_path / "tiny.yaml"), write_hyp(tmp_path / "hyp.yaml")
    args = train_args(data, cfg, hyp, tmp_path / "runs", "--noplots", epochs=3, batch=2)
    cmd = [sys.executable, str(ROOT / "train.py"), *args]
    save = tmp_path / "runs" / "exp"
    last = save / "weights" / "last.pt"
    with open(tmp_path / "log.txt", "w") as log:
        p = subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 180
        while not last.exists() and p.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        # epoch 0 is saved: epoch 1 (16 batches) is now running
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    assert p.returncode == -signal.SIGKILL, (tmp_path / "log.txt").read_text()[-3000:]
    ck = torch.load(last, weights_only=True)
    assert ck["epoch"] == 0 and ck["optimizer"] is not None  # killed mid-epoch 1, last.pt still loadable
    assert epochs_in(save / "results.csv") == [0]

    r = run_train(["--resume", str(last)], cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "from epoch 1 to 3 total epochs" in out
    assert epochs_in(save / "results.csv") == [0, 1, 2]  # no epoch repeated or missing
    assert not (tmp_path / "runs" / "exp2").exists()  # resumed in place
    ck = torch.load(last, weights_only=True)
    assert ck["epoch"] == -1 and ck["optimizer"] is None  # finished and stripped
    # original options reused: nothing to resume any more
    r = run_train(["--resume", str(last)], cwd=tmp_path)
    assert r.returncode == 1 and "nothing to resume" in r.stdout + r.stderr


def test_torchrun_two_cpu_processes(tmp_path):
    data = make_dataset(tmp_path / "ds", n=8)
    cfg, hyp = write_cfg(tmp_path / "tiny.yaml"), write_hyp(tmp_path / "hyp.yaml")
    args = train_args(data, cfg, hyp, tmp_path / "runs", "--noplots", "--sync-bn", epochs=1, batch=4)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_port", str(free_port())]
    r = run_train(args, cwd=tmp_path, launcher=launcher)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "DDP: 2 processes, backend gloo, batch 2 per rank" in out
    assert "Using SyncBatchNorm()" in out
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["exp"]  # both ranks share rank 0's run directory; only rank 0 writes
    save = tmp_path / "runs" / "exp"
    o = yaml.safe_load((save / "opt.yaml").read_text())
    assert o["world_size"] == 2 and o["global_rank"] == 0 and o["total_batch_size"] == 4
    assert epochs_in(save / "results.csv") == [0]
    ck = torch.load(save / "weights" / "last.pt", weights_only=True)
    assert ck["epoch"] == -1 and ck["model"]["nc"] == 3
    from engine.checkpoint import model_from_record
    model = model_from_record(ck["model"])  # plain BatchNorm2d again: loadable without DDP
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())


def _sync_bn_worker(rank: int, world: int, port: int, x: torch.Tensor, q) -> None:
    import torch.distributed as dist
    from utils.distributed import CPUSyncBatchNorm
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    bn = CPUSyncBatchNorm(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    part = x.chunk(world)[rank].clone().requires_grad_(True)
    y = bn(part)
    (y * torch.arange(y.numel()).reshape(y.shape).float().sin()).sum().backward()
    # numpy copies: shared-memory tensors would vanish with this process
    q.put((rank, *(t.detach().numpy().copy() for t in (y, part.grad, bn.weight.grad, bn.running_mean,
                                                        bn.running_var))))
    dist.destroy_process_group()


def test_cpu_sync_batchnorm_matches_one_big_batch(monkeypatch):
    x = torch.randn(4, 3, 5, 5) * 3 + 1
    # spawned children unpickle _sync_bn_worker by importing this module: make sure its folder is on the path they
    # inherit, whatever earlier tests in this worker process did to sys.path (seen once under xdist)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent))
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_sync_bn_worker, args=(r, 2, port, x, q)) for r in range(2)]
    for p in procs:
        p.start()
    res = {r[0]: [torch.from_numpy(a) for a in r[1:]] for r in (q.get(timeout=120) for _ in procs)}
    for p in procs:
        p.join(60)
    # reference: plain BatchNorm2d over the whole batch; each rank's loss uses its own slice's weights
    bn = torch.nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    xr = x.clone().requires_grad_(True)
    y = bn(xr)
    w = torch.cat([torch.arange(y[:2].numel()).reshape(y[:2].shape).float().sin()] * 2)
    (y * w).sum().backward()
    assert torch.allclose(torch.cat([res[0][0], res[1][0]]), y.detach(), atol=1e-5)
    assert torch.allclose(torch.cat([res[0][1], res[1][1]]), xr.grad, atol=1e-5)
    assert torch.allclose(res[0][2] + res[1][2], bn.weight.grad, atol=1e-4)  # DDP then averages the ranks
    for r in (0, 1):
        assert torch.allclose(res[r][3], bn.running_mean, atol=1e-5)
        assert torch.allclose(res[r][4], bn.running_var, atol=1e-5)
