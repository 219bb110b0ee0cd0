import contextlib
import io
import json
import os
import random

import numpy as np
import pytest
from pycocotools.cocoeval import COCOeval

from detection.evaluation import STAT_NAMES, coco_evaluate
from detection.run_folder import write_json_atomic
from tests.conftest import COCO_SAMPLE_ANNOTATIONS

ANNOTATIONS = COCO_SAMPLE_ANNOTATIONS  # the coco_gt fixture (tests/conftest.py) loads it




def gt_as_detections(coco, crowd=False):
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]), "score": 1.0}
            for a in coco.dataset["annotations"] if crowd or not a["iscrowd"]]


def perturbed_detections(coco, seed=0):
    """Ground truth jittered, rescored, partly dropped, relabelled, plus false positives."""
    rng = random.Random(seed)
    cat_ids = coco.getCatIds()
    dets = []
    for a in coco.dataset["annotations"]:
        if rng.random() < 0.2:
            continue
        x, y, w, h = a["bbox"]
        box = [x + rng.gauss(0, 0.1 * w), y + rng.gauss(0, 0.1 * h), w * rng.uniform(0.8, 1.2), h * rng.uniform(0.8, 1.2)]
        cat = a["category_id"] if rng.random() < 0.9 else rng.choice(cat_ids)
        dets.append({"image_id": a["image_id"], "category_id": cat, "bbox": box, "score": rng.random()})
    for img in coco.dataset["images"]:
        for _ in range(rng.randrange(4)):
            w, h = rng.uniform(5, img["width"] / 2), rng.uniform(5, img["height"] / 2)
            box = [rng.uniform(0, img["width"] - w), rng.uniform(0, img["height"] - h), w, h]
            dets.append({"image_id": img["id"], "category_id": rng.choice(cat_ids), "bbox": box, "score": rng.random() * 0.5})
    return dets


def cocoeval_directly(coco, results_file, img_ids=None, cat_ids=None):
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco, coco.loadRes(str(results_file)), iouType="bbox")
        if img_ids is not None:
            ev.params.imgIds = img_ids
        if cat_ids is not None:
            ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_ground_truth_as_detections_gives_ap_1(coco_gt):
    assert sum(a["iscrowd"] for a in coco_gt.dataset["annotations"]) == 3  # crowd regions are ignored
    result = coco_evaluate(coco_gt, gt_as_detections(coco_gt), verbose=False)
    for name in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100"):
        assert result[name] == 1.0, name
    used = {a["category_id"] for a in coco_gt.dataset["annotations"] if not a["iscrowd"]}
    per_cat = result["per_category"]
    assert len(per_cat) == 80
    # (a mean of 101 ones over IoU thresholds may round to 1 - 2e-16)
    assert {coco_gt.cats[c]["name"] for c in used} == {k for k, v in per_cat.items() if v == pytest.approx(1.0)}
    assert {coco_gt.cats[c]["name"] for c in set(coco_gt.cats) - used} == {k for k, v in per_cat.items() if v == -1.0}
    assert len(used) == 13  # of the 80 listed
    # a detection on a crowd region is neither a true nor a false positive
    assert coco_evaluate(coco_gt, gt_as_detections(coco_gt, crowd=True), verbose=False)["AP"] == 1.0


def test_equals_cocoeval_on_a_results_file(coco_gt, tmp_path):
    dets = perturbed_detections(coco_gt)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(dets))
    result = coco_evaluate(coco_gt, json.loads(path.read_text()), verbose=False)
    stats = cocoeval_directly(coco_gt, path)
    assert [result[k] for k in STAT_NAMES] == stats.tolist()
    assert 0.2 < result["AP"] < 0.9  # the perturbation leaves a non-trivial score

    # per-category AP is what COCOeval gives when run on that category alone
    per_cat = result["per_category"]
    for cat_id in [1, 3, 62, 11]:  # 11 is listed but has no box
        assert per_cat[coco_gt.cats[cat_id]["name"]] == pytest.approx(cocoeval_directly(coco_gt, path, cat_ids=[cat_id])[0])
    assert per_cat[coco_gt.cats[11]["name"]] == -1.0
    # and AP is their mean over categories with ground truth
    assert np.mean([v for v in per_cat.values() if v != -1.0]) == pytest.approx(result["AP"])

    img_ids = sorted(coco_gt.getImgIds())[::3]
    sub = coco_evaluate(coco_gt, dets, image_ids=img_ids, verbose=False)
    assert [sub[k] for k in STAT_NAMES] == cocoeval_directly(coco_gt, path, img_ids=img_ids).tolist()
    assert sub["AP"] != result["AP"]
    only = coco_evaluate(coco_gt, dets, cat_ids=[1, 3], verbose=False)
    assert set(only["per_category"]) == {"person", "car"}
    assert only["AP"] == pytest.approx(cocoeval_directly(coco_gt, path, cat_ids=[1, 3])[0])


def test_does_not_modify_detections_and_accepts_a_path(coco_gt):
    dets = perturbed_detections(coco_gt, seed=1)[:50]
    before = json.dumps(dets)
    by_path = coco_evaluate(str(ANNOTATIONS), dets, verbose=False)
    assert json.dumps(dets) == before  # COCO.loadRes would add area, id, iscrowd, segmentation
    assert by_path == coco_evaluate(coco_gt, dets, verbose=False)


def test_empty_detections_give_zeros(coco_gt):
    result = coco_evaluate(coco_gt, [], verbose=False)
    assert all(result[k] == 0.0 for k in STAT_NAMES)  # the sample has gt in every area range
    assert {v for v in result["per_category"].values()} == {0.0, -1.0}


def test_summary_printed_only_when_verbose(coco_gt, capsys):
    dets = gt_as_detections(coco_gt)
    coco_evaluate(coco_gt, dets, verbose=False)
    assert capsys.readouterr().out == ""
    coco_evaluate(coco_gt, dets, verbose=True)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 12
    assert lines[0].startswith(" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000")


def test_bad_detections_are_named(coco_gt):
    good = {"image_id": coco_gt.getImgIds()[0], "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}
    with pytest.raises(ValueError, match=r"detections\[1\].category_id=0 is not a category"):
        coco_evaluate(coco_gt, [good, dict(good, category_id=0)], verbose=False)
    with pytest.raises(ValueError, match=r"detections\[0\].image_id=-5 is not an image"):
        coco_evaluate(coco_gt, [dict(good, image_id=-5)], verbose=False)
    with pytest.raises(ValueError, match=r"detections\[0\].bbox: expected \[x, y, width, height\]"):
        coco_evaluate(coco_gt, [dict(good, bbox=[1, 2, 3])], verbose=False)
    with pytest.raises(ValueError, match=r"detections\[0\]: expected a dict with image_id, category_id, bbox, score"):
        coco_evaluate(coco_gt, [{"image_id": 1}], verbose=False)
    with pytest.raises(ValueError, match=r"image_ids: \[-1\] not in the annotations"):
        coco_evaluate(coco_gt, [good], image_ids=[-1], verbose=False)


def test_write_json_atomic(tmp_path):
    path = tmp_path / "sub" / "eval.json"
    write_json_atomic(path, {"AP": 0.5})
    write_json_atomic(path, {"AP": 0.25, "per_category": {"a": -1.0}})
    assert json.loads(path.read_text()) == {"AP": 0.25, "per_category": {"a": -1.0}}
    with pytest.raises(TypeError):
        write_json_atomic(path, {"AP": object()})  # fails half-way through json.dump
    assert json.loads(path.read_text()) == {"AP": 0.25, "per_category": {"a": -1.0}}
    assert os.listdir(path.parent) == ["eval.json"]  # no temp file left behind
