"""Helpers shared by the classification losses: the input check (the plain versions in
``losses.reference`` use it too) and the fused versions' chunking.

The fused losses walk the logits in row chunks. On CPU this is what makes them fast: a
chunk of a few MiB stays in cache through the dozen elementwise passes, and the
scratch buffers are allocated once per call instead of once per pass (a fresh 77 MB
buffer costs ~40 ms of page faults on this machine, more than the arithmetic on it).
On accelerators the caching allocator already reuses memory and every chunk costs kernel
launches, so the whole tensor is one chunk there.
"""

import torch
from torch import Tensor

# 2**20 float32 elements = 4 MiB per scratch buffer; the buffers a chunk touches fit the
# 32 MiB L3. Measured forward + backward on 2 cores, chunks of 2**19..2**22 elements,
# interleaved: 2**20 fastest for focal at 10k, 50k and 120k anchors per image (by
# 5-25%), within 5% of the best for softmax_bg. Smaller chunks pay per-op overhead:
# every chunk costs ~13 parallel regions, and on an oversubscribed machine each one can
# wait a scheduler time slice for its second thread (libgomp's default spin-wait).
CPU_CHUNK_ELEMENTS = 1 << 20


def chunk_rows(x: Tensor) -> int:
    """Rows per chunk for a Tensor[R, C]: at most ~CPU_CHUNK_ELEMENTS elements on CPU, in
    chunks of equal size (so the scratch buffers are no larger than they need to be); all
    rows on other devices."""
    R, C = x.shape
    if x.device.type != "cpu" or R == 0:
        return max(1, R)
    chunks = -(-R * C // CPU_CHUNK_ELEMENTS)  # ceil
    return -(-R // chunks)


def check_inputs(name: str, logits: Tensor, labels: Tensor, extra_columns: int = 0) -> int:
    """Returns K, or raises a ValueError naming ``name`` when logits/labels break the contract.

    Contract: logits Tensor[..., C] floating point with C = K + extra_columns (1 for a
    background logit), labels Tensor[...] integer with the same leading shape, every
    label in {-1 (ignore), 0..K-1 (class), K (background)}.
    """
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        raise ValueError(f"{name}: logits must be a floating-point Tensor[N, R, C], got "
                         f"{type(logits).__name__} {getattr(logits, 'dtype', '')}")
    if not isinstance(labels, Tensor) or labels.is_floating_point() or labels.is_complex() \
            or labels.dtype == torch.bool:
        raise ValueError(f"{name}: labels must be an integer Tensor[N, R] (-1 ignore, 0..K-1 "
                         f"class, K background), got {type(labels).__name__} "
                         f"{getattr(labels, 'dtype', '')}; one-hot targets are not accepted")
    if logits.dim() < 1 or labels.shape != logits.shape[:-1]:
        raise ValueError(f"{name}: labels shape {tuple(labels.shape)} must equal logits shape "
                         f"{tuple(logits.shape)} without its last (class) dimension")
    if labels.device != logits.device:
        raise ValueError(f"{name}: labels on {labels.device} but logits on {logits.device}")
    num_classes = logits.shape[-1] - extra_columns
    if num_classes < 1:
        raise ValueError(f"{name}: logits have {logits.shape[-1]} columns, which leaves "
                         f"K = {num_classes} classes; expected K >= 1")
    if labels.numel() == 0:
        return num_classes
    lo, hi = torch.aminmax(labels)
    lo, hi = int(lo), int(hi)
    if lo < -1 or hi > num_classes:
        raise ValueError(f"{name}: labels range over [{lo}, {hi}], expected values in "
                         f"[-1, {num_classes}] (-1 ignore, 0..{num_classes - 1} class, "
                         f"{num_classes} background)")
    return num_classes


def graph_freed_after_backward() -> bool:
    """True inside a backward that frees the graph after it (no retain_graph, no gradcheck).

    A Function may then scale its saved gradient buffer in place and return it instead of
    allocating a new one: nothing can unpack the saved tensor again. AOTAutograd makes the
    same test before donating saved buffers; the query is private, so when it is missing
    this answers False and the caller takes the allocating path.
    """
    query = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)
    return query is not None and not query()
