import numpy as np
import pytest

from analysis.confusion import confusion_matrix, confusion_table, plot_confusion
from tests.analysis.test_bands import ANIMALS, det, make_gt, random_case


def fixture():
    """Classes cat, dog, car (ids 1, 2, 3) on two images."""
    cat, dog, car, cat2, crowd = [0, 0, 20, 20], [50, 0, 20, 20], [50, 50, 20, 20], [0, 0, 30, 30], [60, 60, 40, 40]
    gt = make_gt([(1, 1, cat), (1, 2, dog), (1, 3, car), (2, 1, cat2), (2, 3, crowd, 1)], ANIMALS)
    dets = [det(1, 1, cat, 0.9),               # right: [cat, cat]
            det(1, 3, dog, 0.8),               # a car on the dog: [dog, car], and the dog is missed
            det(1, 2, [0, 60, 10, 10], 0.7),   # a dog on nothing: [background, dog]
            det(2, 1, cat2, 0.2),              # below the threshold: nothing, and cat2 is missed
            det(2, 3, [0, 80, 5, 5], 0.1),     # on nothing, below the threshold: nothing
            det(2, 3, [70, 70, 10, 10], 0.9)]  # inside the crowd: ignored
    # the car box of image 1 has no detection: [car, background]
    return gt, dets


def test_hand_counted_matrix():
    gt, dets = fixture()
    matrix, names = confusion_matrix(gt, dets)
    assert names == ["cat", "dog", "car", "background"]
    np.testing.assert_array_equal(matrix, [[1, 0, 0, 1],
                                           [0, 0, 1, 1],
                                           [0, 0, 0, 1],
                                           [0, 1, 0, 0]])
    assert matrix.dtype == np.int64
    # a lower threshold lets the cat of image 2 and the small car on nothing in
    low, _ = confusion_matrix(gt, dets, score_thresh=0.1)
    np.testing.assert_array_equal(low - matrix, [[1, 0, 0, -1], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]])


def test_iou_threshold_and_crowd_coverage():
    gt = make_gt([(1, 1, [0, 0, 10, 10]), (1, 2, [50, 50, 40, 40], 1)], ANIMALS[:2])
    dets = [det(1, 1, [0, 0, 10, 6], 0.9),     # IoU .6
            det(1, 1, [40, 40, 20, 20], 0.9)]  # 100 of its 400 px on the crowd
    m, _ = confusion_matrix(gt, dets)
    np.testing.assert_array_equal(m, [[1, 0, 0], [0, 0, 0], [1, 0, 0]])
    m, _ = confusion_matrix(gt, dets, iou_thresh=0.7)
    np.testing.assert_array_equal(m, [[0, 0, 1], [0, 0, 0], [2, 0, 0]])
    m, _ = confusion_matrix(gt, dets, iou_thresh=0.25)  # coverage .25 reaches it: ignored
    np.testing.assert_array_equal(m, [[1, 0, 0], [0, 0, 0], [0, 0, 0]])


def _iou(a, b):
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    inter = max(0.0, min(ax2, bx2) - max(a[0], b[0])) * max(0.0, min(ay2, by2) - max(a[1], b[1]))
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def mmdetection_matrix(gt, dets, score_thr=0.3, tp_iou_thr=0.5):
    """mmdetection's analyze_per_img_dets, transcribed (no NMS), over every image."""
    index = {c: i for i, c in enumerate(sorted(gt.getCatIds()))}
    m = np.zeros((len(index) + 1, len(index) + 1))
    for img in gt.getImgIds():
        gts = gt.imgToAnns[img]
        true_positives = np.zeros(len(gts))
        for d in (d for d in dets if d["image_id"] == img):
            if d["score"] >= score_thr:
                det_match = 0
                for j, g in enumerate(gts):
                    if _iou(d["bbox"], g["bbox"]) >= tp_iou_thr:
                        det_match += 1
                        if g["category_id"] == d["category_id"]:
                            true_positives[j] += 1
                        m[index[g["category_id"]], index[d["category_id"]]] += 1
                if det_match == 0:
                    m[-1, index[d["category_id"]]] += 1
        for num_tp, g in zip(true_positives, gts):
            if num_tp == 0:
                m[index[g["category_id"]], -1] += 1
    return m


def test_equals_mmdetection_without_crowds():
    gt, dets = random_case(seed=3)
    no_crowd = make_gt([(a["image_id"], a["category_id"], a["bbox"]) for a in gt.dataset["annotations"]],
                       gt.dataset["categories"], len(gt.getImgIds()))
    expected = mmdetection_matrix(no_crowd, dets)
    matrix, _ = confusion_matrix(no_crowd, dets)
    np.testing.assert_array_equal(matrix, expected)
    assert matrix[:-1, :-1].trace() > 0 and matrix[-1].sum() > 0 and matrix[:, -1].sum() > 0
    assert (matrix[:-1, :-1] - np.diag(np.diag(matrix[:-1, :-1]))).sum() > 0  # some confusion
    # with the crowds back, detections on them leave the background row
    with_crowd, _ = confusion_matrix(gt, dets)
    assert with_crowd[-1].sum() < matrix[-1].sum()


def test_table_and_picture(tmp_path):
    gt, dets = fixture()
    matrix, names = confusion_matrix(gt, dets)
    assert confusion_table(matrix, names) == [
        "| ground truth \\ predicted | cat | dog | car | background |",
        "|---|---|---|---|---|",
        "| cat | 1 | 0 | 0 | 1 |",
        "| dog | 0 | 0 | 1 | 1 |",
        "| car | 0 | 0 | 0 | 1 |",
        "| background | 0 | 1 | 0 | 0 |",
    ]
    path = tmp_path / "confusion.png"
    plot_confusion(matrix, names, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="does not fit 3 names"):
        confusion_table(matrix, names[:-1])


def test_bad_input_names_the_entry():
    gt, dets = fixture()
    with pytest.raises(ValueError, match=r"detections\[1\]\.category_id=42"):
        confusion_matrix(gt, [dets[0], det(1, 42, [0, 0, 1, 1], 0.5)])
