import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from analysis.bands import BANDS, RECALL, bands, write_band_plots
from detection.evaluation import coco_evaluate

ANIMALS = [{"id": 1, "name": "cat", "supercategory": "animal"}, {"id": 2, "name": "dog", "supercategory": "animal"},
           {"id": 3, "name": "car", "supercategory": "vehicle"}]


def make_gt(boxes, categories=({"id": 1, "name": "thing"},), num_images=None) -> COCO:
    """``boxes``: (image_id, category_id, [x, y, w, h]) or (..., iscrowd); images 1..n, 100x100."""
    n = num_images or max(b[0] for b in boxes)
    anns = [{"id": i + 1, "image_id": b[0], "category_id": b[1], "bbox": list(b[2]), "area": b[2][2] * b[2][3],
             "iscrowd": b[3] if len(b) > 3 else 0} for i, b in enumerate(boxes)]
    coco = COCO()
    coco.dataset = {"images": [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.jpg"} for i in range(1, n + 1)],
                    "categories": [dict(c) for c in categories], "annotations": anns}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def det(image_id, category_id, box, score):
    return {"image_id": image_id, "category_id": category_id, "bbox": list(box), "score": score}


def share(condition) -> float:
    """The AP of a curve that is 1 where ``condition(recall)`` and 0 elsewhere, on COCO's grid."""
    return float(np.mean([1.0 if condition(r) else 0.0 for r in RECALL]))


def test_all_correct_gives_one_everywhere():
    gt = make_gt([(1, 1, [10, 10, 20, 20]), (1, 1, [50, 50, 30, 30]), (2, 1, [0, 0, 40, 10])])
    dets = [det(a["image_id"], 1, a["bbox"], 0.9 - 0.1 * i) for i, a in enumerate(gt.dataset["annotations"])]
    result = bands(gt, dets)
    assert result["bands"] == ["C75", "C50", "Loc", "Oth", "BG", "FN"]  # no supercategory: Sim skipped
    for entry in (result["overall"], result["classes"]["thing"]):
        assert entry["ap"] == pytest.approx(dict.fromkeys(result["bands"], 1.0))
        assert entry["area"] == pytest.approx({"C75": 1.0, "C50": 0.0, "Loc": 0.0, "Oth": 0.0, "BG": 0.0, "FN": 0.0})
        assert entry["num_gt"] == 3
        assert all(np.allclose(c, 1.0) for c in entry["precision"].values())


def test_one_background_false_positive_at_rank_three():
    gt = make_gt([(1, 1, [0, 0, 10, 10]), (1, 1, [20, 20, 10, 10]), (1, 1, [40, 40, 10, 10]), (1, 1, [60, 60, 10, 10])])
    boxes = [a["bbox"] for a in gt.dataset["annotations"]]
    dets = [det(1, 1, boxes[0], 0.9), det(1, 1, boxes[1], 0.8), det(1, 1, [80, 0, 10, 10], 0.7),  # on nothing
            det(1, 1, boxes[2], 0.6), det(1, 1, boxes[3], 0.5)]
    ap = bands(gt, dets)["classes"]["thing"]
    # TP TP FP TP TP: recall .25 .5 .5 .75 1, precision 1 1 2/3 3/4 4/5; interpolated (max to
    # the right) 1 up to recall .5, then 4/5: AP = (51 * 1 + 50 * 0.8) / 101 at every IoU.
    assert ap["ap"]["C75"] == pytest.approx(91 / 101)
    assert ap["ap"]["C50"] == ap["ap"]["Loc"] == ap["ap"]["Oth"] == ap["ap"]["C75"]  # same matches at every IoU
    # Removing the false positive leaves precision 1 up to recall 1.
    assert ap["ap"]["BG"] == 1.0 and ap["area"]["BG"] == pytest.approx(10 / 101)
    assert ap["area"]["FN"] == 0.0  # every box found


def test_localization_errors_count_at_c75_c50_and_loc_forgives_them():
    gt = make_gt([(1, 1, [0, 0, 10, 10]), (1, 1, [30, 30, 10, 10]), (1, 1, [60, 60, 10, 10])])
    dets = [det(1, 1, [0, 0, 10, 10], 0.9),   # IoU 1
            det(1, 1, [30, 30, 10, 6], 0.8),  # IoU .6: a FP at .75 only
            det(1, 1, [60, 60, 10, 3], 0.7)]  # IoU .3: a FP at .75 and .5, a TP at .1
    ap = bands(gt, dets)["classes"]["thing"]["ap"]
    assert ap["C75"] == pytest.approx(share(lambda r: r <= 1 / 3))  # recall stops at 1/3
    assert ap["C50"] == pytest.approx(share(lambda r: r <= 2 / 3))
    assert [ap[b] for b in ("Loc", "Oth", "BG", "FN")] == pytest.approx([1.0] * 4)


def test_class_confusion_sim_and_oth():
    cat, dog, car = [10, 10, 20, 20], [50, 10, 20, 20], [10, 60, 30, 20]
    gt = make_gt([(1, 1, cat), (1, 2, dog), (1, 3, car)], ANIMALS)
    dets = [det(1, 2, cat, 0.9), det(1, 2, dog, 0.8),   # dog on the cat (same supercategory), then the dog
            det(1, 3, cat, 0.95), det(1, 3, car, 0.5)]  # car on the cat (another supercategory), then the car
    result = bands(gt, dets)
    assert result["bands"] == list(BANDS) and result["skipped"] == {}
    dog_ap, car_ap, cat_ap = (result["classes"][n]["ap"] for n in ("dog", "car", "cat"))
    # FP then TP: precision 1/2 up to recall 1.
    # (COCOeval divides by tp + fp + machine epsilon: 1/1 is a hair under 1.)
    assert [dog_ap[b] for b in ("C75", "C50", "Loc", "Sim", "Oth")] == pytest.approx([0.5, 0.5, 0.5, 1, 1])
    # the cat is an animal: Sim forgives the dog on it; the car on it only Oth
    assert [car_ap[b] for b in ("C75", "C50", "Loc", "Sim", "Oth")] == pytest.approx([0.5, 0.5, 0.5, 0.5, 1])
    assert cat_ap == {"C75": 0.0, "C50": 0.0, "Loc": 0.0, "Sim": 0.0, "Oth": 0.0, "BG": 0.0, "FN": 1.0}  # never detected
    overall = result["overall"]["ap"]
    assert overall["Sim"] == pytest.approx((1.0 + 0.5 + 0.0) / 3) and overall["Oth"] == pytest.approx(2 / 3)


def test_a_detection_on_an_other_class_crowd_is_a_confusion_and_on_its_own_crowd_ignored():
    cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    gt = make_gt([(1, 1, [0, 0, 10, 10]), (1, 1, [50, 50, 40, 40], 1), (1, 2, [0, 50, 30, 30], 1)], cats)
    dets = [det(1, 1, [60, 60, 10, 10], 0.9),  # inside a's own crowd: ignored at every band
            det(1, 1, [5, 55, 10, 10], 0.8),   # inside b's crowd: a FP until Oth
            det(1, 1, [0, 0, 10, 10], 0.7)]
    ap = bands(gt, dets)["classes"]["a"]
    assert ap["num_gt"] == 1 and ap["ap"]["Loc"] == pytest.approx(0.5) and ap["ap"]["Oth"] == pytest.approx(1.0)


def test_sim_is_skipped_without_supercategories_or_with_only_one():
    box = [0, 0, 10, 10]
    for categories, reason in (([{"id": 1, "name": "a"}, {"id": 2, "name": "b", "supercategory": ""}], "no supercategory"),
                               ([{"id": 1, "name": "a", "supercategory": "s"}, {"id": 2, "name": "b", "supercategory": "s"}],
                                "would equal Oth")):
        result = bands(make_gt([(1, 1, box), (1, 2, [50, 50, 10, 10])], categories), [det(1, 1, box, 0.5)])
        assert "Sim" not in result["bands"] and "Sim" not in result["overall"]["ap"]
        assert "Sim skipped" in result["skipped"]["Sim"] and reason in result["skipped"]["Sim"]


def test_empty_results_and_classes_without_ground_truth():
    gt = make_gt([(1, 1, [0, 0, 10, 10])], ANIMALS)
    result = bands(gt, [])
    assert result["overall"]["ap"] == {"C75": 0.0, "C50": 0.0, "Loc": 0.0, "Sim": 0.0, "Oth": 0.0, "BG": 0.0, "FN": 1.0}
    assert result["classes"]["dog"] == {"num_gt": 0, "ap": dict.fromkeys(BANDS, -1.0),
                                        "area": dict.fromkeys(BANDS, -1.0), "precision": {}}


def test_bad_input_names_the_entry():
    gt = make_gt([(1, 1, [0, 0, 10, 10])])
    for bad, words in (([det(7, 1, [0, 0, 1, 1], 0.5)], "detections[0].image_id=7"),
                       ([det(1, 1, [0, 0, 1, 1], 0.5), det(1, 9, [0, 0, 1, 1], 0.5)], "detections[1].category_id=9"),
                       ([det(1, 1, [0, 0, 1], 0.5)], "detections[0].bbox"),
                       ([det(1, 1, [0, 0, 1, 1], float("nan"))], "detections[0].score")):
        with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
            bands(gt, bad)
    with pytest.raises(ValueError, match="cat_ids"):
        bands(gt, [], cat_ids=[5])


# --- the fast path against the straightforward one: COCOeval per band, and per class for Sim/Oth


def _reference_precision(gt, dets, thr, cat_ids):
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(copy.deepcopy(dets)), iouType="bbox")
        ev.params.imgIds, ev.params.catIds = sorted(gt.getImgIds()), cat_ids
        ev.params.iouThrs, ev.params.maxDets = np.array([thr]), [100]
        ev.params.areaRng, ev.params.areaRngLbl = [[0, 1e10]], ["all"]
        ev.evaluate()
        ev.accumulate()
    return ev.eval["precision"][0, :, :, 0, 0]


def reference_bands(coco_gt, dets, cat_ids):
    """mmdetection's coco_error_analysis, area "all", with the supercategory relabelling of the original."""
    ps = {b: _reference_precision(copy.deepcopy(coco_gt), dets, t, cat_ids) for b, t in (("C75", .75), ("C50", .5), ("Loc", .1))}
    sup = {c["id"]: c.get("supercategory") for c in coco_gt.dataset["categories"]}
    for band, similar in (("Sim", lambda c, k: sup[c] is not None and sup[c] == sup[k]), ("Oth", lambda c, k: True)):
        ps[band] = np.zeros_like(ps["Loc"])
        for i, k in enumerate(cat_ids):
            gt = copy.deepcopy(coco_gt)
            for a in gt.dataset["annotations"]:
                if a["category_id"] != k and similar(a["category_id"], k):
                    a.update(ignore=1, iscrowd=1, category_id=k)
            with contextlib.redirect_stdout(io.StringIO()):
                gt.createIndex()
            mine = [d for d in dets if d["category_id"] == k]
            assert mine, "the fixture gives every class detections"
            ps[band][:, i] = _reference_precision(gt, mine, 0.1, cat_ids)[:, i]
    ps["BG"] = (np.where(ps["Oth"] == -1, 0, ps["Oth"]) > 0).astype(float)
    return ps


def random_case(seed=0, num_images=30):
    """Boxes of 4 classes in 2 supercategories plus one without; crowds; detections jittered by
    varying amounts, relabelled, duplicated, on background; tied scores; one image > 100 dets."""
    rng = np.random.default_rng(seed)
    categories = ANIMALS + [{"id": 4, "name": "bus", "supercategory": "vehicle"}, {"id": 5, "name": "traffic light"}]
    boxes, dets = [], []
    for img in range(1, num_images + 1):
        for _ in range(rng.integers(0, 6)):
            x, y = rng.uniform(0, 70, 2)
            w, h = rng.uniform(5, 30, 2)
            boxes.append((img, int(rng.integers(1, 6)), [x, y, w, h], int(rng.random() < 0.1)))
            for _ in range(rng.integers(0, 3)):
                cat = boxes[-1][1] if rng.random() < 0.7 else int(rng.integers(1, 6))
                s = rng.uniform(0, 0.6) * np.array([w, h])
                dets.append(det(img, cat, [x + rng.normal(0, s[0]), y + rng.normal(0, s[1]), w, h], round(rng.random(), 1)))
        for _ in range(rng.integers(0, 4)):
            dets.append(det(img, int(rng.integers(1, 6)), [*rng.uniform(0, 80, 2), *rng.uniform(3, 20, 2)], rng.random()))
    dets += [det(1, 1, [*rng.uniform(0, 80, 2), 10, 10], rng.random()) for _ in range(110)]
    return make_gt(boxes, categories, num_images), dets


def test_fast_path_equals_cocoeval_per_band_and_class():
    gt, dets = random_case()
    cat_ids = sorted(gt.getCatIds())
    expected = reference_bands(gt, dets, cat_ids)
    before = copy.deepcopy(gt.dataset)
    result = bands(gt, dets)
    assert gt.dataset == before
    assert result["bands"] == list(BANDS)
    for i, k in enumerate(cat_ids):
        entry = result["classes"][gt.cats[k]["name"]]
        assert entry["num_gt"] > 0
        for band in ("C75", "C50", "Loc", "Sim", "Oth", "BG"):
            np.testing.assert_array_equal(entry["precision"][band], expected[band][:, i], err_msg=f"{band} {k}")
    # the bands differ on this case, so the comparison can fail
    ap = result["overall"]["ap"]
    assert ap["C75"] < ap["C50"] < ap["Loc"] < ap["Sim"] < ap["Oth"] < ap["BG"] < ap["FN"] == 1.0


def test_overall_c75_and_c50_are_cocoevals_ap75_and_ap50(coco_gt):
    rng = np.random.default_rng(1)
    dets = []
    for a in coco_gt.dataset["annotations"]:
        x, y, w, h = a["bbox"]
        dets.append(det(a["image_id"], a["category_id"], [x + rng.normal(0, 0.15 * w), y, w, h], rng.random()))
    ap = bands(coco_gt, dets)["overall"]["ap"]
    stats = coco_evaluate(coco_gt, dets, verbose=False)
    assert ap["C75"] == pytest.approx(stats["AP75"], abs=1e-12) and ap["C50"] == pytest.approx(stats["AP50"], abs=1e-12)
    assert 0.1 < ap["C75"] < ap["C50"] < 1.0


def test_writes_overall_and_per_class_figures(tmp_path):
    gt, dets = random_case(num_images=6)
    result = bands(gt, dets)
    paths = write_band_plots(result, tmp_path / "analysis")
    names = sorted(p.name for p in paths)
    with_gt = sorted(f"bands_{n.replace(' ', '_')}.png" for n, e in result["classes"].items() if e["num_gt"])
    assert names == sorted(["bands_overall.png", *with_gt]) and "bands_traffic_light.png" in names
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    only = write_band_plots(result, tmp_path / "some", classes=["cat", "traffic light"])
    assert [p.name for p in only] == ["bands_overall.png", "bands_cat.png", "bands_traffic_light.png"]
