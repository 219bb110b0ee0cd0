"""Every loss trains under every assigner: the label contract is the only interface between them.

The grid is read from configs/loss/*.yaml and configs/assigner/*.yaml, so a new loss or
assigner file is covered without editing this test."""

import itertools
import json

import pytest
import torch
from hydra.utils import instantiate

import train
from detection import build
from tests.conftest import CONFIGS, compose_config, tiny_overrides

LOSSES = sorted(p.stem for p in (CONFIGS / "loss").glob("*.yaml"))
ASSIGNERS = sorted(p.stem for p in (CONFIGS / "assigner").glob("*.yaml"))


def test_the_default_assigner_is_max_iou_with_the_papers_thresholds():
    assert set(ASSIGNERS) >= {"max_iou", "atss"}
    cfg = compose_config()
    assert "matcher" not in cfg.model and cfg.assigner._target_ == "detection.matcher.Matcher"
    m = instantiate(cfg.assigner)
    assert (m.fg_iou_thresh, m.bg_iou_thresh, m.allow_low_quality_matches) == (0.5, 0.4, True)
    atss = instantiate(compose_config(["assigner=atss"]).assigner)
    assert (type(atss).__name__, atss.topk) == ("ATSS", 9)


def test_an_unknown_assigner_is_one_line_naming_it_and_the_options():
    with pytest.raises(ValueError) as e:
        compose_config(["assigner=simota"])
    assert str(e.value) == ("assigner=simota: there is no configs/assigner/simota.yaml; expected assigner= one of "
                            + ", ".join(ASSIGNERS))


@pytest.mark.parametrize("loss,assigner", list(itertools.product(LOSSES, ASSIGNERS)))
def test_every_loss_trains_two_steps_under_every_assigner(tmp_path, synthetic_cache, loss, assigner):
    overrides = tiny_overrides(synthetic_cache) + [f"loss={loss}", f"assigner={assigner}", "schedule.max_iters=2",
                                                   "schedule.log_every=1", "schedule.batch_size=2",
                                                   "eval_at_end=false", "loss_cdf_images=0"]
    cfg = compose_config(overrides)
    model = build.model(cfg, 3)
    assert type(model.assigner) is type(instantiate(cfg.assigner))
    train.run(cfg, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in rows] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["loss"])) and r["num_fg"] > 0 and r["num_bg"] > 0 for r in rows)
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=False)["iter"] == 2
