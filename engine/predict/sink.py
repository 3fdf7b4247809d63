"""Where detections go: drawn on the frame, written as annotated images / videos, ``labels/<stem>.txt``,
``crops/<class>/<stem>.jpg`` and shown in a window (the layout of upstream contract 7.5)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence

import cv2
import numpy as np
import torch

from utils.boxes import xyxy2xywh
from utils.log import colorstr, count_noun
from utils.plots import Annotator, colors, save_one_box


@dataclass(frozen=True)
class SinkOptions:
    """What to write and how to draw it (detect.py's output flags)."""

    save_img: bool = True
    save_txt: bool = False
    save_conf: bool = False
    save_crop: bool = False
    view_img: bool = False
    line_thickness: int = 3
    hide_labels: bool = False
    hide_conf: bool = False

    @property
    def saves(self) -> bool:
        return self.save_img or self.save_txt or self.save_crop


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
                self.paths.pop(k, None)


class ResultSink:
    """Draws and writes the detections of each image into ``save_dir``, created with the first image it gets
    (a run that reads nothing leaves no empty folder behind)."""

    def __init__(self, save_dir: Path, names: Sequence[str], opts: SinkOptions):
        self.save_dir, self.names, self.opts = Path(save_dir), list(names), opts
        self.videos = VideoSaver()
        self._made = False

    def make_dir(self) -> None:
        if not self._made:
            (self.save_dir / "labels" if self.opts.save_txt else self.save_dir).mkdir(parents=True, exist_ok=True)
            self._made = True

    def write(self, det: torch.Tensor, path: str, im0: np.ndarray, mode: str, frame: int, index: int = 0,
              vid_cap: Optional[cv2.VideoCapture] = None) -> None:
        """``det`` (n, 6) ``[x1, y1, x2, y2, conf, cls]`` in ``im0`` pixels; ``index``: the stream in a batch."""
        self.make_dir()
        o, p = self.opts, Path(path)
        if o.save_txt and len(det):
            stem = p.stem + ("" if mode == "image" else f"_{frame}")
            write_label_lines(self.save_dir / "labels" / f"{stem}.txt", det, im0.shape, o.save_conf)
        if o.save_crop:
            self._crops(det, im0, p.stem)  # before drawing: crops hold no boxes
        if not (o.save_img or o.view_img):
            return
        im = self._draw(det, im0)
        if o.view_img:
            cv2.imshow(str(p), im)
            cv2.waitKey(1)
        if o.save_img:
            if mode == "image":
                cv2.imwrite(str(self.save_dir / p.name), im)
            else:
                self.videos.write(index, str(self.save_dir / p.name), im, vid_cap)

    def _draw(self, det: torch.Tensor, im0: np.ndarray) -> np.ndarray:
        o = self.opts
        annotator = Annotator(im0, line_width=o.line_thickness, example=str(self.names))
        for *xyxy, conf, cls in reversed(det.tolist()):
            c = int(cls)
            label = None if o.hide_labels else (self.names[c] if o.hide_conf else f"{self.names[c]} {conf:.2f}")
            annotator.box_label(xyxy, label or "", color=colors(c, True))
        return annotator.result()

    def _crops(self, det: torch.Tensor, im: np.ndarray, stem: str) -> None:
        for *xyxy, _, cls in reversed(det.tolist()):
            name = self.names[int(cls)]
            save_one_box(xyxy, im, file=self.save_dir / "crops" / name / f"{stem}.jpg", BGR=True)

    def close(self) -> None:
        self.videos.release()

    def summary(self) -> str:
        """'Results saved to <dir>' (+ the label count), or '' when nothing is saved."""
        if not self.opts.saves:
            return ""
        s = f"Results saved to {colorstr('bold', self.save_dir)}"
        if self.opts.save_txt:
            s += f"\n{len(list(self.save_dir.glob('labels/*.txt')))} labels saved to {self.save_dir / 'labels'}"
        return s
