"""How a DataLoader feeds the model: decoded images held in memory, and worker processes.

On the 2-core CPU the default model's step takes both cores: two worker processes decoding
JPEGs beside it held the loop to 0.77x the bare step's images/s, one process loading between
steps to 0.88x (``python -m benchmarks.bench_loop``; coco128 at 512 px without the cache:
0.78x and 0.89x). A small dataset is also decoded once and held in memory (the synthetic
train set: 211 MiB, decoded in about 1 s); what is left of an item (float conversion, flip,
normalization: about 0.3 ms at 192 px) runs between steps, and the loop reaches 0.94-0.98x.
The arguments are named like the config keys they come from, so errors name the key."""

import os

# Worker processes where they do not compete with the step (a GPU trains while the CPU loads).
ACCELERATOR_WORKERS = 2


def hold_images(dataset, cache_images_mb) -> bool:
    """Has ``dataset`` decode its images once and hold them in memory when they take at most
    ``cache_images_mb`` MiB (0: never); returns whether it holds them. A dataset without
    ``cache_images`` (not a ``CocoDetection``), or one over the limit, keeps reading its files.
    """
    if (
        isinstance(cache_images_mb, bool)
        or not isinstance(cache_images_mb, (int, float))
        or not cache_images_mb >= 0
    ):
        raise ValueError(
            f"cache_images_mb={cache_images_mb!r}: expected a number of MiB >= 0 (0: never hold "
            "decoded images in memory)"
        )
    cache = getattr(dataset, "cache_images", None)
    return bool(cache_images_mb) and cache is not None and cache(cache_images_mb)


def worker_count(num_workers, device_type: str) -> int:
    """DataLoader worker processes: ``num_workers`` (an int >= 0), or for ``"auto"`` none on
    the CPU (the step already uses every core: a worker takes cores from it and loses more
    than it saves, measured on 2 cores) and ``ACCELERATOR_WORKERS`` elsewhere, capped by the
    cores there are."""
    if num_workers == "auto":
        return 0 if device_type == "cpu" else min(ACCELERATOR_WORKERS, os.cpu_count() or 1)
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers={num_workers!r}: expected auto or an int >= 0")
    return num_workers
