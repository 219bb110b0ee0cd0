from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torchvision.ops import box_iou

from detection.backbone import TinyBackbone
from detection.retinanet import RetinaNet

LOSS_YAMLS = sorted((Path(__file__).resolve().parents[2] / "configs" / "loss").glob("*.yaml"))
K = 5


def _model(loss_yaml, **kw):
    loss = kw.pop("cls_loss", None) or instantiate(OmegaConf.load(loss_yaml))
    args = dict(backbone=TinyBackbone(widths=(8, 16, 16), fpn_channels=16), head_convs=1, head_width=16)
    args.update(kw)
    return RetinaNet(num_classes=K, cls_loss=loss, **args)


def _targets(n, size=(128, 160)):
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        m = [3, 0, 7][i % 3]
        xy = torch.rand(m, 2, generator=g) * 80
        boxes = torch.cat([xy, xy + 20 + torch.rand(m, 2, generator=g) * 40], 1)
        out.append({"boxes": boxes, "labels": torch.randint(0, K, (m,), generator=g),
                    "ignore_boxes": torch.zeros(0, 4), "size": size, "orig_size": (2 * size[0], 2 * size[1]),
                    "image_id": i})
    return out


@pytest.mark.parametrize("loss_yaml", LOSS_YAMLS, ids=lambda p: p.stem)
def test_head_width_and_prior_follow_the_loss(loss_yaml):
    model = _model(loss_yaml)
    loss = model.cls_loss
    logits, deltas = model.head(model.backbone(torch.zeros(2, 3, 128, 128)))
    r = sum(model.anchor_generator.num_anchors_per_level([(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]))
    assert logits.shape == (2, r, loss.num_logits(K)) and deltas.shape == (2, r, 4)
    # with an all-zero image every anchor starts at the prior: each sigmoid class at 0.01;
    # with a background logit, p(background) = 0.99 and the foreground classes share 0.01
    scores = loss.scores(logits)
    assert scores.shape == (2, r, K)
    fg = scores if loss.num_logits(K) == K else scores.sum(-1)
    assert torch.allclose(fg, torch.full_like(fg, 0.01), atol=1e-3)


@pytest.mark.parametrize("loss_yaml", LOSS_YAMLS, ids=lambda p: p.stem)
def test_training_forward_and_backward(loss_yaml):
    model = _model(loss_yaml).train()
    targets = _targets(3)
    out = model(torch.rand(3, 3, 128, 160), targets, with_stats=True)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and out["loss_box"] > 0
    assert out["num_fg"] > 0 and out["num_bg"] > 0
    assert torch.allclose(out["fg_share"] + out["bg_share"], torch.tensor(1.0))
    assert all(p.grad is not None for p in model.head.parameters())


def test_image_without_boxes_trains():
    model = _model(LOSS_YAMLS[0]).train()
    t = _targets(2)[1:2]  # the image with no gt
    out = model(torch.rand(1, 3, 128, 160), t)
    out["loss"].backward()
    assert out["loss_box"] == 0 and out["loss_cls"] > 0


def test_postprocess_keeps_at_most_100_boxes_inside_the_original_image():
    model = _model(LOSS_YAMLS[0]).eval()
    r = 9 * (16 * 20 + 8 * 10 + 4 * 5 + 2 * 3 + 1 * 2)
    c = model.cls_loss.num_logits(K)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, r, c, generator=g) * 1.5  # many scores above 0.05, no ties at 1.0
    deltas = torch.randn(2, r, 4, generator=g)
    anchors = model.anchor_generator.grid_anchors([(16, 20), (8, 10), (4, 5), (2, 3), (1, 2)])
    per_level = model.anchor_generator.num_anchors_per_level([(16, 20), (8, 10), (4, 5), (2, 3), (1, 2)])
    targets = [{"size": (128, 160), "orig_size": (256, 320)}, {"size": (100, 150), "orig_size": (50, 75)}]
    out = model.postprocess(logits, deltas, anchors, per_level, targets)
    for res, t in zip(out, targets):
        h, w = t["orig_size"]
        assert 0 < len(res["boxes"]) <= 100
        b = res["boxes"]
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
        assert (res["scores"][:-1] >= res["scores"][1:]).all()  # best first
        assert (res["scores"] > 0.05).all() and ((res["labels"] >= 0) & (res["labels"] < K)).all()
        for lab in res["labels"].unique():  # per-class NMS: no two same-class boxes overlap > 0.5
            same = b[res["labels"] == lab]
            iou = box_iou(same, same).fill_diagonal_(0)
            assert (iou <= 0.5 + 1e-5).all()
    # the batch result equals image-by-image postprocessing
    for i in range(2):
        single = model.postprocess(logits[i:i + 1], deltas[i:i + 1], anchors, per_level, targets[i:i + 1])[0]
        assert torch.equal(single["labels"], out[i]["labels"])
        assert torch.allclose(single["boxes"], out[i]["boxes"])


class _Recorder:
    """A loss that asks for one extra (``keyword=source``) and records what the model passes."""

    def __init__(self, inner, keyword, source):
        self.inner, self.extras, self.seen = inner, {keyword: source}, None

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, logits, labels, **extra):
        (self.seen,) = extra.values()
        return self.inner(logits, labels)


@pytest.mark.parametrize("which", ["predicted", "anchors"])
def test_a_loss_gets_the_boxes_it_names(which):
    from losses.focal import FocalLoss

    model = _model(LOSS_YAMLS[0]).train()
    model.cls_loss = _Recorder(FocalLoss(), "boxes", which)
    images, targets = torch.rand(2, 3, 128, 160), _targets(2)
    out = model(images, targets)
    _, deltas, anchors, _ = model.predict(images)
    expected = model.box_coder.decode(anchors, deltas) if which == "predicted" else anchors.expand(2, -1, 4)
    seen = model.cls_loss.seen
    assert seen.shape == (2, len(anchors), 4) and not seen.requires_grad
    torch.testing.assert_close(seen, expected.detach())
    out["loss"].backward()  # the boxes are detached: no second path into the box head


def test_a_stateful_losss_state_is_in_the_checkpoint_and_analysis_leaves_it():
    from losses.sampling import RandomSamplingLoss

    def sampling_model():
        return RetinaNet(num_classes=K, cls_loss=RandomSamplingLoss(batch_per_image=64, seed=0),
                         backbone=TinyBackbone(widths=(8, 16, 16), fpn_channels=16), head_convs=1, head_width=16)

    torch.manual_seed(0)
    a = sampling_model().train()
    images, targets = torch.rand(3, 3, 128, 160), _targets(3)
    a(images, targets)  # one step's draws
    state = a.state_dict()
    a.anchor_losses(images, targets)  # an analysis pass draws nothing for training
    b = sampling_model().train()
    b.load_state_dict(state)
    torch.testing.assert_close(a(images, targets)["loss_cls"], b(images, targets)["loss_cls"])
    fresh = sampling_model().train()
    assert not torch.equal(fresh(images, targets)["loss_cls"], b(images, targets)["loss_cls"])

    old = {k: v for k, v in state.items() if not k.endswith("_extra_state")}
    old["_extra_state"] = {"normalizer": state["_extra_state"]["normalizer"]}  # written with a stateless loss
    with pytest.raises(ValueError, match="no state for the classification loss"):
        sampling_model().load_state_dict(old)


def test_a_loss_gets_the_quality_it_asks_for():
    """quality: each foreground anchor's IoU of its decoded prediction with its matched gt, 0
    elsewhere, detached: what QFL, VFL and Rank & Sort train towards."""
    from losses.focal import FocalLoss

    model = _model(LOSS_YAMLS[0]).train()
    model.cls_loss = _Recorder(FocalLoss(), "quality", "iou")
    images, targets = torch.rand(3, 3, 128, 160), _targets(3)
    model(images, targets)["loss"].backward()
    _, deltas, anchors, sizes = model.predict(images)
    labels, matched = model.match(anchors, targets, sizes)
    boxes = model.box_coder.decode(anchors, deltas.detach())
    expected = torch.zeros(labels.shape)
    for i, t in enumerate(targets):
        for r in ((labels[i] >= 0) & (labels[i] < K)).nonzero().flatten().tolist():
            expected[i, r] = box_iou(boxes[i, r:r + 1], t["boxes"][matched[i, r]:matched[i, r] + 1])[0, 0]
    seen = model.cls_loss.seen
    assert not seen.requires_grad and (seen > 0).sum() > 10
    torch.testing.assert_close(seen, expected)


def test_an_unknown_extra_is_an_error_naming_it():
    from losses.focal import FocalLoss

    with pytest.raises(ValueError, match=r"asks for quality='giou': expected one of \['anchors', 'iou', 'predicted'\]"):
        _model(LOSS_YAMLS[0], cls_loss=_Recorder(FocalLoss(), "quality", "giou"))


def _sampling_free(**kw):
    from losses.sampling_free import SamplingFreeLoss

    return _model(LOSS_YAMLS[0], cls_loss=SamplingFreeLoss(**kw))


def test_label_counts_set_the_prior_bias_and_the_thresholds():
    model = _sampling_free(prior="per_class")
    images, targets = torch.rand(3, 3, 128, 160), _targets(3)
    batches = [(images[:2], targets[:2]), (images[2:], targets[2:])]
    counts = model.fit_label_counts(batches)
    _, _, anchors, sizes = model.predict(images)
    labels, _ = model.match(anchors, targets, sizes)
    assert torch.equal(counts, torch.bincount(labels.flatten() + 1, minlength=K + 2))
    n = counts[1:].sum().double()
    pi = counts[1:K + 1].clamp(min=1) / n
    bias = model.head.cls_subnet[-1].bias.view(-1, K)  # one row per anchor type
    torch.testing.assert_close(bias, (-torch.log((1 - pi) / pi)).float().expand_as(bias))
    torch.testing.assert_close(model.score_thresholds(), pi.float())
    assert model.fits_label_counts and not _model(LOSS_YAMLS[0]).fits_label_counts
    # the counts are training state: a checkpoint carries them to an evaluation
    fresh = _sampling_free(prior="per_class")
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(fresh.score_thresholds(), pi.float())
    no_prior = _model(LOSS_YAMLS[0], cls_loss=model.cls_loss, prior_init=False)
    no_prior.fit_label_counts(batches)
    assert (no_prior.head.cls_subnet[-1].bias == 0).all()  # the ablation of the prior stays one


def test_score_thresholds_are_per_class():
    model = _sampling_free(adaptive_threshold=True).eval()
    model.cls_loss.fit_label_counts(torch.tensor([0, 10, 10, 10, 10, 10, 950]))  # pi = 0.01 for every class
    r = 9 * (16 * 20 + 8 * 10 + 4 * 5 + 2 * 3 + 1 * 2)
    sizes = [(16, 20), (8, 10), (4, 5), (2, 3), (1, 2)]
    anchors = model.anchor_generator.grid_anchors(sizes)
    per_level = model.anchor_generator.num_anchors_per_level(sizes)
    logits = torch.full((1, r, K), -10.0)
    logits[0, :50] = torch.logit(torch.tensor(0.03))  # between 0.01 (adaptive) and 0.05 (the model's)
    targets = [{"size": (128, 160), "orig_size": (128, 160)}]
    found = model.postprocess(logits, torch.zeros(1, r, 4), anchors, per_level, targets)[0]
    assert len(found["scores"]) > 0 and (found["scores"] < 0.05).all()
    model.cls_loss.adaptive_threshold = False  # the model's 0.05 again
    assert len(model.postprocess(logits, torch.zeros(1, r, 4), anchors, per_level, targets)[0]["scores"]) == 0


def test_guided_weight_scales_the_classification_loss():
    torch.manual_seed(0)
    model = _sampling_free().train()
    images, targets = torch.rand(3, 3, 128, 160), _targets(3)
    out = model(images, targets)
    torch.testing.assert_close(out["cls_weight"], out["loss_box"] / out["loss_cls"])
    torch.testing.assert_close(out["loss"], 2 * out["loss_box"])  # r L_cls weighs what L_box weighs
    out["loss"].backward()
    guided = model.head.cls_subnet[-1].bias.grad.clone()
    model.zero_grad()
    model.cls_loss.guided = False
    out = model(images, targets)
    assert out["cls_weight"] == 1 and torch.allclose(out["loss"], out["loss_cls"] + out["loss_box"])
    out["loss"].backward()
    # the class output's gradient is the plain one times r: scaled, not turned
    torch.testing.assert_close(guided, model.head.cls_subnet[-1].bias.grad * (out["loss_box"] / out["loss_cls"]))
