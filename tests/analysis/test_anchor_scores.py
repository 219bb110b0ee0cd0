"""analysis/anchor_scores.py on a stub model with hand-set logits and labels: which anchors count
(inside the image, foreground or background, never ignored), their scores, the histogram."""

import json

import numpy as np
import pytest
import torch

from analysis.anchor_scores import EDGES, collect_scores, inside_image, summarize
from analysis.plots import plot_histograms
from losses.focal import FocalLoss
from losses.softmax_bg import SoftmaxBgLoss

# 4 anchors 10 px wide in a row: centers x = 5, 15, 25, 35 (y = 5)
ANCHORS = torch.tensor([[0., 0, 10, 10], [10, 0, 20, 10], [20, 0, 30, 10], [30, 0, 40, 10]])


def test_inside_image_is_by_anchor_center():
    inside = inside_image(ANCHORS, [(10, 30), (10, 40), (5, 40)])
    assert inside.tolist() == [[True, True, True, False], [True, True, True, True], [False] * 4]


class Stub:
    """predict / match / cls_loss as RetinaNet has them, with fixed outputs."""

    def __init__(self, logits, labels, cls_loss):
        self.logits, self.labels, self.cls_loss, self.num_classes = logits, labels, cls_loss, 2

    def eval(self):
        return self

    def predict(self, images):
        return self.logits, None, ANCHORS, None

    def match(self, anchors, targets, sizes):
        return self.labels, None


@pytest.mark.parametrize("loss", [FocalLoss(), SoftmaxBgLoss()])
def test_scores_of_foreground_and_background_anchors_inside_the_images(loss):
    c = loss.num_logits(2)
    logits = torch.randn(2, 4, c, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([[0, 2, -1, 1],    # image 0 (w 30): anchor 3 lies on the padding
                           [2, 2, 1, -1]])   # image 1 (w 40): -1 is ignored
    targets = [{"size": (10, 30)}, {"size": (10, 40)}]
    fg, bg, n = collect_scores(Stub(logits, labels, loss), [(torch.zeros(2, 3, 10, 40), targets), None])
    best = loss.scores(logits).amax(-1)  # (N, R)
    assert n == 2
    assert fg.tolist() == pytest.approx([best[0, 0].item(), best[1, 2].item()])
    assert bg.tolist() == pytest.approx([best[0, 1].item(), best[1, 0].item(), best[1, 1].item()])


def test_summary_counts_bins_and_threshold():
    fg = torch.tensor([0.9, 0.05, 0.01])
    bg = torch.tensor([1e-7, 0.0, 0.05, 0.2, 1.0, 0.001])
    s = summarize(fg, bg, images=2, score_thresh=0.05)
    assert len(s["fg"]) == len(s["bg"]) == len(EDGES) - 1 == 61
    assert sum(s["bg"]) == s["bg_anchors"] == 6 and sum(s["fg"]) == s["fg_anchors"] == 3
    assert s["bg"][0] == 2 and s["bg"][-1] == 1  # below 1e-6 in the first bin; 1.0 in the last
    assert s["bg_above_thresh_per_image"] == 1.5  # .05 (inclusive), .2, 1.0 over 2 images
    assert s["fg_above_thresh_share"] == pytest.approx(2 / 3)
    assert s["bg_median"] == pytest.approx(float(np.median(bg.numpy())))
    json.dumps(s)  # plain JSON


def test_no_anchors_give_empty_histograms_and_a_figure(tmp_path):
    s = summarize(torch.zeros(0), torch.zeros(0), images=0, score_thresh=0.05)
    assert sum(s["fg"]) == sum(s["bg"]) == 0 and s["bg_above_thresh_per_image"] is None and s["fg_median"] is None
    plot_histograms({"empty": s, "other": summarize(torch.tensor([0.5]), torch.tensor([0.01]), 1, 0.05)},
                    tmp_path / "h.png", 0.05)
    assert (tmp_path / "h.png").stat().st_size > 0
