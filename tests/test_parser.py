"""parse_model: upstream build table, channel / depth scaling, the data-only resolver and row-naming errors."""
import builtins
from copy import deepcopy
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import yaml

from models import common
from models.builder import ModelYamlError, parse_model, resolve_arg, resolve_module
from models.detect import Detect
from models.model import Model

ROOT = Path(__file__).resolve().parents[1]

# params per layer of the v5.0 yolov5s build table printed by upstream (contract 3.4)
YOLOV5S_NP = [3520, 18560, 18816, 73984, 156928, 295424, 625152, 1180672, 656896, 1182720, 131584, 0, 0, 361984,
              33024, 0, 0, 90880, 147712, 0, 296448, 590336, 0, 1182720, 229245]
YOLOV5S_ARGS = {0: [3, 32, 3], 2: [64, 64, 1], 4: [128, 128, 3], 8: [512, 512, [5, 9, 13]], 9: [512, 512, 1, False],
                11: [None, 2, "nearest"], 13: [512, 256, 1, False],
                24: [80, [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
                     [128, 256, 512]]}


def load(name):
    path = ROOT / "models" / name
    return yaml.safe_load(path.read_text())


def tiny(backbone, head=None, nc=2, gd=1.0, gw=1.0):
    """A small model dict; the default head is a 2-level Detect over the last two backbone layers."""
    n = len(backbone)
    head = head if head is not None else [[[n - 2, n - 1], 1, "Detect", ["nc", "anchors"]]]
    return {"nc": nc, "depth_multiple": gd, "width_multiple": gw,
            "anchors": [[10, 13, 16, 30], [30, 61, 62, 45]], "backbone": deepcopy(backbone), "head": deepcopy(head)}


TINY_BACKBONE = [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [32, 3, 2]], [-1, 1, "Conv", [32, 3, 2]],
                 [-1, 1, "Conv", [64, 3, 2]]]


def test_yolov5s_table_matches_upstream(log_lines):
    layers, save = parse_model(load("yolov5s.yaml"), ch=[3])
    assert [m.np for m in layers] == YOLOV5S_NP
    assert save == [4, 6, 10, 14, 17, 20, 23]
    assert [m.i for m in layers] == list(range(25))
    assert layers[12].f == [-1, 6] and layers[24].f == [17, 20, 23]
    assert layers[4].type == "models.common.C3"
    assert layers[11].type == "torch.nn.modules.upsampling.Upsample"
    assert layers[24].type == "models.yolo.Detect"
    assert len(layers[4].m) == 3 and len(layers[9].m) == 1  # C3 repeats moved into the block
    header = next(line for line in log_lines if "params" in line)
    assert header.split() == ["from", "n", "params", "module", "arguments"]
    rows = [line for line in log_lines if line.strip().startswith(("8 ", "11 "))]
    assert "[512, 512, [5, 9, 13]]" in rows[0] and "[None, 2, 'nearest']" in rows[1]


def test_yolov5s_constructor_args(log_lines):
    parse_model(load("yolov5s.yaml"), ch=[3])
    table = {int(line.split()[0]): line for line in log_lines if line.strip()[:2].strip().isdigit()}
    for i, args in YOLOV5S_ARGS.items():
        assert str(args) in table[i], (i, table[i])


@pytest.mark.parametrize("gd,gw,c3_repeats,widths", [
    (0.67, 0.75, [2, 6, 6, 2], [48, 96, 192, 384, 768]),
    (1.33, 1.25, [4, 12, 12, 4], [80, 160, 320, 640, 1280]),
])
def test_depth_and_width_scaling(gd, gw, c3_repeats, widths):
    d = load("yolov5s.yaml")
    d["depth_multiple"], d["width_multiple"] = gd, gw
    layers, _ = parse_model(d, ch=[3])
    assert [len(layers[i].m) for i in (2, 4, 6, 9)] == c3_repeats
    assert [layers[i].conv.conv.out_channels if i == 0 else layers[i].conv.out_channels
            for i in (0, 1, 3, 5, 7)] == widths
    assert layers[24].m[0].out_channels == 3 * 85  # Detect outputs are never width-scaled


def test_non_insert_modules_repeat_as_sequential():
    d = tiny([[-1, 1, "Conv", [16, 3, 2]], [-1, 3, "Conv", [16, 3, 1]], [-1, 1, "Conv", [32, 3, 2]],
              [-1, 1, "Conv", [64, 3, 2]]], gd=0.67)
    layers, _ = parse_model(d, ch=[3])
    assert isinstance(layers[1], nn.Sequential) and len(layers[1]) == 2  # round(3 * 0.67) = 2


def test_string_args_resolution():
    names = {"nc": 7, "anchors": [[1, 2]], "None": None, "True": True, "False": False}
    assert resolve_arg(["nc", "anchors", "None", "True", "False"], names) == [7, [[1, 2]], None, True, False]
    assert resolve_arg(["3", "-2", "0.5", "1e-3", "[5, 9, 13]", "nearest"], names) == [3, -2, 0.5, 1e-3,
                                                                                       [5, 9, 13], "nearest"]
    assert resolve_arg("[nc, 2]", names) == [7, 2]
    for bad in ("nn.ReLU()", "os.system", "1 + 1", "__class__", "lambda: 0", "[().__class__]"):
        with pytest.raises(ValueError):
            resolve_arg(bad, names)


def test_module_resolution():
    assert resolve_module("C3") is common.C3
    assert resolve_module("nn.Upsample") is nn.Upsample
    assert resolve_module("torch.nn.BatchNorm2d") is nn.BatchNorm2d
    assert resolve_module("Upsample") is nn.Upsample  # bare torch.nn layer name
    assert resolve_module("Detect") is Detect
    for bad in ("nn.functional", "nn.__class__", "C3.__init__", "eval", "nn.Upsample()", "Conv; x"):
        with pytest.raises(ValueError):
            resolve_module(bad)


def test_mobile_blocks_are_conv_like():
    from models.blocks.mobile import MOBILE_BLOCKS
    name = next(k for k, v in MOBILE_BLOCKS.items() if v.__name__ == "conv_bn_hswish")
    d = tiny([[-1, 1, name, [20, 2]], [-1, 1, "Conv", [32, 3, 2]], [-1, 1, "Conv", [32, 3, 2]],
              [-1, 1, "Conv", [64, 3, 2]]], gw=0.5)
    layers, _ = parse_model(d, ch=[5])
    x = torch.zeros(1, 5, 32, 32)
    assert layers[0](x).shape == (1, 16, 16, 16)  # c1 = ch[from] prepended; 20 * 0.5 = 10 -> 16 (multiple of 8)
    assert layers[1].conv.in_channels == 16  # the parser recorded the scaled width


def test_parse_model_never_evaluates(monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("eval/exec called while parsing a model yaml")
    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    layers, _ = parse_model(load("yolov5s.yaml"), ch=[3])
    assert len(layers) == 25


@pytest.mark.parametrize("where", ["module", "arg"])
def test_import_payload_rejected_and_not_executed(tmp_path, where):
    sentinel = tmp_path / "pwned"
    payload = f"__import__('os').system('touch {sentinel}')"
    backbone = deepcopy(TINY_BACKBONE)
    if where == "module":
        backbone[1] = [-1, 1, payload, [32, 3, 2]]
    else:
        backbone[1] = [-1, 1, "Conv", [32, payload, 2]]
    cfg = tmp_path / "evil.yaml"
    cfg.write_text(yaml.safe_dump(tiny(backbone)))
    with pytest.raises(ModelYamlError) as e:
        Model(str(cfg))
    msg = str(e.value)
    assert "evil.yaml" in msg and "backbone row 1 (layer 1)" in msg and "__import__" in msg
    assert not sentinel.exists()


def test_unknown_module_names_row(tmp_path):
    head = [[-1, 1, "Conv", [64, 1, 1]], [-1, 1, "C3x", [64]], [[3, 5], 1, "Detect", ["nc", "anchors"]]]
    cfg = tmp_path / "bad_module.yaml"
    cfg.write_text(yaml.safe_dump(tiny(TINY_BACKBONE, head)))
    with pytest.raises(ModelYamlError, match=r"bad_module\.yaml: head row 1 \(layer 5\) .*unknown module 'C3x'"):
        Model(str(cfg))


@pytest.mark.parametrize("f,words", [(7, "later layer"), ([-1, 9], "later layer"), (-9, "before the first layer"),
                                     ("-1", "int")])
def test_bad_from_index(f, words):
    backbone = deepcopy(TINY_BACKBONE)
    backbone[2] = [f, 1, "Conv", [32, 3, 2]] if not isinstance(f, list) else [f, 1, "Concat", [1]]
    with pytest.raises(ModelYamlError) as e:
        parse_model(tiny(backbone), ch=[3], source="from.yaml")
    assert "from.yaml: backbone row 2 (layer 2)" in str(e.value) and words in str(e.value)


def test_wrong_arg_count_names_row():
    backbone = deepcopy(TINY_BACKBONE)
    backbone[3] = [-1, 1, "Conv", [64, 3, 2, None, 1, True, "extra", 5]]
    with pytest.raises(ModelYamlError, match=r"backbone row 3 \(layer 3\).*cannot build Conv.*TypeError"):
        parse_model(tiny(backbone), ch=[3])


def test_missing_keys_and_bad_values():
    d = tiny(TINY_BACKBONE)
    del d["head"]
    with pytest.raises(ModelYamlError, match="missing top-level key 'head'"):
        parse_model(d, ch=[3])
    d = tiny(TINY_BACKBONE)
    d["width_multiple"] = "0.5; rm -rf"
    with pytest.raises(ModelYamlError, match="width_multiple"):
        parse_model(d, ch=[3])
    d = tiny(TINY_BACKBONE)
    d["backbone"][0] = [-1, 1, "Conv"]
    with pytest.raises(ModelYamlError, match="row 0.*\\[from, number, module, args\\]"):
        parse_model(d, ch=[3])


def test_int_anchors_become_placeholders():
    d = tiny(TINY_BACKBONE)
    d["anchors"] = 3
    layers, _ = parse_model(d, ch=[3])
    det = layers[-1]
    assert det.na == 3 and det.nl == 2 and det.anchors.shape == (2, 3, 2)


def test_contract_expand_channels():
    d = tiny([[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Contract", [2]], [-1, 1, "Expand", [2]],
              [-1, 1, "Conv", [32, 3, 2]], [-1, 1, "Conv", [64, 3, 2]]])
    layers, _ = parse_model(d, ch=[3])
    assert layers[3].conv.in_channels == 16  # 16 * 4 after Contract, // 4 after Expand
    x = torch.rand(1, 16, 8, 8)
    assert torch.equal(layers[2](layers[1](x)), x)  # Expand inverts Contract
