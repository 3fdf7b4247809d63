"""The start-up, dataloader and end-of-run paths made cheaper for issue #21, held to their old behaviour.

Each change must give the same result as the slow path it replaced: torchvision's NMS loaded without the package,
dataloader workers started ahead of the first batch, deterministic training without NaN-filled tensors, final
plots added to TensorBoard without being decoded, matplotlib imported at the first figure.
"""
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from data.datasets import create_dataloader
from tests.train_helpers import make_dataset
from utils.torch_utils import init_seeds

ROOT = Path(__file__).resolve().parents[1]
HYP = yaml.safe_load((ROOT / "data" / "hyps" / "hyp.scratch.yaml").read_text())


def run_python(code: str, timeout: float = 120, tmp: Path = None) -> subprocess.CompletedProcess:
    """``code`` run by a fresh interpreter in the project root (as a script file in ``tmp`` if given)."""
    code = textwrap.dedent(code)
    if tmp is None:
        return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    script = tmp / "script.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n" + code)
    return subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------------------------------------ imports
def test_scripts_import_neither_torchvision_nor_matplotlib():
    """~2.3 s of start-up: torchvision (its ops import torch._dynamo) and matplotlib load only when used."""
    r = run_python("""
        import sys
        import train, val, detect
        print(sorted(m for m in ('torchvision', 'torch._dynamo', 'matplotlib') if m in sys.modules))
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_nms_kernel_without_torchvision_matches_torchvision_ops_nms():
    r = run_python("""
        import sys, torch
        from utils.nms_kernel import nms
        g = torch.Generator().manual_seed(0)
        xy = torch.rand(3000, 2, generator=g) * 600
        boxes = torch.cat([xy, xy + 5 + torch.rand(3000, 2, generator=g) * 120], 1)
        scores = torch.rand(3000, generator=g)
        keep = nms(boxes, scores, 0.45)
        assert 'torchvision' not in sys.modules, 'the kernel imported the package'
        import torchvision
        ref = torchvision.ops.nms(boxes, scores, 0.45)
        print(len(keep), torch.equal(keep, ref))
    """)
    assert r.returncode == 0, r.stderr
    n, equal = r.stdout.split()
    assert int(n) > 100 and equal == "True"


def test_figures_are_drawn_headless_after_the_lazy_import(tmp_path):
    r = run_python(f"""
        import numpy as np
        from utils.plots import plot_labels
        from utils.figures import pyplot
        labels = np.array([[0, .5, .5, .2, .3], [1, .3, .6, .1, .1]])
        plot_labels(labels, ['a', 'b'], r'{tmp_path}')
        import matplotlib
        print(matplotlib.get_backend().lower())
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "agg"
    assert (tmp_path / "labels.jpg").stat().st_size > 10_000


# ------------------------------------------------------------------------------------------------ determinism
def test_deterministic_seeding_keeps_deterministic_kernels_without_nan_filling():
    try:
        init_seeds(3, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.utils.deterministic.fill_uninitialized_memory is False
    finally:
        torch.use_deterministic_algorithms(False)
        torch.utils.deterministic.fill_uninitialized_memory = True


def test_deterministic_seeding_does_not_import_inductor():
    """torch.use_deterministic_algorithms imports torch._inductor (1-1.7 s) to set a flag torch.compile reads."""
    r = run_python("""
        import sys, torch
        from utils.torch_utils import init_seeds
        init_seeds(0, deterministic=True)
        print(torch.are_deterministic_algorithms_enabled(), 'torch._inductor.config' in sys.modules)
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "False"]


# ------------------------------------------------------------------------------------------------ workers
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ds")
    make_dataset(root, n=12, size=96)
    return root / "images" / "train"


def epochs_of(loader, n: int = 2):
    """The batches of ``n`` epochs as numpy arrays (images and labels)."""
    return [[(im.numpy().copy(), lb.numpy().copy()) for im, lb, _, _ in loader] for _ in range(n)]


def test_started_workers_deliver_the_same_epochs_as_workers_started_by_the_loop(data_dir):
    def loader():
        return create_dataloader(str(data_dir), 96, 4, 32, hyp=HYP, augment=True, workers=2, shuffle=True,
                                 seed=5)[0]

    plain, early = loader(), loader()
    assert early.start_workers() and not early.start_workers()  # a second call changes nothing
    a, b = epochs_of(plain), epochs_of(early)
    assert len(a[0]) == 3
    assert not np.array_equal(a[0][0][0], a[1][0][0])  # epochs differ, so a swapped epoch would be caught
    for epoch_a, epoch_b in zip(a, b):
        for (ia, la), (ib, lb) in zip(epoch_a, epoch_b):
            np.testing.assert_array_equal(ia, ib)
            np.testing.assert_array_equal(la, lb)
    for ld in (plain, early):
        ld.stop_workers()


def test_stop_workers_ends_the_processes_and_the_next_epoch_starts_them_again(data_dir):
    ld = create_dataloader(str(data_dir), 96, 4, 32, workers=2)[0]
    ld.start_workers()
    workers = list(ld._iterator._workers)
    assert all(w.is_alive() for w in workers)
    ld.stop_workers()
    assert not any(w.is_alive() for w in workers)
    assert len(list(ld)) == 3  # started again on demand


def test_an_uncaught_error_with_live_workers_exits_instead_of_hanging(data_dir):
    """Workers ignore SIGTERM (a group-wide signal must reach the trainer first): multiprocessing's exit handler
    alone would join them forever while the traceback keeps their loader alive."""
    t = time.time()
    r = run_python(f"""
        from data.datasets import create_dataloader
        ld = create_dataloader(r'{data_dir}', 96, 4, 32, workers=2)[0]
        ld.start_workers()
        next(iter(ld))
        raise RuntimeError('boom')
    """, timeout=60)
    assert r.returncode == 1 and "RuntimeError: boom" in r.stderr
    assert time.time() - t < 45


# ------------------------------------------------------------------------------------------------ TensorBoard
def test_final_plots_reach_tensorboard_byte_for_byte(tmp_path):
    pytest.importorskip("tensorboard")
    import cv2
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from utils.loggers import Loggers

    rgb = np.random.default_rng(0).integers(0, 255, (40, 70, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "results.png"), rgb)
    cv2.imwrite(str(tmp_path / "labels.jpg"), rgb)
    rgba = np.dstack([rgb, np.full((40, 70), 200, np.uint8)])
    cv2.imwrite(str(tmp_path / "PR_curve.png"), rgba)
    loggers = Loggers(tmp_path)
    loggers.log_images([tmp_path / f for f in ("results.png", "labels.jpg", "PR_curve.png", "missing.png")], 7)
    loggers.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    assert sorted(events.Tags()["images"]) == ["PR_curve", "labels", "results"]
    for tag, file in (("results", "results.png"), ("labels", "labels.jpg"), ("PR_curve", "PR_curve.png")):
        (ev,) = events.Images(tag)
        assert ev.step == 7 and (ev.width, ev.height) == (70, 40)
        assert ev.encoded_image_string == (tmp_path / file).read_bytes()
        decoded = cv2.imdecode(np.frombuffer(ev.encoded_image_string, np.uint8), cv2.IMREAD_UNCHANGED)
        assert decoded.shape[:2] == (40, 70)


# ------------------------------------------------------------------------------------------------ exit
def test_exit_process_keeps_what_a_normal_exit_does(tmp_path):
    """Threads joined, atexit handlers run, buffered output flushed, the exit code kept; nothing after it runs."""
    r = run_python(f"""
        import atexit, logging, sys, threading, time
        from engine.cli import exit_process
        out = r'{tmp_path}'

        def late():
            time.sleep(0.5)
            open(out + '/thread.txt', 'w').write('joined')

        threading.Thread(target=late).start()
        atexit.register(lambda: open(out + '/atexit.txt', 'w').write('ran'))
        logging.basicConfig(filename=out + '/log.txt')
        logging.warning('logged')
        sys.stdout.write('buffered, no newline')
        exit_process(3, __file__)
        print('never')
    """, tmp=tmp_path)
    assert r.returncode == 3
    assert r.stdout == "buffered, no newline"
    assert (tmp_path / "thread.txt").read_text() == "joined"
    assert (tmp_path / "atexit.txt").read_text() == "ran"
    assert "logged" in (tmp_path / "log.txt").read_text()


def test_exit_process_under_cprofile_lets_the_profile_be_written(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nfrom engine.cli import exit_process\n"
                      "print('ran')\nexit_process(0, __file__)\n")
    out = tmp_path / "prog.prof"
    r = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), str(script)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ran"
    assert out.stat().st_size > 0


@pytest.mark.parametrize("script", ["train.py", "val.py", "detect.py"])
def test_scripts_exit_through_exit_process(script):
    source = (ROOT / script).read_text()
    assert source.rstrip().endswith('if __name__ == "__main__":\n    exit_process(cli(), __file__)')
