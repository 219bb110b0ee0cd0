"""Helpers shared by the loss tests."""

import torch


def loss_and_grad(fn, x, labels):
    """(loss, gradient) of ``fn(x, labels)`` at a copy of x: Tensor[N, R], Tensor[N, R, C].

    The upstream gradient is not uniform (0.5 to 2 across the anchors), so a backward that
    scales an anchor's gradient by the wrong factor fails the comparisons too.
    """
    x = x.detach().clone().requires_grad_()
    loss = fn(x, labels)
    weights = torch.linspace(0.5, 2.0, loss.numel(), dtype=loss.dtype).view_as(loss)
    (loss * weights).sum().backward()
    return loss.detach(), x.grad
