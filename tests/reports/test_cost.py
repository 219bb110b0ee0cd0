"""The report's Cost section (reports/cost.py) and the pairing rule of one device kind per pair
(reports.stats.paired_difference's ``kinds``, reports.ablation's Verdict): what each run trained
on, mixed runs named and never paired, what made the runs where they differ."""

import json

from reports import ablation
from reports.cost import cost_section, iterations_by_device, provenance_groups
from reports.runs import Run, load_runs, trained_on
from reports.table_io import Tables, write_tables
from tests.sweep_fixtures import write_run

CPU = {"device": "cpu (2 threads)", "kind": "cpu", "precision": "fp32"}
H200 = {"device": "NVIDIA H200", "kind": "cuda", "precision": "bf16"}
MADE = {"python": "3.11.9", "torch": "2.14.1", "git_commit": "0123456789abcdef", "git_dirty": False,
        "cpu": "AMD EPYC", "gpu": None}


def run(name, seed, ap, devices, provenance=MADE, batch=8):
    return Run(None, name, status="finished", seconds=100.0, device=devices[-1]["device"], seed=seed,
               eval={"AP": ap}, metrics=[{"iter": sum(d["iterations"] for d in devices)}],
               config={"schedule": {"batch_size": batch}}, devices=devices, provenance=provenance)


def test_iterations_by_device_sum_each_kind_and_name_a_mixed_run():
    runs = [run("a/seed0", 0, .5, [{**CPU, "iterations": 3000}]),
            run("b/seed0", 0, .5, [{**H200, "iterations": 4000}, {**CPU, "iterations": 2000}])]
    assert trained_on(runs[1]) == "mixed: cuda bf16 x4000, cpu fp32 x2000"
    assert iterations_by_device(runs) == [
        {"device": "cpu (2 threads)", "kind": "cpu", "precision": "fp32", "runs": 2, "iterations": 5000},
        {"device": "NVIDIA H200", "kind": "cuda", "precision": "bf16", "runs": 1, "iterations": 4000}]
    md = "\n".join(cost_section(runs))
    assert "| cpu (2 threads) | cpu | fp32 | 2 | 5000 |" in md and "| NVIDIA H200 | cuda | bf16 | 1 | 4000 |" in md
    assert "**Mixed**: 1 run(s) trained on more than one kind of device or precision, paired with no other: b/seed0." in md
    assert "Made with: cpu AMD EPYC, git_commit 0123456789ab, git_dirty False, gpu –, python 3.11.9, torch 2.14.1." in md
    assert "differ in what made them" not in md  # every run made alike: one line


def test_runs_made_differently_get_a_table_of_what_differs():
    other = {**MADE, "torch": "2.15.0", "gpu": "NVIDIA H200"}
    runs = [run("a", 0, .5, [{**CPU, "iterations": 10}]), run("b", 1, .5, [{**CPU, "iterations": 10}], other),
            run("c", 2, .5, [{**CPU, "iterations": 10}], other)]
    shared, groups = provenance_groups(runs)
    assert shared == {"cpu": "AMD EPYC", "git_commit": "0123456789abcdef", "git_dirty": False, "python": "3.11.9"}
    assert groups == [({"gpu": None, "torch": "2.14.1"}, ["a"]), ({"gpu": "NVIDIA H200", "torch": "2.15.0"}, ["b", "c"])]
    md = "\n".join(cost_section(runs))
    assert "| gpu | torch | runs |" in md and "| – | 2.14.1 | 1 |" in md and "| NVIDIA H200 | 2.15.0 | 2 |" in md
    assert "Every run trained on one kind of device and precision, start to end." in md
    assert "Every run trained with the same code" not in md  # no run recorded its training code


def test_commits_that_leave_the_training_code_alone_are_said_to():
    later = {**MADE, "git_commit": "fedcba9876543210"}
    runs = [run("a", 0, .5, [{**CPU, "iterations": 10}]), run("b", 1, .5, [{**CPU, "iterations": 10}], later)]
    for r in runs:
        r.code = "7942a23c39b5b000"
    md = "\n".join(cost_section(runs))
    assert "training_code 7942a23c39b5b000" in md and "| git_commit | runs |" in md
    assert "Every run trained with the same code (`training_code`: train.py, detection/, losses/, datasets/)" in md
    runs[1].code = "0000000000000000"
    shared, groups = provenance_groups(runs)
    assert "training_code" not in shared and [g[0]["training_code"] for g in groups] == ["7942a23c39b5b000",
                                                                                         "0000000000000000"]
    assert "Every run trained with the same code" not in "\n".join(cost_section(runs))


def test_runs_without_records_keep_the_old_section():
    old = [Run(None, "a", status="finished", seconds=3600.0, device="cpu (2 threads)", metrics=[{"iter": 100}],
               config={"schedule": {"batch_size": 8}})]
    assert cost_section(old) == [
        "## Cost", "", "Wall time of every run (all its sessions, evaluations included) on what it ran on; the "
        "training images it saw and images/s over that time.", "",
        "| device | runs | time | training images | images/s |", "|---|---|---|---|---|",
        "| cpu (2 threads) | 1 | 1.00 h | 800 | 0.2 |", ""]


def test_the_verdict_pairs_only_runs_of_one_kind_and_marks_the_mixed_ones(tmp_path):
    """softmax_bg seed 2 trained partly on a GPU: it pairs with neither focal seed 2; seed 3
    trained on another kind than focal's: not paired either. Seeds 0, 1 and 4 are the pairs."""
    cpu = [{**CPU, "iterations": 100}]
    softmax = [run(f"seed{s}", s, .40 + .01 * s, cpu) for s in (0, 1, 4)]
    softmax += [run("seed2", 2, .9, [{**H200, "iterations": 60}, {**CPU, "iterations": 40}]),
                run("seed3", 3, .9, [{**H200, "iterations": 100}])]
    focal = [run(f"seed{s}", s, .30 + .005 * s, cpu) for s in range(5)]
    a = ablation.AblationRuns(title="t", methods=["softmax_bg", "focal"], seeds=list(range(5)), tune_iterations="1",
                              final_iterations="1", selection={}, final={"softmax_bg": softmax, "focal": focal},
                              controls={}, why_not={}, runs=softmax + focal)
    md = (ablation.write(a, tmp_path)).read_text()  # differences 10, 10.5, 12: mean 10.83, std 1.04, t(2) 4.30
    assert ("softmax_bg - focal = +10.8 AP [+8.2, +13.4], 3 paired seeds (seeds 2, 3 not paired: trained on "
            "different devices or precisions): softmax_bg better") in md
    assert "| softmax_bg | seed2 | 2 | finished | 90.0 | – | **mixed: cuda bf16 x60, cpu fp32 x40** |" in md
    assert "| focal | seed0 | 0 | finished | 30.0 | – | cpu fp32 |" in md


def test_devices_and_provenance_travel_through_the_tables(tmp_path):
    folder = write_run(tmp_path / "sweep" / "0_synthetic_focal", ["loss=focal", "seed=0"], 0, "finished", ap=.5)
    status = json.loads((folder / "status.json").read_text())
    devices = [{**H200, "iterations": 40}, {**CPU, "iterations": 20}]
    (folder / "status.json").write_text(json.dumps({**status, "devices": devices, "provenance": MADE}))
    runs, _ = load_runs(tmp_path / "sweep")
    assert runs[0].devices == devices and runs[0].provenance == MADE
    write_tables(runs, "s", tmp_path / "results" / "s", {r.name: (None, "none") for r in runs},
                 meta={"kind": "sweep"}, roots=[tmp_path / "sweep"])
    back = Tables(tmp_path / "results").runs("s")[0]
    assert back.devices == devices and back.provenance == MADE


def test_cost_per_method_counts_every_stage_and_splits_a_mixed_run_by_its_iterations():
    from reports.cost import cost_by_method

    runs = [run("tune/lr/focal/lr0.1", 0, .5, [{**CPU, "iterations": 10}]),
            run("final/focal/seed0", 0, .5, [{**H200, "iterations": 300}, {**CPU, "iterations": 100}]),
            run("controls/score_thresh_0.001/softmax_bg/seed0", 0, .5, [{**CPU, "iterations": 10}]),
            Run(None, "final/softmax_bg/seed1", seconds=7200.0, device="NVIDIA H200")]  # no devices record
    rows = {r["method"]: r for r in cost_by_method(runs, ["softmax_bg", "focal"])}
    # each run() took 100 s: focal 100 s of CPU + 25 s of CPU and 75 s on the card
    assert rows["focal"] == {"method": "focal", "runs": 2, "cpu_hours": 125 / 3600, "gpu_minutes": 75 / 60}
    assert rows["softmax_bg"] == {"method": "softmax_bg", "runs": 2, "cpu_hours": 100 / 3600, "gpu_minutes": 120.0}
    md = "\n".join(cost_section(runs, ["softmax_bg", "focal"]))
    assert "| softmax_bg | 2 | 0.03 | 120.0 |" in md and "| focal | 2 | 0.03 | 1.2 |" in md
