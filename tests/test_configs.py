"""Every config composes and instantiates; every group train.py --help lists can be selected; the
studies' specs (studies/specs/) compose into the paper's settings."""

import inspect
import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra.utils import instantiate

from tests.conftest import CONFIGS, ROOT, compose_config

GROUPS = {g: sorted(p.stem for p in (CONFIGS / g).glob("*.yaml"))
          for g in ("dataset", "loss", "model", "model/backbone", "optim", "schedule")}
EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("dataset,loss,model", list(itertools.product(GROUPS["dataset"], GROUPS["loss"], GROUPS["model"])))
def test_every_group_combination_composes_and_builds(dataset, loss, model):
    cfg = compose_config([f"dataset={dataset}", f"loss={loss}", f"model={model}"])
    assert cfg.run_name == f"{cfg.dataset.name}_{loss}"
    cls_loss = instantiate(cfg.loss)
    net = instantiate(cfg.model, num_classes=3, cls_loss=cls_loss)
    assert net.head.num_logits == cls_loss.num_logits(3)


@pytest.mark.parametrize("backbone", GROUPS["model/backbone"])
def test_every_backbone_key_is_used_by_what_it_builds(backbone):
    """A key the target does not take would be an error; one it ignores would be a lie."""
    cfg = compose_config([f"model/backbone={backbone}"]).model.backbone
    target = {"detection.backbone.TinyBackbone": "TinyBackbone", "detection.backbone.ResNetFPN": "ResNetFPN"}
    import detection.backbone

    params = inspect.signature(getattr(detection.backbone, target[cfg._target_])).parameters
    assert set(cfg) - {"_target_"} == set(params), backbone  # every key used, every argument set
    net = instantiate(cfg)
    assert net.strides == (8, 16, 32, 64, 128) and net.out_channels == cfg.fpn_channels


def test_frozen_bn_without_weights_is_an_error_naming_the_keys():
    cfg = compose_config(["model/backbone=resnet18", "model.backbone.frozen_bn=true"])
    with pytest.raises(Exception, match=r"model.backbone.frozen_bn=true.*model.backbone.weights="):
        instantiate(cfg.model.backbone)


def test_command_line_swaps_of_the_issue():
    cfg = compose_config(["loss=softmax_bg", "dataset=coco128", "model/backbone=resnet50", "optim.lr=0.005"])
    net = instantiate(cfg.model, num_classes=4, cls_loss=instantiate(cfg.loss))
    assert type(net.backbone).__name__ == "ResNetFPN" and net.head.num_logits == 5
    assert cfg.optim.lr == 0.005 and cfg.dataset.name == "coco128"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(experiment):
    overrides = [f"experiment={experiment}"]
    cfg = compose_config(overrides)
    instantiate(cfg.loss)
    if experiment == "retinanet_r50_1x":
        assert cfg.model.backbone.depth == 50 and cfg.model.backbone.frozen_bn and cfg.schedule.max_iters == 90000
        assert list(cfg.schedule.steps) == [60000, 80000] and cfg.schedule.batch_size == 16
        assert cfg.dataset.min_size == 800 and cfg.optim.lr == 0.01 and cfg.schedule.warmup_iters == 1000


def test_r50_recipe_requires_local_weights():
    cfg = compose_config(["experiment=retinanet_r50_1x"])
    with pytest.raises(Exception, match="model.backbone.weights="):
        instantiate(cfg.model, num_classes=80, cls_loss=instantiate(cfg.loss))


def test_slurm_launcher_config_composes():
    cfg = compose_config(["hydra/launcher=slurm"])
    # compose() leaves out the hydra node; check the launcher file against the plugin's schema
    from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf

    launcher = yaml.safe_load((CONFIGS / "hydra" / "launcher" / "slurm.yaml").read_text())
    fields = set(SlurmQueueConf.__dataclass_fields__)
    assert set(launcher) - {"defaults"} <= fields
    assert cfg.run_name == "synthetic_focal"


def _launched_jobs(tmp_path, *args) -> list[dict]:
    """Runs the sweep with dry_run=true; returns each job's overrides as a dict."""
    cmd = [sys.executable, "train.py", "-m", *args, "dry_run=true", f"hydra.sweep.dir={tmp_path}"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = []
    for f in sorted(Path(tmp_path).glob("*/.hydra/overrides.yaml")):
        jobs.append(dict(o.split("=", 1) for o in yaml.safe_load(f.read_text())))
    assert out.stdout.count("dry run: job") == len(jobs)
    # each job's estimated training time, and their sum when the sweep ends
    assert out.stdout.count(" of training (") == len(jobs)
    assert re.search(rf"dry run: {len(jobs)} jobs, ~[\d hmins]+ in all on this machine \(training, start-up", out.stdout + out.stderr)
    return jobs


def test_a_dry_run_multirun_launches_every_combination(tmp_path):
    # batch 1: the speed measurement behind each estimate costs 8x at batch 8, and is not tested here
    jobs = _launched_jobs(tmp_path, "loss=softmax_bg,bce_alpha,focal", "seed=0,1,2", "schedule.batch_size=1",
                          "schedule.eval_batch_size=1")
    assert sorted((j["loss"], j["seed"]) for j in jobs) == sorted(
        itertools.product(["softmax_bg", "bce_alpha", "focal"], ["0", "1", "2"]))
    assert all(set(j) == {"loss", "seed", "dry_run", "schedule.batch_size", "schedule.eval_batch_size"} for j in jobs)


def test_a_dry_run_of_a_single_run_prints_its_folder_and_estimate_and_trains_nothing(tmp_path):
    """Without -m there is no job number (Hydra's hydra.job.num is unset in a single run)."""
    out = subprocess.run([sys.executable, "train.py", "dry_run=true", "schedule.max_iters=10", "schedule.batch_size=1",
                          "schedule.eval_batch_size=1", f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (f"dry run: the run: dry_run=true schedule.max_iters=10 schedule.batch_size=1 schedule.eval_batch_size=1 "
            f"-> {tmp_path / 'run'}") in out.stdout
    assert " of training (10 images at " in out.stdout
    assert not (tmp_path / "run" / "status.json").exists()


FOLLOWUPS = yaml.safe_load((ROOT / "studies" / "specs" / "followups.yaml").read_text())["studies"]


def test_help_lists_only_groups_that_can_be_selected():
    """``python train.py --help``'s groups are the config folders a run selects from, and each of
    their options composes (a folder of study specs there was listed but failed: issue 35)."""
    out = subprocess.run([sys.executable, "train.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    block = out.stdout.split("== Configuration groups ==", 1)[1].split("== Config ==", 1)[0]
    listed = dict(re.findall(r"^([\w/]+): (.+)$", block, re.M))
    assert set(listed) == {"assigner", "dataset", "experiment", "loss", "model", "model/backbone", "optim", "schedule"}
    for group, options in listed.items():
        for option in options.split(", "):
            compose_config([f"{group}={option}"])


def test_a_withdrawn_study_design_cannot_be_run(tmp_path):
    """The studies are studies/specs/*.yaml, run by make ablation / make followups; the old one-lr
    experiment designs are gone, and naming one fails before anything runs. What is left are
    presets: the COCO recipe, the real-data CPU preset and the grid that chooses it (issue 32)."""
    assert EXPERIMENTS == ["real_cpu", "real_cpu_grid", "retinanet_r50_1x"]
    out = subprocess.run([sys.executable, "train.py", "experiment=bg_ablation", f"hydra.run.dir={tmp_path}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "Could not find 'experiment/bg_ablation'" in out.stderr and "retinanet_r50_1x" in out.stderr
    assert not any(tmp_path.iterdir())


def test_table1d_study_families_land_at_their_papers_rows():
    """Every OHEM family of the table1d study at every batch size of its grid composes at its row of
    the paper's Table 1d, and together they are its nine OHEM rows; focal at gamma 2 is FL's row."""
    from omegaconf import OmegaConf

    from reports.table1d import FL_ROW, TABLE_1D, row_of

    spec = FOLLOWUPS["table1d"]
    (key, batches), = spec["family_grid"].items()
    placed = {}
    for family, overrides in spec["families"].items():
        for b in batches:
            cfg = compose_config([*overrides, f"{key}={b}"])
            instantiate(cfg.loss)
            row = row_of(OmegaConf.to_container(cfg, resolve=True))
            nms = float(family.split("nms")[1])
            assert row == ("OHEM 1:3" if "1to3" in family else "OHEM", nms, b, 3.0 if "1to3" in family else None)
            placed[row] = family
    assert set(placed) == set(TABLE_1D) - {FL_ROW}
    assert row_of(OmegaConf.to_container(compose_config(["loss=focal"]), resolve=True)) == FL_ROW


def test_the_paper_table_studies_sweep_the_papers_settings():
    from reports.paper import TABLE_1A, TABLE_1B

    assert FOLLOWUPS["alpha_sweep"]["grid"] == {"loss.alpha": list(TABLE_1A.ap)}
    assert FOLLOWUPS["gamma_sweep"]["grid"] == {"loss.gamma": list(TABLE_1B.ap)}
    assert FOLLOWUPS["prior_init"]["grid"] == {"model.prior_init": [True, False]}


def test_gamma_sweep_pairs_each_gamma_with_the_papers_alpha():
    """The gamma_sweep study's own override gives each gamma the paper's best alpha (Table 1b)."""
    expected = {0: 0.75, 0.1: 0.75, 0.2: 0.75, 0.5: 0.5, 1: 0.25, 2: 0.25, 5: 0.25}
    spec = FOLLOWUPS["gamma_sweep"]
    for gamma, alpha in expected.items():
        cfg = compose_config(["loss=focal", *spec["overrides"], f"loss.gamma={gamma}"])
        assert cfg.loss.alpha == alpha
    with pytest.raises(Exception, match="best alpha only for gamma"):
        _ = compose_config(["loss=focal", *spec["overrides"], "loss.gamma=3"]).loss.alpha


def test_imbalance_study_levels_differ_only_in_the_number_of_objects():
    datasets = FOLLOWUPS["imbalance_sweep"]["levels"]
    assert datasets == ["synthetic", "synthetic_fg1to540", "synthetic_fg1to1500", "synthetic_fg1to3500"]
    # only the number of objects differs: the same images, object sizes and anchors (and cost)
    gens = [compose_config([f"dataset={d}"]).dataset.generator for d in datasets]
    assert {(g.image_size, tuple(g.object_size)) for g in gens} == {(192, (10, 80))}
    assert [g.empty_fraction for g in gens] == sorted(g.empty_fraction for g in gens)


@pytest.mark.parametrize("dataset,size", [("coco_person", (384, 384)), ("bccd", (240, 320))])
def test_real_cpu_preset_keeps_the_datasets_size_and_pins_model_and_schedule(dataset, size):
    cfg = compose_config(["experiment=real_cpu", f"dataset={dataset}"])
    assert (cfg.dataset.name, (cfg.dataset.min_size, cfg.dataset.max_size)) == (dataset, size)
    assert cfg.model.backbone._target_ == "detection.backbone.TinyBackbone"
    assert list(cfg.model.backbone.widths) == [48, 96, 192] and cfg.model.head_width == 64  # the grid's wider one
    assert list(cfg.model.anchor_generator.sizes) == [16, 32, 64, 128, 256]
    assert (cfg.schedule.max_iters, cfg.schedule.batch_size, cfg.schedule.eval_every) == (3000, 8, 500)


def test_real_cpu_grid_crosses_widths_with_lengths_on_the_tuning_split(tmp_path):
    cfg = compose_config(["experiment=real_cpu_grid", "dataset=bccd", "dataset.max_size=480"])
    assert cfg.eval_split == "tune" and cfg.loss._target_ == "losses.focal.FocalLoss"
    assert cfg.dataset.min_size == 480  # the long side binds
    # batch 1: the dry run's speed measurement (build.speed) is of no interest here, and costs 8x at batch 8
    jobs = _launched_jobs(tmp_path, "experiment=real_cpu_grid", "dataset=bccd", "dataset.max_size=320",
                          "schedule.batch_size=1", "schedule.eval_batch_size=1")
    assert sorted((j["model.backbone.widths"], j["schedule.max_iters"]) for j in jobs) == sorted(
        itertools.product(["[32,64,128]", "[48,96,192]"], ["1500", "3000"]))
