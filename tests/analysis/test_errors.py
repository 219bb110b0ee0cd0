import contextlib
import io
import json
import random

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from analysis.coco_files import check_results
from analysis.errors import DET_TYPES, MAIN_TYPES, SPECIAL_TYPES, bkg_vs_recall, tide_errors
from tests.analysis.error_fixtures import CAT, DETS, DOG, GT, dets, make_gt, to_coco


def points(*per_class_sums):
    """mAP in points from each class's sum of precision over COCO's 101 recall thresholds."""
    return 100 * float(np.mean(per_class_sums)) / 101


def cocoeval_ap50(gt: COCO, results: list[dict]) -> float:
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(json.loads(json.dumps(results))), iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return 100 * ev.stats[1]


def test_one_error_of_each_type_counted_and_fixed_as_computed_by_hand():
    gt = to_coco(GT)
    r = tide_errors(gt, DETS)
    assert r.counts == {t: 1 for t in MAIN_TYPES}
    assert [DET_TYPES[t] for t in r.det_types] == ["TP", "Dupe", "Cls", "Loc", "Both", "Bkg", "TP", "TP", "TP"]
    assert r.missed_ann_ids == [4]
    # Per class (cat, dog, car), the sum of the precision envelope at the 101 recall points.
    # cat (3 GT): FP TP FP FP TP -> precision .5 up to recall 1/3 (34 points), .4 to 2/3 (33).
    # dog, car (2 GT): FP TP -> .5 up to recall .5 (51 points).
    base = points(0.5 * 34 + 0.4 * 33, 0.5 * 51, 0.5 * 51)
    assert r.ap50 == pytest.approx(base) and r.ap50 == pytest.approx(cocoeval_ap50(gt, DETS))
    expected = {
        # d3 becomes a dog TP at 0.95: cat TP FP FP TP; dog TP FP TP.
        "Cls": points(34 + 0.5 * 33, 51 + 50 * 2 / 3, 25.5),
        # d4 becomes a cat TP: FP TP FP TP TP -> precision .6 at every recall.
        "Loc": points(0.6 * 101, 25.5, 25.5),
        "Dupe": points(0.5 * 67, 25.5, 25.5),  # FP TP FP TP: .5 up to recall 2/3
        "Both": points(30.2, 51, 25.5),  # the dog's FP goes
        "Bkg": points(30.2, 25.5, 51),   # the car's FP goes
        "Miss": points(30.2, 25.5, 0.5 * 101),  # car: FP TP over 1 GT
        "FalsePos": points(67, 51, 51),  # TPs first: precision 1 up to each class's recall
        # GT counts = TPs (cat 2, dog 1, car 1): cat .5 up to recall .5, .4 beyond.
        "FalseNeg": points(0.5 * 51 + 0.4 * 50, 50.5, 50.5),
    }
    assert list(r.dap) == list(MAIN_TYPES + SPECIAL_TYPES)
    for name, value in expected.items():
        assert r.dap[name] == pytest.approx(value - base), name


def test_fixing_the_one_background_error_gives_ap_1():
    gt = to_coco(make_gt([(1, CAT, (0, 0, 10, 10)), (1, CAT, (50, 50, 20, 20))], cats=(CAT,)))
    results = dets((1, CAT, (0, 0, 10, 10), 0.9), (1, CAT, (100, 100, 10, 10), 0.8),
                   (1, CAT, (52, 50, 20, 20), 0.7))
    r = tide_errors(gt, results)
    assert r.counts == {"Cls": 0, "Loc": 0, "Both": 0, "Dupe": 0, "Bkg": 1, "Miss": 0}
    ap = 100 * (51 + 50 * 2 / 3) / 101  # precision 1 up to recall .5, then 2/3
    assert r.ap50 == pytest.approx(ap) and r.ap50 == pytest.approx(cocoeval_ap50(gt, results))
    assert r.dap["Bkg"] == pytest.approx(100 - ap) and r.dap["FalsePos"] == pytest.approx(100 - ap)
    assert all(r.dap[t] == 0 for t in ("Cls", "Loc", "Both", "Dupe", "Miss", "FalseNeg"))


def test_thresholds_bound_each_type():
    """IoU 0.1 with every GT is still Bkg (<= t_b), 0.2 with a GT of another class is Both;
    exactly 0.5 with a matched same-class GT is Loc (tested before Dupe, as in TIDE), 0.6 Dupe."""
    gt = to_coco(make_gt([(1, DOG, (0, 0, 100, 10)), (1, CAT, (0, 100, 100, 10))], cats=(CAT, DOG)))
    results = dets(
        (1, CAT, (0, 100, 100, 10), 0.9),   # TP
        (1, CAT, (0, 0, 20, 10), 0.8),      # IoU 0.2 with the dog: Both
        (1, CAT, (0, 0, 10, 10), 0.7),      # IoU 0.1 with the dog: Bkg
        (1, CAT, (0, 100, 50, 10), 0.6),    # IoU 0.5 with the matched cat: Loc
        (1, CAT, (0, 100, 60, 10), 0.5),    # IoU 0.6 with it: Dupe
    )
    r = tide_errors(gt, results)
    assert [DET_TYPES[t] for t in r.det_types] == ["TP", "Both", "Bkg", "Loc", "Dupe"]
    assert r.counts["Miss"] == 1  # the dog: no Cls/Loc error points at it


def test_cls_and_loc_errors_on_one_gt_share_one_fix():
    """TIDE's BestGTMatch: only the highest-scoring error on an unmatched GT becomes its TP."""
    gt = to_coco(make_gt([(1, DOG, (0, 0, 10, 10))], cats=(CAT, DOG)))
    results = dets((1, CAT, (0, 0, 10, 10), 0.9),    # Cls, best on the dog
                   (1, DOG, (0, 0, 10, 25), 0.8),    # Loc (0.4) on the same dog
                   (1, DOG, (100, 100, 10, 10), 0.95))  # Bkg
    r = tide_errors(gt, results)
    assert r.counts == {"Cls": 1, "Loc": 1, "Both": 0, "Dupe": 0, "Bkg": 1, "Miss": 0}
    assert r.ap50 == 0
    # Fixing Cls: the cat becomes a dog TP at 0.9 behind the Bkg at 0.95 -> precision 1/2 at
    # every recall. Fixing Loc: that error is not the best on its GT, so it is only dropped.
    assert r.dap["Cls"] == pytest.approx(50) and r.dap["Loc"] == 0


def test_crowd_detections_are_neither_tp_nor_error():
    gt = to_coco(make_gt([(1, CAT, (0, 0, 10, 10)), (1, CAT, (100, 100, 50, 50), 1)], cats=(CAT, DOG)))
    results = dets((1, CAT, (0, 0, 10, 10), 0.5),
                   (1, CAT, (110, 110, 10, 10), 0.9),   # inside the cat crowd: ignored
                   (1, DOG, (110, 110, 10, 10), 0.8))   # a dog there: Bkg (crowd is class-wise)
    r = tide_errors(gt, results)
    assert [DET_TYPES[t] for t in r.det_types] == ["TP", "ignored", "Bkg"]
    assert r.counts["Bkg"] == 1 and sum(r.counts.values()) == 1
    # Only the cat class has (non-crowd) GT: the dog is left out of the mean, as in COCOeval.
    assert r.ap50 == 100 == pytest.approx(cocoeval_ap50(gt, results))


def test_crowd_detection_can_still_fix_a_loc_error_as_in_tidecv():
    """A loose box on a person inside a crowd is ignored for AP and not counted, but, as in
    tidecv, fixing Loc errors makes it that person's TP, and the person is not a Miss."""
    gt = to_coco(make_gt([(1, CAT, (0, 0, 10, 10)), (1, CAT, (0, 0, 100, 100), 1)], cats=(CAT,)))
    r = tide_errors(gt, dets((1, CAT, (0, 0, 10, 25), 0.9)))  # IoU 0.4, all inside the crowd
    assert [DET_TYPES[t] for t in r.det_types] == ["ignored"]
    assert r.counts == {t: 0 for t in MAIN_TYPES}
    assert r.ap50 == 0 and r.dap["Loc"] == pytest.approx(100) and r.dap["Miss"] == 0


def test_empty_results_give_zero_ap_and_all_miss():
    gt = to_coco(GT)
    r = tide_errors(gt, [])
    assert r.ap50 == 0 and r.counts == {**{t: 0 for t in MAIN_TYPES}, "Miss": 7}
    assert all(v == 0 for v in r.dap.values())
    assert r.to_json()["detections"]["TP"] == 0


def test_max_dets_keeps_the_highest_scores_per_image():
    gt = to_coco(make_gt([(1, CAT, (0, 0, 10, 10))], cats=(CAT,)))
    results = dets((1, CAT, (0, 0, 10, 10), 0.1), (1, CAT, (50, 50, 10, 10), 0.9),
                   (1, CAT, (80, 80, 10, 10), 0.8))
    r = tide_errors(gt, results, max_dets=2)
    assert [DET_TYPES[t] for t in r.det_types] == ["over_max_dets", "Bkg", "Bkg"]
    assert r.ap50 == 0 and r.counts["Miss"] == 1 and r.counts["Bkg"] == 2


def test_image_without_gt_gives_background_errors():
    gt = to_coco(make_gt([(1, CAT, (0, 0, 10, 10))], cats=(CAT,)))
    r = tide_errors(gt, dets((2, CAT, (0, 0, 10, 10), 0.9), (1, CAT, (0, 0, 10, 10), 0.5)))
    assert r.counts["Bkg"] == 1 and r.ap50 == pytest.approx(50)
    assert r.dap["Bkg"] == pytest.approx(50)


def jittered(coco: COCO, seed=0, cats=None) -> list[dict]:
    """Jittered, class-swapped, duplicated and invented detections from a ground truth; the
    swapped and invented ones of ``cats`` (default: every category)."""
    rng = random.Random(seed)
    cats, out = cats or coco.getCatIds(), []
    for a in coco.dataset["annotations"]:
        x, y, w, h = a["bbox"]
        for _ in range(rng.choice([0, 1, 1, 2])):
            box = [x + rng.gauss(0, 0.2 * w), y + rng.gauss(0, 0.2 * h), w * rng.uniform(0.6, 1.4), h]
            cat = a["category_id"] if rng.random() < 0.8 else rng.choice(cats)
            out.append({"image_id": a["image_id"], "category_id": cat, "bbox": box, "score": rng.random()})
    for img in coco.dataset["images"]:
        for _ in range(5):
            w, h = rng.uniform(5, 80), rng.uniform(5, 80)
            box = [rng.uniform(0, img["width"] - w), rng.uniform(0, img["height"] - h), w, h]
            out.append({"image_id": img["id"], "category_id": rng.choice(cats), "bbox": box, "score": rng.random() * 0.5})
    return out


def test_ap50_equals_cocoeval_on_real_coco_images(coco_gt):
    results = jittered(coco_gt)
    r = tide_errors(coco_gt, check_results(results, coco_gt))
    assert r.ap50 == pytest.approx(cocoeval_ap50(coco_gt, results), abs=1e-9)
    assert min(r.counts.values()) > 0, r.counts  # the fixture makes every type


def _tidecv(gt_path, results_path):
    tidecv = pytest.importorskip("tidecv")
    with contextlib.redirect_stdout(io.StringIO()):
        tide = tidecv.TIDE()
        run = tide.evaluate(tidecv.datasets.COCO(str(gt_path)), tidecv.datasets.COCOResult(str(results_path)),
                            mode=tidecv.TIDE.BOX)
        errors = tide.get_all_errors()
    name = next(iter(errors["main"]))
    dap = {**errors["main"][name], **errors["special"][name]}
    counts = {e.short_name: len(v) for e, v in run.error_dict.items()}
    return run.ap, dap, counts


def test_agrees_with_tidecv_on_the_hand_made_fixture(tmp_path):
    pytest.importorskip("tidecv")
    (tmp_path / "gt.json").write_text(json.dumps(GT))
    (tmp_path / "dets.json").write_text(json.dumps(DETS))
    ap, dap, counts = _tidecv(tmp_path / "gt.json", tmp_path / "dets.json")
    r = tide_errors(to_coco(GT), DETS)
    assert r.ap50 == pytest.approx(ap) and counts == r.counts
    assert dap == pytest.approx(r.dap)


def test_agrees_with_tidecv_within_one_point_on_real_coco_images(coco_gt, tmp_path):
    """Detections only of classes with GT: tidecv averages classes without GT in with AP 0
    (COCOeval and tide_errors leave them out). tidecv also counts detections in crowd regions
    as errors: its counts are ours plus those."""
    pytest.importorskip("tidecv")
    from tests.conftest import COCO_SAMPLE_ANNOTATIONS

    cats = sorted({a["category_id"] for a in coco_gt.dataset["annotations"] if not a["iscrowd"]})
    results = jittered(coco_gt, seed=1, cats=cats)
    (tmp_path / "dets.json").write_text(json.dumps(results))
    ap, dap, counts = _tidecv(COCO_SAMPLE_ANNOTATIONS, tmp_path / "dets.json")
    r = tide_errors(coco_gt, check_results(results, coco_gt))
    n_ignored = int((r.det_types == DET_TYPES.index("ignored")).sum())
    assert n_ignored > 0 and counts["Miss"] == r.counts["Miss"]
    assert sum(counts.values()) == sum(r.counts.values()) + n_ignored
    assert abs(r.ap50 - ap) <= 1.0
    for name in MAIN_TYPES + SPECIAL_TYPES:
        assert abs(r.dap[name] - dap[name]) <= 1.0, (name, r.dap[name], dap[name])


def test_background_false_positives_against_recall_by_hand():
    """DETS in score order: Cls .95, TP .9, Both .85, Dupe .8, Bkg .8, TP .75, Loc .7, TP .6, TP .5
    (7 GT on 2 images): recall 1/7 is reached at .9 with no Bkg error before it, 2/7 at .75
    after the one Bkg (1/2 per image), 4/7 at .5; 5/7 never."""
    gt = to_coco(GT)
    r = tide_errors(gt, check_results(DETS, gt))
    curve = bkg_vs_recall(r.det_types, [d["score"] for d in DETS], num_gt=7, num_images=2, points=8)
    assert curve["recall"] == [round(k / 7, 4) for k in range(8)]
    assert curve["bkg_per_image"] == [0.0, 0.0, 0.5, 0.5, 0.5, None, None, None]
    assert curve["score"] == [None, 0.9, 0.75, 0.6, 0.5, None, None, None]
    assert curve["max_recall"] == pytest.approx(4 / 7)


def test_background_false_positives_against_recall_without_detections_or_gt():
    empty = bkg_vs_recall(np.zeros(0, dtype=np.int64), [], num_gt=3, num_images=2, points=3)
    assert empty["bkg_per_image"] == [0.0, None, None] and empty["max_recall"] == 0.0
    no_gt = bkg_vs_recall(np.array([5]), [0.9], num_gt=0, num_images=1, points=3)  # one Bkg error
    assert no_gt["bkg_per_image"] == [0.0, None, None] and no_gt["max_recall"] == 0.0
