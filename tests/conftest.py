"""Shared fixtures: Hydra configs composed from configs/ for small, fast runs."""

import contextlib
import io
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from pycocotools.coco import COCO

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
COCO128 = (ROOT / "../shared/data/coco128").resolve()
COCO128_ANNOTATIONS = COCO128 / "annotations" / "instances_train2017.json"


def compose_config(overrides=()):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def tiny_overrides(cache_dir) -> list[str]:
    """A few iterations of a small model on a few small synthetic images."""
    return [
        f"dataset.cache_dir={cache_dir}",
        "dataset.generator.num_train=12",
        "dataset.generator.num_val=6",
        "dataset.generator.image_size=128",
        "dataset.min_size=128",
        "dataset.max_size=128",
        "model.tiny_widths=[8,16,16]",
        "model.fpn_channels=16",
        "model.head_width=16",
        "model.head_convs=1",
        "schedule.max_iters=6",
        "schedule.batch_size=4",
        "schedule.eval_batch_size=6",
        "schedule.warmup_iters=2",
        "schedule.log_every=2",
        "schedule.checkpoint_every=3",
        "num_workers=0",
    ]


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory):
    """One small synthetic dataset shared by every test that trains."""
    return tmp_path_factory.mktemp("synthetic")


@pytest.fixture(scope="session")
def coco_gt():
    """coco128's annotations as a pycocotools COCO object."""
    if not COCO128_ANNOTATIONS.is_file():
        pytest.skip(f"coco128 not found at {COCO128_ANNOTATIONS} (the repository root's ../shared/data/coco128)")
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(COCO128_ANNOTATIONS))
