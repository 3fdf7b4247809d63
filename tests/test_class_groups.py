"""utils.class_groups: yaml parsing and its errors, grouped probabilities (against per-group softmax / sigmoid and
the chain rule), the grouped loss (hand-computed, per-group torch references, and its reductions to the ce / bce
modes of utils.loss), multi-label target merging, label conflicts, and tracing / ONNX / torch.export."""
import json
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from utils.class_groups import (ClassGroups, ClassGroupsError, GroupConflict, GroupedActivation, GroupedClassLoss,
                                close_under_parents, describe_label_conflicts, find_label_conflicts,
                                group_conflicts, grouped_probabilities, merge_multilabel_targets,
                                parse_class_groups)
from utils.loss import BCEClassLoss, SoftmaxCELoss

SRC = "data/people.yaml"
# 0 person, 1 car, 2 man, 3 woman, 4 red
NAMES5 = ["person", "car", "man", "woman", "red"]
SPEC5 = [["person", "car"], {"classes": ["man", "woman"], "parent": "person"}]
# a three-level hierarchy: person > {man, woman}; man > {boy, grown}; grown > {bearded}; plus red, blue, truck
NAMES9 = ["person", "car", "man", "woman", "boy", "grown", "bearded", "red", "blue"]
SPEC9 = [[0, 1], {"classes": [2, 3], "parent": 0}, {"classes": ["boy", "grown"], "parent": "man"},
         {"classes": ["bearded"], "parent": "grown"}, ["red", "blue"]]


def groups5() -> ClassGroups:
    return parse_class_groups(SPEC5, 5, NAMES5, SRC)


def groups9() -> ClassGroups:
    return parse_class_groups(SPEC9, 9, NAMES9, SRC)


# ---------------------------------------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------------------------------------
def test_parse_orders_declared_groups_then_free_singletons():
    g = groups5()
    assert g.groups == [[0, 1], [2, 3], [4]]
    assert g.parents == [None, 0, None]
    assert g.nc == 5 and g.class_parents == [None, None, 0, 0, None] and g.depth == 1
    assert groups9().depth == 3
    assert parse_class_groups(None, 3, None, SRC) == ClassGroups.singletons(3)
    assert g.describe(NAMES5) == "5 classes: {person, car}; person > {man, woman}; independent: red"


def test_spec_round_trip_through_json():
    g = groups9()
    spec = json.loads(json.dumps(g.to_spec()))
    assert spec[2] == {"classes": [4, 5], "parent": 2} and spec[0] == [0, 1]
    assert ClassGroups.from_spec(spec, 9) == g


def test_plain_softmax_and_sigmoid_are_recognised():
    one = parse_class_groups([[2, 0, 1]], 3, None, SRC)
    assert one.is_softmax and not one.is_sigmoid and one.activation == "softmax"
    free = parse_class_groups([], 3, None, SRC)
    assert free.is_sigmoid and not free.is_softmax and free.activation == "sigmoid"
    assert "same as cls_loss=ce" in one.describe() and "same as cls_loss=bce" in free.describe()
    parented = parse_class_groups([{"classes": [1], "parent": 0}], 3, None, SRC)
    assert not parented.is_sigmoid and parented.activation == "grouped"  # a sigmoid scaled by its parent


@pytest.mark.parametrize("spec,problem", [
    ("person", "must be a list of groups"),
    ([["man", "woman"], ["woman", "car"]], "class 'woman' (3) is already in data/people.yaml: cls_groups[0]"),
    ([["man", "man"]], "class 'man' (2) is listed twice"),
    ([["man", "lady"]], "unknown class name 'lady'"),
    ([["man", "womn"]], "did you mean 'woman'"),
    ([[0, 7]], "class id 7 is out of range for nc=5"),
    ([[0, -1]], "class id -1 is out of range"),
    ([[0, 1.5]], "1.5 is not a class id (int) or name (str)"),
    ([[True, 1]], "True is not a class id"),
    ([[]], "cls_groups[0] is empty"),
    ([{"classes": [], "parent": 0}], "cls_groups[0].classes is empty"),
    (["person"], "cls_groups[0] must be a list of class ids or names"),
    ([{"members": [2, 3]}], "unknown key(s) ['members']"),
    ([{"parent": 0}], "needs 'classes'"),
    ([{"classes": ["man", "woman"], "parent": "man"}], "parent 'man' (2) is a member of the group itself"),
    ([{"classes": ["man", "woman"], "parent": "king"}], "cls_groups[0].parent: unknown class name 'king'"),
    ([{"classes": ["man", "woman"], "parent": "car"}, {"classes": ["car", "person"], "parent": "woman"}],
     "the parents form a cycle: data/people.yaml: cls_groups[0] (parent 'car' (1)) -> "
     "data/people.yaml: cls_groups[1] (parent 'woman' (3)) -> data/people.yaml: cls_groups[0]"),
    ([{"classes": ["man"], "parent": "woman"}, {"classes": ["woman"], "parent": "red"},  # transitive, 3 long
      {"classes": ["red"], "parent": "man"}], "the parents form a cycle"),
])
def test_parse_errors_name_the_source_and_the_problem(spec, problem):
    with pytest.raises(ClassGroupsError) as e:
        parse_class_groups(spec, 5, NAMES5, SRC)
    msg = str(e.value)
    assert msg.startswith(SRC + ": ") and problem in msg, msg
    assert isinstance(e.value, ValueError)


def test_parse_errors_without_names_and_ambiguous_names():
    with pytest.raises(ClassGroupsError, match="no class names are known here, use ids"):
        parse_class_groups([["a", "b"]], 2, None, "ckpt")
    with pytest.raises(ClassGroupsError, match="'a' is ambiguous, 'names' has it at ids \\[0, 2\\]"):
        parse_class_groups([["a", "b"]], 3, ["a", "b", "a"], SRC)
    with pytest.raises(ClassGroupsError, match="2 names for nc=3"):
        parse_class_groups(None, 3, ["a", "b"], SRC)


def test_direct_construction_is_validated():
    with pytest.raises(ClassGroupsError, match=r"classes \[2\] are in no group"):
        ClassGroups([[0, 1]], [None], 3)
    with pytest.raises(ClassGroupsError, match="cycle"):
        ClassGroups([[0], [1]], [1, 0], 2)


# ---------------------------------------------------------------------------------------------------------
# probabilities
# ---------------------------------------------------------------------------------------------------------
def test_one_group_is_softmax_and_singletons_are_sigmoid_exactly():
    x = torch.randn(2, 3, 4, 4, 6) * 3
    assert torch.equal(grouped_probabilities(x, parse_class_groups([list(range(6))], 6, None, SRC)), x.softmax(-1))
    assert torch.equal(grouped_probabilities(x, ClassGroups.singletons(6)), x.sigmoid())


def test_mixed_groups_match_per_group_softmax_and_sigmoid():
    g = parse_class_groups([[4, 0, 2], [5, 1]], 7, None, SRC)  # 3 and 6 are free singletons
    x = torch.randn(5, 7, dtype=torch.float64) * 2
    p = grouped_probabilities(x, g)
    assert torch.allclose(p[:, [4, 0, 2]], x[:, [4, 0, 2]].softmax(1), rtol=0, atol=1e-15)
    assert torch.allclose(p[:, [5, 1]], x[:, [5, 1]].softmax(1), rtol=0, atol=1e-15)
    assert torch.allclose(p[:, [3, 6]], x[:, [3, 6]].sigmoid(), rtol=0, atol=1e-15)


def test_subclass_scores_follow_the_chain_rule():
    x = torch.randn(6, 9, dtype=torch.float64) * 2
    p = grouped_probabilities(x, groups9())
    # reference: conditional probabilities per group, then multiply down the chain person > man > grown > bearded
    top = x[:, [0, 1]].softmax(1)
    sex = x[:, [2, 3]].softmax(1)
    age = x[:, [4, 5]].softmax(1)
    person, man = top[:, 0], top[:, 0] * sex[:, 0]
    grown = man * age[:, 1]
    expected = torch.stack([person, top[:, 1], man, person * sex[:, 1], man * age[:, 0], grown,
                            grown * x[:, 6].sigmoid(), *x[:, [7, 8]].softmax(1).T], 1)
    assert torch.allclose(p, expected, rtol=1e-12, atol=0)
    # softmax children share their parent's score exactly; a singleton child stays below it
    assert torch.allclose(p[:, 2] + p[:, 3], p[:, 0], rtol=1e-12, atol=0)
    assert torch.allclose(p[:, 4] + p[:, 5], p[:, 2], rtol=1e-12, atol=0)
    assert (p[:, 6] < p[:, 5]).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_logits_are_decoded_in_fp32(dtype):
    x = (torch.randn(3, 9) * 4).to(dtype)
    p = grouped_probabilities(x, groups9())
    assert p.dtype == torch.float32
    assert torch.allclose(p, grouped_probabilities(x.float(), groups9()), rtol=0, atol=1e-7)


# ---------------------------------------------------------------------------------------------------------
# loss
# ---------------------------------------------------------------------------------------------------------
def test_grouped_loss_hand_computed():
    # groups: {person, car}, person > {man, woman}, {red}; nc = 5, N = 3 rows
    ln = math.log
    x = torch.tensor([
        [ln(3), 0.0, 0.0, ln(3), 0.0],       # A, labels man + red (person added by closure)
        [0.0, ln(4), 1.7, -2.3, ln(3)],      # B, labels car: man / woman logits are irrelevant
        [0.4, -0.9, 0.8, 0.1, ln(4)],        # C, labels red only: {person, car} unknown, {man, woman} too
    ], dtype=torch.float64, requires_grad=True)
    hot = torch.tensor([[0, 0, 1, 0, 1], [0, 1, 0, 0, 0], [0, 0, 0, 0, 1]], dtype=torch.float64)
    # A: {person, car} CE -ln(3/4) = ln(4/3); {man, woman} CE -ln(1/4) = ln 4; red BCE(0, 1) = ln 2
    # B: {person, car} CE -ln(4/5) = ln(5/4); {man, woman} skipped (not a person); red BCE(ln 3, 0) = -ln(1/4) = ln 4
    # C: {person, car} unknown: 0; {man, woman} skipped; red BCE(ln 4, 1) = -ln(4/5) = ln(5/4)
    # sum = ln(4/3 * 4 * 2 * 5/4 * 4 * 5/4) = ln(200/3); divided by N * nc = 15
    expected = ln(200 / 3) / 15
    loss = GroupedClassLoss(groups5())(x, hot)
    assert loss.item() == pytest.approx(expected, rel=1e-12)

    # the same from torch's own per-group losses
    ce, bce = F.cross_entropy, F.binary_cross_entropy_with_logits
    t = lambda v: torch.tensor([v], dtype=torch.float64)
    reference = (ce(x[0:1, [0, 1]], torch.tensor([0])) + ce(x[0:1, [2, 3]], torch.tensor([0])) + bce(x[0, 4:], t(1))
                 + ce(x[1:2, [0, 1]], torch.tensor([1])) + bce(x[1, 4:], t(0)) + bce(x[2, 4:], t(1))) / 15
    assert loss.item() == pytest.approx(reference.item(), rel=1e-12)

    # unknown / inapplicable groups pass no gradient to their logits
    loss.backward()
    assert torch.equal(x.grad[1, 2:4], torch.zeros(2, dtype=torch.float64))
    assert torch.equal(x.grad[2, :4], torch.zeros(4, dtype=torch.float64))
    assert (x.grad[0] != 0).all()


def _reference_loss(x, hot, g, gamma, eps):
    """Loop over rows and groups with torch's functional losses (the closure is applied by hand in `hot`)."""
    total = x.new_zeros(())
    for i in range(x.shape[0]):
        for members, parent in zip(g.groups, g.parents):
            if parent is not None and hot[i, parent] == 0:
                continue
            z, lab = x[i, members], hot[i, members]
            if len(members) == 1:
                target = lab * (1 - eps) + eps / 2
                loss = F.binary_cross_entropy_with_logits(z, target)
                if gamma:
                    p = z.sigmoid()
                    p_t = target * p + (1 - target) * (1 - p)
                    loss = loss * (target * 0.25 + (1 - target) * 0.75) * (1 - p_t) ** gamma
            elif lab.any():
                c = int(lab.argmax())
                loss = F.cross_entropy(z[None], torch.tensor([c]), label_smoothing=eps)
                loss = loss * (1 - z.softmax(0)[c]) ** gamma
            else:
                continue
            total = total + loss.sum()
    return total / (x.shape[0] * g.nc)


@pytest.mark.parametrize("gamma,eps", [(0.0, 0.0), (0.0, 0.1), (1.5, 0.0), (2.0, 0.2)])
def test_grouped_loss_matches_per_group_reference(gamma, eps):
    g = groups9()
    x = torch.randn(7, 9, dtype=torch.float64) * 2
    hot = torch.zeros(7, 9, dtype=torch.float64)
    leaf = [[6, 8], [4], [3, 7], [1], [7], [0, 5], []]  # bearded+blue, boy, woman+red, car, red, person+grown, none
    for i, cls in enumerate(leaf):
        hot[i, cls] = 1
    closed = close_under_parents(hot, g)
    assert closed[0, [0, 2, 5, 6, 8]].tolist() == [1] * 5 and closed[0].sum() == 5  # bearded > grown > man > person
    assert closed[5, [0, 2, 5]].tolist() == [1, 1, 1]
    loss = GroupedClassLoss(g, gamma=gamma, label_smoothing=eps)(x, hot)
    assert loss.item() == pytest.approx(_reference_loss(x, closed, g, gamma, eps).item(), rel=1e-12)


@pytest.mark.parametrize("gamma,eps", [(0.0, 0.0), (0.0, 0.1), (1.5, 0.0), (1.5, 0.1)])
def test_reduces_to_ce_and_bce_modes(gamma, eps):
    nc, n = 6, 11
    x = torch.randn(n, nc, dtype=torch.float64) * 2
    tcls = torch.randint(0, nc, (n,))
    hot = F.one_hot(tcls, nc).to(x.dtype)
    one = GroupedClassLoss(parse_class_groups([list(range(nc))], nc, None, SRC), gamma, eps)(x, hot)
    assert one.item() == pytest.approx(SoftmaxCELoss(nc, gamma, eps)(x, tcls).item(), rel=1e-12)
    free = GroupedClassLoss(ClassGroups.singletons(nc), gamma, eps)(x, hot)
    assert free.item() == pytest.approx(BCEClassLoss(1.0, gamma, eps)(x, tcls).item(), rel=1e-12)


def test_loss_fp16_input_and_shape_errors():
    g = groups5()
    x = torch.randn(4, 5)
    hot = torch.tensor([[1, 0, 1, 0, 0]] * 4, dtype=torch.float32)
    low = GroupedClassLoss(g)(x.half(), hot)
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(GroupedClassLoss(g)(x.half().float(), hot).item(), rel=1e-6)
    with pytest.raises(ValueError, match=r"shape \(n, 5\)"):
        GroupedClassLoss(g)(x[:, :4], hot[:, :4])
    empty = GroupedClassLoss(g)(torch.zeros(0, 5, requires_grad=True), torch.zeros(0, 5))
    assert empty.item() == 0 and empty.requires_grad


# ---------------------------------------------------------------------------------------------------------
# labels
# ---------------------------------------------------------------------------------------------------------
def test_merge_duplicated_rows_into_multi_hot_boxes():
    targets = torch.tensor([
        [0, 4, 0.50, 0.50, 0.20, 0.30],  # box 0: red ...
        [1, 1, 0.50, 0.50, 0.20, 0.30],  # box 1: same coordinates, other image
        [0, 2, 0.50, 0.50 + 1e-7, 0.20, 0.30],  # ... + man (equal to ~1e-5) -> + person by closure
        [0, 1, 0.10, 0.20, 0.05, 0.05],  # box 2
        [0, 4, 0.50, 0.50, 0.20, 0.30],  # a repeated row changes nothing
    ])
    boxes, hot = merge_multilabel_targets(targets, 5, groups5())
    assert boxes.shape == (3, 6) and boxes[:, 1].tolist() == [0, 1, 2]
    assert torch.equal(boxes[:, [0, 2, 3, 4, 5]], targets[[0, 1, 3]][:, [0, 2, 3, 4, 5]])
    assert hot.tolist() == [[1, 0, 1, 0, 1], [0, 1, 0, 0, 0], [0, 1, 0, 0, 0]]
    _, raw = merge_multilabel_targets(targets, 5)  # no groups: no closure
    assert raw[0].tolist() == [0, 0, 1, 0, 1]
    b0, h0 = merge_multilabel_targets(torch.zeros(0, 6), 5, groups5())
    assert b0.shape == (0, 6) and h0.shape == (0, 5)
    with pytest.raises(ValueError, match=r"class values \[5.0\] are not class ids 0..4"):
        merge_multilabel_targets(torch.tensor([[0, 5, 0.5, 0.5, 0.1, 0.1]]), 5)


def test_closure_reaches_all_ancestors():
    hot = torch.zeros(2, 9)
    hot[0, 6] = 1  # bearded
    hot[1, 4] = 1  # boy
    closed = close_under_parents(hot, groups9())
    assert closed[0].nonzero().flatten().tolist() == [0, 2, 5, 6]
    assert closed[1].nonzero().flatten().tolist() == [0, 2, 4]
    assert hot.sum() == 2  # the input is left alone


def test_conflicting_labels_in_one_group_are_reported():
    g = groups5()
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.2, 0.2], [0, 2, 0.5, 0.5, 0.2, 0.2],  # car + man -> car + person
                            [0, 2, 0.2, 0.2, 0.1, 0.1], [0, 3, 0.2, 0.2, 0.1, 0.1],  # man + woman
                            [0, 0, 0.7, 0.7, 0.1, 0.1], [0, 4, 0.7, 0.7, 0.1, 0.1]])  # person + red: fine
    _, hot = merge_multilabel_targets(targets, 5, g)
    assert group_conflicts(hot, g) == [GroupConflict(0, 0, (0, 1)), GroupConflict(1, 1, (2, 3))]

    labels = [targets[:, 1:].numpy(), np.array([[2, 0.5, 0.5, 0.1, 0.1]]), targets[4:, 1:].numpy()]
    found = find_label_conflicts(labels, ["a.txt", "b.txt", "c.txt"], g)
    assert found == {"a.txt": [(0, 1), (2, 3)]}
    msg = describe_label_conflicts(found, NAMES5)
    assert "2 boxes in 1 label files" in msg and "a.txt: person+car, man+woman" in msg
    assert describe_label_conflicts({}) == ""


# ---------------------------------------------------------------------------------------------------------
# tracing and export
# ---------------------------------------------------------------------------------------------------------
def test_activation_traces_and_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    act = GroupedActivation(groups9()).eval()
    x = torch.randn(2, 3, 4, 4, 9) * 3
    eager = act(x)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace / legacy ONNX exporter deprecation notices
        traced = torch.jit.trace(act, (x,))
        torch.onnx.export(act, (x,), str(tmp_path / "act.onnx"), dynamo=False, opset_version=12,
                          input_names=["logits"], output_names=["probs"],
                          dynamic_axes={"logits": {0: "b", 2: "y", 3: "x"}, "probs": {0: "b", 2: "y", 3: "x"}})
    other = torch.randn(1, 3, 2, 5, 9) * 3  # no shape was baked into the trace
    assert torch.allclose(traced(x), eager, rtol=0, atol=1e-7)
    assert torch.allclose(traced(other), act(other), rtol=0, atol=1e-7)

    session = ort.InferenceSession(str(tmp_path / "act.onnx"), providers=["CPUExecutionProvider"])
    for inp in (x, other):
        (out,) = session.run(None, {"logits": inp.numpy()})
        assert np.abs(out - act(inp).numpy()).max() < 1e-6


def test_activation_torch_export():
    act = GroupedActivation(groups5()).eval()
    x = torch.randn(2, 3, 4, 4, 5)
    program = torch.export.export(act, (x,))
    assert torch.allclose(program.module()(x), act(x), rtol=0, atol=1e-7)
    assert not dict(act.state_dict())  # index buffers are not persistent: owners' state_dicts are unchanged
