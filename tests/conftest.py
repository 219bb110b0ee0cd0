"""Shared fixtures: Hydra configs composed from configs/ for small, fast runs."""

import contextlib
import io
from pathlib import Path

import pytest
from pycocotools.coco import COCO

from detection import build

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
# A few real COCO train2017 images shipped with the tests (tests/data/coco_sample/SOURCE.md).
COCO_SAMPLE = ROOT / "tests" / "data" / "coco_sample"
COCO_SAMPLE_ANNOTATIONS = COCO_SAMPLE / "annotations" / "instances_train2017.json"
# 8 images of each real dataset beside the checkout (tests/data/make_real_samples.py).
COCO_PERSON_SAMPLE = ROOT / "tests" / "data" / "coco_person_sample"
BCCD_SAMPLE = ROOT / "tests" / "data" / "bccd_sample"


def compose_config(overrides=()):
    """The config of ``python train.py <overrides>`` (resolvers registered by detection.build)."""
    return build.config(overrides)


def plots_drawn_not_encoded(monkeypatch) -> None:
    """From here on in the test, a report's plots are drawn but not encoded as PNG (every plot is
    saved by ``analysis.plots.save_png``): for tests that compare a report's text, where the
    encoding is most of the time (the 16 committed studies regenerate in 21 s, not 71 s)."""
    monkeypatch.setattr("analysis.plots.save_png", lambda fig, path, **savefig: None)


def tiny_overrides(cache_dir) -> list[str]:
    """A few iterations of a small model on a few small synthetic images."""
    return [
        f"dataset.cache_dir={cache_dir}",
        "dataset.generator.num_train=12",
        "dataset.generator.num_val=6",
        "dataset.generator.image_size=128",
        "dataset.min_size=128",
        "dataset.max_size=128",
        "model.backbone.widths=[8,16,16]",
        "model.backbone.fpn_channels=16",
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
    """The shipped COCO sample's annotations as a pycocotools COCO object."""
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(COCO_SAMPLE_ANNOTATIONS))
