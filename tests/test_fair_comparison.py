"""The comparison's fairness: paired runs, a tuning split that never touches val, an AP curve,
and the controls (one class per anchor, the softmax prior per class, the clipped share)."""

import itertools
import json

import pytest
import torch

import train
from detection import build
from losses.softmax_bg import SoftmaxBgLoss
from tests.conftest import compose_config, tiny_overrides

LOSSES = ["focal", "bce_alpha", "softmax_bg"]


def test_under_one_seed_every_loss_starts_from_the_same_weights_but_the_class_output(synthetic_cache):
    states = {}
    for loss in LOSSES:
        cfg = compose_config(tiny_overrides(synthetic_cache) + [f"loss={loss}", "seed=3"])
        torch.manual_seed(cfg.seed)  # as train.run does
        states[loss] = build.model(cfg, 6).state_dict()
    out = ["head.cls_subnet.3.weight", "head.cls_subnet.3.bias"]  # the tiny head: conv, GN, ReLU, then the output
    for a, b in itertools.combinations(LOSSES, 2):
        assert states[a].keys() == states[b].keys()
        same = [k for k, v in states[a].items() if torch.is_tensor(v) and k not in out]
        assert all(torch.equal(states[a][k], states[b][k]) for k in same), (a, b)
    # and the class output itself differs only by the loss's logits (K vs K+1) and bias
    assert states["softmax_bg"]["head.cls_subnet.3.weight"].shape[0] > states["focal"]["head.cls_subnet.3.weight"].shape[0]
    # a different seed gives different weights (the test above could fail)
    cfg = compose_config(tiny_overrides(synthetic_cache) + ["seed=4"])
    torch.manual_seed(cfg.seed)
    assert not torch.equal(build.model(cfg, 6).state_dict()["head.box_subnet.0.weight"],
                           states["focal"]["head.box_subnet.0.weight"])


def test_under_one_seed_every_loss_sees_the_same_batches(synthetic_cache):
    batches = {}
    for loss in LOSSES:
        cfg = compose_config(tiny_overrides(synthetic_cache) + [f"loss={loss}", "seed=3"])
        train_ds, _ = build.datasets(cfg)
        rt = build.Runtime(0, 1, torch.device("cpu"), None)
        loader = iter(build.train_loader(cfg, train_ds, 0, rt))
        batches[loss] = [next(loader) for _ in range(4)]  # 16 samples of 12: flips and a new epoch
    for a, b in itertools.combinations(LOSSES, 2):
        for (ia, ta), (ib, tb) in zip(batches[a], batches[b]):
            assert torch.equal(ia, ib) and [t["image_id"] for t in ta] == [t["image_id"] for t in tb]
            assert all(torch.equal(x["boxes"], y["boxes"]) for x, y in zip(ta, tb))


def test_the_tuning_split_is_carved_from_the_training_images(synthetic_cache):
    cfg = compose_config(tiny_overrides(synthetic_cache) + ["eval_split=tune", "tune_fraction=0.25"])
    train_ds, tune_ds = build.datasets(cfg)
    full, val = build.datasets(compose_config(tiny_overrides(synthetic_cache)))
    assert len(tune_ds) == 3 and len(train_ds) == 9  # 25% of 12
    assert set(tune_ds.image_ids).isdisjoint(train_ds.image_ids)
    assert set(tune_ds.image_ids) | set(train_ds.image_ids) == set(full.image_ids)
    assert tune_ds.coco is not val.coco and set(tune_ds.image_ids) <= set(full.coco.getImgIds())
    assert build.tuning_ids(full.image_ids, 0.25, 0) == tune_ds.image_ids  # fixed seed, same split
    assert build.tuning_ids(full.image_ids, 0.25, 1) != tune_ds.image_ids
    with pytest.raises(ValueError, match="tune_fraction=1.5"):
        build.tuning_ids(full.image_ids, 1.5, 0)
    with pytest.raises(ValueError, match="eval_split='test'"):
        build.datasets(compose_config(tiny_overrides(synthetic_cache) + ["eval_split=test"]))


def test_periodic_evaluation_writes_an_ap_curve(tmp_path, synthetic_cache):
    cfg = compose_config(tiny_overrides(synthetic_cache) + ["schedule.eval_every=2", "eval_split=tune",
                                                            "tune_fraction=0.25"])
    stats = train.run(cfg, tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    curve = [r for r in rows if "eval" in r]
    assert [r["iter"] for r in curve] == [2, 4, 6]
    assert curve[-1]["eval"]["AP"] == stats["AP"]
    # evaluated on the 3 tuning images, not on val
    dets = json.loads((tmp_path / "run" / "detections.json").read_text())
    tune_ids = build.datasets(cfg)[1].image_ids
    assert {d["image_id"] for d in dets} <= set(tune_ids)
    # training lines carry the share of clipped steps
    assert all(0 <= r["clipped_share"] <= 1 for r in rows if "eval" not in r)


def test_clipped_share_counts_clipped_steps(tmp_path, synthetic_cache):
    cfg = compose_config(tiny_overrides(synthetic_cache) + ["optim.clip_grad_norm=1e-6", "eval_at_end=false"])
    train.run(cfg, tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["clipped_share"] for r in rows] == [1.0, 1.0, 1.0]


def test_one_class_per_anchor_keeps_each_anchors_top_class(synthetic_cache):
    """Two anchors, K = 3 sigmoid classes: anchor 0 passes the threshold in classes 0 and 1,
    anchor 1 in class 2. Per-class NMS keeps all three; one class per anchor drops (0, 1)."""
    model = build.model(compose_config(tiny_overrides(synthetic_cache)), 3).eval()
    logits = torch.tensor([[[2.0, 1.0, -5.0], [-5.0, -5.0, 3.0]]])  # (N=1, R=2, K=3)
    anchors = torch.tensor([[0.0, 0, 10, 10], [50, 50, 70, 70]])
    targets = [{"size": (100, 100), "orig_size": (100, 100)}]

    def labels_of_anchors():
        r = model.postprocess(logits, torch.zeros(1, 2, 4), anchors, [2], targets)[0]
        return sorted(zip(r["boxes"][:, 0].tolist(), r["labels"].tolist()))

    assert labels_of_anchors() == [(0.0, 0), (0.0, 1), (50.0, 2)]
    model.one_class_per_anchor = True
    assert labels_of_anchors() == [(0.0, 0), (50.0, 2)]


def test_softmax_prior_per_class():
    total, per_class = SoftmaxBgLoss(), SoftmaxBgLoss(prior="per_class")
    k, prior = 6, 0.01
    torch.testing.assert_close(total.scores(total.init_bias(k, prior)), torch.full((k,), prior / k))
    torch.testing.assert_close(per_class.scores(per_class.init_bias(k, prior)), torch.full((k,), prior))
    assert "prior='per_class'" in repr(per_class)
    with pytest.raises(ValueError, match="add up to 1.2"):
        per_class.init_bias(6, 0.2)
    with pytest.raises(ValueError, match="'total' or 'per_class'"):
        SoftmaxBgLoss(prior="each")
