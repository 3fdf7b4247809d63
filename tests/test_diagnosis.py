"""data/diagnosis.py: class structure of a label set (multi-label boxes, subclasses) and the loss it suggests."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from data.diagnosis import diagnose_dataset, diagnose_labels
from utils.class_groups import parse_class_groups
from utils.loss import find_multilabel_boxes


def box(c: int, x: float, y: float = 0.5, w: float = 0.1, h: float = 0.1) -> list:
    return [c, x, y, w, h]


def arrays(*files):
    return [np.array(rows, dtype=np.float32).reshape(-1, 5) for rows in files]


NESTED_NAMES = ["person", "man", "woman", "car"]


def nested_labels():
    """person alone, person+man (x3), person+woman (x2), car alone (x2): man, woman are subclasses of person."""
    files = [
        [box(0, 0.1), box(0, 0.3), box(1, 0.3), box(3, 0.7)],  # one person, one man (also person), a car
        [box(0, 0.2), box(1, 0.2), box(0, 0.5), box(2, 0.5)],  # man, woman
        [box(1, 0.4), box(0, 0.4), box(2, 0.8), box(0, 0.8), box(3, 0.1)],  # rows in any order
        [box(0, 0.6), box(1, 0.6)],
    ]
    return arrays(*files), [f"f{i}.txt" for i in range(len(files))]


def test_one_class_per_box_suggests_ce():
    labels = arrays([box(0, 0.1), box(1, 0.3)], [box(2, 0.5), box(2, 0.5, w=0.2)])  # same centre, other box
    s = diagnose_labels(labels, ["a.txt", "b.txt"], ["a", "b", "c"])
    assert (s.boxes, s.rows, s.multilabel_boxes, s.pairs, s.implications) == (4, 4, 0, {}, [])
    assert s.loss == "ce" and s.suggested_groups == []
    assert s.class_boxes == [1, 1, 2]
    assert s.lines()[-1].startswith("Recommendation: --cls-loss ce")


def test_planted_subclasses_suggest_grouped_with_valid_groups():
    labels, files = nested_labels()
    s = diagnose_labels(labels, files, NESTED_NAMES)
    # 6 shared boxes (3 person+man, 2 person+woman, ... ) in 4 files, the same count as the loss-side check
    assert s.multilabel_boxes == 6 == sum(find_multilabel_boxes(labels, files).values())
    assert s.multilabel_files == find_multilabel_boxes(labels, files)
    assert s.pairs == {(0, 1): 4, (0, 2): 2}
    assert s.class_boxes == [7, 4, 2, 2]
    assert s.implications == [(1, 0, 4), (2, 0, 2)]
    assert s.overlaps == [] and s.loss == "grouped"
    # person and car never share a box: an exclusive top group; man | woman refine person
    assert s.suggested_groups == [{"classes": ["person", "car"]}, {"classes": ["man", "woman"], "parent": "person"}]
    spec = yaml.safe_load(s.groups_yaml())["cls_groups"]
    groups = parse_class_groups(spec, 4, NESTED_NAMES, "test")
    assert groups.class_parents == [None, 0, 0, None]
    text = "\n".join(s.lines())
    assert "man -> person (4 boxes)" in text and "cls_groups:" in text and "--cls-loss grouped" in text


def test_free_overlap_suggests_bce():
    # 'red' is on cars and on boats but also alone; cars are not always red: nothing is nested
    labels = arrays([box(0, 0.1), box(1, 0.1), box(1, 0.3)], [box(0, 0.5), box(2, 0.5), box(0, 0.8)])
    s = diagnose_labels(labels, ["a.txt", "b.txt"], ["red", "car", "boat"])
    assert s.implications == [] or all(a != 0 for a, _, _ in s.implications)
    assert (0, 1, 1) in s.overlaps and s.loss == "bce" and s.suggested_groups == []


def test_siblings_sharing_boxes_go_to_separate_groups_and_chains_find_direct_parent():
    names = ["person", "man", "adult", "boy"]
    files = [
        [box(0, 0.1), box(1, 0.1), box(2, 0.1)],  # person, man, adult
        [box(0, 0.2), box(1, 0.2), box(3, 0.2)],  # person, man, boy
        [box(0, 0.3), box(1, 0.3), box(3, 0.3)],
        [box(0, 0.4), box(2, 0.4)],  # person, adult
        [box(0, 0.5), box(0, 0.6), box(2, 0.6)],
    ]
    s = diagnose_labels(arrays(*files), [f"{i}.txt" for i in range(5)], names)
    assert s.loss == "grouped", s.lines()
    # boy implies man and person; man is the more specific one, so boy refines man
    assert {"classes": ["boy"], "parent": "man"} in s.suggested_groups
    # man and adult share a box: they cannot be one softmax group under person
    under_person = [g["classes"] for g in s.suggested_groups if g.get("parent") == "person"]
    assert sorted(under_person) == [["adult"], ["man"]]
    parse_class_groups(s.suggested_groups, 4, names, "test")


def test_equivalent_classes_are_reported_not_grouped():
    labels = arrays([box(0, 0.1), box(1, 0.1)], [box(0, 0.3), box(1, 0.3), box(2, 0.7)])
    s = diagnose_labels(labels, ["a.txt", "b.txt"], ["a", "a2", "b"])
    assert s.equivalent == [(0, 1)] and s.loss == "bce" and s.suggested_groups == []
    assert any("duplicate" in ln for ln in s.lines())


def test_single_shared_box_is_not_a_subclass_by_default():
    labels = arrays([box(0, 0.1), box(1, 0.1), box(0, 0.4)])
    s = diagnose_labels(labels, ["a.txt"], ["a", "b"])
    assert s.implications == [] and s.loss == "bce"
    assert diagnose_labels(labels, ["a.txt"], ["a", "b"], min_boxes=1).implications == [(1, 0, 1)]


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 label arrays for 1 files"):
        diagnose_labels(arrays([box(0, 0.1)], [box(0, 0.2)]), ["a.txt"], ["a"])


def test_diagnose_dataset_reads_a_split(tmp_path):
    img, lab = tmp_path / "images", tmp_path / "labels"
    img.mkdir()
    lab.mkdir()
    labels, files = nested_labels()
    for i, lb in enumerate(labels):
        (img / f"{i}.jpg").write_bytes(b"")  # only the names matter here
        (lab / f"{i}.txt").write_text("\n".join(" ".join(f"{v:g}" for v in r) for r in lb.tolist()) + "\n")
    (img / "background.jpg").write_bytes(b"")  # no label file: skipped
    s = diagnose_dataset({"train": str(img), "names": NESTED_NAMES, "nc": 4})
    assert s.files == 4 and s.loss == "grouped" and s.multilabel_boxes == 6


def test_training_start_up_diagnosis_gives_the_ce_warning_from_the_same_scan(log_lines):
    """The trainer prints the diagnosis and, with ce, the multi-label warning of utils.loss.warn_multilabel,
    naming the same files, from one scan of the labels; no warning with bce or on one-class boxes."""
    from types import SimpleNamespace

    from engine.train.model_setup import log_label_diagnosis
    from utils.loss import warn_multilabel
    labels, files = nested_labels()
    dataset = SimpleNamespace(labels=labels, label_files=files)
    log_label_diagnosis(dataset, NESTED_NAMES, "ce")
    ce_lines = list(log_lines)
    warnings = [ln for ln in ce_lines if "cannot learn multi-label boxes" in ln]
    assert len(warnings) == 1 and any(ln.startswith("Recommendation: --cls-loss grouped") for ln in ce_lines)
    log_lines.clear()
    assert warn_multilabel(labels, files, "ce") == files  # every file holds a multi-label box
    assert log_lines == warnings  # word for word the warning warn_multilabel gives
    log_lines.clear()
    log_label_diagnosis(dataset, NESTED_NAMES, "bce")
    assert log_lines and not any("cannot learn multi-label boxes" in ln for ln in log_lines)
    log_lines.clear()
    single = SimpleNamespace(labels=arrays([box(0, 0.1)], [box(1, 0.3)]), label_files=["a.txt", "b.txt"])
    log_label_diagnosis(single, NESTED_NAMES, "ce")
    assert log_lines and not any("cannot learn multi-label boxes" in ln for ln in log_lines)
