"""Loader settings (datasets/loading.py) and the loaders build.py makes with them: held
images and in-process loading give the batches of files and worker processes, resumed too."""

import pytest
import torch

from datasets.loading import ACCELERATOR_WORKERS, hold_images, worker_count
from detection import build
from tests.conftest import tiny_overrides

CPU = build.Runtime(0, 1, torch.device("cpu"), None)


def test_worker_count():
    assert worker_count("auto", "cpu") == 0
    assert 1 <= worker_count("auto", "cuda") <= ACCELERATOR_WORKERS
    assert worker_count(0, "cuda") == 0 and worker_count(3, "cpu") == 3
    for bad in (-1, "two", True, 1.5, None):
        with pytest.raises(ValueError, match=r"num_workers=.*: expected auto or an int >= 0"):
            worker_count(bad, "cpu")


def test_hold_images(tiny_coco):
    from datasets.coco import CocoDetection

    ds = CocoDetection(*tiny_coco)
    assert hold_images(ds, 0) is False and ds.cached_mb == 0  # 0: never
    assert hold_images(ds, 1) is True and ds.cached_mb > 0
    assert hold_images(list(range(3)), 1) is False  # a dataset that cannot hold its images
    for bad in (-1, "all", True, None):
        with pytest.raises(ValueError, match=r"cache_images_mb=.*: expected a number of MiB >= 0"):
            hold_images(ds, bad)


def equal_batches(a, b):
    (ia, ta), (ib, tb) = a, b
    return torch.equal(ia, ib) and all(
        x.keys() == y.keys() and all(torch.equal(x[k], y[k]) if torch.is_tensor(x[k]) else x[k] == y[k] for k in x)
        for x, y in zip(ta, tb)
    )


def batches(cfg, start_iter, n):
    train_ds, _ = build.datasets(cfg)
    it = iter(build.train_loader(cfg, train_ds, start_iter, CPU))
    out = [next(it) for _ in range(n)]
    return out, train_ds


def test_train_batches_same_held_or_read_with_or_without_workers_and_resumed(synthetic_cache):
    base = tiny_overrides(synthetic_cache)
    files, ds = batches(build.config([*base, "cache_images_mb=0", "num_workers=0"]), 0, 5)
    assert ds.cached_mb == 0
    held, ds = batches(build.config([*base, "num_workers=auto"]), 0, 5)  # the defaults: held, in-process
    assert ds.cached_mb > 0
    workers, ds = batches(build.config([*base, "num_workers=2"]), 0, 5)  # workers share the held images
    assert ds.cached_mb > 0
    resumed, _ = batches(build.config(base), 3, 2)  # a run resumed at iteration 3
    assert all(equal_batches(a, b) for a, b in zip(files, held))
    assert all(equal_batches(a, b) for a, b in zip(files, workers))
    assert all(equal_batches(a, b) for a, b in zip(files[3:], resumed))
    # 12 images, batch 4: the 4th batch starts the second epoch, with other flips
    assert not torch.equal(files[0][0], files[3][0])


def test_channels_last_batches_hold_the_same_values(synthetic_cache):
    base = tiny_overrides(synthetic_cache)
    plain, _ = batches(build.config([*base, "channels_last=false"]), 0, 1)
    nhwc, _ = batches(build.config([*base, "channels_last=true"]), 0, 1)
    assert nhwc[0][0].is_contiguous(memory_format=torch.channels_last) and plain[0][0].is_contiguous()
    assert equal_batches(plain[0], nhwc[0])


def test_eval_loader_holds_the_images_and_names_bad_keys(synthetic_cache):
    base = tiny_overrides(synthetic_cache)
    cfg = build.config(base)
    _, val_ds = build.datasets(cfg)
    held = list(build.eval_loader(cfg, val_ds))
    assert val_ds.cached_mb > 0
    _, val_plain = build.datasets(build.config([*base, "cache_images_mb=0"]))
    plain = list(build.eval_loader(build.config([*base, "cache_images_mb=0"]), val_plain))
    assert val_plain.cached_mb == 0 and len(held) == len(plain) == 1
    assert equal_batches(held[0], plain[0])
    for override, match in (("cache_images_mb=-5", r"cache_images_mb=-5: expected a number of MiB"),
                            ("num_workers=many", r"num_workers='many': expected auto or an int >= 0")):
        bad = build.config([*base, override])
        with pytest.raises(ValueError, match=match):
            build.eval_loader(bad, val_ds)
        with pytest.raises(ValueError, match=match):
            build.train_loader(bad, val_ds, 0, CPU)
