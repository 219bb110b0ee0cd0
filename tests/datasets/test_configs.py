"""Every configs/dataset/*.yaml composes under Hydra and instantiates a CocoDetection."""

import re

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from datasets.coco import CocoDetection
from datasets.transforms import Compose, build_transforms
from detection import build
from tests.conftest import COCO_SAMPLE, ROOT, compose_config

REPO = ROOT

CONFIGS = REPO / "configs"
NAMES = sorted(p.stem for p in (CONFIGS / "dataset").glob("*.yaml"))


def compose_dataset(name, overrides=()):
    """The dataset group alone, in a minimal config (no primary config): these tests check
    the dataset configs, whatever state the other groups are in."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(overrides=[f"+dataset={name}", *overrides])


def overrides_for(name, tmp_path):
    if name.startswith("synthetic"):  # the imbalance variants too: a few images, not the full 2000
        return [
            f"dataset.cache_dir={tmp_path}",
            "dataset.generator.num_train=8",
            "dataset.generator.num_val=6",  # synthetic_fg1to3500 asks for 70% empty images and a crowd one
        ]
    if name == "coco":  # any COCO-format data: point it at the shipped sample
        return [
            f"dataset.root={COCO_SAMPLE}",
            f"dataset.train.images={COCO_SAMPLE}/train2017",
            f"dataset.val.images={COCO_SAMPLE}/train2017",
            f"dataset.val.annotations={COCO_SAMPLE}/annotations/instances_train2017.json",
            "dataset.max_images=4",
            "dataset.val.max_images=2",
            "dataset.categories=[person,car]",
        ]
    if name == "coco128":  # optional data beside the checkout: the sample in its place
        return [f"dataset.root={COCO_SAMPLE}", "dataset.num_val=2"]
    return []


def test_all_three_exist():
    assert {"synthetic", "coco", "coco128", "coco_sample"} <= set(NAMES)


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
        assert train.class_names == ["person", "car"] and len(train) == 4 and len(val) == 2
    if name == "synthetic":
        assert (len(train), len(val), train.num_classes) == (8, 6, 6)
        assert tuple(image.shape[-2:]) == (192, 192)


def test_coco_keys_the_issue_names():
    d = compose_dataset("coco").dataset
    for key in ("categories", "max_images", "others", "drop_empty", "min_box_size", "on_bad_image"):
        assert key in d, key
    for split in ("train", "val"):
        assert "images" in d[split] and "annotations" in d[split]


def test_coco_sample_fixed_disjoint_split():
    d = compose_dataset("coco_sample").dataset
    train, val = instantiate(d.train), instantiate(d.val)
    assert (len(train), len(val)) == (6, 2)
    assert not set(train.image_ids) & set(val.image_ids)
    assert set(train.image_ids) | set(val.image_ids) == set(train.coco.getImgIds())
    assert instantiate(d.val).image_ids == val.image_ids  # same seed, same split
    other = instantiate(compose_dataset("coco_sample", ["dataset.split_seed=1"]).dataset.val)
    assert other.image_ids != val.image_ids


def test_a_missing_coco128_says_where_it_looked_and_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative root is read from the working directory
    cfg = compose_config(["dataset=coco128", "dataset.root=nowhere/coco128"])
    with pytest.raises(FileNotFoundError) as e:
        build.dataset(cfg, "train", augment=False)
    message = str(e.value)
    looked_at = tmp_path / "nowhere/coco128/annotations/instances_train2017.json"
    assert "dataset.train.annotations=nowhere/coco128/annotations/instances_train2017.json" in message
    assert f"looked at {looked_at})" in message
    assert "optional real data" in message and "beside the checkout" in message
    assert "dataset.root=<folder with train2017/" in message and "dataset=coco_sample" in message
    # Instantiated without build (Hydra wraps the error), the absolute path is still named.
    looked = f"annotation file not found: .*looked at {re.escape(str(looked_at))}"
    with pytest.raises(InstantiationException, match=looked):
        instantiate(cfg.dataset.train, transforms=None)


def test_a_missing_image_folder_names_its_field(tmp_path):
    """The annotations are there but not the images: the error names the images field."""
    cfg = compose_config(["dataset=coco", f"dataset.root={COCO_SAMPLE}", f"dataset.val.images={tmp_path}/val2017",
                          f"dataset.val.annotations={COCO_SAMPLE}/annotations/instances_train2017.json"])
    build.dataset(cfg, "train", augment=False)  # the train split is all there
    missing = re.escape(f"dataset=coco: dataset.val.images={tmp_path}/val2017 not found")
    with pytest.raises(FileNotFoundError, match=missing + r".*Set dataset.root \(or dataset.val.images\)"):
        build.dataset(cfg, "val", augment=False)
