"""Every configs/dataset/*.yaml composes under Hydra and instantiates a CocoDetection."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from datasets.coco import CocoDetection
from datasets.transforms import Compose, build_transforms

from .conftest import COCO128, REPO

CONFIGS = REPO / "configs"
NAMES = sorted(p.stem for p in (CONFIGS / "dataset").glob("*.yaml"))


def compose_dataset(name, overrides=()):
    """The dataset group alone, in a minimal config (no primary config): these tests check
    the dataset configs, whatever state the other groups are in."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(overrides=[f"+dataset={name}", *overrides])


def overrides_for(name, tmp_path):
    if name == "synthetic":
        return [
            f"dataset.cache_dir={tmp_path}",
            "dataset.generator.num_train=6",
            "dataset.generator.num_val=3",
        ]
    if name == "coco":  # any COCO-format data: point it at coco128
        return [
            f"dataset.root={COCO128}",
            f"dataset.train.images={COCO128}/train2017",
            f"dataset.val.images={COCO128}/train2017",
            f"dataset.val.annotations={COCO128}/annotations/instances_train2017.json",
            "dataset.max_images=10",
            "dataset.val.max_images=5",
            "dataset.categories=[person,car]",
        ]
    return []


def test_all_three_exist():
    assert {"synthetic", "coco", "coco128"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_composes_and_instantiates(name, tmp_path):
    cfg = compose_dataset(name, overrides_for(name, tmp_path))
    d = cfg.dataset
    assert d.name == name and 0 < d.min_size <= d.max_size
    t = build_transforms(True, d.min_size, d.max_size)
    train = instantiate(d.train, transforms=t)
    val = instantiate(d.val, transforms=build_transforms(False, d.min_size, d.max_size))
    for ds in (train, val):
        assert isinstance(ds, CocoDetection) and len(ds) > 0 and isinstance(ds.transforms, Compose)
        assert ds.cat_ids == train.cat_ids and ds.num_classes == len(ds.class_names)
        image, target = ds[0]
        assert min(target["size"]) == d.min_size or max(target["size"]) == d.max_size
    if name == "coco":
        assert train.class_names == ["person", "car"] and len(train) == 10 and len(val) == 5
    if name == "synthetic":
        assert (len(train), len(val), train.num_classes) == (6, 3, 6)
        assert tuple(image.shape[-2:]) == (192, 192)


def test_coco_keys_the_issue_names():
    d = compose_dataset("coco").dataset
    for key in ("categories", "max_images", "others", "drop_empty", "min_box_size", "on_bad_image"):
        assert key in d, key
    for split in ("train", "val"):
        assert "images" in d[split] and "annotations" in d[split]


def test_coco128_fixed_disjoint_split():
    d = compose_dataset("coco128").dataset
    train, val = instantiate(d.train), instantiate(d.val)
    assert (len(train), len(val)) == (100, 28)
    assert not set(train.image_ids) & set(val.image_ids)
    assert set(train.image_ids) | set(val.image_ids) == set(train.coco.getImgIds())
    assert instantiate(d.val).image_ids == val.image_ids  # same seed, same split
    other = instantiate(compose_dataset("coco128", ["dataset.split_seed=1"]).dataset.val)
    assert other.image_ids != val.image_ids
