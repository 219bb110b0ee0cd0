"""Every config composes and instantiates; every experiment launches the jobs it says."""

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


TABLE1D = sorted(p.stem for p in (CONFIGS / "table1d").glob("*.yaml"))


@pytest.mark.parametrize("row", TABLE1D)
def test_every_table1d_row_composes_at_its_paper_row(row):
    from omegaconf import OmegaConf

    from tools.report_table1d import FL_ROW, row_of

    cfg = compose_config([f"+table1d={row}"])
    instantiate(cfg.loss)
    placed = row_of(OmegaConf.to_container(cfg, resolve=True))
    if row.startswith("ohem"):  # ohem[_1to3]_nms07_b128 -> ("OHEM[ 1:3]", 0.7, 128, None | 3)
        nms, batch = row.split("_")[-2:]
        assert placed == ("OHEM 1:3" if "1to3" in row else "OHEM", int(nms[3:]) / 10, int(batch[1:]),
                          3.0 if "1to3" in row else None)
    else:
        assert placed == (FL_ROW if row == "focal" else None)
    sweep = yaml.safe_load((CONFIGS / "experiment" / "table1d.yaml").read_text())["hydra"]["sweeper"]["params"]
    assert sorted(sweep["+table1d"].split(",")) == TABLE1D


def test_r50_recipe_requires_local_weights():
    cfg = compose_config(["experiment=retinanet_r50_1x"])
    with pytest.raises(Exception, match="model.backbone.weights="):
        instantiate(cfg.model, num_classes=80, cls_loss=instantiate(cfg.loss))


def test_slurm_launcher_config_composes():
    cfg = compose_config(["hydra/launcher=slurm", "experiment=bg_ablation"])
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


def test_bg_ablation_launches_three_losses_times_three_seeds(tmp_path):
    jobs = _launched_jobs(tmp_path, "experiment=bg_ablation")
    assert sorted((j["loss"], j["seed"]) for j in jobs) == sorted(
        itertools.product(["softmax_bg", "bce_alpha", "focal"], ["0", "1", "2"]))
    # everything else pinned: the jobs differ only in loss and seed
    assert all(set(j) == {"experiment", "loss", "seed", "dry_run"} for j in jobs)


def test_gamma_sweep_pairs_each_gamma_with_the_papers_alpha():
    expected = {0: 0.75, 0.1: 0.75, 0.2: 0.75, 0.5: 0.5, 1: 0.25, 2: 0.25, 5: 0.25}
    sweep = compose_config(["experiment=gamma_sweep"])
    assert sweep.loss._target_ == "losses.focal.FocalLoss"
    for gamma, alpha in expected.items():
        cfg = compose_config(["experiment=gamma_sweep", f"loss.gamma={gamma}"])
        assert cfg.loss.alpha == alpha
    with pytest.raises(Exception, match="best alpha only for gamma"):
        _ = compose_config(["experiment=gamma_sweep", "loss.gamma=3"]).loss.alpha


def test_sweep_grids_are_the_papers(tmp_path):
    alpha_jobs = _launched_jobs(tmp_path / "a", "experiment=alpha_sweep")
    assert sorted(float(j["loss.alpha"]) for j in alpha_jobs) == [0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999]
    gamma_jobs = _launched_jobs(tmp_path / "g", "experiment=gamma_sweep")
    assert sorted(float(j["loss.gamma"]) for j in gamma_jobs) == [0, 0.1, 0.2, 0.5, 1, 2, 5]
    prior_jobs = _launched_jobs(tmp_path / "p", "experiment=prior_init")
    assert sorted((j["loss"], j["model.prior_init"]) for j in prior_jobs) == sorted(
        itertools.product(["bce_alpha", "focal", "softmax_bg"], ["False", "True"]))


def test_imbalance_sweep_crosses_losses_with_the_sparser_datasets(tmp_path):
    jobs = _launched_jobs(tmp_path, "experiment=imbalance_sweep")
    datasets = ["synthetic", "synthetic_fg1to540", "synthetic_fg1to1500", "synthetic_fg1to3500"]
    assert sorted((j["loss"], j["dataset"]) for j in jobs) == sorted(
        itertools.product(["bce_alpha", "focal", "softmax_bg"], datasets))
    # only the number of objects differs: the same images, object sizes and anchors (and cost)
    gens = [compose_config([f"dataset={d}"]).dataset.generator for d in datasets]
    assert {(g.image_size, tuple(g.object_size)) for g in gens} == {(192, (10, 80))}
    assert [g.empty_fraction for g in gens] == sorted(g.empty_fraction for g in gens)
