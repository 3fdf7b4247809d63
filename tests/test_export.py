"""export.py / models/export.py / engine.export / engine.formats / engine.backends: every format written, verified
in its own runtime, run by DetectMultiBackend, val.py and detect.py against PyTorch; metadata; class activation.

One tiny 64-px model (tests/detect_helpers.py) is exported to every format once (module fixture): the slow
converters (ExecuTorch, TFLite, CoreML) take ~30-60 s each on a loaded 2-core machine.
"""
import json
import logging
import platform
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from detect_helpers import NAMES, ROOT, make_export_checkpoint
from train_helpers import make_dataset

IMG = 64  # export size: 3 levels of 8x8, 4x4, 2x2 cells -> 252 boxes
ALL = ["torchscript", "onnx", "ptl", "ncnn", "executorch", "tflite", "openvino", "coreml"]
FILES = {"torchscript": "soft.torchscript.pt", "onnx": "soft.onnx", "ptl": "soft.torchscript.ptl",
         "ncnn": "soft.ncnn.param", "executorch": "soft.pte", "tflite": "soft.tflite",
         "openvino": "soft_openvino_model", "coreml": "soft.mlpackage"}
RUNNABLE = [f for f in ALL if f != "coreml" or platform.system() == "Darwin"]
GROUPS = [[0, 1], {"classes": [2], "parent": 0}]  # circle | square, triangle refines circle


class Captured(list):
    """Messages of the 'yolov5' logger while in the block (a module fixture cannot use log_lines)."""

    def __enter__(self):
        self.handler = logging.Handler(logging.DEBUG)
        self.handler.emit = lambda record: self.append(record.getMessage())
        self.logger = logging.getLogger("yolov5")
        self.level = self.logger.level
        self.logger.addHandler(self.handler)
        self.logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.level)


@pytest.fixture(scope="module")
def wdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    make_export_checkpoint(d / "sig.pt", "sigmoid")
    make_export_checkpoint(d / "soft.pt", "softmax")
    return d


@pytest.fixture(scope="module")
def soft_all(wdir):
    """The softmax model exported to every format (decoded, 64x64); (files by format, log lines)."""
    import export
    with Captured() as log:
        files = export.run(weights=[str(wdir / "soft.pt")], imgsz=[IMG], include=ALL)
    return dict(zip(ALL, files)), list(log)


@pytest.fixture(scope="module")
def data_yaml(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("ds"), n=8, size=IMG)


@pytest.fixture(scope="module")
def int8_files(wdir, data_yaml, tmp_path_factory):
    import export
    d = tmp_path_factory.mktemp("int8")
    (d / "soft.pt").write_bytes((wdir / "soft.pt").read_bytes())
    files = export.run(weights=[str(d / "soft.pt")], imgsz=[IMG], include=["onnx", "tflite"], int8=True,
                       data=str(data_yaml), int8_images=6)
    return dict(zip(["onnx", "tflite"], files))


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


# ------------------------------------------------------------------------------------------------ every format
def test_files_names_and_verification(wdir, soft_all):
    files, log = soft_all
    assert {f: p.name for f, p in files.items()} == FILES  # v5.0 naming: next to the weights, suffix replaced
    assert (wdir / "soft.ncnn.bin").is_file() and (wdir / "soft.ncnn.json").is_file()
    assert sorted(p.name for p in files["openvino"].iterdir()) == ["soft.bin", "soft.xml"]
    assert not [p.name for p in wdir.iterdir() if p.name.startswith(".")]  # no staging folder left behind
    text = "\n".join(log)
    runtimes = ["torch.jit.load", "onnxruntime", "the lite interpreter", "ncnn", "the ExecuTorch runtime (XNNPACK)",
                "the LiteRT interpreter", "the OpenVINO CPU plugin"]
    for runtime in runtimes:  # each file ran in its own runtime on a real image, diffs printed
        assert f"verified with {runtime} on shapes1.jpg (1, 3, {IMG}, {IMG}): max abs diff" in text, runtime
    if platform.system() != "Darwin":
        assert f"spec checked (input images [1, 3, {IMG}, {IMG}], outputs output)" in text
    assert "Export complete" in text and "export failure" not in text


def test_metadata_round_trip_every_format(soft_all):
    """Names, strides, size, the softmax activation and pixel anchors come back from every file."""
    from engine.backends import read_metadata
    files, _ = soft_all
    for fmt, f in files.items():
        meta = read_metadata(f)
        assert meta["cls_act"] == "softmax" and meta["names"] == NAMES and meta["nc"] == 3, fmt
        assert meta["strides"] == [8.0, 16.0, 32.0] and meta["stride"] == 32 and meta["imgsz"] == [IMG, IMG], fmt
        assert meta["output"] == "decoded" and meta["batch"] == 1 and meta["cls_groups"] is None, fmt
        assert meta["anchors"][0] == [10, 13, 16, 30, 33, 23], fmt  # pixel anchors of P3
        assert meta["dynamic"] is (fmt in ("torchscript", "ptl")), fmt  # traces checked at a second shape


def test_metadata_storage_per_format(soft_all):
    """Each format stores the metadata its own way, readable with the format's own tools."""
    import onnx
    files, _ = soft_all
    props = {p.key: p.value for p in onnx.load(str(files["onnx"])).metadata_props}
    assert props["cls_act"] == "softmax" and json.loads(props["names"]) == NAMES
    extra = {"config.txt": ""}
    torch.jit.load(str(files["torchscript"]), _extra_files=extra)
    assert json.loads(extra["config.txt"])["cls_act"] == "softmax"
    with zipfile.ZipFile(files["ptl"]) as z:  # the lite archive carries the same file
        entry = next(n for n in z.namelist() if n.endswith("extra/config.txt"))
        assert json.loads(z.read(entry))["cls_act"] == "softmax"
    assert json.loads(files["ncnn"].with_suffix(".json").read_text())["cls_act"] == "softmax"  # sidecar
    xml = (files["openvino"] / "soft.xml").read_text()
    assert "<yolo_metadata value=" in xml and "softmax" in xml  # rt_info
    assert b"yolo_metadata" in files["tflite"].read_bytes() and b"softmax" in files["tflite"].read_bytes()
    from executorch.runtime import Runtime
    program = Runtime.get().load_program(files["executorch"])
    assert json.loads(program.load_method("metadata").execute([])[0])["cls_act"] == "softmax"
    import coremltools as ct
    spec = ct.models.MLModel(str(files["coreml"]), skip_model_load=True)
    assert json.loads(spec.user_defined_metadata["yolo_metadata"])["cls_act"] == "softmax"


def test_every_runnable_format_matches_pytorch(wdir, soft_all):
    """DetectMultiBackend picks the runtime from the suffix; the CE model stays softmax in every file."""
    from engine.backends import DetectMultiBackend
    files, _ = soft_all
    im = torch.rand(1, 3, IMG, IMG, generator=torch.Generator().manual_seed(1))
    ref = torch_reference(wdir / "soft.pt", im)
    assert ref.shape == (1, 252, 8)
    for fmt in RUNNABLE:
        b = DetectMultiBackend(files[fmt])
        assert (b.format, b.stride, b.names, b.nc, b.cls_act, b.raw) == (
            "jit" if fmt == "torchscript" else fmt, 32, NAMES, 3, "softmax", False), fmt
        if fmt in ("torchscript", "ptl"):
            assert b.fixed_shape is None  # shape-generic traces
        else:
            assert b.fixed_shape == (IMG, IMG) and b.batch_size == 1, fmt
        out = b(im)
        torch.testing.assert_close(out, ref, atol=2e-3, rtol=1e-4, msg=fmt)
        torch.testing.assert_close(out[..., 5:].sum(-1), torch.ones(1, 252), atol=1e-5, rtol=0, msg=fmt)
        y, extra = b(torch.cat((im, im, im)), val=True)  # a batch of 3 runs in chunks of the export batch
        assert extra == [] and y.shape == (3, 252, 8)
        torch.testing.assert_close(y[2:], out, atol=1e-5, rtol=0)


@pytest.mark.skipif(platform.system() == "Darwin", reason="CoreML runs on macOS")
def test_coreml_elsewhere_is_one_clear_error(soft_all):
    from engine.backends import BackendError, DetectMultiBackend
    with pytest.raises(BackendError, match="CoreML models run on macOS / iOS only"):
        DetectMultiBackend(soft_all[0]["coreml"])


def test_val_and_detect_run_every_format(wdir, soft_all, data_yaml, tmp_path):
    """val.py and detect.py take every runnable file like the .pt: same mAP, same label files."""
    import val
    from engine.predict import run as detect
    files, _ = soft_all
    weights = {"pt": wdir / "soft.pt", **{f: files[f] for f in RUNNABLE}}
    kw = dict(imgsz=IMG, batch_size=2, plots=False, conf_thres=0.01, device="cpu", workers=0)
    results, labels = {}, {}
    for fmt, w in weights.items():
        results[fmt] = val.run(str(data_yaml), weights=str(w), project=tmp_path / "val", name=fmt, **kw)
        out = detect(weights=str(w), source=str(ROOT / "data" / "images"), imgsz=IMG, save_txt=True, fp32=True,
                     save_conf=True, conf_thres=0.1, project=str(tmp_path / "detect"), name=fmt, device="cpu")
        assert sorted(p.name for p in out.glob("*.jpg")) == [f"shapes{i}.jpg" for i in range(1, 5)], fmt
        labels[fmt] = {p.name: np.loadtxt(p, ndmin=2) for p in (out / "labels").glob("*.txt")}
    for fmt in RUNNABLE:
        # shape-generic files letterbox like the .pt (minimal padding); fixed-shape ones like ONNX (square)
        ref = "pt" if fmt in ("torchscript", "ptl") else "onnx"
        (r, maps, _), (r0, maps0, _) = results[fmt], results[ref]
        assert r[:4] == pytest.approx(r0[:4], abs=1e-3) and maps == pytest.approx(maps0, abs=1e-3), fmt
        assert labels[fmt].keys() == labels[ref].keys() and labels[ref], fmt
        for name, rows in labels[ref].items():
            np.testing.assert_allclose(labels[fmt][name], rows, atol=2e-3, err_msg=f"{fmt} {name}")


# ---------------------------------------------------------------------------------------- activation, raw, grouped
def test_class_activation_travels(wdir, soft_all):
    """Softmax model: class columns of the exported output sum to 1. Sigmoid model: they do not."""
    import export
    export.run(weights=[str(wdir / "sig.pt")], imgsz=[IMG], include=["onnx"])
    im = torch.rand(1, 3, IMG, IMG, generator=torch.Generator().manual_seed(2))
    _, (soft,) = ort_run(wdir / "soft.onnx", im)
    _, (sig,) = ort_run(wdir / "sig.onnx", im)
    torch.testing.assert_close(soft[..., 5:].sum(-1), torch.ones(soft.shape[:2]), atol=1e-5, rtol=0)
    assert (sig[..., 5:].sum(-1) - 1).abs().max() > 0.1
    assert ((sig[..., 5:] > 0) & (sig[..., 5:] < 1)).all()


def test_raw_heads_export_decodes_like_decoded_export(wdir, tmp_path):
    """--train writes the raw level maps (the model's own for ONNX / TorchScript, RawHead for ncnn); the backend
    decodes them with the recorded anchors + softmax."""
    import export
    from engine.backends import DetectMultiBackend, read_metadata
    raw_pt = tmp_path / "soft.pt"
    raw_pt.write_bytes((wdir / "soft.pt").read_bytes())
    files = export.run(weights=[str(raw_pt)], imgsz=[IMG], include=["onnx", "torchscript", "ncnn"], train=True)
    meta = read_metadata(tmp_path / "soft.onnx")
    assert meta["output"] == "raw" and meta["cls_act"] == "softmax"
    im = torch.rand(1, 3, IMG, IMG, generator=torch.Generator().manual_seed(3))
    session, outs = ort_run(tmp_path / "soft.onnx", im)
    assert [tuple(o.shape) for o in outs] == [(1, 3, 8, 8, 8), (1, 3, 4, 4, 8), (1, 3, 2, 2, 8)]
    assert [o.name for o in session.get_outputs()] == ["output", "output1", "output2"]
    ref = torch_reference(wdir / "soft.pt", im)
    for f in files:
        backend = DetectMultiBackend(f)
        assert backend.raw and backend.cls_act == "softmax" and read_metadata(f)["output"] == "raw"
        torch.testing.assert_close(backend(im), ref, atol=2e-3, rtol=1e-4)


def test_grouped_model_in_a_phone_format(tmp_path):
    """A grouped-activation model keeps its groups in ncnn and OpenVINO files (ONNX / TorchScript: test_grouped)."""
    import export
    from engine.backends import DetectMultiBackend, read_metadata
    w = make_export_checkpoint(tmp_path / "grouped.pt", "grouped", groups=GROUPS)
    files = export.run(weights=[str(w)], imgsz=[IMG], include=["ncnn", "openvino"])
    im = torch.rand(1, 3, IMG, IMG, generator=torch.Generator().manual_seed(5))
    ref = torch_reference(w, im)
    cls = ref[..., 5:]
    assert (cls[..., 2] < cls[..., 0] - 1e-3).any()  # the hierarchy is visible in this model's scores
    for f in files:
        meta = read_metadata(f)
        assert meta["cls_act"] == "grouped" and meta["cls_groups"] == GROUPS, f
        out = DetectMultiBackend(f)(im)
        torch.testing.assert_close(out, ref, atol=2e-3, rtol=1e-4)
        torch.testing.assert_close(out[..., 5] + out[..., 6], torch.ones(1, 252), atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------------------- int8
def int8_tensors(f: Path) -> int:
    """How many int8 tensors the file stores (ONNX initializers / TFLite tensors)."""
    if f.suffix == ".onnx":
        import onnx
        return sum(i.data_type == onnx.TensorProto.INT8 for i in onnx.load(str(f)).graph.initializer)
    from ai_edge_litert.interpreter import Interpreter
    return sum(d["dtype"] == np.int8 for d in Interpreter(model_path=str(f)).get_tensor_details())


def test_int8_onnx_and_tflite(int8_files, wdir, data_yaml, tmp_path):
    """Static int8 files: smaller, metadata with the int8 recipe, run by the backend, val and detect."""
    import val
    from engine.backends import DetectMultiBackend, read_metadata
    assert int8_files["onnx"].name == "soft.int8.onnx" and int8_files["tflite"].name == "soft.int8.tflite"
    im = torch.rand(1, 3, IMG, IMG, generator=torch.Generator().manual_seed(6))
    ref = torch_reference(wdir / "soft.pt", im)
    for fmt, f in int8_files.items():
        meta = read_metadata(f)
        assert meta["cls_act"] == "softmax" and meta["int8"]["calibration_images"] == 6, fmt
        assert int8_tensors(f) >= 5, fmt  # the features' weights (and activations) are int8 tensors
        out = DetectMultiBackend(f)(im)
        assert out.shape == ref.shape and torch.isfinite(out).all()
        torch.testing.assert_close(out[..., 5:].sum(-1), torch.ones(1, 252), atol=1e-4, rtol=0)  # float tail
        assert (out[..., :4] - ref[..., :4]).abs().mean() < 0.05 * IMG, fmt
        r, _, _ = val.run(str(data_yaml), weights=str(f), imgsz=IMG, batch_size=2, plots=False, device="cpu",
                          workers=0, project=tmp_path, name=fmt)
        assert len(r) == 7


def test_int8_flags(wdir, log_lines):
    import export
    w = str(wdir / "soft.pt")
    assert export.cli(["--weights", w, "--include", "onnx", "ncnn", "--int8", "--data", "x.yaml"]) == 1
    assert "--int8 exports onnx, tflite only" in log_lines.text()
    assert export.cli(["--weights", w, "--include", "onnx", "--int8"]) == 1
    assert "--int8 needs --data" in log_lines.text()
    assert export.cli(["--weights", w, "--include", "onnx", "--int8", "--train", "--data", "x.yaml"]) == 1
    assert "drop --train" in log_lines.text()
    assert export.cli(["--weights", w, "--include", "onnx", "--int8", "--data", "x.yaml", "--int8-images", "0"]) == 1
    assert "--int8-images 0: give 1 to 1000" in log_lines.text()


# -------------------------------------------------------------------------------------------- ONNX / TorchScript
def test_dynamic_onnx_runs_at_other_shapes(wdir, tmp_path):
    import export
    w = tmp_path / "sig.pt"
    w.write_bytes((wdir / "sig.pt").read_bytes())
    export.run(weights=[str(w)], imgsz=[IMG], include=["onnx"], dynamic=True)
    im = torch.rand(2, 3, 96, 64, generator=torch.Generator().manual_seed(4))
    _, (out,) = ort_run(tmp_path / "sig.onnx", im)
    torch.testing.assert_close(out, torch_reference(w, im), atol=2e-3, rtol=1e-4)


def test_backend_api(wdir, soft_all, tmp_path):
    from engine.backends import BackendError, DetectMultiBackend
    files, _ = soft_all
    onnx_backend = DetectMultiBackend(files["onnx"])
    im = torch.rand(3, 3, IMG, IMG)
    y = onnx_backend(im)
    with pytest.raises(BackendError, match=f"exported for {IMG}x{IMG}"):
        onnx_backend(torch.rand(1, 3, 32, 64))
    ts_backend = DetectMultiBackend(files["torchscript"])  # shape-generic trace: any shape, any batch
    assert ts_backend.fixed_shape is None and ts_backend.batch_size is None
    x = torch.rand(2, 3, 32, 96)
    torch.testing.assert_close(ts_backend(x), torch_reference(wdir / "soft.pt", x), atol=2e-3, rtol=1e-4)
    # a third-party ONNX file without metadata still runs: geometry from the graph, nc from the output width
    import onnx
    bare = onnx.load(str(files["onnx"]))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    b = DetectMultiBackend(tmp_path / "bare.onnx")
    assert (b.fixed_shape, b.batch_size, b.nc, b.names) == ((IMG, IMG), 1, 3, ["class0", "class1", "class2"])
    torch.testing.assert_close(b(im[:1]), y[:1])
    with pytest.raises(BackendError, match="unsupported weights 'model.h5'"):
        DetectMultiBackend("model.h5")
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        DetectMultiBackend(wdir / "missing.onnx")
    b = DetectMultiBackend(files["openvino"] / "soft.xml")  # the .xml works as well as its folder
    assert b.openvino and b.fixed_shape == (IMG, IMG)
    folder = tmp_path / "soft_ncnn_model"  # an ncnn folder holding the three files
    folder.mkdir()
    for suffix in (".param", ".bin", ".json"):
        (folder / f"soft.ncnn{suffix}").write_bytes(files["ncnn"].with_suffix(suffix).read_bytes())
    b = DetectMultiBackend(folder)
    assert b.ncnn and b.cls_act == "softmax" and b.fixed_shape == (IMG, IMG)
    torch.testing.assert_close(b(im[:1]), y[:1], atol=2e-3, rtol=1e-4)


def test_verification_catches_a_mismatch(wdir, soft_all):
    """The check that guards every export can fail: a different model does not verify against the file."""
    from engine import export
    from engine.checkpoint import attempt_load
    from engine.formats import onnx as onnx_format
    other = attempt_load(str(wdir / "sig.pt"), map_location="cpu")  # sigmoid classes vs the softmax file
    for m in other.modules():
        if hasattr(m, "anchors"):
            m.export = True
    im = export.sample_images((IMG, IMG), 1)[0]
    meta = export.export_metadata(other, (IMG, IMG), 1, raw=False, dynamic=False, half=False)
    with pytest.raises(export.ExportError, match="does not reproduce the PyTorch model"):
        export.verify_file(onnx_format, soft_all[0]["onnx"], export.ExportModel(other), im, meta, "test", "")


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
    assert "--include paddle: unsupported format" in log_lines.text()
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
    from engine.formats.torchscript import xnnpack_enabled
    w = tmp_path / "sig.pt"
    w.write_bytes((wdir / "sig.pt").read_bytes())
    files = export.run(weights=[str(w)], imgsz=[IMG], include=["torchscript", "onnx"], optimize=True,
                       simplify=True)
    assert len(files) == 2
    err = log_lines.text()
    if not xnnpack_enabled():
        assert "no XNNPACK" in err
    has_simplifier = importlib.util.find_spec("onnxslim") or importlib.util.find_spec("onnxsim")
    assert ("--simplify needs" in err) != bool(has_simplifier)
