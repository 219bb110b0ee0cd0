"""The synthetic shapes dataset: deterministic, the promised counts, loadable as COCO."""

import json
import math
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw

from datasets import shapes, synthetic
from datasets.coco import CocoDetection
from datasets.synthetic import (
    DEFAULTS,
    SHAPES,
    check_params,
    ensure_synthetic,
    generate,
    synthetic_coco,
)

from .conftest import REPO

SMALL = {
    "num_train": 40,
    "num_val": 12,
    "image_size": 96,
    "object_size": [8, 40],
    "num_classes": 4,
    "empty_fraction": 0.1,
    "crowd_fraction": 0.15,
}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("syn") / "a", progress=False, **SMALL)


def test_defaults_are_the_issues():
    """Binding defaults: accuracy figures must not be bought with an easier dataset."""
    d = check_params()
    assert (d["image_size"], d["num_classes"], d["num_train"], d["num_val"]) == (192, 6, 2000, 300)
    assert d["objects_per_image"] == [2, 12] and d["object_size"] == [10, 80]
    assert d["distractors_per_image"] == [0, 4]
    assert d["empty_fraction"] >= 0.05 and d["crowd_fraction"] >= 0.05
    cfg = yaml.safe_load((REPO / "configs/dataset/synthetic.yaml").read_text())
    assert cfg["generator"] == DEFAULTS  # config and code cannot drift apart


def test_same_parameters_byte_identical(small, tmp_path):
    again = generate(tmp_path / "b", progress=False, **SMALL)
    for name in ("instances_train.json", "instances_val.json"):
        assert (small / name).read_bytes() == (again / name).read_bytes()
    for f in sorted((small / "val").iterdir()):
        assert f.read_bytes() == (again / "val" / f.name).read_bytes()
    other = generate(tmp_path / "c", progress=False, **{**SMALL, "seed": 1, "num_val": 0})
    assert (other / "instances_train.json").read_bytes() != (
        small / "instances_train.json"
    ).read_bytes()


@pytest.mark.parametrize("split", ["train", "val"])
def test_promised_counts(small, split):
    p = check_params(**SMALL)
    doc = json.loads((small / f"instances_{split}.json").read_text())
    n = p[f"num_{split}"]
    assert len(doc["images"]) == n and len(list((small / split).iterdir())) == n
    assert [c["name"] for c in doc["categories"]] == list(SHAPES[:4])
    per_image = Counter(a["image_id"] for a in doc["annotations"] if not a["iscrowd"])
    crowd = Counter(a["image_id"] for a in doc["annotations"] if a["iscrowd"])
    empty = [i["id"] for i in doc["images"] if i["id"] not in per_image]
    assert len(empty) == math.ceil(0.1 * n) and not set(empty) & set(crowd)
    assert len(crowd) == math.ceil(0.15 * n) and set(crowd.values()) == {1}
    assert all(2 <= per_image[i["id"]] <= 12 for i in doc["images"] if i["id"] not in empty)
    for a in doc["annotations"]:
        x, y, w, h = a["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 96 and y + h <= 96 and a["area"] == w * h
        if not a["iscrowd"]:
            assert 8 <= w <= 40 and 8 <= h <= 40
    assert {i["width"] for i in doc["images"]} == {i["height"] for i in doc["images"]} == {96}


def test_default_fractions_give_at_least_five_percent():
    for n in (2000, 300, 7):
        assert math.ceil(DEFAULTS["empty_fraction"] * n) >= 0.05 * n


@pytest.mark.parametrize("shape", SHAPES)
def test_each_shape_fills_exactly_its_box(shape):
    image = Image.new("L", (64, 64))
    shapes.draw_shape(ImageDraw.Draw(image), shape, (7, 11, 30, 21), fill=255)
    ys, xs = np.nonzero(np.asarray(image))
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (7, 11, 37, 32)


def test_every_drawn_object_is_annotated_and_every_annotation_drawn():
    """The same image rendered with and without its objects (same background and
    distractors): the pixels that change lie inside the annotated boxes, and each box
    changes a good part of its pixels."""
    p = check_params(**SMALL)
    for i in range(20):
        kind = ("normal", "crowd")[i % 2]
        with_objects, objects = shapes.render_image(p, np.random.default_rng([5, i]), kind)
        without, none = shapes.render_image(p, np.random.default_rng([5, i]), "empty")
        assert none == [] and len(objects) >= 2 + (kind == "crowd")
        # noise is drawn last from the shared stream, so it differs a little between the two
        changed = (
            np.abs(np.asarray(with_objects, np.int16) - np.asarray(without, np.int16)).max(-1) > 40
        )
        inside = np.zeros_like(changed)
        for _, (x, y, w, h), _ in objects:
            inside[y : y + h, x : x + w] = True
            assert changed[y : y + h, x : x + w].mean() > 0.25, (i, x, y, w, h)
        assert changed[~inside].mean() < 0.002, i


def test_loads_through_coco(small):
    ds = CocoDetection(small / "train", small / "instances_train.json")
    assert ds.num_classes == 4 and len(ds) == 40 and ds.class_names == list(SHAPES[:4])
    image, target = ds[0]
    assert image.shape == (3, 96, 96)
    assert sum(len(ds.target(i)["ignore_boxes"]) for i in range(len(ds))) == math.ceil(0.15 * 40)


def test_cache_reused_and_generated_once_under_concurrency(tmp_path, monkeypatch):
    calls = []
    real = synthetic.generate

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "generate", counting)
    params = {**SMALL, "num_train": 6, "num_val": 3}
    out = []
    threads = [
        threading.Thread(
            target=lambda: out.append(ensure_synthetic(tmp_path, progress=False, **params))
        )
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(out)) == 1
    path = out[0]
    assert (
        path.parent == tmp_path
        and path.name == f"shapes-{synthetic.dataset_key(check_params(**params))}"
    )
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [path.name]
    assert not [
        p for p in tmp_path.iterdir() if p.is_dir() and p.name.startswith(".")
    ]  # no temp left
    assert ensure_synthetic(tmp_path, progress=False, **params) == path and len(calls) == 1
    assert json.loads((path / "params.json").read_text()) == check_params(**params)


def test_synthetic_coco_target_and_errors(tmp_path):
    gen = {"num_train": 5, "num_val": 2, "image_size": 64, "object_size": [8, 30]}
    val = synthetic_coco("val", generator=gen, root=tmp_path, categories=["circle", "square"])
    assert isinstance(val, CocoDetection) and len(val) == 2 and val.cat_ids == [1, 2]
    with pytest.raises(ValueError, match=r"split is 'test', expected 'train' or 'val'"):
        synthetic_coco("test", generator=gen, root=tmp_path)
    with pytest.raises(
        ValueError, match=r"unknown synthetic generator parameter\(s\) \['colours'\]"
    ):
        check_params(colours=3)
    with pytest.raises(ValueError, match=r"num_classes=9: expected 1..8"):
        check_params(num_classes=9)
    with pytest.raises(ValueError, match=r"objects_per_image=\[5, 2\]"):
        check_params(objects_per_image=[5, 2])
    with pytest.raises(ValueError, match=r"ask for 2 \+ 2 of 3 train images"):
        generate(
            tmp_path / "x",
            progress=False,
            num_train=3,
            num_val=0,
            empty_fraction=0.5,
            crowd_fraction=0.5,
        )
    assert isinstance(Path(val.images_dir), Path)
