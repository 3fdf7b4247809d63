"""Rebuild the offline demo: the images in data/images/ and the weights weights/demo-shufflenetv2-shapes.pt.

    python scripts/make_demo.py --images-only                                  # (re)write data/images/*.jpg
    python scripts/make_demo.py --from-run runs/train/exp/weights/best.pt     # strip an existing run's best.pt
    python scripts/make_demo.py                                                # train (see TRAIN_ARGS), then strip
    python scripts/make_demo.py --epochs 10                                    # shorter training (a smoke run)
    python scripts/make_demo.py --picture-only                                 # redraw docs/demo.jpg

Training runs ``train.py`` with TRAIN_ARGS (the ShuffleNetV2 config on the embedded shapes dataset) in a
subprocess; the run's best.pt is then finalised with ``engine.checkpoint.strip_optimizer`` (EMA weights, fp16, no
optimizer) into the demo file, which must stay under 2 MB. The demo images are rendered by the shapes generator
with a seed that neither the train nor the val split uses, so the demo detector has never seen them. Finally
``python detect.py --weights <demo weights> --source data/images`` runs and its annotated images are tiled into
the README picture docs/demo.jpg.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from data.shapes import NAMES  # noqa: E402
from data.shapes import render_image  # noqa: E402
from engine.checkpoint import attempt_load  # noqa: E402
from engine.checkpoint import strip_optimizer  # noqa: E402
from utils.files import increment_path  # noqa: E402

DEMO_WEIGHTS = ROOT / "weights" / "demo-shufflenetv2-shapes.pt"
DEMO_IMAGES = ROOT / "data" / "images"
DEMO_PICTURE = ROOT / "docs" / "demo.jpg"
DEMO_SEED = 20210411  # the shapes train/val splits use seed 0 (data.shapes.DEFAULTS)
DEMO_SIZE = 320  # long side of the demo images, as in the shapes dataset
DETECT_SIZE = 256  # the training --img of TRAIN_ARGS: detect at the scale the model learned
DEMO_COUNT = 4
MAX_BYTES = 2_000_000
RUN_NAME = "demo-shufflenetv2"
# The README's main training command, run to completion.
TRAIN_ARGS = ["--data", "data/shapes.yaml", "--cfg", "models/yolov5-shufflenetv2.yaml",
              "--hyp", "data/hyps/hyp.shapes.yaml", "--weights", "", "--img", "256", "--batch", "32",
              "--epochs", "30", "--optimizer", "Adam", "--cls-loss", "ce", "--cache", "--noval", "--device", "cpu"]


def write_images(out: Path = DEMO_IMAGES, n: int = DEMO_COUNT, seed: int = DEMO_SEED,
                 size: int = DEMO_SIZE) -> List[Path]:
    """Render ``n`` shapes images (seed ``seed``, not in the train/val splits) as ``out/shapes{i}.jpg``."""
    import cv2


    out.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        img, _ = render_image(seed=seed, split=0, index=i, img_size=size)
        f = out / f"shapes{i + 1}.jpg"
        if not cv2.imwrite(str(f), img, [cv2.IMWRITE_JPEG_QUALITY, 90]):
            raise OSError(f"cannot write {f}")
        files.append(f)
    return files


def train(epochs: Optional[int], extra: List[str]) -> Path:
    """Run train.py with TRAIN_ARGS (+ overrides) in a fresh run directory; path of the run's best.pt."""

    run_dir = increment_path(ROOT / "runs" / "train" / RUN_NAME)  # the name train.py will pick
    args = list(TRAIN_ARGS)
    if epochs is not None:
        args[args.index("--epochs") + 1] = str(epochs)
    cmd = [sys.executable, "train.py", *args, "--name", run_dir.name, *extra]
    print("Training:", " ".join(a if a else "''" for a in cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)
    best = run_dir / "weights" / "best.pt"
    if not best.is_file():
        raise FileNotFoundError(f"training finished without {best}")
    return best


def make_weights(best: Path, out: Path = DEMO_WEIGHTS) -> Path:
    """Strip ``best`` (EMA -> model, fp16, no optimizer) to ``out``; checks it loads, has 8 classes, < 2 MB."""

    if not Path(best).is_file():
        raise FileNotFoundError(f"--from-run: '{best}' does not exist")
    out.parent.mkdir(parents=True, exist_ok=True)
    strip_optimizer(best, out)
    model = attempt_load(out)
    if list(model.names) != NAMES:
        out.unlink()
        raise ValueError(f"{best} was not trained on the shapes dataset (names {model.names}); removed {out}")
    size = out.stat().st_size
    if size >= MAX_BYTES:
        out.unlink()
        raise ValueError(f"{out} would be {size / 1e6:.2f} MB, over the 2 MB limit of shipped weights; removed")
    print(f"Wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} ({size / 1e6:.2f} MB) from {best}")
    return out


def make_picture(weights: Path = DEMO_WEIGHTS, out: Path = DEMO_PICTURE) -> Path:
    """Run the README command (detect.py on data/images) and tile its annotated images side by side into ``out``."""
    import cv2
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "detect.py", "--weights", str(weights), "--source", str(DEMO_IMAGES),
               "--img", str(DETECT_SIZE), "--line-thickness", "1", "--project", tmp, "--name", "demo"]
        print("Running:", " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)
        ims = [cv2.imread(str(f)) for f in sorted((Path(tmp) / "demo").glob("*.jpg"))]
    if not ims:
        raise FileNotFoundError("detect.py wrote no images")
    h = max(im.shape[0] for im in ims)
    gap = np.full((h, 8, 3), 255, np.uint8)
    tiles = []
    for im in ims:  # pad portrait images at the bottom-right so the strip has one height
        tiles += [cv2.copyMakeBorder(im, 0, h - im.shape[0], 0, 0, cv2.BORDER_CONSTANT, value=(255, 255, 255)), gap]
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), np.hstack(tiles[:-1]), [cv2.IMWRITE_JPEG_QUALITY, 85]):
        raise OSError(f"cannot write {out}")
    print(f"Wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} ({out.stat().st_size / 1e3:.0f} kB)")
    return out


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--from-run", type=Path, default=None, help="strip this best.pt instead of training")
    ap.add_argument("--images-only", action="store_true", help="only (re)write the demo images")
    ap.add_argument("--picture-only", action="store_true", help="only redraw docs/demo.jpg from the demo weights")
    ap.add_argument("--epochs", type=int, default=None, help="override the training epochs")
    ap.add_argument("--out", type=Path, default=DEMO_WEIGHTS, help="demo weights file")
    ap.add_argument("train_args", nargs=argparse.REMAINDER, help="extra train.py flags after '--'")
    a = ap.parse_args(argv)
    if a.picture_only:
        make_picture(a.out)
        return
    files = write_images()
    print(f"Wrote {len(files)} demo images to {DEMO_IMAGES.relative_to(ROOT)}")
    if a.images_only:
        return
    best = a.from_run if a.from_run is not None else train(a.epochs, [x for x in a.train_args if x != "--"])
    make_weights(best, a.out)
    make_picture(a.out)
    print(f"Try: python detect.py --weights {a.out.relative_to(ROOT) if a.out.is_relative_to(ROOT) else a.out} "
          f"--source data/images --img {DETECT_SIZE}")


if __name__ == "__main__":
    main()
