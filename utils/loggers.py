"""Per-epoch training logs: ``results.csv`` (v6.0+ layout) and, when tensorboard is installed, event files."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable, Optional, Sequence

from utils.log import LOGGER, colorstr

# Column names of results.csv after the leading ``epoch`` column; also the TensorBoard scalar tags.
RESULT_KEYS = (
    "train/box_loss", "train/obj_loss", "train/cls_loss",
    "metrics/precision", "metrics/recall", "metrics/mAP_0.5", "metrics/mAP_0.5:0.95",
    "val/box_loss", "val/obj_loss", "val/cls_loss",
    "x/lr0", "x/lr1", "x/lr2",
)


def _tensorboard_writer(save_dir: Path):
    """A SummaryWriter when the optional tensorboard package is importable, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except (ImportError, ModuleNotFoundError):
        return None
    prefix = colorstr("TensorBoard: ")
    LOGGER.info(f"{prefix}Start with 'tensorboard --logdir {save_dir.parent}', view at http://localhost:6006/")
    return SummaryWriter(str(save_dir))


def trained_epochs(csv: Path | str) -> Optional[int]:
    """Epochs a run completed per its results.csv (last logged epoch + 1); None without a readable row."""
    try:
        rows = [ln.split(",")[0] for ln in Path(csv).read_text().splitlines()[1:] if ln.strip()]
        return int(float(rows[-1])) + 1 if rows else None
    except (OSError, ValueError):
        return None


class Loggers:
    """Writes one results.csv row (and TensorBoard scalars) per epoch into ``save_dir``."""

    def __init__(self, save_dir: Path | str, tensorboard: bool = True):
        self.save_dir = Path(save_dir)
        self.csv = self.save_dir / "results.csv"
        self.tb = _tensorboard_writer(self.save_dir) if tensorboard else None

    def truncate(self, start_epoch: int) -> None:
        """Drop rows of epochs >= ``start_epoch`` (a resumed run re-trains them after a crash)."""
        if not self.csv.exists():
            return
        lines = self.csv.read_text().splitlines()
        kept = lines[:1] + [ln for ln in lines[1:] if ln.strip() and float(ln.split(",")[0]) < start_epoch]
        self.csv.write_text("\n".join(kept) + "\n")

    def log_epoch(self, epoch: int, values: Sequence[float]) -> None:
        """Append ``epoch`` + the 13 values of RESULT_KEYS (right-aligned width 20, ``%20.5g``).

        A value not measured this epoch (the metrics of an epoch --noval did not validate) is NaN: written as
        ``nan``, and left out of TensorBoard."""
        if len(values) != len(RESULT_KEYS):
            raise ValueError(f"expected {len(RESULT_KEYS)} values, got {len(values)}")
        header = "" if self.csv.exists() else ",".join(f"{k:>20s}" for k in ("epoch",) + RESULT_KEYS) + "\n"
        row = ",".join(f"{float(v):20.5g}" for v in (epoch, *values))
        with open(self.csv, "a") as f:
            f.write(header + row + "\n")
        if self.tb:
            for k, v in zip(RESULT_KEYS, values):
                if math.isfinite(float(v)):
                    self.tb.add_scalar(k, float(v), epoch)

    def log_calibration(self, val_dir: Path | str, epoch: int) -> None:
        """TensorBoard scalars ECE and wrong-class rate from the validator's ``metrics.json`` in ``val_dir``."""
        f = Path(val_dir) / "metrics.json"
        if not self.tb or not f.exists():
            return
        calibration = json.loads(f.read_text()).get("calibration", {})
        for key, tag in (("ece", "calibration/ECE"), ("wrong_class_rate", "calibration/wrong_class_rate")):
            if calibration.get(key) is not None:
                self.tb.add_scalar(tag, float(calibration[key]), epoch)

    def log_images(self, files: Iterable[Path], epoch: int) -> None:
        """Add existing PNG / JPEG files (e.g. the final plots) to TensorBoard as they are: TensorBoard stores
        images encoded, so the file's bytes go in unchanged (decoding and re-encoding them took ~1 s)."""
        if not self.tb:
            return
        for f in files:
            f = Path(f)
            if f.exists():
                self.tb._get_file_writer().add_summary(encoded_image_summary(f.stem, f), epoch)

    def close(self) -> None:
        if self.tb:
            self.tb.close()


def encoded_image_summary(tag: str, file: Path):
    """A TensorBoard image summary holding ``file``'s encoded bytes (size and channels read from its header)."""
    from PIL import Image
    from tensorboard.compat.proto.summary_pb2 import Summary

    with Image.open(file) as im:  # reads the header only
        (width, height), channels = im.size, len(im.getbands())
    image = Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=file.read_bytes())
    return Summary(value=[Summary.Value(tag=tag, image=image)])
