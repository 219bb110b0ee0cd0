"""Input checks shared by the fused losses: bad input fails with a message that says why."""

import pytest
import torch

from losses.bce_alpha import AlphaBCELoss
from losses.focal import FocalLoss
from losses.softmax_bg import SoftmaxBgLoss

LOSSES = [FocalLoss(), AlphaBCELoss(), SoftmaxBgLoss()]


@pytest.mark.parametrize("loss_fn", LOSSES, ids=repr)
@pytest.mark.parametrize("labels,match", [
    (torch.zeros(2, 5, 3), "integer Tensor"),  # one-hot / float targets
    (torch.zeros(2, 5, dtype=torch.bool), "integer Tensor"),
    (torch.zeros(2, 6, dtype=torch.long), r"labels shape \(2, 6\)"),
    (torch.full((2, 5), -2), r"\[-2, -2\], expected values in \[-1, 3\]"),
    (torch.full((2, 5), 4), r"\[4, 4\], expected values in \[-1, 3\]"),
])
def test_bad_labels(loss_fn, labels, match):
    logits = torch.zeros(2, 5, loss_fn.num_logits(3))
    with pytest.raises(ValueError, match=match):
        loss_fn(logits, labels)


@pytest.mark.parametrize("loss_fn", LOSSES, ids=repr)
def test_bad_logits(loss_fn):
    with pytest.raises(ValueError, match="floating-point"):
        loss_fn(torch.zeros(2, 5, 4, dtype=torch.long), torch.zeros(2, 5, dtype=torch.long))


def test_int32_labels_are_accepted():
    x = torch.randn(2, 5, 3)
    labels = torch.tensor([[0, 1, 2, 3, -1]] * 2)
    assert torch.equal(FocalLoss()(x, labels.int()), FocalLoss()(x, labels))
