"""TEMPORARY copy of val.py's evaluation (``run`` and its helpers), unchanged except that its imports sit at
module level, so that the training engine can validate without importing the val.py script.

The validator refactor (another branch) moves this code here for real: at merge, keep THAT branch's
engine/val/ and drop this file. The trainer only calls :func:`run` through engine/train/validation.py.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from tqdm import tqdm

from data.config import check_dataset
from data.datasets import create_dataloader
from engine.backends import DetectMultiBackend
from utils.boxes import scale_coords, xywh2xyxy, xyxy2xywh
from utils.checks import check_img_size
from utils.files import ROOT, increment_path
from utils.log import LOGGER, colorstr
from utils.metrics import ConfusionMatrix, ap_per_class, box_iou
from utils.nms import non_max_suppression
from utils.plots import output_to_target, plot_images
from utils.torch_utils import select_device, time_synchronized


TASKS = ("train", "val", "test", "speed", "study")
STUDY_SIZES = list(range(256, 1536 + 128, 128))  # --task study image sizes
COCO_MISSING_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)  # ids 1..90 unused by the 80 COCO detection classes


def coco80_to_coco91_class() -> List[int]:
    """COCO category id (1..90, with gaps) of each of the 80 contiguous detection class indices."""
    return [i for i in range(1, 91) if i not in COCO_MISSING_IDS]


# ------------------------------------------------------------------------------------------------------------
# matching and per-image outputs
# ------------------------------------------------------------------------------------------------------------
def process_batch(detections: torch.Tensor, labels: torch.Tensor, iouv: torch.Tensor, match: str = "coco"
                  ) -> torch.Tensor:
    """True-positive flags (n_det, n_iou) of one image's detections at each IoU threshold.

    ``detections`` (n, 6) [x1, y1, x2, y2, conf, cls], ``labels`` (m, 5) [cls, x1, y1, x2, y2], same pixel space.
    At each threshold t a detection can only match a label of its own class with IoU >= t, and every label
    is matched at most once. Which pairs win:

    * ``match="coco"`` (default): detections in decreasing confidence each take the still unmatched label with
      the highest IoU, the rule of pycocotools, so mAP agrees with it even when near-duplicate detections
      compete for one label;
    * ``match="iou"``: upstream v6+ order, highest-IoU pairs first (each detection keeps its best label, then
      each label its best detection), whatever their confidences.
    """
    n, m = detections.shape[0], labels.shape[0]
    if match not in ("coco", "iou"):
        raise ValueError(f"process_batch: match must be 'coco' or 'iou', got '{match}'")
    correct = np.zeros((n, iouv.numel()), dtype=bool)
    if n and m:
        iou = box_iou(detections[:, :4], labels[:, 1:]).cpu().numpy()  # (n, m)
        same_cls = detections[:, 5:6].cpu().numpy() == labels[:, 0].cpu().numpy()[None]
        iou = np.where(same_cls, iou, -1.0)
        thr = iouv.cpu().numpy()
        if match == "coco":
            _match_by_confidence(iou, detections[:, 4].cpu().numpy(), thr, correct)
        else:
            _match_by_iou(iou, thr, correct)
    return torch.from_numpy(correct).to(iouv.device)


def _match_by_confidence(iou: np.ndarray, conf: np.ndarray, thr: np.ndarray, correct: np.ndarray) -> None:
    """Greedy in decreasing confidence, all thresholds at once: ``used[k, j]`` = label j taken at threshold k."""
    rows = np.arange(len(thr))
    used = np.zeros((len(thr), iou.shape[1]), dtype=bool)
    order = np.argsort(-conf, kind="stable")
    for d in order[(iou[order] >= thr[0]).any(1)]:  # only detections that can match anything
        cand = np.where((iou[d][None] >= thr[:, None]) & ~used, iou[d][None], -1.0)  # (n_thr, m)
        j = cand.argmax(1)
        hit = cand[rows, j] >= 0
        used[rows[hit], j[hit]] = True
        correct[d] = hit
        if used.all():
            break  # every label is taken at every threshold: the rest are false positives


def _match_by_iou(iou: np.ndarray, thr: np.ndarray, correct: np.ndarray) -> None:
    """Upstream v6+ order, vectorised per threshold."""
    for k, t in enumerate(thr):
        cand = np.where(iou >= t, iou, -1.0)
        best_label = cand.argmax(1)  # each detection's best label at this threshold
        best_iou = cand[np.arange(len(cand)), best_label]
        det = np.nonzero(best_iou >= 0)[0]
        if not len(det):
            break  # higher thresholds cannot match either
        det = det[np.argsort(-best_iou[det], kind="stable")]
        _, first = np.unique(best_label[det], return_index=True)  # highest-IoU detection of every label
        correct[det[first], k] = True


def save_one_txt(predn: torch.Tensor, save_conf: bool, shape: Sequence[int], file: Path) -> None:
    """Append detections as ``cls x y w h [conf]`` lines, normalised by the original image (h, w) ``shape``."""
    gn = torch.tensor(shape, dtype=torch.float32)[[1, 0, 1, 0]]
    xywh = (xyxy2xywh(predn[:, :4].float().cpu()) / gn).tolist()
    with open(file, "a") as f:
        for (cls, conf), box in zip(predn[:, [5, 4]].tolist(), xywh):
            line = (cls, *box, conf) if save_conf else (cls, *box)
            f.write(("%g " * len(line)).rstrip() % line + "\n")


def image_id(path: Union[str, Path]) -> Union[int, str]:
    """COCO-style image id: the file stem as an int when it is numeric, else the stem."""
    stem = Path(path).stem
    return int(stem) if stem.isnumeric() else stem


def save_one_json(predn: torch.Tensor, jdict: list, path: Union[str, Path], class_map: Sequence[int]) -> None:
    """Append COCO result dicts {image_id, category_id, bbox [x_topleft, y_topleft, w, h], score}."""
    box = xyxy2xywh(predn[:, :4].float().cpu())
    box[:, :2] -= box[:, 2:] / 2  # centre -> top-left corner
    iid = image_id(path)
    for p, b in zip(predn[:, 4:6].tolist(), box.tolist()):
        jdict.append({"image_id": iid, "category_id": class_map[int(p[1])],
                      "bbox": [round(x, 3) for x in b], "score": round(p[0], 5)})


# ------------------------------------------------------------------------------------------------------------
# pycocotools
# ------------------------------------------------------------------------------------------------------------
def dataset_to_coco(dataset, names: Sequence[str], class_map: Sequence[int]) -> dict:
    """COCO ground-truth dict built from a dataset's labels, image ids = dataset indices (so any dataset can
    be scored by pycocotools). Boxes are in original-image pixels, like the predictions."""
    images, annotations = [], []
    for i, (labels, (w, h)) in enumerate(zip(dataset.labels, dataset.shapes)):
        images.append({"id": i, "file_name": Path(dataset.img_files[i]).name, "width": int(w), "height": int(h)})
        for cls, x, y, bw, bh in np.asarray(labels, dtype=np.float64).reshape(-1, 5)[:, :5]:
            box = [(x - bw / 2) * w, (y - bh / 2) * h, bw * w, bh * h]
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": class_map[int(cls)],
                                "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
    categories = [{"id": class_map[i], "name": str(n)} for i, n in enumerate(names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def coco_evaluate(gt: Union[dict, str, Path], predictions: List[dict], img_ids: Optional[Sequence] = None
                  ) -> Tuple[float, float]:
    """pycocotools bbox evaluation -> (mAP@0.5:0.95, mAP@0.5). ``gt`` is a COCO dict or an annotations json."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if isinstance(gt, dict):
        anno = COCO()
        anno.dataset = gt
        anno.createIndex()
    else:
        anno = COCO(str(gt))
    pred = anno.loadRes(predictions)
    ev = COCOeval(anno, pred, "bbox")
    if img_ids is not None:
        ev.params.imgIds = list(img_ids)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return float(ev.stats[0]), float(ev.stats[1])


def _coco_annotations(data: dict) -> Path:
    root = Path(data.get("path") or ROOT.parent / "coco")
    return root / "annotations" / "instances_val2017.json"


def _is_coco(data: dict, data_arg) -> bool:
    """v5.0 rule (data yaml ends with coco.yaml) or v6 rule (val split is coco/val2017.txt)."""
    val = data.get("val")
    val = val[0] if isinstance(val, list) and val else val
    return (isinstance(data_arg, (str, Path)) and str(data_arg).endswith("coco.yaml")) or \
        str(val or "").replace("\\", "/").endswith("coco/val2017.txt")


# ------------------------------------------------------------------------------------------------------------
# evaluation
# ------------------------------------------------------------------------------------------------------------
def _names_dict(names) -> Dict[int, str]:
    if isinstance(names, dict):
        return {int(k): str(v) for k, v in names.items()}
    return dict(enumerate(str(n) for n in (names or [])))


def _model_nc(model) -> Optional[int]:
    for obj in (model, getattr(model, "model", None)):
        nc = getattr(obj, "nc", None)
        if isinstance(nc, int):
            return nc
    return None


@torch.no_grad()
def run(data, weights=None, batch_size: int = 32, imgsz: int = 640, conf_thres: float = 0.001,
        iou_thres: float = 0.6, task: str = "val", device: str = "", workers: int = 8, single_cls: bool = False,
        augment: bool = False, verbose: bool = False, save_txt: bool = False, save_hybrid: bool = False,
        save_conf: bool = False, save_json: bool = False, project=ROOT / "runs/val", name: str = "exp",
        exist_ok: bool = False, half: bool = False, model=None, dataloader=None, save_dir=Path(""),
        plots: bool = True, compute_loss=None, max_det: int = 300, dnn: bool = False, is_coco: Optional[bool] = None,
        plot_prefix: str = "val"):
    """Evaluate ``weights`` (standalone) or the given ``model`` (during training) on ``data``.

    Returns ``((mp, mr, map50, map, box_loss, obj_loss, cls_loss), maps, times)``: class-mean precision and
    recall at the best mean-F1 confidence, mAP@0.5, mAP@0.5:0.95, validation losses (only with
    ``compute_loss``, averaged over batches), per-class mAP@0.5:0.95 ``maps`` (nc,) (classes without labels get
    the overall mAP) and per-image ``times`` in ms (pre-process, inference, NMS).
    """
    training = model is not None
    data_arg = data
    save_txt |= save_hybrid  # hybrid labels are only useful written out
    if training:  # called by train.py with its EMA model: use it as is (no reload, no fusing)
        device = next(model.parameters()).device
        half &= device.type != "cpu"
        model.half() if half else model.float()
        pt, stride = True, int(max(model.stride)) if hasattr(model, "stride") else 32
        if not isinstance(data, dict):
            data = check_dataset(data)
    else:

        if task not in TASKS:
            raise ValueError(f"--task '{task}' is invalid, use one of {', '.join(TASKS)}")
        device = select_device(device, batch_size=batch_size)
        data = check_dataset(data)  # before the run dir is made: a bad --data leaves nothing behind
        model = DetectMultiBackend(weights, device=device, dnn=dnn, data=None, fp16=half)
        half, pt, stride = model.fp16, model.pt, model.stride
        imgsz = check_img_size(imgsz, s=stride)
        if model.fixed_shape is not None:  # fixed-shape export: square letterbox at the exported size
            if tuple(model.fixed_shape) != (imgsz, imgsz):
                LOGGER.info(f"Using the exported input size {model.fixed_shape} instead of --imgsz {imgsz}")
            imgsz = int(model.fixed_shape[0])
        if not pt and model.fixed_shape is not None and model.fixed_shape[0] != model.fixed_shape[1]:
            raise ValueError(f"'{weights}' was exported for non-square {model.fixed_shape} inputs; val needs a "
                             f"square or dynamic export")
        if not pt or device.type != "cpu":
            model.warmup(imgsz=(model.batch_size or 1, 3, imgsz, imgsz))

    model.eval()
    nc = 1 if single_cls else int(data["nc"])
    names = _names_dict(getattr(model, "names", None) or data.get("names"))
    if single_cls:
        names = {0: names.get(0, "item")} if len(names) == 1 else {0: "item"}
    if not training and not single_cls:
        ncm = _model_nc(model)
        if ncm is not None and ncm != nc:
            raise ValueError(f"{weights} ({ncm} classes) was trained on a different dataset than --data "
                             f"{data_arg} ({nc} classes); pass a --weights / --data pair trained together")
    is_coco = _is_coco(data, data_arg) if is_coco is None else is_coco
    class_map = coco80_to_coco91_class() if is_coco and nc == 80 else list(range(1000))
    iouv = torch.linspace(0.5, 0.95, 10, device=device)
    niou = iouv.numel()

    if not training:
        split = "val" if task in ("speed", "study") else task
        if not data.get(split):
            raise ValueError(f"--task {task}: the dataset yaml {data_arg} has no '{split}' split")
        save_dir = increment_path(Path(project) / name, exist_ok=exist_ok)  # only now: all input is valid
        save_dir.mkdir(parents=True, exist_ok=True)
        rect = pt or model.fixed_shape is None
        dataloader = create_dataloader(data[split], imgsz, batch_size, stride, single_cls=single_cls,
                                       pad=0.0 if task == "speed" or not rect else 0.5, rect=rect,
                                       workers=workers, prefix=colorstr(f"{split}: "))[0]
    if save_txt:
        (Path(save_dir) / "labels").mkdir(parents=True, exist_ok=True)
    channels_last = not training and pt and device.type == "cpu"

    confusion_matrix = ConfusionMatrix(nc=nc)
    seen = 0
    loss = torch.zeros(3, device=device)
    jdict: List[dict] = []
    jdict_index: List[int] = []  # dataset index of each jdict entry (pycocotools ids for non-COCO data)
    stats: List[tuple] = []
    dt = [0.0, 0.0, 0.0]
    dataset = getattr(dataloader, "dataset", None)
    index_of = {str(f): i for i, f in enumerate(getattr(dataset, "img_files", []) or [])}
    s = ("%20s" + "%12s" * 6) % ("Class", "Images", "Labels", "P", "R", "mAP@.5", "mAP@.5:.95")
    pbar = tqdm(dataloader, desc=s, bar_format="{l_bar}{bar:10}{r_bar}")
    for batch_i, (img, targets, paths, shapes) in enumerate(pbar):
        t1 = time_synchronized()
        img = img.to(device, non_blocking=True)
        img = (img.half() if half else img.float()) / 255.0
        if channels_last:
            img = img.contiguous(memory_format=torch.channels_last)
        targets = targets.to(device)
        nb, _, height, width = img.shape
        t2 = time_synchronized()
        dt[0] += t2 - t1

        out = model(img, augment=augment)  # decoded predictions; the head applied the class activation
        out, train_out = (out[0], out[1]) if isinstance(out, (tuple, list)) else (out, None)
        dt[1] += time_synchronized() - t2
        if compute_loss is not None and train_out is not None and len(train_out):
            loss += compute_loss([x.float() for x in train_out], targets)[1][:3]

        targets[:, 2:] *= torch.tensor((width, height, width, height), device=device)  # to pixels
        lb = [targets[targets[:, 0] == i, 1:] for i in range(nb)] if save_hybrid else []
        t3 = time_synchronized()
        out = non_max_suppression(out, conf_thres, iou_thres, labels=lb, multi_label=True, agnostic=single_cls,
                                  max_det=max_det)
        dt[2] += time_synchronized() - t3

        for si, pred in enumerate(out):
            labels = targets[targets[:, 0] == si, 1:]
            nl = len(labels)
            tcls = labels[:, 0].tolist() if nl else []
            path, shape = Path(paths[si]), shapes[si][0]
            seen += 1
            if single_cls:
                pred[:, 5] = 0
            predn = pred.clone()
            scale_coords(img[si].shape[1:], predn[:, :4], shape, shapes[si][1])  # to original-image pixels
            if nl:
                tbox = xywh2xyxy(labels[:, 1:5])
                scale_coords(img[si].shape[1:], tbox, shape, shapes[si][1])
                labelsn = torch.cat((labels[:, 0:1], tbox), 1)
                correct = process_batch(predn, labelsn, iouv)
                if plots:
                    confusion_matrix.process_batch(predn if len(predn) else None, labelsn)
            else:
                correct = torch.zeros(len(pred), niou, dtype=torch.bool, device=device)
                if plots and len(predn):  # every detection on a label-free image is a background FP
                    confusion_matrix.process_batch(predn, labels)
            if len(pred) or nl:
                stats.append((correct.cpu(), pred[:, 4].float().cpu(), pred[:, 5].float().cpu(), tcls))
            if not len(pred):
                continue
            if save_txt:
                save_one_txt(predn, save_conf, shape, file=save_dir / "labels" / f"{path.stem}.txt")
            if save_json:
                n0 = len(jdict)
                save_one_json(predn, jdict, path, class_map)
                jdict_index += [index_of.get(str(paths[si]), -1)] * (len(jdict) - n0)

        if plots and batch_i < 3:
            plot_images(img, targets, paths, save_dir / f"{plot_prefix}_batch{batch_i}_labels.jpg", names)
            plot_images(img, output_to_target(out), paths, save_dir / f"{plot_prefix}_batch{batch_i}_pred.jpg",
                        names)

    # metrics
    p = r = ap50 = ap = np.zeros(0)
    mp = mr = map50 = map_ = 0.0
    ap_class = np.zeros(0, dtype=np.int32)
    if stats:
        tp, conf, pcls = (torch.cat([x[k] for x in stats], 0).numpy() for k in range(3))
        tcls_all = np.array([c for x in stats for c in x[3]], dtype=np.int64)
    else:
        tp, conf, pcls, tcls_all = np.zeros((0, niou), bool), np.zeros(0), np.zeros(0), np.zeros(0, np.int64)
    nt = np.bincount(tcls_all, minlength=nc)
    if len(tcls_all):
        p, r, ap_all, f1, ap_class = ap_per_class(tp, conf, pcls, tcls_all, plot=plots, save_dir=save_dir,
                                                  names=names)
        ap50, ap = ap_all[:, 0], ap_all.mean(1)
        mp, mr, map50, map_ = float(p.mean()), float(r.mean()), float(ap50.mean()), float(ap.mean())

    pf = "%20s" + "%12i" * 2 + "%12.3g" * 4
    LOGGER.info(pf % ("all", seen, nt.sum(), mp, mr, map50, map_))
    if nt.sum() == 0:
        LOGGER.warning(f"WARNING: no labels found in the {task} set, can not compute metrics without labels")
    if (verbose or (nc < 50 and not training)) and nc > 1 and len(ap_class):
        for i, c in enumerate(ap_class):
            LOGGER.info(pf % (names.get(int(c), str(c)), seen, nt[c], p[i], r[i], ap50[i], ap[i]))

    t = tuple(x / max(seen, 1) * 1e3 for x in dt)  # ms per image
    if not training:
        shape = (batch_size, 3, imgsz, imgsz)
        LOGGER.info(f"Speed: %.1fms pre-process, %.1fms inference, %.1fms NMS per image at shape {shape}" % t)

    if plots:
        confusion_matrix.plot(save_dir=save_dir, names=[names.get(i, str(i)) for i in range(nc)])

    if save_json and jdict:
        w = Path(weights[0] if isinstance(weights, (list, tuple)) else weights).stem if weights is not None else ""
        pred_json = Path(save_dir) / f"{w}_predictions.json"
        LOGGER.info(f"\nEvaluating pycocotools mAP... saving {pred_json}...")
        with open(pred_json, "w") as f:
            json.dump(jdict, f)
        try:
            anno_json = _coco_annotations(data)
            if is_coco and anno_json.is_file():
                img_ids = [image_id(x) for x in dataset.img_files] if dataset is not None else None
                map_, map50 = coco_evaluate(anno_json, jdict, img_ids)
            elif dataset is not None and hasattr(dataset, "labels") and -1 not in jdict_index:
                gt = dataset_to_coco(dataset, [names.get(i, str(i)) for i in range(nc)], class_map)
                preds = [dict(d, image_id=i) for d, i in zip(jdict, jdict_index)]
                map_, map50 = coco_evaluate(gt, preds)
            else:
                raise ValueError("the dataloader's dataset has no labels / image list to build ground truth from")
        except Exception as e:  # the optional COCO scoring must never lose the run's own results
            LOGGER.warning(f"pycocotools unable to run: {e}")
    elif save_json:
        LOGGER.warning("WARNING: no detections, pycocotools evaluation skipped")

    model.float()  # training continues in FP32
    if not training:
        n_txt = len(list(save_dir.glob("labels/*.txt")))
        extra = f"\n{n_txt} labels saved to {save_dir / 'labels'}" if save_txt else ""
        LOGGER.info(f"Results saved to {colorstr('bold', save_dir)}{extra}")
    maps = np.zeros(nc) + map_
    for i, c in enumerate(ap_class):
        maps[c] = ap[i]
    return (mp, mr, map50, map_, *(loss.cpu() / max(len(dataloader), 1)).tolist()), maps, t


# ------------------------------------------------------------------------------------------------------------
# command line
