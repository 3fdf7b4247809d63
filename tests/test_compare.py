"""compare.py: variant syntax, the seed-spread rule on hand-made numbers, resumable runs, the report, end to end."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from engine.cli import FlagError
from engine.compare import run_comparison
from engine.compare.runner import Execution, read_state, run_stage, write_state
from engine.compare.stats import caveat, compare_pair, pairwise, summarize, t_critical, t_two_sided_p
from engine.compare.variants import build_variants, parse_variant
from tests.train_helpers import ROOT, env, make_dataset, write_cfg, write_hyp

import compare  # noqa: E402  (the script's parser)


# --------------------------------------------------------------------------------------------------------
# variants
# --------------------------------------------------------------------------------------------------------
def test_variant_syntax():
    v = parse_variant("ce fl_gamma=1.5")
    assert (v.name, v.cls_loss, v.hyp, v.flags) == ("ce_fl_gamma1.5", "ce", {"fl_gamma": 1.5}, [])
    v = parse_variant("bce --label-smoothing 0.05")
    assert (v.name, v.cls_loss, v.hyp, v.flags) == ("bce_label-smoothing_0.05", "bce", {},
                                                     ["--label-smoothing", "0.05"])
    v = parse_variant("ce name=smooth cls=0.3 --label-smoothing 0.1")
    assert (v.name, v.hyp, v.flags) == ("smooth", {"cls": 0.3}, ["--label-smoothing", "0.1"])


@pytest.mark.parametrize("text, message", [
    ("focal", "must start with a class loss"),
    ("ce gamma", "neither KEY=VALUE nor a --flag"),
    ("ce --seed 3", "--seed cannot be passed to train.py here: use --seeds"),
    ("ce --proj x", "--proj cannot be passed"),  # an abbreviation of --project
    ("ce cls_loss=bce", "first word"),
    ("ce name=a/b", "may only hold"),
])
def test_variant_errors_name_the_problem(text, message):
    with pytest.raises(FlagError, match=message):
        parse_variant(text)


def test_variant_list_rules():
    assert [v.name for v in build_variants(None, [])] == ["bce", "ce"]
    assert [v.name for v in build_variants(["bce"], ["ce fl_gamma=2"])] == ["bce", "ce_fl_gamma2"]
    with pytest.raises(FlagError, match="two variants are named 'ce'"):
        build_variants(["ce"], ["ce"])
    with pytest.raises(FlagError, match="at least two variants"):
        build_variants(["ce"], [])


def test_unknown_flags_pass_through_to_train():
    opt, extra = compare.parse_opt(["--data", "d.yaml", "--workers", "0", "--epochs", "3", "--cls-loss", "bce", "ce",
                                    "--rect", "--img", "64"])
    assert opt.workers == 0 and opt.img_size == [64] and opt.cls_loss == ["bce", "ce"]
    assert extra == ["--epochs", "3", "--rect"]


# --------------------------------------------------------------------------------------------------------
# the seed-spread rule, on hand-made numbers
# --------------------------------------------------------------------------------------------------------
def test_difference_beyond_two_standard_errors_exceeds_the_spread():
    a, b = summarize([0.50, 0.52, 0.51]), summarize([0.60, 0.61, 0.59])
    r = compare_pair(a, b)
    # s = 0.01 each: SE = sqrt(2 * 0.01^2 / 3) = 0.008165; diff 0.09 = 11.0 SE; equal variances: df = 4
    assert r["diff"] == pytest.approx(0.09) and r["se"] == pytest.approx(math.sqrt(2e-4 / 3))
    assert r["exceeds"] and r["better"] == "b" and r["df"] == pytest.approx(4.0)
    assert r["t"] == pytest.approx(0.09 / math.sqrt(2e-4 / 3))
    assert r["p"] < 0.001


def test_difference_inside_the_spread_is_within():
    a, b = summarize([0.50, 0.60, 0.55]), summarize([0.56, 0.66, 0.61])  # diff 0.06, s 0.05: 2 SE = 0.0816
    r = compare_pair(a, b)
    assert r["se"] == pytest.approx(math.sqrt(2 * 0.05 ** 2 / 3)) and not r["exceeds"] and r["better"] is None
    assert r["verdict"] == "within the seed spread"


def test_lower_is_better_metrics_and_edge_cases():
    ece_a, ece_b = summarize([0.10, 0.11, 0.12]), summarize([0.05, 0.06, 0.04])
    assert compare_pair(ece_a, ece_b, higher_is_better=False)["better"] == "b"
    assert compare_pair(summarize([0.5]), summarize([0.6, 0.7]))["verdict"].startswith("n/a (needs 2+ seeds")
    assert compare_pair(summarize([None, float("nan")]), summarize([0.6, 0.7]))["verdict"].startswith("n/a")
    assert compare_pair(summarize([0.5, 0.5]), summarize([0.5, 0.5]))["exceeds"] is False
    same = compare_pair(summarize([0.5, 0.5]), summarize([0.6, 0.6]))
    assert same["exceeds"] and same["p"] == 0.0
    rows = pairwise({"x": summarize([1, 2]), "y": summarize([1, 2]), "z": summarize([9, 10])})
    assert [(r["a"], r["b"], r["better"]) for r in rows] == [("x", "y", None), ("x", "z", "z"), ("y", "z", "z")]


def test_report_caveat_uses_the_seed_count():
    assert t_critical(4) == pytest.approx(2.776, abs=1e-3) and t_critical(8) == pytest.approx(2.306, abs=1e-3)
    assert "3 seeds per variant" in caveat(3) and "2.8 standard errors" in caveat(3)
    assert "no verdict" in caveat(1)


@pytest.mark.parametrize("t, df, p", [(12.706, 1, 0.05), (4.303, 2, 0.05), (2.776, 4, 0.05), (1.0, 1, 0.5),
                                      (2.0, 1e6, 0.0455)])
def test_student_t_tail_matches_tables(t, df, p):
    assert t_two_sided_p(t, df) == pytest.approx(p, abs=2e-4)


# --------------------------------------------------------------------------------------------------------
# orchestration with stand-in scripts (no torch): resume, skip, failures, the report
# --------------------------------------------------------------------------------------------------------
FAKE_TRAIN = textwrap.dedent('''
    import argparse, json, os, sys, pathlib
    p = argparse.ArgumentParser()
    for f in ("--project", "--name", "--seed", "--cls-loss", "--resume", "--workers", "--data", "--hyp", "--device",
              "--epochs"):
        p.add_argument(f)
    p.add_argument("--img", nargs="+")
    p.add_argument("--exist-ok", action="store_true")
    p.add_argument("--label-smoothing")
    a = p.parse_args()
    with open(os.environ["FAKE_CALLS"], "a") as f:
        f.write(json.dumps({"argv": sys.argv[1:], "omp": os.environ.get("OMP_NUM_THREADS")}) + "\\n")
    if a.cls_loss == "grouped":
        sys.exit("grouped: simulated crash")
    run = pathlib.Path(a.resume).parents[1] if a.resume else pathlib.Path(a.project) / a.name
    (run / "weights").mkdir(parents=True, exist_ok=True)
    for w in ("last.pt", "best.pt"):
        (run / "weights" / w).write_text(a.cls_loss or "resumed")
''')

FAKE_VAL = textwrap.dedent('''
    import argparse, json, pathlib
    p = argparse.ArgumentParser()
    for f in ("--project", "--name", "--weights", "--workers", "--data", "--img", "--device"):
        p.add_argument(f)
    p.add_argument("--exist-ok", action="store_true")
    a = p.parse_args()
    run = pathlib.Path(a.project) / a.name
    seed = int(a.name.rsplit("-s", 1)[1])
    base = 0.80 if a.name.startswith("ce") else 0.70
    m = {"metrics": {"P": 0.9, "R": 0.8, "mAP50": base + 0.01 * seed, "mAP50-95": base / 2 + 0.001 * seed,
                     "fitness": 0.5},
         "per_class": [{"class": 0, "name": "red", "labels": 3, "P": 1, "R": 1, "AP50": base, "AP": base / 2},
                       {"class": 2, "name": "blue", "labels": 4, "P": 1, "R": 1, "AP50": base - 0.1, "AP": 0.2}],
         "calibration": {"ece": 0.1 if base > 0.75 else 0.2, "wrong_class_rate": 0.05 + 0.01 * seed,
                         "confused_pairs": [{"true_name": "red", "pred_name": "blue", "count": 2 + seed}],
                         "definitions": {"ece": "expected calibration error"}}}
    (run / "metrics.json").write_text(json.dumps(m))
''')


@pytest.fixture
def fake_setup(tmp_path, monkeypatch):
    data = make_dataset(tmp_path / "ds", n=4)
    (tmp_path / "train.py").write_text(FAKE_TRAIN)
    (tmp_path / "val.py").write_text(FAKE_VAL)
    calls = tmp_path / "calls.jsonl"
    calls.touch()
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    monkeypatch.chdir(tmp_path)
    ex = Execution(jobs=2, threads=1, workers=0, train_script=tmp_path / "train.py", val_script=tmp_path / "val.py")
    return data, ex, calls


def fake_compare(data: Path, ex: Execution, *extra: str) -> dict:
    argv = ["--data", str(data), "--img", "64", "--epochs", "1", "--seeds", "3", "--project", "out", *extra]
    opt, train_extra = compare.parse_opt(argv)
    return run_comparison(opt, train_extra, ["compare.py", *argv], execution=ex)


def calls_of(calls: Path) -> list:
    return [json.loads(ln) for ln in calls.read_text().splitlines()]


def test_runs_report_and_second_invocation_skips_everything(fake_setup):
    data, ex, calls = fake_setup
    rep = fake_compare(data, ex, "--cls-loss", "bce", "ce", "--variant", "bce --label-smoothing 0.1")
    exp = Path(rep["experiment"])
    assert exp == Path("out/exp").resolve() or exp.name == "exp"
    launched = calls_of(calls)
    assert len(launched) == 9 and all(c["omp"] == "1" for c in launched)
    seeds = sorted((c["argv"][c["argv"].index("--name") + 1]) for c in launched)
    assert seeds[:3] == ["bce-s0", "bce-s1", "bce-s2"]
    assert any("--label-smoothing" in c["argv"] for c in launched)
    # report.json: every number; the hand-made metrics give known means and a clear verdict
    j = json.loads((exp / "report.json").read_text())
    assert j["variants"]["ce"]["metrics"]["mAP50"]["mean"] == pytest.approx(0.81)
    assert j["variants"]["bce"]["metrics"]["mAP50"]["std"] == pytest.approx(0.01)
    assert j["variants"]["ce"]["per_class"]["blue"]["AP50"]["mean"] == pytest.approx(0.7)
    pair = next(p for p in j["pairs"]["mAP50"] if (p["a"], p["b"]) == ("bce", "ce"))
    assert pair["exceeds"] and pair["better"] == "ce" and pair["diff"] == pytest.approx(0.1)
    ece = next(p for p in j["pairs"]["ece"] if (p["a"], p["b"]) == ("bce", "ce"))
    assert ece["better"] == "ce"  # lower ECE, zero spread
    wrong = next(p for p in j["pairs"]["wrong_class_rate"] if (p["a"], p["b"]) == ("bce", "ce"))
    assert not wrong["exceeds"] and wrong["diff"] == pytest.approx(0.0)
    assert all(r["status"] == "finished" and r["train_seconds"] is not None for r in j["runs"])
    assert j["confused_pairs"]["ce"] == [{"true": "red", "pred": "blue", "count": 9}]
    md = (exp / "report.md").read_text()
    for section in ("## Results", "## Is a difference larger than the seed spread?", "## Per-class AP@0.5",
                    "## Runs", "## Plots", "exceeds the seed spread: `ce` better", "## What the labels say"):
        assert section in md, section
    assert {"metrics.png", "per_class_ap.png", "train_time.png"} <= set(j["plots"])
    assert all((exp / p).stat().st_size > 1000 for p in j["plots"])
    # the same command again: same folder, nothing launched, everything skipped
    rep2 = fake_compare(data, ex, "--cls-loss", "bce", "ce", "--variant", "bce --label-smoothing 0.1")
    assert Path(rep2["experiment"]) == exp and len(calls_of(calls)) == 9
    assert {r.status for r in rep2["results"]} == {"skipped"}
    # other settings: a new folder
    rep3 = fake_compare(data, ex, "--cls-loss", "bce", "ce", "--seeds", "1")
    assert Path(rep3["experiment"]).name == "exp2"


def test_failed_run_is_reported_and_does_not_stop_the_others(fake_setup):
    data, ex, calls = fake_setup
    rep = fake_compare(data, ex, "--cls-loss", "ce", "grouped", "--seeds", "2")
    by = {r.run.name: r for r in rep["results"]}
    assert [by[f"grouped-s{s}"].status for s in (0, 1)] == ["failed", "failed"]
    assert [by[f"ce-s{s}"].status for s in (0, 1)] == ["finished", "finished"]
    assert "simulated crash" in by["grouped-s0"].log.read_text()
    md = (Path(rep["experiment"]) / "report.md").read_text()
    assert "**2 run(s) failed**" in md and "FAILED" in md and str(by["grouped-s1"].log) in md
    assert "n/a (no value for a variant)" in md


def test_interrupted_run_is_resumed_and_changed_settings_retrain(fake_setup):
    data, ex, calls = fake_setup
    rep = fake_compare(data, ex, "--cls-loss", "bce", "ce", "--seeds", "1")
    exp = Path(rep["experiment"])
    runs = {r.run.name: r for r in rep["results"]}
    # bce-s0: interrupted mid-training (checkpoint, no metrics); ce-s0: trained with other settings
    bce, ce = runs["bce-s0"], runs["ce-s0"]
    (bce.dir / "metrics.json").unlink()
    write_state(bce.dir, dict(read_state(bce.dir), trained=False))
    (bce.dir / "weights" / "best.pt").unlink()
    write_state(ce.dir, dict(read_state(ce.dir), digest="something-else"))
    (ce.dir / "stale.txt").write_text("from another setting")
    assert run_stage(bce.run, bce.dir) == "resume" and run_stage(ce.run, ce.dir) == "fresh"
    n = len(calls_of(calls))
    rep2 = fake_compare(data, ex, "--cls-loss", "bce", "ce", "--seeds", "1")
    assert Path(rep2["experiment"]) == exp
    new = calls_of(calls)[n:]
    resumed = [c for c in new if "--resume" in c["argv"]]
    assert len(new) == 2 and len(resumed) == 1 and resumed[0]["argv"][1].endswith("bce-s0/weights/last.pt")
    assert not (ce.dir / "stale.txt").exists()  # restarted clean
    assert {r.run.name: r.actions for r in rep2["results"]} == {"bce-s0": ["resume", "val"],
                                                               "ce-s0": ["train", "val"]}


def test_hyp_overrides_become_a_hyp_file(fake_setup, tmp_path):
    data, ex, calls = fake_setup
    hyp = write_hyp(tmp_path / "hyp.yaml")
    rep = fake_compare(data, ex, "--hyp", str(hyp), "--cls-loss", "ce", "--variant", "ce fl_gamma=1.5 name=focal",
                       "--seeds", "1")
    focal = next(c["argv"] for c in calls_of(calls) if "focal-s0" in c["argv"])
    hyps = [focal[i + 1] for i, a in enumerate(focal) if a == "--hyp"]
    assert hyps[0] == str(hyp.resolve()) and hyps[-1].endswith("hyps/focal.yaml")  # the last --hyp wins
    written = yaml.safe_load(Path(hyps[-1]).read_text())
    assert written["fl_gamma"] == 1.5 and written["lr0"] == yaml.safe_load(hyp.read_text())["lr0"]
    assert Path(rep["experiment"]).name == "exp"


# --------------------------------------------------------------------------------------------------------
# end to end: the real train.py and val.py on a tiny dataset
# --------------------------------------------------------------------------------------------------------
def val_script() -> Path:
    """val.py once it writes metrics.json (the validator's change); until then the stand-in that adds it."""
    real = ROOT / "val.py"
    return real if "metrics.json" in real.read_text() else ROOT / "tests" / "compare_val_standin.py"


def test_compare_end_to_end_and_rerun_trains_nothing(tmp_path):
    data = make_dataset(tmp_path / "ds", n=8)
    cfg, hyp = write_cfg(tmp_path / "tiny.yaml"), write_hyp(tmp_path / "hyp.yaml")
    cmd = [sys.executable, str(ROOT / "compare.py"), "--data", str(data), "--cfg", str(cfg), "--hyp", str(hyp),
           "--weights", "", "--img", "64", "--batch", "4", "--epochs", "1", "--workers", "0", "--noval",
           "--noplots", "--noautoanchor", "--device", "cpu", "--seeds", "2", "--cls-loss", "bce", "ce",
           "--project", str(tmp_path / "cmp"), "--val-script", str(val_script())]
    out = subprocess.run(cmd, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    exp = tmp_path / "cmp" / "exp"
    j = json.loads((exp / "report.json").read_text())
    assert [r["status"] for r in j["runs"]] == ["finished"] * 4, out.stderr[-2000:]
    for r in j["runs"]:
        assert 0.0 <= r["mAP50"] <= 1.0 and r["train_seconds"] > 0
        assert (Path(r["dir"]) / "weights" / "best.pt").is_file()
        opt = yaml.safe_load((Path(r["dir"]) / "opt.yaml").read_text())
        assert (opt["seed"], opt["cls_loss"]) == (r["seed"], r["variant"])
    for v in ("bce", "ce"):
        m = j["variants"][v]["metrics"]
        assert m["mAP50"]["n"] == 2 and m["mAP50"]["std"] is not None
        assert set(j["variants"][v]["per_class"]) <= {"red", "green", "blue"}
    assert {"mAP50", "mAP50-95", "ece", "wrong_class_rate", "train_seconds"} <= set(j["pairs"])
    assert "every box has one class" in "\n".join(j["diagnosis"]["lines"])
    text = out.stdout + out.stderr
    assert "bce-s0: finished" in text and "4/4 runs finished" in text
    logs = {p.name: p.stat().st_mtime_ns for p in (exp / "logs").iterdir()}
    t0 = time.time()
    again = subprocess.run(cmd, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=200)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (again.stdout + again.stderr).count("skipped (finished before)") == 4
    assert {p.name: p.stat().st_mtime_ns for p in (exp / "logs").iterdir()} == logs  # no subprocess ran
    assert not (tmp_path / "cmp" / "exp2").exists() and time.time() - t0 < 120


def test_experiment_folder_is_found_by_its_settings_hash(tmp_path):
    from engine.compare.experiment import SPEC_FILE, find_experiment_dir
    project = tmp_path / "runs"
    for name, digest in (("exp", "aaa"), ("exp2", "bbb"), ("mine", "ccc")):
        (project / name).mkdir(parents=True)
        (project / name / SPEC_FILE).write_text(f"digest: {digest}\n")
    assert find_experiment_dir(project, None, "bbb", False, False) == project / "exp2"
    assert find_experiment_dir(project, None, "zzz", False, False) == project / "exp3"  # new settings
    assert find_experiment_dir(project, None, "bbb", False, True) == project / "exp3"  # --fresh
    assert find_experiment_dir(project, "mine", "ccc", False, False) == project / "mine"
    assert find_experiment_dir(project, "mine", "zzz", False, False) == project / "mine2"
    assert find_experiment_dir(project, "mine", "zzz", True, False) == project / "mine"  # --exist-ok
    assert find_experiment_dir(project, "mine", "aaa", False, False) == project / "mine2"  # only that name
