"""--evolve: genetic hyperparameter search. Mutate the fittest earlier hyps, train, append to evolve.txt."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

import numpy as np
import torch
import yaml

from engine.train.options import load_hyp
from utils.figures import try_plot
from utils.log import LOGGER, colorstr
from utils.metrics import fitness
from utils.plots import plot_evolution

# key -> (mutation scale (0 = fixed), lower bound, upper bound)
EVOLVE_META: Dict[str, tuple] = {
    "lr0": (1, 1e-5, 1e-1), "lrf": (1, 0.01, 1.0), "momentum": (0.3, 0.6, 0.98),
    "weight_decay": (1, 0.0, 0.001), "warmup_epochs": (1, 0.0, 5.0), "warmup_momentum": (1, 0.0, 0.95),
    "warmup_bias_lr": (1, 0.0, 0.2), "box": (1, 0.02, 0.2), "cls": (1, 0.2, 4.0), "cls_pw": (1, 0.5, 2.0),
    "obj": (1, 0.2, 4.0), "obj_pw": (1, 0.5, 2.0), "iou_t": (0, 0.1, 0.7), "anchor_t": (1, 2.0, 8.0),
    "anchors": (2, 2.0, 10.0), "fl_gamma": (0, 0.0, 2.0), "hsv_h": (1, 0.0, 0.1), "hsv_s": (1, 0.0, 0.9),
    "hsv_v": (1, 0.0, 0.9), "degrees": (1, 0.0, 45.0), "translate": (1, 0.0, 0.9), "scale": (1, 0.0, 0.9),
    "shear": (1, 0.0, 10.0), "perspective": (0, 0.0, 0.001), "flipud": (1, 0.0, 1.0), "fliplr": (0, 0.0, 1.0),
    "mosaic": (1, 0.0, 1.0), "mixup": (1, 0.0, 1.0), "copy_paste": (1, 0.0, 1.0),
}
TrainFn = Callable[[Dict[str, Any], argparse.Namespace, torch.device], Sequence[float]]


def evolve(hyp: Any, opt: argparse.Namespace, device: torch.device, train_fn: TrainFn) -> None:
    """``opt.evolve`` generations of ``train_fn(hyp, opt, device)``, each with hyps mutated from the best so far."""
    base = load_hyp(hyp, opt)
    keys = [k for k in EVOLVE_META if k in base and isinstance(base[k], (int, float))]
    opt.notest, opt.nosave = True, True  # only validate / save the final epoch
    yaml_file = Path(opt.save_dir) / "hyp_evolved.yaml"
    evolve_txt = Path("evolve.txt")
    for _ in range(opt.evolve):
        hyp = dict(base)
        if evolve_txt.exists():
            x = np.loadtxt(evolve_txt, ndmin=2)
            if x.shape[1] == 7 + len(keys):
                # own RNG: training re-seeds the global ones, which would repeat the same mutation every time
                rng = np.random.default_rng([opt.seed, len(x)])
                hyp.update(mutate(x, keys, rng))
        results = train_fn(hyp.copy(), opt, device)
        write_evolve(hyp, keys, results, evolve_txt, yaml_file)
    try_plot("evolve plot", plot_evolution, yaml_file)
    LOGGER.info(f"Hyperparameter evolution complete. Best results saved as: {yaml_file}\n"
                f"Command to train a new model with these hyperparameters: $ python train.py --hyp {yaml_file}")


def mutate(x: np.ndarray, keys: List[str], rng: np.random.Generator) -> Dict[str, float]:
    """New hyps from the (up to 5) fittest rows of evolve.txt: pick a parent by fitness, then mutate it."""
    x = x[np.argsort(-fitness(x))][:5]
    w = fitness(x) - fitness(x).min() + 1e-6
    parent = x[rng.choice(len(x), p=w / w.sum())]
    scale = np.array([EVOLVE_META[k][0] for k in keys], dtype=float)
    mp, s = 0.8, 0.2  # mutation probability and sigma
    v = np.ones(len(keys))
    while np.all(v == 1) and scale.any():  # mutate until something changes
        v = (scale * (rng.random(len(keys)) < mp) * rng.standard_normal(len(keys)) * rng.random() * s + 1)
        v = v.clip(0.3, 3.0)
    out = {}
    for i, k in enumerate(keys):
        lo, hi = EVOLVE_META[k][1:]
        out[k] = round(float(min(max(parent[i + 7] * v[i], lo), hi)), 5)
    return out


def write_evolve(hyp: Dict[str, Any], keys: List[str], results: Sequence[float], evolve_txt: Path,
                 yaml_file: Path) -> None:
    """Append one generation (7 results + the evolved hyps) to evolve.txt; write the best hyps to yaml."""
    row = np.array(list(results)[:7] + [hyp[k] for k in keys], dtype=float)
    with open(evolve_txt, "a") as f:
        f.write(("%10.4g" * len(row)) % tuple(row) + "\n")
    x = np.loadtxt(evolve_txt, ndmin=2)
    x = x[np.argsort(-fitness(x))]
    np.savetxt(evolve_txt, x, "%10.4g")
    # evolved keys first, in evolve.txt column order (plot_evolution pairs columns with the yaml key order)
    best = {k: float(x[0, i + 7]) for i, k in enumerate(keys)} | {k: v for k, v in hyp.items() if k not in keys}
    yaml_file.parent.mkdir(parents=True, exist_ok=True)
    with open(yaml_file, "w") as f:
        f.write(f"# Hyperparameter evolution results\n# Generations: {len(x)}\n"
                f"# Best metrics (P, R, mAP@0.5, mAP@0.5:0.95, val box, obj, cls): {x[0, :7].tolist()}\n")
        yaml.safe_dump(best, f, sort_keys=False)
    LOGGER.info(f"{colorstr('evolve: ')}{len(x)} generations in {evolve_txt}, best hyps in {yaml_file}")
