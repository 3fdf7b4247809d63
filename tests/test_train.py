"""train.py: flags (upstream CI lines, aliases), one real training run and its outputs, bad input, seeds, CE."""
from __future__ import annotations

import shlex

import numpy as np
import pytest
import torch
import yaml

import train
from data.label_stats import labels_to_class_weights, labels_to_image_weights
from engine.train.evolve import EVOLVE_META
from engine.train.optim import EarlyStopping, build_optimizer, lr_lambda
from engine.train.options import TrainError, load_hyp
from train_helpers import make_dataset, run_train, train_args, write_cfg, write_hyp
from utils.files import increment_path
from utils.loggers import RESULT_KEYS
from utils.precision import cpu_bf16_native


def parse(cmd: str):
    return train.parse_opt(args=shlex.split(cmd))


# ------------------------------------------------------------------------------------------------ flags
@pytest.mark.parametrize("cmd, expected", [
    # v5.0 CI (contract 9.1), v6.0 CI (9.2), v7.0 CI (9.3)
    ("--img 128 --batch 16 --weights weights/yolov5s.pt --cfg models/yolov5s.yaml --epochs 1 --device cpu",
     dict(img_size=[128], batch_size=16, weights="weights/yolov5s.pt", cfg="models/yolov5s.yaml", epochs=1,
          device="cpu")),
    ("--img 64 --batch 32 --weights yolov5s.pt --cfg yolov5s.yaml --epochs 1 --device cpu",
     dict(img_size=[64], batch_size=32, weights="yolov5s.pt", cfg="yolov5s.yaml")),
    ("--imgsz 64 --batch 32 --weights yolov5n.pt --cfg yolov5n.yaml --epochs 1 --device cpu",
     dict(img_size=[64], batch_size=32, weights="yolov5n.pt")),
])
def test_upstream_ci_command_lines(cmd, expected):
    opt = parse(cmd)
    for k, v in expected.items():
        assert getattr(opt, k) == v, k


def test_v50_defaults():
    opt = parse("")
    assert (opt.weights, opt.cfg, opt.data, opt.epochs, opt.batch_size, opt.img_size) == \
        ("yolov5s.pt", "", "data/coco128.yaml", 300, 16, [640, 640])
    assert opt.resume is False and opt.evolve is None and opt.cache is None and opt.optimizer == "SGD"
    assert (opt.local_rank, opt.workers, opt.project, opt.name, opt.label_smoothing) == (-1, 8, "runs/train", "exp", 0.0)
    assert (opt.save_period, opt.patience, opt.freeze, opt.seed) == (-1, 100, [0], 0)
    assert opt.linear_lr is False and opt.notest is False and opt.noplots is False
    assert opt.cls_loss is None and opt.box_loss is None


@pytest.mark.parametrize("a, b", [
    ("--img 320", "--img-size 320"), ("--imgsz 320", "--img-size 320"), ("--img-s 320", "--img-size 320"),
    ("--noval", "--notest"), ("--cache-images", "--cache"), ("--cache", "--cache ram"),
    ("--adam", "--optimizer Adam"), ("--save_period 5", "--save-period 5"), ("--batch 8", "--batch-size 8"),
    ("--local-rank 1", "--local_rank 1"), ("--cos-lr", ""), ("--linear-lr", "--linear-lr --cos-lr --linear-lr"),
])
def test_aliases_are_one_option(a, b):
    assert vars(parse(a)) == vars(parse(b))


def test_flag_values():
    opt = parse("--img-size 320 256 --cache disk --optimizer AdamW --evolve --resume --freeze 0 1 2 "
                "--cls-loss ce --box-loss giou --label-smoothing 0.1 --patience 5 --seed 7 --noplots")
    assert opt.img_size == [320, 256] and opt.cache == "disk" and opt.optimizer == "AdamW"
    assert opt.evolve == 300 and opt.resume is True and opt.freeze == [0, 1, 2]
    assert (opt.cls_loss, opt.box_loss, opt.label_smoothing, opt.patience, opt.seed) == ("ce", "giou", 0.1, 5, 7)
    assert parse("--evolve 12 --resume runs/x/last.pt").evolve == 12
    assert parse("--resume runs/x/last.pt").resume == "runs/x/last.pt"


@pytest.mark.parametrize("cmd", ["--cls-loss focal", "--optimizer RMSprop", "--cache gpu", "--epochs ten"])
def test_bad_flag_values_exit_2(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        parse(cmd)
    assert e.value.code == 2
    assert cmd.split()[0] in capsys.readouterr().err


def test_hyp_overrides(tmp_path):
    hyp_file = write_hyp(tmp_path / "hyp.yaml", cls_loss="ce")
    assert load_hyp(str(hyp_file), parse(""))["cls_loss"] == "ce"  # yaml value kept
    assert load_hyp(str(hyp_file), parse("--cls-loss bce"))["cls_loss"] == "bce"  # flag overrides
    raw = yaml.safe_load(hyp_file.read_text())
    raw.pop("cls_loss")
    assert load_hyp(raw, parse(""))["cls_loss"] == "bce"  # missing -> bce
    assert load_hyp(raw, parse("--box-loss siou"))["box_loss"] == "siou"
    with pytest.raises(TrainError, match="cls_loss"):
        load_hyp(dict(raw, cls_loss="softmax"), parse(""))


def test_lr_schedules_and_groups():
    hyp = {"lrf": 0.2}
    cos, lin = lr_lambda(hyp, 10, False), lr_lambda(hyp, 10, True)
    assert cos(0) == pytest.approx(1.0) and cos(10) == pytest.approx(0.2) and cos(5) == pytest.approx(0.6)
    assert lin(0) == pytest.approx(1.0) and lin(9) == pytest.approx(0.2)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.BatchNorm2d(4),
                                torch.nn.Conv2d(4, 2, 1))
    opt = build_optimizer(model, "SGD", 0.01, 0.937, 5e-4)
    sizes = [sum(p.numel() for p in g["params"]) for g in opt.param_groups]
    assert sizes == [4, 3 * 4 * 9 + 4 * 2, 4 + 2]  # BN weight | conv weights | biases (BN + conv)
    assert [g["weight_decay"] for g in opt.param_groups] == [0, 5e-4, 0] and opt.param_groups[0]["nesterov"]


def test_class_and_image_weights():
    labels = [np.array([[0, .5, .5, .1, .1], [0, .5, .5, .1, .1]], np.float32),
              np.array([[1, .5, .5, .1, .1]], np.float32), np.zeros((0, 5), np.float32)]
    w = labels_to_class_weights(labels, 3)
    assert w.tolist() == pytest.approx([0.2, 0.4, 0.4])  # 1/2, 1/1, absent counts as 1; normalised
    iw = labels_to_image_weights(labels, 3, w.numpy())
    assert iw.tolist() == pytest.approx([0.4, 0.4, 0.0])


def test_early_stopping():
    stop = EarlyStopping(patience=2)
    assert [stop(e, f) for e, f in enumerate([0.1, 0.2, 0.1, 0.15])] == [False, False, False, True]
    never = EarlyStopping(patience=0)
    assert not any(never(e, 0.0 if e else 1.0) for e in range(50))


# ------------------------------------------------------------------------------------------------ training
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return dict(root=root, data=make_dataset(root / "ds"), cfg=write_cfg(root / "tiny.yaml"),
                hyp=write_hyp(root / "hyp.yaml"))


def test_one_epoch_writes_run_outputs(tiny, tmp_path):
    args = train_args(tiny["data"], tiny["cfg"], tiny["hyp"], tmp_path / "runs", "--img", "60", epochs=2)
    r = run_train(args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "must be multiple of max stride 32, updating to 64" in r.stdout + r.stderr  # 60 rounded up, warned
    default = "bf16 autocast" if cpu_bf16_native() else "fp32"  # the subprocess asks the same CPU
    assert f"Precision: {default}, channels_last (default: this CPU" in r.stdout + r.stderr  # in the start-up lines
    assert "Recommendation: --cls-loss ce (softmax over all classes) fits" in r.stdout + r.stderr  # label diagnosis
    assert "Dataset check: train 8 images / " in r.stdout + r.stderr  # the dataset check in short
    save = tmp_path / "runs" / "exp"
    expected = ["weights/last.pt", "weights/best.pt", "opt.yaml", "hyp.yaml", "results.csv", "results.png",
                "labels.jpg", "confusion_matrix.png", "PR_curve.png", "F1_curve.png", "P_curve.png",
                "R_curve.png", "calibration.png", "metrics.json", "train_batch0.jpg", "train_batch1.jpg", "train_batch2.jpg",
                "val_batch0_labels.jpg", "val_batch0_pred.jpg", "dataset_check/report.md", "dataset_check/report.json"]
    missing = [f for f in expected if not (save / f).is_file()]
    assert not missing, f"missing {missing}; have {sorted(p.name for p in save.rglob('*'))}"

    # results.csv: v6 layout, header + one row per epoch, fields right-aligned to width 20
    lines = (save / "results.csv").read_text().splitlines()
    assert [c.strip() for c in lines[0].split(",")] == ["epoch", *RESULT_KEYS]
    assert len(lines) == 3 and all(len(f) == 20 for ln in lines for f in ln.split(","))
    assert [float(ln.split(",")[0]) for ln in lines[1:]] == [0, 1]

    # opt.yaml carries the derived fields; hyp.yaml the unscaled hyps
    opt = yaml.safe_load((save / "opt.yaml").read_text())
    assert opt["total_batch_size"] == 4 and opt["world_size"] == 1 and opt["global_rank"] == -1
    assert opt["img_size"] == [60, 60] and opt["save_dir"] == str(tmp_path / "runs" / "exp")
    hyp = yaml.safe_load((save / "hyp.yaml").read_text())
    assert hyp["box"] == 0.05 and hyp["cls_loss"] == "bce"

    # stripped checkpoint: project format, EMA promoted to model, fp16, no optimizer; gains rescaled
    ck = torch.load(save / "weights" / "last.pt", weights_only=True)
    assert ck["format"] == "yolov5-fork" and ck["epoch"] == -1 and ck["optimizer"] is None and ck["ema"] is None
    rec = ck["model"]
    assert rec["cls_act"] == "sigmoid" and rec["names"] == ["red", "green", "blue"] and rec["nc"] == 3
    assert all(v.dtype == torch.float16 for v in rec["state_dict"].values() if v.is_floating_point())
    assert rec["hyp"]["cls"] == pytest.approx(0.5 * 3 / 80) and rec["hyp"]["obj"] == pytest.approx((64 / 640) ** 2)

    # the second run increments exp -> exp2, --exist-ok reuses it
    assert increment_path(tmp_path / "runs" / "exp") == tmp_path / "runs" / "exp2"


def run_seeded(tiny, project, name, *extra):
    args = train_args(tiny["data"], tiny["cfg"], tiny["hyp"], project, "--seed", "3", "--noplots", *extra,
                      name=name)
    r = run_train(args, cwd=project.parent)
    assert r.returncode == 0, r.stderr[-3000:]
    return project / name


def test_seed_is_deterministic_and_ce_gives_softmax_checkpoint(tiny, tmp_path):
    a = run_seeded(tiny, tmp_path / "runs", "a", "--cls-loss", "ce")
    b = run_seeded(tiny, tmp_path / "runs", "b", "--cls-loss", "ce")
    sa = torch.load(a / "weights" / "last.pt", weights_only=True)["model"]
    sb = torch.load(b / "weights" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(sa["state_dict"][k], sb["state_dict"][k]) for k in sa["state_dict"])
    rows_a = (a / "results.csv").read_text().splitlines()[1:]
    assert rows_a == (b / "results.csv").read_text().splitlines()[1:]
    # CE training: softmax head recorded in the checkpoint, and attempt_load decodes with softmax
    assert sa["cls_act"] == "softmax" and sa["hyp"]["cls_loss"] == "ce"
    from engine.checkpoint import attempt_load
    model = attempt_load(a / "weights" / "best.pt")
    assert model.cls_act == "softmax"
    out = model(torch.rand(1, 3, 64, 64))[0]
    assert torch.allclose(out[0, :, 5:].sum(-1), torch.ones(out.shape[1]), atol=1e-3)  # class probs sum to 1
    # a different seed gives a different training
    c = run_seeded(tiny, tmp_path / "runs", "c", "--cls-loss", "ce", "--seed", "4")
    assert (c / "results.csv").read_text().splitlines()[1:] != rows_a


# ------------------------------------------------------------------------------------------------ bad input
@pytest.fixture
def no_determinism():
    yield
    torch.use_deterministic_algorithms(False)


def run_cli(args, caplog):
    caplog.clear()
    with caplog.at_level("ERROR", logger="yolov5"):
        code = train.cli(args)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    return code, errors


@pytest.mark.parametrize("case, needle", [
    ("unknown_data", "nope.yaml"),
    ("names_mismatch", "names"),
    ("label_class", "im7.txt"),
    ("not_checkpoint", "--weights"),
    ("resume_nothing", "--resume"),
    ("missing_weights", "--weights"),
    ("no_cfg", "--cfg"),
])
def test_bad_input_one_clear_error(case, needle, tiny, tmp_path, caplog, monkeypatch, no_determinism):
    monkeypatch.chdir(tmp_path)
    data = tiny["data"]
    if case == "unknown_data":
        data = tmp_path / "nope.yaml"
    elif case == "names_mismatch":
        data = tmp_path / "bad.yaml"
        d = yaml.safe_load(tiny["data"].read_text())
        data.write_text(yaml.safe_dump(dict(d, names=["a", "b"])))
    elif case == "label_class":
        data = make_dataset(tmp_path / "ds", n=8, max_class=5)
    args = train_args(data, tiny["cfg"], tiny["hyp"], tmp_path / "runs", "--noplots")
    if case == "not_checkpoint":
        junk = tmp_path / "junk.pt"
        junk.write_text("not a checkpoint")
        args += ["--weights", str(junk)]
    elif case == "missing_weights":
        args += ["--weights", str(tmp_path / "missing.pt")]
    elif case == "no_cfg":
        args[args.index("--cfg") + 1] = ""
    elif case == "resume_nothing":
        args = ["--resume"]
    code, errors = run_cli(args, caplog)
    assert code == 1
    assert len(errors) == 1 and needle in errors[0], errors
    assert "\n" not in errors[0]


def test_cli_exit_status_and_no_traceback(tmp_path):
    r = run_train(["--data", str(tmp_path / "missing.yaml"), "--cfg", "x.yaml", "--weights", ""], cwd=tmp_path,
                  timeout=120)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and "missing.yaml" in r.stderr
    r = run_train(["--img", "abc"], cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and "--img" in r.stderr


def test_evolve_writes_results_and_best_hyps(tiny, tmp_path):
    args = train_args(tiny["data"], tiny["cfg"], tiny["hyp"], tmp_path / "runs", "--evolve", "2")
    r = run_train(args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    x = np.loadtxt(tmp_path / "evolve.txt", ndmin=2)
    hyp = yaml.safe_load(tiny["hyp"].read_text())
    keys = [k for k in EVOLVE_META if k in hyp and isinstance(hyp[k], (int, float))]
    assert x.shape == (2, 7 + len(keys))
    assert not np.array_equal(x[0, 7:], x[1, 7:])  # the second generation is a mutation
    for row in x:  # every value within its mutation bounds
        for k, v in zip(keys, row[7:]):
            lo, hi = EVOLVE_META[k][1:]
            assert lo - 1e-9 <= v <= hi + 1e-9 or v == pytest.approx(hyp[k], rel=1e-3), k
    best = yaml.safe_load((tmp_path / "runs" / "evolve" / "hyp_evolved.yaml").read_text())
    assert set(best) == set(hyp) | {"cls_loss"}
    assert [best[k] for k in keys] == pytest.approx(x[0, 7:].tolist(), rel=1e-3)  # sorted: best row first


# ------------------------------------------------------------------------------------------------ precision
@pytest.mark.parametrize("flags, device, native, expected", [
    ("", "cpu", False, ("fp32", False, "default: this CPU has no native bf16; --bf16 forces bf16 autocast")),
    ("", "cpu", True, ("bf16 autocast", False, "default: this CPU runs bf16 natively; --fp32 for exact fp32")),
    ("--fp32", "cpu", True, ("fp32", False, "--fp32")),
    ("--bf16", "cpu", False, ("bf16 autocast", False, "--bf16")),  # forced, emulated
    ("", "cuda", False, ("fp16 autocast", True, "default on CUDA; --fp32 for exact fp32")),  # upstream amp
    ("", "cuda", True, ("fp16 autocast", True, "default on CUDA; --fp32 for exact fp32")),  # the CPU is not asked
    ("--fp32", "cuda", False, ("fp32", False, "--fp32")),
    ("--bf16", "cuda", False, ("bf16 autocast", False, "--bf16")),  # bf16 needs no scaler
])
def test_training_precision_selection(flags, device, native, expected, monkeypatch):
    """bf16 autocast + channels_last is the CPU default exactly where the CPU runs bf16 natively (the capability
    query mocked both ways, so the test holds on AVX2-only and AMX machines alike); the reason is in the line."""
    from engine.train.options import precision_mode
    from utils import precision
    monkeypatch.setattr(precision, "cpu_bf16_native", lambda: native)
    p = precision.training_precision(device, precision_mode(parse(flags)))
    assert (p.name, p.scaler, p.reason) == expected
    assert p.channels_last == (device == "cpu")
    assert p.emulated == (flags == "--bf16" and device == "cpu" and not native)
    assert p.describe().endswith(f"({expected[2]})")
    monkeypatch.setattr(precision, "TRAIN_BF16_BY_DEFAULT", False)  # the policy before issue 21: fp32 on any CPU
    p = precision.training_precision(device, precision_mode(parse(flags)))
    assert p.name == ("fp32" if device == "cpu" and not flags else expected[0])


def test_forced_bf16_training_steps_lower_the_loss():
    """The trainer's bf16 path (autocast forward, fp32 loss, no scaler) learns on a tiny fixed batch."""
    from models.model import Model
    from train_helpers import TINY_CFG, default_hyp_file
    from utils.loss import ComputeLoss
    from utils.precision import training_precision
    p = training_precision("cpu", "bf16", bf16_native=False)
    assert p.dtype == torch.bfloat16 and not p.scaler
    torch.manual_seed(0)
    model = Model(dict(TINY_CFG), ch=3, nc=3).train()
    model.hyp = yaml.safe_load(default_hyp_file().read_text())
    loss_fn = ComputeLoss(model)
    x = torch.full((2, 3, 64, 64), 114 / 255)
    for b, (c, x0, y0) in enumerate([(0, 8, 8), (2, 30, 20)]):
        x[b, :, y0:y0 + 24, x0:x0 + 24] = torch.tensor([0.2, 0.8, 0.2])[:, None, None] if c else 0.9
    t = torch.tensor([[0, 0, 20 / 64, 20 / 64, 24 / 64, 24 / 64], [1, 2, 42 / 64, 32 / 64, 24 / 64, 24 / 64]])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(12):
        with p.autocast():
            pred = model(x.contiguous(memory_format=torch.channels_last) if p.channels_last else x)
            loss, _ = loss_fn(pred, t)
        assert pred[0].dtype == torch.bfloat16 and loss.dtype == torch.float32
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    assert all(p_.dtype == torch.float32 for p_ in model.parameters())  # weights stay fp32 (checkpoints too)


@pytest.mark.parametrize("first, then", [("--bf16", "--fp32"), ("--fp32", "--bf16")])
def test_resume_across_precisions(first, then, tiny, tmp_path, log_lines, monkeypatch):
    import signal
    from train_helpers import epochs_in, stop_after_epoch, train_cli
    stop_after_epoch(monkeypatch, 0, signal.SIGINT)
    args = train_args(tiny["data"], tiny["cfg"], tiny["hyp"], tmp_path / "runs", "--noplots", first, epochs=2)
    assert train_cli(args) == 130
    monkeypatch.undo()
    save = tmp_path / "runs" / "exp"
    name = {"--bf16": "Precision: bf16 autocast", "--fp32": "Precision: fp32"}
    assert any(name[first] in ln for ln in log_lines.text().splitlines())
    ck = torch.load(save / "weights" / "last.pt", weights_only=True)
    assert ck["epoch"] == 0 and all(v.dtype == torch.float32 for v in ck["model"]["state_dict"].values()
                                    if v.is_floating_point())  # a bf16 run still saves fp32 weights
    assert train_cli(["--resume", str(save), then]) == 0
    assert any(name[then] in ln for ln in log_lines.text().splitlines())
    assert epochs_in(save / "results.csv") == [0, 1]
