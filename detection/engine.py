"""What the training loop does with one batch, shared by train.py, the analysis and the benchmarks
(which must not import the entry script): ``to_device`` (a collated batch onto the device) and
``step`` (one optimizer step, raising ``NonFiniteLossError`` before a non-finite update)."""

import math

import torch

from detection import build


class NonFiniteLossError(RuntimeError):
    """A non-finite loss or gradient norm: the step was not taken (train.py stops the run as diverged)."""


def to_device(images, targets, device, channels_last=False):
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    tensors = ("boxes", "labels", "ignore_boxes")
    targets = [{k: (v.to(device, non_blocking=True) if k in tensors else v) for k, v in t.items()} for t in targets]
    return images, targets


def step(net, optimizer, scaler, images, targets, params, clip_grad_norm, rt: build.Runtime, with_stats: bool):
    """Forward, backward, clip, SGD step; returns the model's outputs and the gradient norm.

    A non-finite loss (on any rank) or gradient raises NonFiniteLossError before the
    weights are touched.
    """
    with torch.autocast(rt.device.type, dtype=rt.amp_dtype, enabled=rt.amp_dtype is not None):
        out = net(images, targets, with_stats=with_stats)
    loss = out["loss"]
    finite = torch.isfinite(loss.detach()).float()
    if rt.world > 1:
        torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
    if finite.item() == 0:
        raise NonFiniteLossError(f"non-finite loss (cls {out['loss_cls'].item()}, box {out['loss_box'].item()})")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(params, math.inf if clip_grad_norm is None else clip_grad_norm)
    if not torch.isfinite(grad_norm) and not scaler.is_enabled():
        raise NonFiniteLossError("non-finite gradient norm")
    scaler.step(optimizer)  # skips the step itself when fp16 gradients overflowed
    scaler.update()
    return out, grad_norm
