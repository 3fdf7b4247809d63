"""ncnn (``<w>.ncnn.param`` + ``<w>.ncnn.bin`` + ``<w>.ncnn.json``), converted by pnnx, run by the ncnn bindings.

The fixed-shape converter-friendly graph (FlatDecode; RawHead for ``--train``) is traced to TorchScript and handed
to the pnnx executable with ``inputshape=[1,3,h,w]f32 fp16=0`` (pnnx stores fp16 weights by default: 0.07 px off).
The executable is run directly: pnnx's Python wrapper neither shows its log nor checks its exit code. ncnn has no
batch dimension (batch 1; outputs come back without it and get it back here) and its .param/.bin carry no
free-form field, so the metadata is the JSON sidecar ``<w>.ncnn.json``. Detection also takes a folder
``<name>_ncnn_model`` holding one such .param / .bin / .json set.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Dict, List

import torch
import torch.nn as nn

from engine.formats.base import BackendError, ExportError, Runner, Settings, require
from engine.formats.torchscript import trace

NAME, TITLE, RUNTIME = "ncnn", "ncnn:", "ncnn"
SUFFIX = ".ncnn.param"
FOLDER_SUFFIX = "_ncnn_model"
GRAPH = "flat"
BATCH = 1  # ncnn Mats have no batch dimension


def file_for(weights: Path, int8: bool = False) -> Path:
    return weights.with_suffix(SUFFIX)


def param_file(path: Path) -> Path:
    """The .param of a ``<name>_ncnn_model`` folder (``<name>.ncnn.param``, else its only .param), or ``path``."""
    path = Path(path)
    if not path.is_dir():
        return path
    stem = path.name[:-len(FOLDER_SUFFIX)] if path.name.endswith(FOLDER_SUFFIX) else path.name
    preferred = path / f"{stem}{SUFFIX}"
    found = [preferred] if preferred.is_file() else sorted(path.glob("*.param"))
    if len(found) != 1:
        raise BackendError(f"'{path}': an ncnn folder must hold one .param file, found {len(found)}")
    return found[0]


def bin_file(param: Path) -> Path:
    return Path(param).with_suffix(".bin")


def sidecar(param: Path) -> Path:
    """``<w>.ncnn.param`` -> ``<w>.ncnn.json``."""
    return Path(param).with_suffix(".json")


def convert(ts_file: Path, shape: List[int], param: Path) -> None:
    """Run the pnnx executable; ExportError with the end of its log when it fails."""
    pnnx = require("pnnx", "pnnx", "ncnn export")
    work = ts_file.parent  # pnnx also writes its own .pnnx.* / _ncnn.py files: keep them out of the output folder
    cmd = [pnnx.EXEC_PATH, str(ts_file), f"inputshape=[{','.join(map(str, shape))}]f32", "fp16=0",
           f"ncnnparam={param}", f"ncnnbin={bin_file(param)}", f"pnnxparam={work / 'm.pnnx.param'}",
           f"pnnxbin={work / 'm.pnnx.bin'}", f"pnnxpy={work / 'm_pnnx.py'}", f"pnnxonnx={work / 'm.pnnx.onnx'}",
           f"ncnnpy={work / 'm_ncnn.py'}"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    if r.returncode != 0 or not param.is_file() or not bin_file(param).is_file():
        log = (r.stdout + r.stderr).strip().splitlines()
        raise ExportError(f"pnnx could not convert the model (exit code {r.returncode}): " + " | ".join(log[-5:]))


def export(graph: nn.Module, im: torch.Tensor, file: Path, metadata: Dict[str, Any], settings: Settings,
           prefix: str = TITLE) -> Dict[str, Any]:
    require("ncnn", "ncnn", "ncnn export (verification)")
    file = Path(file).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        ts_file = Path(tmp) / "m.pt"
        trace(graph, im).save(str(ts_file))
        convert(ts_file, list(im.shape), file)
    sidecar(file).write_text(json.dumps(metadata, indent=1))
    return metadata


def read_metadata(file: Path) -> Dict[str, Any]:
    f = sidecar(param_file(file))
    return json.loads(f.read_text()) if f.is_file() else {}


class NcnnRunner(Runner):
    format = NAME

    def __init__(self, file: Path, device: torch.device = torch.device("cpu"), threads: int = 0,
                 half: bool = False):
        file = param_file(file)
        super().__init__(file, device, threads)
        ncnn = require("ncnn", "ncnn", "Running ncnn models")
        if not sidecar(file).is_file():
            raise BackendError(f"'{file}' needs its metadata file '{sidecar(file).name}' next to it "
                               f"(written by export.py: input size, strides, class names)")
        if not bin_file(file).is_file():
            raise BackendError(f"'{file}' needs its weights file '{bin_file(file).name}' next to it")
        self.metadata = read_metadata(file)
        self.net = ncnn.Net()
        opt = self.net.opt  # exact fp32 (ARM builds default to fp16 storage / arithmetic)
        opt.use_fp16_storage = opt.use_fp16_packed = opt.use_fp16_arithmetic = opt.use_bf16_storage = False
        opt.num_threads = self.threads
        if self.net.load_param(str(file)) != 0 or self.net.load_model(str(bin_file(file))) != 0:
            raise BackendError(f"'{file}' is not a readable ncnn model (ncnn could not parse it)")
        h, w = self.metadata.get("imgsz", [None, None])
        self.input_shape = [BATCH, 3, h, w]
        self.input_name = self.net.input_names()[0]
        self.output_names = list(self.net.output_names())
        self._mat = ncnn.Mat

    def __call__(self, im: torch.Tensor) -> List[torch.Tensor]:
        x = self.numpy_input(im)
        with self.net.create_extractor() as ex:
            ex.input(self.input_name, self._mat(x[0]))
            outs = [ex.extract(name)[1] for name in self.output_names]
        return [t[None] for t in self.tensors(outs)]  # the batch dimension ncnn drops


RUNNER = NcnnRunner
