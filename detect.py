"""Run detection on images, directories, globs, list files, videos, webcams and streams.

Usage:
    python detect.py --weights yolov5s.pt --source data/images          # directory
    python detect.py --weights yolov5s.onnx --source img.jpg             # exported model (also .torchscript.pt, .ptl)
    python detect.py --source vid.mp4 --save-txt --save-conf --save-crop
    python detect.py --source 0                                          # webcam; rtsp:// rtmp:// http(s):// streams
    python detect.py --source list.txt                                   # one image / video / directory per line

Results go to ``runs/detect/exp{N}``: annotated images (same name) and videos (mp4v at the source fps and size),
``labels/<stem>.txt`` (``class x y w h [conf]`` normalised, ``--save-txt``), ``crops/<class>/<stem>.jpg``
(``--save-crop``).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.backends import BackendError, DetectMultiBackend, weights_kind  # noqa: E402
from utils.boxes import scale_coords, xyxy2xywh  # noqa: E402
from utils.checks import check_img_size  # noqa: E402
from utils.files import increment_path  # noqa: E402
from utils.log import LOGGER, colorstr, count_noun  # noqa: E402
from utils.nms import non_max_suppression  # noqa: E402
from utils.torch_utils import select_device, time_synchronized  # noqa: E402

STREAM_PREFIXES = ("rtsp://", "rtmp://", "http://", "https://")


def is_stream_source(source: str) -> bool:
    """Webcam index, stream URL, or a ``.txt`` list whose entries are streams (v5.0 meaning of ``.txt``).

    A ``.txt`` list of local files / directories / globs is read as images and videos instead (v7.0 meaning).
    """
    if source.isnumeric() or source.lower().startswith(STREAM_PREFIXES):
        return True
    if source.lower().endswith(".txt") and Path(source).is_file():
        lines = [x.strip() for x in Path(source).read_text(encoding="utf-8").splitlines() if x.strip()]
        return bool(lines) and all(x.isnumeric() or x.lower().startswith(STREAM_PREFIXES) for x in lines)
    return False


def check_source(source: str) -> None:
    """One clear error for a local source that does not exist (streams are checked when opened)."""
    if any(c in source for c in "*?["):
        import glob
        if not glob.glob(source, recursive=True):
            raise FileNotFoundError(f"--source '{source}': no file matches this pattern")
    elif not Path(source).exists():
        raise FileNotFoundError(f"--source '{source}' does not exist")


def display_available() -> bool:
    """cv2.imshow needs a window system: a DISPLAY / WAYLAND_DISPLAY on Linux; assumed present elsewhere."""
    if platform.system() == "Linux":
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def class_counts(det: torch.Tensor, names: Sequence[str]) -> str:
    """'4 persons, 1 bus, ' from the class column of a detection tensor."""
    s = ""
    for c in det[:, 5].unique():
        n = int((det[:, 5] == c).sum())
        s += f"{count_noun(n, names[int(c)])}, "
    return s


def write_label_lines(txt_file: Path, det: torch.Tensor, shape0: Sequence[int], save_conf: bool) -> None:
    """Append ``class x y w h [conf]`` (normalised by the original image size, %g) in reversed detection order."""
    gn = torch.tensor(shape0)[[1, 0, 1, 0]].float()  # w h w h
    txt_file.parent.mkdir(parents=True, exist_ok=True)
    with open(txt_file, "a") as f:
        for *xyxy, conf, cls in reversed(det.tolist()):
            xywh = (xyxy2xywh(torch.tensor(xyxy).view(1, 4)) / gn).view(-1).tolist()
            line = (cls, *xywh, conf) if save_conf else (cls, *xywh)
            f.write(("%g " * len(line)).rstrip() % line + "\n")


class VideoSaver:
    """One cv2.VideoWriter per output path (mp4v, source fps and frame size); streams get '.mp4' appended."""

    def __init__(self) -> None:
        self.writers: Dict[int, cv2.VideoWriter] = {}
        self.paths: Dict[int, str] = {}

    def write(self, i: int, save_path: str, im0: np.ndarray, vid_cap: Optional[cv2.VideoCapture]) -> None:
        if self.paths.get(i) != save_path:
            self.release(i)
            if vid_cap is not None:
                fps = vid_cap.get(cv2.CAP_PROP_FPS)
                w, h = int(vid_cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(vid_cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
                out = save_path
            else:  # stream
                fps, (h, w), out = 30.0, im0.shape[:2], save_path + ".mp4"
            fps = fps if fps and np.isfinite(fps) and fps > 0 else 30.0
            self.writers[i] = cv2.VideoWriter(out, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            self.paths[i] = save_path
        self.writers[i].write(im0)

    def release(self, i: Optional[int] = None) -> None:
        for k in ([i] if i is not None else list(self.writers)):
            if k in self.writers:
                self.writers.pop(k).release()


class FeatureDumper:
    """Forward hooks that save each layer's feature maps (utils.plots.feature_visualization) of .pt models.

    Only armed while an image is being processed, and each layer is saved once per image (TTA runs the layers
    at three scales: only the first, full-scale pass is kept), to ``<save_dir>/<image stem>/``.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        from utils.plots import feature_visualization
        self._plot = feature_visualization
        self.target: Optional[Path] = None
        self.done: set = set()
        layers = getattr(model, "model", None)
        if not isinstance(layers, torch.nn.Sequential):
            raise ValueError("--visualize works with a single .pt model only")
        self.handles = [m.register_forward_hook(self._hook) for m in layers]

    def _hook(self, m: torch.nn.Module, _inputs, output) -> None:
        i = getattr(m, "i", None)
        if self.target is None or i in self.done or not isinstance(output, torch.Tensor):
            return
        self.done.add(i)
        self._plot(output, getattr(m, "type", type(m).__name__), i, save_dir=self.target)

    def arm(self, target: Optional[Path]) -> None:
        self.target, self.done = target, set()
        if target is not None:
            target.mkdir(parents=True, exist_ok=True)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@torch.no_grad()
def run(weights: Union[str, Sequence[str]] = "yolov5s.pt", source: str = "data/images",
        data: Optional[str] = None, imgsz: Union[int, Sequence[int]] = (640, 640), conf_thres: float = 0.25,
        iou_thres: float = 0.45, max_det: int = 1000, device: str = "", view_img: bool = False,
        save_txt: bool = False, save_conf: bool = False, save_crop: bool = False, nosave: bool = False,
        classes: Optional[Sequence[int]] = None, agnostic_nms: bool = False, augment: bool = False,
        visualize: bool = False, update: bool = False, project: str = "runs/detect", name: str = "exp",
        exist_ok: bool = False, line_thickness: int = 3, hide_labels: bool = False, hide_conf: bool = False,
        half: bool = False, dnn: bool = False, vid_stride: int = 1) -> Path:
    """Detect on ``source`` and save the results; returns the run directory."""
    from data.loaders import LoadImages, LoadStreams
    from utils.plots import Annotator, colors, save_one_box

    source = str(source)
    weights = [str(w) for w in (weights if isinstance(weights, (list, tuple)) else [weights])]
    for w in weights:
        weights_kind(w)  # unsupported suffix -> clear error before anything else happens
    if vid_stride < 1:
        raise ValueError(f"--vid-stride must be >= 1, got {vid_stride}")
    webcam = is_stream_source(source)
    if not webcam:
        check_source(source)
        source = os.path.abspath(os.path.expanduser(source))  # absolute paths in the log lines (v5.0)
    save_img = not nosave and not source.lower().endswith(".txt") if webcam else not nosave

    device = select_device(device)
    model = DetectMultiBackend(weights, device=device, dnn=dnn, data=data, fp16=half)
    stride, names, pt = model.stride, model.names, model.pt
    imgsz = list(imgsz) if isinstance(imgsz, (list, tuple)) else [imgsz]
    imgsz = imgsz * 2 if len(imgsz) == 1 else imgsz
    imgsz = check_img_size(imgsz, s=stride)
    if model.fixed_shape is not None and tuple(imgsz) != tuple(model.fixed_shape):
        LOGGER.warning(f"WARNING: {weights[0]} was exported for {model.fixed_shape[0]}x{model.fixed_shape[1]} "
                       f"inputs, using --imgsz {model.fixed_shape[0]} {model.fixed_shape[1]}")
        imgsz = list(model.fixed_shape)
    auto = model.fixed_shape is None  # minimal (rect) padding when the model takes any shape
    size = imgsz[0] if imgsz[0] == imgsz[1] else tuple(imgsz)

    if view_img and not display_available():
        LOGGER.warning("WARNING: --view-img needs a display (no DISPLAY set), results are not shown")
        view_img = False
    if augment and not pt:
        LOGGER.warning("WARNING: --augment (TTA) works with .pt weights only, ignored")
        augment = False
    if webcam:
        cudnn_benchmark(device)
        dataset = LoadStreams(source, img_size=size, stride=stride, auto=auto)
        bs = len(dataset.sources)
    else:
        dataset = LoadImages(source, img_size=size, stride=stride, auto=auto)
        bs = 1
    # the run directory is created only once the model and the source have loaded
    save_dir = increment_path(Path(project) / name, exist_ok=exist_ok)
    (save_dir / "labels" if save_txt else save_dir).mkdir(parents=True, exist_ok=True)
    model.warmup(imgsz=(bs, 3, *imgsz))
    dumper = None
    if visualize and (not pt or len(weights) > 1):
        LOGGER.warning("WARNING: --visualize works with a single .pt model only, ignored")
    elif visualize:
        dumper = FeatureDumper(model.model)
    videos = VideoSaver()
    seen, skipped, dt, t0 = 0, [], [0.0, 0.0, 0.0], time.time()
    iterator = iter(dataset)
    while True:
        try:
            path, im, im0s, vid_cap = next(iterator)
        except StopIteration:
            break
        except (FileNotFoundError, OSError, cv2.error) as e:  # an unreadable file inside a directory: skip it
            LOGGER.warning(f"WARNING: skipping unreadable input: {e}")
            skipped.append(str(e))
            continue
        if not webcam and dataset.mode == "video" and vid_stride > 1 and (dataset.frame - 1) % vid_stride:
            continue
        t1 = time_synchronized()
        x = torch.from_numpy(np.ascontiguousarray(im)).to(device)
        x = (x.half() if model.fp16 else x.float()) / 255
        if x.ndim == 3:
            x = x[None]
        t2 = time_synchronized()
        if dumper is not None:
            dumper.arm(save_dir / Path(path[0] if webcam else path).stem)
        pred = model(x, augment=augment)
        if dumper is not None:
            dumper.arm(None)
        t3 = time_synchronized()
        pred = non_max_suppression(pred, conf_thres, iou_thres, classes, agnostic_nms, max_det=max_det)
        t4 = time_synchronized()
        dt[0] += t2 - t1
        dt[1] += t3 - t2
        dt[2] += t4 - t3

        for i, det in enumerate(pred):
            seen += 1
            if webcam:
                p, s, im0, frame = Path(path[i]), f"{i}: ", im0s[i].copy(), dataset.count
            else:
                p, s, im0, frame = Path(path), dataset.s, im0s.copy(), getattr(dataset, "frame", 0)
            save_path = str(save_dir / p.name)
            txt_file = save_dir / "labels" / (p.stem + ("" if dataset.mode == "image" else f"_{frame}") + ".txt")
            s += "%gx%g " % tuple(x.shape[2:])
            imc = im0.copy() if save_crop else im0
            annotator = Annotator(im0, line_width=line_thickness, example=str(names))
            if len(det):
                det[:, :4] = scale_coords(x.shape[2:], det[:, :4], im0.shape).round()
                s += class_counts(det, names)
                if save_txt:
                    write_label_lines(txt_file, det, im0.shape, save_conf)
                for *xyxy, conf, cls in reversed(det.tolist()):
                    c = int(cls)
                    if save_img or save_crop or view_img:
                        label = None if hide_labels else (names[c] if hide_conf else f"{names[c]} {conf:.2f}")
                        annotator.box_label(xyxy, label or "", color=colors(c, True))
                    if save_crop:
                        save_one_box(xyxy, imc, file=save_dir / "crops" / names[c] / f"{p.stem}.jpg", BGR=True)
            LOGGER.info(f"{s}Done. ({t4 - t2:.3f}s)")
            im0 = annotator.result()
            if view_img:
                cv2.imshow(str(p), im0)
                cv2.waitKey(1)
            if save_img:
                if dataset.mode == "image":
                    cv2.imwrite(save_path, im0)
                else:
                    videos.write(i, save_path, im0, vid_cap)
    videos.release()
    if dumper is not None:
        dumper.remove()

    if seen:
        t = tuple(1e3 * v / seen for v in dt)
        LOGGER.info(f"Speed: {t[0]:.1f}ms pre-process, {t[1]:.1f}ms inference, {t[2]:.1f}ms NMS per image at "
                    f"shape {(bs, 3, *imgsz)}")
    if skipped:
        LOGGER.warning(f"WARNING: {len(skipped)} unreadable input(s) skipped")
    if save_txt or save_img or save_crop:
        s = f"\n{len(list(save_dir.glob('labels/*.txt')))} labels saved to {save_dir / 'labels'}" if save_txt else ""
        LOGGER.info(f"Results saved to {colorstr('bold', save_dir)}{s}")
    if update:
        from engine.checkpoint import strip_optimizer
        for w in weights:
            if weights_kind(w) == "pt":
                strip_optimizer(w)  # re-save without optimizer state / in the current format
    LOGGER.info(f"Done. ({time.time() - t0:.3f}s)")
    if not seen and skipped:
        raise FileNotFoundError(f"--source '{source}': no readable image or video ({len(skipped)} unreadable)")
    return save_dir


def cudnn_benchmark(device: torch.device) -> None:
    """Constant-size stream frames: let cuDNN pick the fastest kernels."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def parse_opt(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="YOLOv5 detection")
    parser.add_argument("--weights", nargs="+", type=str, default=["yolov5s.pt"],
                        help="model path(s): .pt (several = ensemble), .torchscript(.pt), .ptl, .onnx")
    parser.add_argument("--source", type=str, default="data/images",
                        help="file/dir/glob/.txt list/video, 0 (webcam), rtsp:// rtmp:// http(s):// stream")
    parser.add_argument("--data", type=str, default=None, help="dataset yaml (class names for exports without them)")
    parser.add_argument("--imgsz", "--img", "--img-size", nargs="+", type=int, default=[640], dest="imgsz",
                        help="inference size h w (one value = square)")
    parser.add_argument("--conf-thres", type=float, default=0.25, help="object confidence threshold")
    parser.add_argument("--iou-thres", type=float, default=0.45, help="IOU threshold for NMS")
    parser.add_argument("--max-det", type=int, default=1000, help="maximum detections per image")
    parser.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    parser.add_argument("--view-img", action="store_true", help="display results")
    parser.add_argument("--save-txt", action="store_true", help="save results to *.txt")
    parser.add_argument("--save-conf", action="store_true", help="save confidences in --save-txt labels")
    parser.add_argument("--save-crop", action="store_true", help="save cropped prediction boxes")
    parser.add_argument("--nosave", action="store_true", help="do not save images/videos")
    parser.add_argument("--classes", nargs="+", type=int, help="filter by class: --classes 0, or --classes 0 2 3")
    parser.add_argument("--agnostic-nms", action="store_true", help="class-agnostic NMS")
    parser.add_argument("--augment", action="store_true", help="augmented inference (TTA, .pt only)")
    parser.add_argument("--visualize", action="store_true", help="save feature maps (.pt only)")
    parser.add_argument("--update", action="store_true", help="re-save the given .pt weights stripped")
    parser.add_argument("--project", default="runs/detect", help="save results to project/name")
    parser.add_argument("--name", default="exp", help="save results to project/name")
    parser.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    parser.add_argument("--line-thickness", default=3, type=int, help="bounding box thickness (pixels)")
    parser.add_argument("--hide-labels", action="store_true", help="hide labels")
    parser.add_argument("--hide-conf", action="store_true", help="hide confidences")
    parser.add_argument("--half", action="store_true", help="FP16 half-precision inference (CUDA)")
    parser.add_argument("--dnn", action="store_true", help="use OpenCV DNN for ONNX inference")
    parser.add_argument("--vid-stride", type=int, default=1, help="video frame-rate stride")
    opt = parser.parse_args(argv)
    opt.imgsz = opt.imgsz * 2 if len(opt.imgsz) == 1 else opt.imgsz
    return opt


def main(opt: argparse.Namespace) -> Path:
    return run(**vars(opt))


def cli(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry: 0 on success, 1 with one clear message on bad input."""
    opt = parse_opt(argv)
    LOGGER.info(colorstr("detect: ") + ", ".join(f"{k}={v}" for k, v in vars(opt).items()))
    try:
        main(opt)
    except (FileNotFoundError, BackendError, ConnectionError, ValueError) as e:
        # ValueError covers engine.checkpoint.CheckpointError (not a checkpoint) and bad flag values
        LOGGER.error(f"ERROR: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli())
