"""The follow-up studies' driver (studies/followups.py): settings carried from the ablation's
selection, the sweeps each study launches, the imbalance study's lr per level, and one
study in miniature ending in its report."""

import os
import subprocess
import sys

import pytest
import yaml

from detection import build
from reports.table_io import read_csv
from studies.ablation import Setting
from studies.followups import Followups
from tests.conftest import ROOT
from tests.sweep_fixtures import write_run
from tools.results import check

CHOSEN = {"softmax_bg": {"optim.lr": 0.025}, "bce_alpha": {"optim.lr": 0.05, "loss.alpha": 0.9},
          "focal": {"optim.lr": 0.1, "loss.alpha": 0.5}}


@pytest.fixture
def ablation(tmp_path):
    out = tmp_path / "ablation"
    out.mkdir()
    (out / "selection.yaml").write_text(yaml.safe_dump({"chosen": CHOSEN, "candidates": []}))
    return out


def test_each_study_keeps_the_chosen_setting_but_what_it_sweeps_or_drops(tmp_path, ablation):
    f = Followups(tmp_path / "f", ablation)
    assert f.setting("alpha_sweep", "bce_alpha") == Setting({"optim.lr": 0.05})  # alpha is swept
    assert f.setting("gamma_sweep", "focal").overrides() == ["optim.lr=0.1"]  # alpha follows gamma (the paper's)
    assert "loss.alpha='${focal_paper_alpha:${loss.gamma}}'" in f.base("gamma_sweep", "focal")
    assert sorted(f.setting("prior_init", "focal").overrides()) == ["loss.alpha=0.5", "optim.lr=0.1"]
    assert [type(k).__name__ for k in (f.studies["alpha_sweep"], f.studies["imbalance_sweep"], f.studies["table1d"])] \
        == ["Grid", "Levels", "Families"]
    alphas = f.sweeps("alpha_sweep")  # one multirun per alpha, all in one folder
    jobs = [j for sweep in alphas for j in sweep.jobs()]
    assert f.seeds_of("alpha_sweep") == [0, 1] and f.seeds_of("prior_init") == f.seeds == [0, 1, 2]
    assert len(jobs) == 7 * 2 and len({sweep.dir for sweep in alphas}) == 1
    assert all("optim.lr=0.05" in j and "loss=bce_alpha" in j for j in jobs)
    assert sorted({j[-2] for j in jobs}) == sorted(f"loss.alpha={a}" for a in (0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999))
    assert alphas[0].command()[-1] == "hydra.sweep.subdir=alpha${loss.alpha}_seed${seed}"


def test_the_imbalance_study_tunes_at_the_sparse_extreme_and_carries_settings_to_the_middle(tmp_path, ablation):
    f = Followups(tmp_path / "f", ablation)
    tunes = f.tune_sweeps("imbalance_sweep")
    assert [t.values for t in tunes] == [[0.003125, 0.00625, 0.0125], [0.00625, 0.0125, 0.025], [0.0125, 0.025, 0.05]]
    assert all("dataset=synthetic_fg1to3500" in t.fixed and "eval_split=tune" in t.fixed for t in tunes)
    # the sparse extreme's longer schedule replaces the common one, in the tuning runs too
    assert all("schedule.max_iters=6000" in t.fixed and "schedule.max_iters=3000" not in t.fixed for t in tunes)
    for t, best in zip(tunes, (0.003125, 0.025, 0.025)):  # fake tuning runs: `best` has the highest AP
        for lr in t.values:
            run = write_run(t.dir / f"lr{lr}", ["loss=x"], 0, "finished", ap=0.4 if lr == best else 0.2)
            (run / "config.yaml").write_text(yaml.safe_dump({"seed": 0, "optim": {"lr": lr}}))
    lrs = f.lrs("imbalance_sweep")
    # log ratios: 1:543 is nearer 1:154 (dense: the ablation's lr), 1:1475 nearer 1:3542 (sparse: tuned)
    levels = f.studies["imbalance_sweep"].levels
    assert [lrs[("softmax_bg", level)] for level in levels] == [0.025, 0.025, 0.003125, 0.003125]
    assert [lrs[("focal", level)] for level in levels] == [0.1, 0.1, 0.025, 0.025]
    sweeps = f.sweeps("imbalance_sweep", lrs)
    assert len(sweeps) == 3 * 4
    def values(sweep, key):  # one override per key: the level's own replaces the common one
        return [o for o in sweep.fixed if o.startswith(f"{key}=")]

    assert "dataset=synthetic_fg1to1500" in sweeps[2].fixed and values(sweeps[2], "optim.lr") == ["optim.lr=0.003125"]
    assert [values(s, "schedule.max_iters") for s in sweeps[:4]] == \
        [["schedule.max_iters=3000"]] * 2 + [["schedule.max_iters=6000"]] * 2
    quick = Followups(tmp_path / "q", ablation, quick=True)  # the miniature keeps its own schedule
    assert quick.studies["imbalance_sweep"].at_level(quick, "synthetic_fg1to3500") == []


def test_a_tuned_lr_at_an_end_of_the_factors_is_extended_beyond_it(tmp_path, ablation, monkeypatch):
    """The ablation's edge rule (studies.ablation.extend_edge) in the follow-ups' tuning: the best
    at the low end -> /2 tried, up to tune.extend (2) times; a best inside the grid -> nothing more."""
    from studies.ablation import choose
    from studies.sweep import Sweep

    ap = {"softmax_bg": lambda lr: 0.5 - lr, "bce_alpha": lambda lr: 0.4 if lr == 0.0125 else 0.2,
          "focal": lambda lr: 0.3 if lr >= 0.00625 else 0.1}

    def fake_run(self):  # the finished runs a real sweep would write
        for lr in self.values:
            method = next(m for m in ap if f"/{m}" in str(self.dir))
            run = write_run(self.dir / f"lr{lr}", ["loss=x"], 0, "finished", ap=ap[method](lr))
            (run / "config.yaml").write_text(yaml.safe_dump({"seed": 0, "optim": {"lr": lr}}))

    monkeypatch.setattr(Sweep, "run", fake_run)
    f = Followups(tmp_path / "f", ablation)
    f.tune("imbalance_sweep")
    tried = {t.dir.name: sorted(float(p.name[2:]) for p in t.dir.iterdir()) for t in f.tune_sweeps("imbalance_sweep")}
    assert tried["softmax_bg"] == [0.00078125, 0.0015625, 0.003125, 0.00625, 0.0125]  # two steps down, still the edge
    assert tried["bce_alpha"] == [0.00625, 0.0125, 0.025]  # best inside: nothing more
    assert tried["focal"] == [0.0125, 0.025, 0.05]  # all equal: a tie at the edge says nothing beyond it
    assert choose(f.tune_sweeps("imbalance_sweep")[0])[0] == 0.00078125


def fake_final_run(ablation, method, seed, overrides, status="finished"):
    """A final-stage run of the ablation: its resolved config as train.py writes it."""
    from omegaconf import OmegaConf

    from detection import build

    run = write_run(ablation / "final" / method / f"seed{seed}", [*overrides, f"seed={seed}"], seed, status, ap=0.5)
    cfg = OmegaConf.to_container(build.config([*overrides, f"seed={seed}"]), resolve=True)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.pt").write_bytes(b"weights")
    return run


def test_jobs_the_ablation_already_ran_are_copied_not_trained(tmp_path, ablation):
    f = Followups(tmp_path / "f", ablation)
    base = ["loss=focal", "schedule.max_iters=3000", "schedule.eval_every=300", "optim.lr=0.1", "loss.alpha=0.5"]
    for seed in (0, 1, 2):
        fake_final_run(ablation, "focal", seed, base)
    fake_final_run(ablation, "focal", 3, base, status="diverged")
    on, off = [s for s in f.sweeps("prior_init") if s.dir.name == "focal"]
    assert on.grid == {"model.prior_init": [True]} and off.grid == {"model.prior_init": [False]}
    assert f.reusable(off) is None  # prior init off: not in the ablation
    pairs = f.reusable(on)
    assert [(name, src.name) for name, src in pairs] == [(f"prior_initTrue_seed{s}", f"seed{s}") for s in (0, 1, 2)]
    assert f.reuse(on) and f.reuse(on)  # the second time: already there
    copy = on.dir / "prior_initTrue_seed1"
    assert (copy / "reused_from.txt").read_text().strip() == str(ablation / "final" / "focal" / "seed1")
    assert yaml.safe_load((copy / ".hydra" / "overrides.yaml").read_text()) == on.jobs()[1]
    assert (copy / "status.json").is_file() and not (copy / "checkpoints").exists()  # a records copy
    # a changed schedule (or seed, setting, ...) is another run
    other = Followups(tmp_path / "g", ablation, overrides=["schedule.max_iters=2000"])
    assert other.reusable([s for s in other.sweeps("prior_init") if s.dir.name == "focal"][0]) is None
    lrs = {(m, level): CHOSEN[m]["optim.lr"] for m in CHOSEN for level in f.studies["imbalance_sweep"].levels}
    dense = [s for s in f.sweeps("imbalance_sweep", lrs) if s.dir.parts[-2:] == ("focal", "synthetic")][0]
    assert [name for name, _ in f.reusable(dense)] == ["seed0", "seed1", "seed2"]
    # a job this study trained itself is kept, and not called a copy (the ablation's run may be its copy)
    own = write_run(dense.dir / "seed0", ["loss=focal"], 0, "finished", ap=0.7)
    assert f.reuse(dense)
    assert not (own / "reused_from.txt").exists() and '"AP": 0.7' in (own / "eval.json").read_text()
    assert (dense.dir / "seed1" / "reused_from.txt").is_file()


def test_schedule_check_runs_the_ablations_jobs_at_longer_schedules_and_copies_the_ones_it_ran(tmp_path, ablation):
    f = Followups(tmp_path / "f", ablation)
    base = ["loss=focal", "schedule.max_iters=3000", "schedule.eval_every=300", "optim.lr=0.1", "loss.alpha=0.5"]
    seeds = f.seeds_of("schedule_check")
    assert seeds == [0, 1, 2, 3, 4]  # its own, as many as the headline's
    for seed in seeds:
        fake_final_run(ablation, "focal", seed, base)
    short, long, longer = [s for s in f.sweeps("schedule_check") if s.dir.name == "focal"]
    # the grid's schedule replaces the common one: one max_iters per job, the grid's
    for sweep, iters in ((short, 3000), (long, 6000), (longer, 12000)):
        assert not any(o.startswith("schedule.max_iters=") for o in sweep.fixed)
        assert all([o for o in job if o.startswith("schedule.max_iters=")] == [f"schedule.max_iters={iters}"]
                   for job in sweep.jobs())
        assert "optim.lr=0.1" in sweep.fixed and "loss.alpha=0.5" in sweep.fixed
    assert [name for name, _ in f.reusable(short)] == [f"max_iters3000_seed{s}" for s in seeds]
    assert f.reusable(long) is None and f.reusable(longer) is None  # no ablation run at these: trained


def test_without_a_selection_the_error_names_the_command_that_makes_one(tmp_path):
    out = tmp_path / "nothing"
    done = subprocess.run([sys.executable, "-m", "tools.followups", "--ablation", str(out), "--out", str(tmp_path / "f"),
                           "--study", "alpha_sweep"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "no selection at" in done.stderr and "--stage select" in done.stderr


MINI = """
seeds: [0]
common: [schedule.max_iters=2]
studies:
  alpha_sweep:
    _target_: studies.followups.Grid
    methods: [bce_alpha]
    grid: {loss.alpha: [0.25, 0.5, 0.75]}   # 3: the paper section needs MIN_SETTINGS of Table 1a's
quick:
  seeds: [0, 1]
"""


def test_a_study_in_miniature_ends_in_its_report_with_the_papers_table(tmp_path, ablation, synthetic_cache):
    spec = tmp_path / "mini.yaml"
    spec.write_text(MINI)
    out, results = tmp_path / "f", tmp_path / "results"
    cmd = [sys.executable, "-m", "tools.followups", "--ablation", str(ablation), "--out", str(out), "--quick",
           "--spec", str(spec), "--results", str(results), f"dataset.cache_dir={synthetic_cache}"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = sorted(p.name for p in (out / "alpha_sweep" / "bce_alpha").iterdir() if p.name.startswith("alpha"))
    assert runs == [f"alpha{a}_seed{s}" for a in (0.25, 0.5, 0.75) for s in (0, 1)]
    f = Followups(out, ablation, quick=True, spec=spec, overrides=[f"dataset.cache_dir={synthetic_cache}"])
    assert sorted(s.job_name(j, build.config(j)) for s in f.sweeps("alpha_sweep") for j in s.jobs()) == runs
    md = (results / "alpha_sweep" / "report.md").read_text()
    assert "## Against the paper (Table 1a)" in md and md.startswith("# Report: `alpha_sweep`")
    assert (results / "alpha_sweep" / "report.csv").is_file() and (results / "alpha_sweep" / "plots" / "ap.png").is_file()
    rows = read_csv(results / "alpha_sweep" / "runs.csv")  # the study as tables, its report made from them
    assert sorted(r["run"] for r in rows) == [f"bce_alpha/{r}" for r in runs]
    assert all(r["status"] == "finished" and r["AP"] >= 0 for r in rows), rows
    assert check(results, "alpha_sweep") == []


def test_table1d_tunes_each_ohem_family_once_and_carries_its_lr_over_the_batch_sizes(tmp_path, ablation):
    f = Followups(tmp_path / "f", ablation)
    assert f.methods_of("table1d") == ["softmax_bg", "bce_alpha", "focal", "ohem_nms0.7", "ohem_nms0.5",
                                       "ohem_1to3_nms0.5"]
    tunes = f.tune_sweeps("table1d")
    assert [t.values for t in tunes] == [[0.0125, 0.025, 0.05]] * 3  # x softmax_bg's chosen 0.025
    assert all({"loss=ohem", "loss.batch_per_image=256", "eval_split=tune", "seed=0"} <= set(t.fixed) for t in tunes)
    assert "loss.neg_per_pos=3" in tunes[2].fixed and "loss.nms_thresh=0.5" in tunes[2].fixed
    for t, best in zip(tunes, (0.0125, 0.025, 0.05)):
        for lr in t.values:
            run = write_run(t.dir / f"lr{lr}", ["loss=ohem"], 0, "finished", ap=0.4 if lr == best else 0.2)
            (run / "config.yaml").write_text(yaml.safe_dump({"seed": 0, "optim": {"lr": lr}}))
    sweeps = f.sweeps("table1d", f.lrs("table1d"))
    assert len(sweeps) == 3 + 3 * 3  # the ablation's methods, then each family at each batch size
    jobs = {s.label: s.jobs() for s in sweeps}
    assert jobs["table1d: focal"] == [[*f.base("table1d", "focal"), *f.setting("table1d", "focal").overrides(),
                                       f"seed={s}"] for s in (0, 1)]
    assert sorted(f.setting("table1d", "focal").overrides()) == ["loss.alpha=0.5", "optim.lr=0.1"]
    assert jobs["table1d: ohem_nms0.5 loss.batch_per_image=512"][1][-3:] == [
        "optim.lr=0.025", "loss.batch_per_image=512", "seed=1"]
    assert all("optim.lr=0.05" in j for j in jobs["table1d: ohem_1to3_nms0.5 loss.batch_per_image=128"])
    cfg = build.config(jobs["table1d: ohem_1to3_nms0.5 loss.batch_per_image=128"][0])
    assert (cfg.loss.nms_thresh, cfg.loss.neg_per_pos, cfg.loss.batch_per_image, cfg.loss.base) == (0.5, 3, 128, "softmax")


def test_study_jobs_prints_one_single_seed_multirun_per_job_into_the_studys_folders(tmp_path, ablation, capsys):
    from tools import study_jobs

    out = tmp_path / "f"
    study_jobs.main(["--ablation", str(ablation), "--out", str(out), "--study", "schedule_check",
                     "--where", "schedule.max_iters=12000"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 * 5  # three losses x the study's seeds 0-4
    for line, (m, seed) in zip(lines, [(m, s) for m in ("softmax_bg", "bce_alpha", "focal") for s in range(5)]):
        args = line.split(" ")
        assert f"loss={m}" in args and "schedule.max_iters=12000" in args and f"seed={seed}" in args
        assert f"optim.lr={CHOSEN[m]['optim.lr']}" in args and "schedule.max_iters=3000" not in args
        assert f"hydra.sweep.dir={out.resolve() / 'schedule_check' / m}" in args
        assert args[-2:] == ["'hydra.sweep.subdir=max_iters${schedule.max_iters}_seed${seed}'", "'~hydra.callbacks.report'"]
    study_jobs.main(["--ablation", str(ablation), "--out", str(out), "--study", "schedule_check",
                     "--where", "schedule.max_iters=6000", "--seeds", "0"])
    assert [line.count("seed=0") for line in capsys.readouterr().out.splitlines()] == [1, 1, 1]
    with pytest.raises(SystemExit):
        study_jobs.main(["--ablation", str(ablation), "--out", str(out), "--study", "schedule_check",
                         "--where", "schedule.max_iters=7"])
    assert "no job of schedule_check matches schedule.max_iters=7" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # its lrs come from tuning runs that do not exist here
        study_jobs.main(["--ablation", str(ablation), "--out", str(out), "--study", "imbalance_sweep"])
    assert "tuning runs first" in capsys.readouterr().err


def test_before_the_ablation_chose_a_dry_run_names_the_pending_settings_and_composes_at_the_defaults(tmp_path):
    """No "<chosen>" strings in the overrides: a setting not chosen yet is a Setting's None, a swept
    lr not known yet a ``Later``; every job still composes (for its time estimate)."""
    f = Followups(tmp_path / "f", tmp_path / "no_ablation", dry=True)
    assert f.chosen("focal") == Setting({"optim.lr": None, "loss.alpha": None})
    tune = f.tune_sweeps("imbalance_sweep")[2]
    assert tune.pending == ["optim.lr", "loss.alpha"] and [str(v) for v in tune.values] == [
        "<chosen x 0.125>", "<chosen x 0.25>", "<chosen x 0.5>"]
    for sweep in f.all_sweeps("table1d", dry=True) + f.all_sweeps("imbalance_sweep", dry=True):
        assert sweep.pending and not any(o.startswith("optim.lr=") for o in sweep.fixed)
        assert f.reusable(sweep) is None
        job = sweep.composable(sweep.jobs()[0])
        assert not any("<" in o for o in job)
        build.config(job)


def test_a_study_without_a_kind_is_an_error_naming_the_file_and_the_study(tmp_path, ablation):
    spec = tmp_path / "bad.yaml"
    spec.write_text("seeds: [0]\ncommon: []\nstudies:\n  mine:\n    methods: [focal]\nquick: {seeds: [0]}\n")
    with pytest.raises(ValueError, match=r"bad.yaml: study mine: expected `_target_: studies.followups.Grid`"):
        Followups(tmp_path / "f", ablation, spec=spec)
    spec.write_text("seeds: [0]\ncommon: []\nstudies:\n  mine:\n    _target_: studies.followups.Grid\n"
                    "    methods: [focal]\n    levels: [a]\nquick: {seeds: [0]}\n")
    with pytest.raises(ValueError, match="study mine.*levels"):  # a key its kind does not have
        Followups(tmp_path / "f", ablation, spec=spec)
