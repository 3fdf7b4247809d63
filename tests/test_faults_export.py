"""Export and exported-weights faults: a missing optional package, a file that fails verification or conversion,
damaged exported files. Each is one ERROR line naming the file / package, and nothing half-written is left."""
import sys
from pathlib import Path

import pytest

from detect_helpers import make_export_checkpoint

IMG = 64
OPTIONAL = [("ncnn", "ncnn", "ncnn"), ("ncnn", "pnnx", "pnnx"), ("executorch", "executorch.exir", "executorch"),
            ("tflite", "litert_torch", "litert-torch"), ("openvino", "openvino", "openvino"),
            ("coreml", "coremltools", "coremltools")]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return make_export_checkpoint(tmp_path_factory.mktemp("faults") / "w.pt", "softmax")


def _copy(weights: Path, folder: Path) -> Path:
    w = folder / weights.name
    w.write_bytes(weights.read_bytes())
    return w


def _left(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if p.name != "w.pt")


@pytest.mark.parametrize("fmt,module,package", OPTIONAL)
def test_missing_exporter_package(weights, tmp_path, monkeypatch, log_lines, fmt, module, package):
    """The import fails (simulated): one line naming the package and both pip commands; nothing written."""
    import export
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    w = _copy(weights, tmp_path)
    assert export.cli(["--weights", str(w), "--img", str(IMG), "--include", "onnx", fmt]) == 1
    lines = [line for line in log_lines if "ERROR" in line]
    assert len(lines) == 1, lines
    assert f"'{package}' package" in lines[0] and f"--include {fmt}" in lines[0]
    assert "pip install -r requirements-export.txt" in lines[0] and f"pip install {package}" in lines[0]
    assert _left(tmp_path) == []  # checked before anything is exported, not even the ONNX file


def test_missing_int8_package(weights, tmp_path, monkeypatch, log_lines):
    import export
    monkeypatch.setitem(sys.modules, "ai_edge_quantizer", None)
    w = _copy(weights, tmp_path)
    assert export.cli(["--weights", str(w), "--include", "tflite", "--int8", "--data", "x.yaml"]) == 1
    assert "'ai-edge-quantizer' package" in log_lines.text()


def test_missing_runtime_package_when_running(tmp_path, monkeypatch):
    """Running an exported file without its runtime: MissingPackageError (a UserError) naming the package."""
    from engine.backends import DetectMultiBackend
    from engine.formats.base import MissingPackageError
    from utils.errors import UserError
    f = tmp_path / "w.tflite"
    f.write_bytes(b"TFL3 not really")
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(MissingPackageError, match="'ai-edge-litert' package.*requirements-export.txt") as e:
        DetectMultiBackend(f)
    assert isinstance(e.value, UserError)


def test_failed_verification_leaves_nothing(weights, tmp_path, monkeypatch, log_lines):
    """A file that does not reproduce the model is deleted; an older file of the same name is kept as it was."""
    import export
    from engine.export import verify
    w = _copy(weights, tmp_path)
    old = tmp_path / "w.ncnn.param"
    old.write_text("an earlier export")
    monkeypatch.setitem(verify.TOL, "fp32", {"box": -1.0, "score": -1.0})  # nothing can pass
    assert export.cli(["--weights", str(w), "--img", str(IMG), "--include", "ncnn"]) == 1
    assert "does not reproduce the PyTorch model" in log_lines.text()
    assert _left(tmp_path) == ["w.ncnn.param"] and old.read_text() == "an earlier export"


def test_failed_conversion_leaves_nothing(weights, tmp_path, monkeypatch, log_lines):
    """A converter that writes part of its output and then fails: the partial files go with the staging folder."""
    import export
    from engine.formats import ExportError, ncnn

    def half_done(ts_file, shape, param):
        param.write_text("7767517\n")  # the .param header, then the converter dies
        raise ExportError("pnnx could not convert the model (exit code -11): Segmentation fault")

    monkeypatch.setattr(ncnn, "convert", half_done)
    w = _copy(weights, tmp_path)
    assert export.cli(["--weights", str(w), "--img", str(IMG), "--include", "ncnn", "onnx"]) == 1
    err = log_lines.text()
    assert "1 export(s) failed: w.ncnn.param: pnnx could not convert" in err
    assert _left(tmp_path) == ["w.onnx"]  # the other format is still exported


@pytest.mark.parametrize("name,content", [
    ("bad.pte", b"not an executorch program"),
    ("bad.tflite", b"\x00\x01 not a flatbuffer"),
    ("bad.ncnn.param", b"garbage"),
    ("bad_openvino_model/bad.xml", b"<net><layers"),
])
def test_damaged_exported_files_are_one_error_line(tmp_path, log_lines, name, content):
    import detect
    f = tmp_path / name
    f.parent.mkdir(exist_ok=True)
    f.write_bytes(content)
    if name.endswith(".ncnn.param"):  # the companions exist: the .param itself is what is damaged
        (tmp_path / "bad.ncnn.bin").write_bytes(b"\x00" * 16)
        (tmp_path / "bad.ncnn.json").write_text('{"imgsz": [64, 64]}')
    weights = str(f.parent) if "openvino" in name else str(f)
    assert detect.cli(["--weights", weights, "--source", str(tmp_path), "--project", str(tmp_path / "r")]) == 1
    lines = [line for line in log_lines if "ERROR" in line]
    assert len(lines) == 1 and "is not a readable" in lines[0] and "bad" in lines[0], lines
    assert not (tmp_path / "r").exists()


def test_ncnn_without_its_companions(tmp_path):
    from engine.backends import BackendError, DetectMultiBackend
    param = tmp_path / "m.ncnn.param"
    param.write_text("7767517\n")
    with pytest.raises(BackendError, match="needs its metadata file 'm.ncnn.json'"):
        DetectMultiBackend(param)
    (tmp_path / "m.ncnn.json").write_text("{}")
    with pytest.raises(BackendError, match="needs its weights file 'm.ncnn.bin'"):
        DetectMultiBackend(param)
