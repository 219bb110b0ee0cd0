import pytest
import torch

from losses.anatomy import loss_anatomy
from losses.focal import FocalLoss


def test_docstring_example():
    # K = 2; labels fg, bg, bg, ignored; max fg probability .9, .3, .6, .1.
    labels = torch.tensor([[0, 2, 2, -1]])
    loss = torch.tensor([[1.0, 2.0, 5.0, 9.0]])
    scores = torch.tensor([[[0.9, 0.1], [0.3, 0.2], [0.1, 0.6], [0.1, 0.0]]])
    out = loss_anatomy(loss, labels, scores)
    assert set(out) == {"fg_share", "bg_share", "easy_bg_share"}
    assert [out[k].item() for k in ("fg_share", "bg_share", "easy_bg_share")] == \
        pytest.approx([1 / 8, 7 / 8, 2 / 8])


def test_zero_total_gives_zero_shares():
    labels = torch.tensor([[-1, 3, 3]])
    out = loss_anatomy(torch.zeros(1, 3), labels, torch.zeros(1, 3, 3))
    assert all(v.item() == 0 for v in out.values())


def test_on_a_real_loss_without_grad():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 100, 5, generator=g, requires_grad=True)
    labels = torch.randint(-1, 6, (2, 100), generator=g)
    loss_fn = FocalLoss()
    loss = loss_fn(logits, labels)
    out = loss_anatomy(loss, labels, loss_fn.scores(logits))
    assert all(not v.requires_grad for v in out.values())
    assert out["fg_share"].item() + out["bg_share"].item() == pytest.approx(1.0)
    assert 0 < out["easy_bg_share"].item() < out["bg_share"].item()


def test_shape_mismatch():
    with pytest.raises(ValueError, match="loss_anatomy"):
        loss_anatomy(torch.zeros(1, 3), torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 4, 2))
