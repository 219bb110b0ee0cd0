"""Every configs/dataset/*.yaml composes under Hydra and instantiates a CocoDetection."""

import re

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from datasets.coco import CocoDetection
from datasets.transforms import Compose, build_transforms
from detection import build
from tests.conftest import BCCD_SAMPLE, COCO_PERSON_SAMPLE, COCO_SAMPLE, ROOT, compose_config

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
    if name == "coco_person":  # beside the checkout too: 8 of its images, shipped
        return [f"dataset.root={COCO_PERSON_SAMPLE}"]
    if name == "bccd":
        return [f"dataset.root={BCCD_SAMPLE}"]
    return []


def test_all_three_exist():
    assert {"synthetic", "coco", "coco128", "coco_sample", "coco_person", "bccd"} <= set(NAMES)


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


@pytest.mark.parametrize("name,layout", [
    ("coco_person", "images/ and annotations/instances_{train,val}.json"),
    ("bccd", "images/ and annotations/instances_{train,val,test}.json"),
])
def test_a_missing_real_dataset_is_one_line_naming_the_path_and_the_override(name, layout, tmp_path, monkeypatch):
    """Default root ../shared/data/<name>, read from the working directory: missing here."""
    monkeypatch.chdir(tmp_path)
    cfg = compose_config([f"dataset={name}"])
    assert cfg.dataset.root == f"../shared/data/{name}"
    with pytest.raises(FileNotFoundError) as e:
        build.dataset(cfg, "train", augment=False)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(
        f"dataset={name}: dataset.train.annotations=../shared/data/{name}/annotations/instances_train.json not found "
        f"(looked at {(tmp_path / f'../shared/data/{name}/annotations/instances_train.json').resolve()}). "
        f"{name} is optional real data")
    assert f"at ../shared/data/{name}. Elsewhere set dataset.root=<folder with {layout}>." in message


def test_coco_sample_keeps_the_generic_advice(tmp_path):
    cfg = compose_config(["dataset=coco_sample", f"dataset.root={tmp_path}/gone"])
    with pytest.raises(FileNotFoundError, match=r"not found .*\. Set dataset.root \(or dataset.train.annotations\)"):
        build.dataset(cfg, "train", augment=False)


def test_coco_person_sample_splits_and_crowd_rule_are_the_datasets():
    d = compose_dataset("coco_person", [f"dataset.root={COCO_PERSON_SAMPLE}"]).dataset
    train, val = instantiate(d.train), instantiate(d.val)
    assert (len(train), len(val)) == (6, 2) and train.class_names == val.class_names == ["person"]
    assert 80671 in val.image_ids and 456496 in train.image_ids
    assert (d.crowd_min_centres, d.crowd_min_aspect) == (3, 1.0)
    assert train.implied_crowd_ids == []  # one person per sample image


def test_bccd_reports_on_test_and_val_split_switches_it():
    d = compose_dataset("bccd", [f"dataset.root={BCCD_SAMPLE}"]).dataset
    train, test = instantiate(d.train), instantiate(d.val)
    assert (len(train), len(test)) == (4, 3) and train.class_names == ["RBC", "WBC", "Platelets"]
    assert {test.coco.imgs[i]["split"] for i in test.image_ids} == {"test"}
    val = instantiate(compose_dataset("bccd", [f"dataset.root={BCCD_SAMPLE}", "dataset.val_split=val"]).dataset.val)
    assert {val.coco.imgs[i]["split"] for i in val.image_ids} == {"val"} and len(val) == 1


def test_any_coco_dataset_can_recover_crowds_from_the_command_line():
    """dataset=coco with the rule: the shipped sample's 3 real crowd boxes stay crowd, and
    boxes the rule marks are crowd in the train split's COCO object too."""
    base = [f"dataset.root={COCO_SAMPLE}", f"dataset.train.images={COCO_SAMPLE}/train2017"]
    plain = instantiate(compose_dataset("coco", base).dataset.train)
    ruled = instantiate(compose_dataset("coco", base + ["dataset.crowd_min_centres=2"]).dataset.train)
    assert plain.implied_crowd_ids == [] and ruled.implied_crowd_ids
    assert all(ruled.coco.anns[i]["iscrowd"] == 1 for i in ruled.implied_crowd_ids)
    assert len(ruled.target(0)["ignore_boxes"]) + len(ruled.target(0)["boxes"]) == (
        len(plain.target(0)["ignore_boxes"]) + len(plain.target(0)["boxes"]))
