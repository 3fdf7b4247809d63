"""torchvision ImageNet backbones in the models/yolov5-tv-*.yaml detectors (issue 20).

The reference is torchvision itself: its models are built with random weights (no download) and perturbed
BatchNorm statistics, saved as a state_dict file, loaded through ``build_model`` (what ``train.py --weights`` runs),
and the detector's three tapped feature maps must equal torchvision's intermediate outputs on the same image.
"""
from __future__ import annotations

import argparse
import urllib.error
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torchvision
import yaml

from engine.checkpoint import model_from_record, model_record, save_checkpoint
from engine.train import torchvision_weights
from engine.train.model_setup import build_model
from engine.train.optim import freeze_layers
from engine.train.options import TrainError
from models.model import Model
from models.torchvision_backbones import (BACKBONES, backbone_shapes, hub_cache_file, identify, strip_wrapper_prefix,
                                          to_model_keys, weights_url)
from train_helpers import make_dataset, train_args, train_cli, write_hyp

ROOT = Path(__file__).resolve().parents[1]
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
# torchvision module whose output is tapped -> detector row, per model (strides 8 / 16 / 32)
SHUFFLE_TAPS = {"stage2": 4, "stage3": 6, "conv5": 9}
TAPS = {**{f"shufflenet_v2_{w}": SHUFFLE_TAPS for w in ("x0_5", "x1_0", "x1_5", "x2_0")},
        "mobilenet_v3_small": {"features.3": 4, "features.8": 9, "features.12": 13},
        "mobilenet_v3_large": {"features.6": 7, "features.12": 13, "features.16": 17}}


def torchvision_file(name: str, path: Path, seed: int = 0) -> nn.Module:
    """torchvision's ``name`` with random weights and non-trivial BN statistics, its state_dict saved to ``path``."""
    torch.manual_seed(seed)
    model = torchvision.models.get_model(name, weights=None).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model


def train_opt(weights, cfg: str = "", resume: bool = False) -> argparse.Namespace:
    return argparse.Namespace(weights=str(weights), cfg=cfg, resume=resume)


def outputs_of(model: nn.Module, modules: dict, x: torch.Tensor) -> dict:
    """{key: output} of the named submodules during one forward."""
    out = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, k=k: out.__setitem__(k, o)) for k, m in modules.items()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return out


@pytest.mark.parametrize("name", list(BACKBONES))
def test_backbone_features_equal_torchvision(name, tmp_path, log_lines):
    tv = torchvision_file(name, tmp_path / Path(weights_url(name)).name)
    model, ckpt = build_model(train_opt(tmp_path / Path(weights_url(name)).name, f"models/{BACKBONES[name].cfg}"),
                              {}, 80, torch.device("cpu"))
    assert ckpt is None  # a fresh training: epochs, optimizer and EMA start from zero
    n = len(backbone_shapes(name))
    assert f"Transferred {n}/{n} backbone tensors from torchvision {name}; head initialised" in log_lines.text()
    model.eval()
    x = torch.rand(1, 3, 64, 64)  # YOLOv5's input: RGB in 0..1; torchvision gets it ImageNet-normalised
    tv_modules = dict(tv.named_modules())
    ref = outputs_of(tv, {k: tv_modules[k] for k in TAPS[name]}, (x - MEAN) / STD)
    got = outputs_of(model, {k: model.model[row] for k, row in TAPS[name].items()}, x)
    for k, stride in zip(TAPS[name], (8, 16, 32)):
        assert got[k].shape == ref[k].shape and ref[k].shape[-1] == 64 // stride, k
        scale = ref[k].abs().max().item()
        assert scale > 0.1, k  # the features are not trivially zero
        assert (got[k] - ref[k]).abs().max().item() <= 1e-4 * scale, k
    assert model.backbone_source["model"] == name and model.backbone_source["tensors"] == n
    # BatchNorm constants: torchvision's in the backbone (not reset by YOLOv5's init), YOLOv5's in the head
    rows = BACKBONES[name].backbone_rows
    constants = {(m.eps, m.momentum) for m in tv.modules() if isinstance(m, nn.BatchNorm2d)}
    assert {(m.eps, m.momentum) for m in model.model[:rows].modules() if isinstance(m, nn.BatchNorm2d)} == constants
    head = {(m.eps, m.momentum) for m in model.model[rows:].modules() if isinstance(m, nn.BatchNorm2d)}
    assert head == {(1e-3, 0.03)}


@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> Path:
    f = tmp_path_factory.mktemp("tv") / "mobilenet_v3_small-047dcff4.pth"
    torchvision_file("mobilenet_v3_small", f)
    return f


def test_refuses_a_file_that_does_not_fit_the_config(small_file):
    cfg = "models/yolov5-tv-shufflenetv2-x1_0.yaml"
    with pytest.raises(TrainError) as e:
        build_model(train_opt(small_file, cfg), {}, 80, torch.device("cpu"))
    msg = str(e.value)
    assert "\n" not in msg and "torchvision mobilenet_v3_small" in msg and cfg in msg
    assert "shufflenet_v2_x1_0" in msg and "models/yolov5-tv-mobilenetv3-small.yaml" in msg
    with pytest.raises(TrainError, match="no torchvision backbone"):  # a config of the reference fork
        build_model(train_opt(small_file, "models/yolov5-mobilenetv3small.yaml"), {}, 80, torch.device("cpu"))


def test_refuses_a_torchvision_style_file_of_another_shape(small_file, tmp_path):
    sd = torch.load(small_file, weights_only=True)
    del sd["features.12.1.running_var"]
    torch.save(sd, tmp_path / "cut.pth")
    with pytest.raises(TrainError, match=r"cut.pth: a state_dict of \d+ tensors that is none of torchvision's"):
        build_model(train_opt(tmp_path / "cut.pth"), {}, 80, torch.device("cpu"))


def test_name_resolved_in_the_hub_cache_and_offline_error(small_file, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    cached = hub_cache_file("mobilenet_v3_small")
    assert cached == tmp_path / "torch" / "hub" / "checkpoints" / "mobilenet_v3_small-047dcff4.pth"
    with pytest.raises(TrainError) as e:
        build_model(train_opt("mobilenet_v3_small"), {}, 80, torch.device("cpu"))
    msg = str(e.value)
    assert "\n" not in msg and weights_url("mobilenet_v3_small") in msg and str(cached) in msg
    assert not cached.exists()
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(small_file.read_bytes())  # what a download (or a copy from a machine online) leaves there
    model, _ = build_model(train_opt("mobilenet_v3_small"), {}, 80, torch.device("cpu"))  # no --cfg: shipped one
    assert model.yaml["torchvision"] == "mobilenet_v3_small" and model.backbone_source["file"] == str(cached)


def test_recognised_by_keys_and_shapes_also_with_a_dataparallel_prefix():
    for name in BACKBONES:
        sd = {k: torch.zeros(shape) for k, shape in backbone_shapes(name).items()}
        assert identify(sd) == name
        assert identify(strip_wrapper_prefix({f"module.{k}": v for k, v in sd.items()})) == name
    sd = {k: torch.zeros(shape) for k, shape in backbone_shapes("shufflenet_v2_x1_0").items()}
    sd["conv5.0.weight"] = torch.zeros(1000, 464, 1, 1)  # one width off: no torchvision model
    assert identify(sd) is None


def test_other_weights_fall_through_to_the_checkpoint_path(tmp_path):
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "plain.pt")  # a state_dict, but no torchvision one
    assert torchvision_weights.torchvision_source(str(tmp_path / "plain.pt")) is None
    assert torchvision_weights.torchvision_source("yolov5s.pt") is None
    assert torchvision_weights.torchvision_source("") is None


@pytest.mark.slow
def test_checkpoint_records_the_backbone_source(small_file, tmp_path):
    model, _ = build_model(train_opt(small_file, "models/yolov5-tv-mobilenetv3-small.yaml"), {}, 3,
                           torch.device("cpu"))
    save_checkpoint({"epoch": 0, "model": model_record(model), "ema": None}, tmp_path / "last.pt")
    ck = torch.load(tmp_path / "last.pt", weights_only=True)  # plain data
    rec = ck["model"]["backbone"]
    assert rec["source"] == "torchvision" and rec["model"] == "mobilenet_v3_small" and rec["tensors"] == 206
    assert rec["file"] == str(small_file) and len(rec["sha256"]) == 64
    assert model_from_record(ck["model"]).backbone_source == rec
    # fine-tuning from (or resuming) that checkpoint keeps the record
    for resume in (False, True):
        tuned, _ = build_model(train_opt(tmp_path / "last.pt", resume=resume), {}, 3, torch.device("cpu"))
        assert tuned.backbone_source == rec


@pytest.mark.slow
def test_train_with_frozen_backbone_keeps_the_imagenet_weights(small_file, tmp_path, log_lines):
    """train.py --weights <torchvision file> --freeze <backbone rows>: one epoch, the backbone weights unchanged."""
    data = make_dataset(tmp_path / "ds", n=4)
    args = train_args(data, ROOT / "models" / BACKBONES["mobilenet_v3_small"].cfg, write_hyp(tmp_path / "hyp.yaml"),
                      tmp_path / "runs", "--noplots", "--notest", "--freeze", "14")
    args[args.index("--weights") + 1] = str(small_file)
    assert train_cli(args) == 0
    assert "Transferred 206/206 backbone tensors from torchvision mobilenet_v3_small" in log_lines.text()
    ck = torch.load(tmp_path / "runs" / "exp" / "weights" / "last.pt", weights_only=True)
    assert ck["model"]["backbone"]["model"] == "mobilenet_v3_small"
    trained = ck["model"]["state_dict"]
    imagenet = to_model_keys("mobilenet_v3_small", torch.load(small_file, weights_only=True))
    weights = [k for k in imagenet if k.endswith("weight")]
    assert len(weights) > 50
    for k in weights:  # frozen: equal up to the fp16 of the stripped checkpoint
        torch.testing.assert_close(trained[k].float(), imagenet[k], rtol=1e-3, atol=1e-4)


def test_freeze_backbone_rows_and_exact_widths():
    for name, spec in BACKBONES.items():
        cfg = yaml.safe_load((ROOT / "models" / spec.cfg).read_text())
        assert cfg["torchvision"] == name and len(cfg["backbone"]) == spec.backbone_rows
    cfg = yaml.safe_load((ROOT / "models" / BACKBONES["shufflenet_v2_x1_0"].cfg).read_text())
    cfg["width_multiple"] = 0.5  # scales the head only: torchvision's 116 / 232 / 464 are kept (not rounded to 8)
    model = Model(cfg)
    assert [model.model[i].branch2[0].out_channels * 2 for i in (3, 5, 7)] == [116, 232, 464]
    assert model.model[10].conv.out_channels == 128  # head Conv 256 x 0.5
    freeze_layers(model, [BACKBONES["shufflenet_v2_x1_0"].backbone_rows])
    frozen = {k for k, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {k for k, _ in model.named_parameters() if int(k.split(".")[1]) < 10} and frozen


def test_finetune_hyps_are_v5():
    v5 = yaml.safe_load((ROOT / "data" / "hyp.finetune.yaml").read_text())
    hyps = yaml.safe_load((ROOT / "data" / "hyps" / "hyp.finetune.yaml").read_text())
    assert hyps == v5
    assert (hyps["lr0"], hyps["lrf"], hyps["momentum"], hyps["weight_decay"], hyps["mixup"]) == \
        (0.0032, 0.12, 0.843, 0.00036, 0.243)


@pytest.mark.slow
def test_onnx_export_matches_pytorch(small_file, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    import export
    model, _ = build_model(train_opt(small_file, "models/yolov5-tv-mobilenetv3-small.yaml"), {}, 3,
                           torch.device("cpu"))
    save_checkpoint({"epoch": -1, "model": model_record(model), "ema": None}, tmp_path / "tv.pt")
    (f,) = export.run(weights=[str(tmp_path / "tv.pt")], imgsz=[64], include=["onnx"])
    x = torch.rand(1, 3, 64, 64)
    x[..., :8, :] = 0.0  # a black border strip: zero padding of the normalised image must be exact there
    session = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
    (onnx_out, *_) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    ref = model_from_record(torch.load(tmp_path / "tv.pt", weights_only=True)["model"]).eval()
    with torch.no_grad():
        torch_out = ref(x)[0]
    assert onnx_out.shape == tuple(torch_out.shape)
    assert abs(onnx_out - torch_out.numpy()).max() <= 1e-4 * max(1.0, float(torch_out.abs().max()))
    import onnx
    ops = {n.op_type for n in onnx.load(str(f)).graph.node}
    assert {"Sub", "Div"} <= ops  # the input normalisation is in the graph
