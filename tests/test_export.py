"""export.py / models/export.py / engine.backends: formats, metadata, numerical agreement, class activation, errors."""
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from detect_helpers import NAMES, ROOT, make_checkpoint
IMG = 64  # export size: 3 levels of 8x8, 4x4, 2x2 cells -> 252 boxes


@pytest.fixture(scope="module")
def wdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    make_checkpoint(d / "sig.pt", "sigmoid")
    make_checkpoint(d / "soft.pt", "softmax")
    return d


@pytest.fixture(scope="module")
def soft_exports(wdir):
    """softmax model exported to every format (decoded) at 64x64."""
    import export
    files = export.run(weights=[str(wdir / "soft.pt")], imgsz=[IMG], include=["torchscript", "onnx", "ptl"])
    return {f.suffix if f.suffix != ".pt" else ".torchscript.pt": f for f in files}


def torch_reference(weights: Path, im: torch.Tensor) -> torch.Tensor:
    from engine.checkpoint import attempt_load
    model = attempt_load(str(weights), map_location="cpu")
    with torch.no_grad():
        return model(im)[0]


def ort_run(f: Path, im: torch.Tensor):
    from engine.backends import ort_session_options
    import onnxruntime as ort
    s = ort.InferenceSession(str(f), sess_options=ort_session_options(), providers=["CPUExecutionProvider"])
    return s, [torch.from_numpy(o) for o in s.run(None, {"images": im.numpy()})]


def test_files_names_and_metadata(wdir, soft_exports):
    assert soft_exports[".torchscript.pt"] == wdir / "soft.torchscript.pt"  # v5.0 naming, next to the weights
    assert soft_exports[".onnx"] == wdir / "soft.onnx"
    assert soft_exports[".ptl"] == wdir / "soft.torchscript.ptl"
    import onnx
    props = {p.key: p.value for p in onnx.load(str(wdir / "soft.onnx")).metadata_props}
    assert props["cls_act"] == "softmax"
    assert json.loads(props["names"]) == NAMES and json.loads(props["stride"]) == 32
    assert json.loads(props["imgsz"]) == [IMG, IMG] and props["output"] == "decoded"
    assert json.loads(props["strides"]) == [8.0, 16.0, 32.0]
    assert json.loads(props["dynamic"]) is False  # static ONNX unless --dynamic (upstream default)
    # TorchScript extra file, read through torch's own API
    extra = {"config.txt": ""}
    torch.jit.load(str(wdir / "soft.torchscript.pt"), _extra_files=extra)
    cfg = json.loads(extra["config.txt"])
    assert cfg["cls_act"] == "softmax" and cfg["names"] == NAMES and cfg["imgsz"] == [IMG, IMG]
    assert cfg["anchors"][0] == [10, 13, 16, 30, 33, 23]  # pixel anchors of P3
    assert cfg["dynamic"] is True  # the trace was checked at a second shape before saving
    with zipfile.ZipFile(wdir / "soft.torchscript.ptl") as z:  # the lite archive carries the same file
        entry = next(n for n in z.namelist() if n.endswith("extra/config.txt"))
        assert json.loads(z.read(entry))["cls_act"] == "softmax"


def test_onnx_and_torchscript_match_pytorch(wdir, soft_exports):
    im = torch.rand(1, 3, IMG, IMG, generator=torch.Generator().manual_seed(1))
    ref = torch_reference(wdir / "soft.pt", im)
    session, (out,) = ort_run(wdir / "soft.onnx", im)
    assert [o.name for o in session.get_outputs()] == ["output"] and session.get_inputs()[0].name == "images"
    assert out.shape == (1, 3 * (8 * 8 + 4 * 4 + 2 * 2), 5 + len(NAMES)) == ref.shape
    torch.testing.assert_close(out, ref, atol=2e-3, rtol=1e-4)
    ts = torch.jit.load(str(wdir / "soft.torchscript.pt"))
    torch.testing.assert_close(ts(im), ref, atol=2e-3, rtol=1e-4)
    from torch.jit.mobile import _load_for_lite_interpreter
    torch.testing.assert_close(_load_for_lite_interpreter(str(wdir / "soft.torchscript.ptl"))(im), ref,
                               atol=2e-3, rtol=1e-4)


def test_class_activation_travels(wdir, soft_exports):
    """Softmax model: class columns of the exported output sum to 1. Sigmoid model: they do not."""
    import export
    export.run(weights=[str(wdir / "sig.pt")], imgsz=[IMG], include=["onnx"])
    im = torch.rand(1, 3, IMG, IMG, generator=torch.Generator().manual_seed(2))
    _, (soft,) = ort_run(wdir / "soft.onnx", im)
    _, (sig,) = ort_run(wdir / "sig.onnx", im)
    torch.testing.assert_close(soft[..., 5:].sum(-1), torch.ones(soft.shape[:2]), atol=1e-5, rtol=0)
    assert (sig[..., 5:].sum(-1) - 1).abs().max() > 0.1
    assert ((sig[..., 5:] > 0) & (sig[..., 5:] < 1)).all()


def test_raw_heads_export_decodes_like_decoded_export(wdir, soft_exports, tmp_path):
    """--train writes the raw level maps; the backend decodes them with the recorded anchors + softmax."""
    import export
    from engine.backends import DetectMultiBackend, read_metadata
    raw_pt = tmp_path / "soft.pt"
    raw_pt.write_bytes((wdir / "soft.pt").read_bytes())
    files = export.run(weights=[str(raw_pt)], imgsz=[IMG], include=["onnx", "torchscript"], train=True)
    meta = read_metadata(tmp_path / "soft.onnx")
    assert meta["output"] == "raw" and meta["cls_act"] == "softmax"
    im = torch.rand(1, 3, IMG, IMG, generator=torch.Generator().manual_seed(3))
    session, outs = ort_run(tmp_path / "soft.onnx", im)
    assert [tuple(o.shape) for o in outs] == [(1, 3, 8, 8, 8), (1, 3, 4, 4, 8), (1, 3, 2, 2, 8)]
    assert [o.name for o in session.get_outputs()] == ["output", "output1", "output2"]
    ref = torch_reference(wdir / "soft.pt", im)
    for f in files:
        backend = DetectMultiBackend(f)
        assert backend.raw and backend.cls_act == "softmax"
        torch.testing.assert_close(backend(im), ref, atol=2e-3, rtol=1e-4)


def test_dynamic_onnx_runs_at_other_shapes(wdir, tmp_path):
    import export
    w = tmp_path / "sig.pt"
    w.write_bytes((wdir / "sig.pt").read_bytes())
    export.run(weights=[str(w)], imgsz=[IMG], include=["onnx"], dynamic=True)
    im = torch.rand(2, 3, 96, 64, generator=torch.Generator().manual_seed(4))
    _, (out,) = ort_run(tmp_path / "sig.onnx", im)
    torch.testing.assert_close(out, torch_reference(w, im), atol=2e-3, rtol=1e-4)


def test_backend_api(wdir, soft_exports, tmp_path):
    from engine.backends import BackendError, DetectMultiBackend
    for f in [wdir / "soft.pt", *soft_exports.values()]:
        b = DetectMultiBackend(f)
        assert (b.stride, b.names, b.nc, b.cls_act) == (32, NAMES, 3, "softmax")
        assert sum((b.pt, b.jit, b.ptl, b.onnx)) == 1
    onnx_backend = DetectMultiBackend(soft_exports[".onnx"])
    assert onnx_backend.fixed_shape == (IMG, IMG) and onnx_backend.batch_size == 1
    im = torch.rand(3, 3, IMG, IMG)  # fixed batch 1 export: run in chunks
    y, extra = onnx_backend(im, val=True)
    assert y.shape == (3, 252, 8) and extra == []
    torch.testing.assert_close(y[1:2], onnx_backend(im[1:2]))
    with pytest.raises(BackendError, match=f"exported for {IMG}x{IMG}"):
        onnx_backend(torch.rand(1, 3, 32, 64))
    ts_backend = DetectMultiBackend(soft_exports[".torchscript.pt"])  # shape-generic trace: any shape, any batch
    assert ts_backend.fixed_shape is None and ts_backend.batch_size is None
    x = torch.rand(2, 3, 32, 96)
    torch.testing.assert_close(ts_backend(x), torch_reference(wdir / "soft.pt", x), atol=2e-3, rtol=1e-4)
    # a third-party ONNX file without metadata still runs: geometry from the graph, nc from the output width
    import onnx
    bare = onnx.load(str(soft_exports[".onnx"]))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    b = DetectMultiBackend(tmp_path / "bare.onnx")
    assert (b.fixed_shape, b.batch_size, b.nc, b.names) == ((IMG, IMG), 1, 3, ["class0", "class1", "class2"])
    torch.testing.assert_close(b(im[:1]), y[:1])
    with pytest.raises(BackendError, match="unsupported weights 'model.h5'"):
        DetectMultiBackend("model.h5")
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        DetectMultiBackend(wdir / "missing.onnx")


def test_verification_catches_a_mismatch(wdir, soft_exports):
    """The check that guards every export can fail: a different model does not verify against the file."""
    from engine import export
    from engine.formats import onnx as onnx_format
    from engine.checkpoint import attempt_load
    other = attempt_load(str(wdir / "sig.pt"), map_location="cpu")  # sigmoid classes vs the softmax file
    for m in other.modules():
        if hasattr(m, "anchors"):
            m.export = True
    im = export.sample_images((IMG, IMG), 1)[0]
    meta = export.export_metadata(other, (IMG, IMG), 1, raw=False, dynamic=False, half=False)
    with pytest.raises(export.ExportError, match="does not reproduce the PyTorch model"):
        export.verify_file(onnx_format, soft_exports[".onnx"], export.ExportModel(other), im, meta, "test", "")


def test_export_cli_errors(tmp_path, log_lines):
    import export
    bogus = tmp_path / "notes.pt"
    bogus.write_text("these are not weights")
    assert export.cli(["--weights", str(bogus), "--img", "64"]) == 1
    err = log_lines.text()
    assert "notes.pt" in err and "not a" in err and "checkpoint" in err
    assert export.cli(["--weights", str(tmp_path / "absent.pt")]) == 1
    assert "weights not found" in log_lines.text()
    assert export.cli(["--weights", str(bogus), "--include", "paddle"]) == 1
    assert "unsupported format" in log_lines.text()
    assert export.cli(["--weights", str(bogus), "--half"]) == 1  # CPU
    assert "needs a CUDA device" in log_lines.text()
    assert not list(tmp_path.glob("notes.*onnx")) and not list(tmp_path.glob("*.torchscript*"))


def test_v50_command_line(wdir, tmp_path):
    """`python models/export.py --img 64 --batch 1 --grid --weights w.pt` (v5.0 CI line) exports and verifies."""
    w = tmp_path / "sig.pt"
    w.write_bytes((wdir / "sig.pt").read_bytes())
    r = subprocess.run([sys.executable, "models/export.py", "--img", "64", "--batch", "1", "--grid",
                        "--weights", str(w)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "sig.torchscript.pt").is_file() and (tmp_path / "sig.onnx").is_file()
    assert "verified with onnxruntime" in r.stderr and "max abs diff" in r.stderr


def test_optimize_and_simplify_flags(wdir, tmp_path, log_lines):
    import importlib.util
    import export
    w = tmp_path / "sig.pt"
    w.write_bytes((wdir / "sig.pt").read_bytes())
    files = export.run(weights=[str(w)], imgsz=[IMG], include=["torchscript", "onnx"], optimize=True,
                       simplify=True)
    assert len(files) == 2
    err = log_lines.text()
    from engine.formats.torchscript import xnnpack_enabled
    if not xnnpack_enabled():
        assert "no XNNPACK" in err
    has_simplifier = importlib.util.find_spec("onnxslim") or importlib.util.find_spec("onnxsim")
    assert ("--simplify needs" in err) != bool(has_simplifier)
