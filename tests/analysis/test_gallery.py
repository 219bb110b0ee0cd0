"""analysis/gallery.py: the top background false positives (TIDE's Bkg errors) of hand-made
detections on the shipped real COCO images, drawn; bad input named."""

import numpy as np
import pytest
from PIL import Image

from analysis.coco_files import check_results
from analysis.gallery import main, top_background_fps
from tests.conftest import COCO_SAMPLE, COCO_SAMPLE_ANNOTATIONS


def results(coco_gt):
    """On image 25 (two giraffes): a true positive, and background boxes (IoU 0 with every
    box) at scores .9 .6 .3; on image 250 (no objects) one at .7; a duplicate-free Loc error."""
    giraffe = coco_gt.imgToAnns[25][0]
    x, y, w, h = giraffe["bbox"]
    corner = [[0, 0, 20, 20], [0, 30, 20, 20], [0, 60, 20, 20]]
    dets = [{"image_id": 25, "category_id": giraffe["category_id"], "bbox": [x, y, w, h], "score": 0.95}]
    dets += [{"image_id": 25, "category_id": 1, "bbox": b, "score": s} for b, s in zip(corner, (0.9, 0.6, 0.3))]
    dets += [{"image_id": 250, "category_id": 1, "bbox": [10, 10, 50, 50], "score": 0.7}]
    dets += [{"image_id": 25, "category_id": giraffe["category_id"], "bbox": [x, y, w * 0.6, h], "score": 0.8}]
    return check_results(dets, coco_gt)


def test_the_highest_scoring_background_errors_in_order(coco_gt):
    dets = results(coco_gt)
    if any(a["bbox"][0] < 20 and a["bbox"][1] < 80 for a in coco_gt.imgToAnns[25]):
        pytest.skip("the corner boxes would overlap a giraffe")
    assert [d["score"] for d in top_background_fps(coco_gt, dets, 3)] == [0.9, 0.7, 0.6]
    assert [d["score"] for d in top_background_fps(coco_gt, dets, 10)] == [0.9, 0.7, 0.6, 0.3]
    assert top_background_fps(coco_gt, dets, 0) == []
    with pytest.raises(ValueError, match="n=-1"):
        top_background_fps(coco_gt, dets, -1)


def test_the_command_line_draws_the_gallery(coco_gt, tmp_path, capsys):
    import json

    (tmp_path / "dets.json").write_text(json.dumps(results(coco_gt)))
    out = tmp_path / "gallery.png"
    fps = main([str(COCO_SAMPLE_ANNOTATIONS), str(tmp_path / "dets.json"), "--images",
                str(COCO_SAMPLE / "train2017"), "--out", str(out), "-n", "2"])
    assert [d["score"] for d in fps] == [0.9, 0.7] and out.stat().st_size > 10_000
    assert "#1: image 25 category 1 score 0.900" in capsys.readouterr().out
    with Image.open(out) as im:  # 256 colours, the photos and the false positives' red boxes kept
        assert im.mode == "P" and len(im.getcolors(256)) > 100
        rgb = np.asarray(im.convert("RGB")).astype(int)
    assert (np.abs(rgb - [214, 39, 40]).sum(-1) < 40).sum() > 200  # matplotlib's tab:red
    with pytest.raises(SystemExit, match="could not be read from"):
        main([str(COCO_SAMPLE_ANNOTATIONS), str(tmp_path / "dets.json"), "--images", str(tmp_path),
              "--out", str(out)])
