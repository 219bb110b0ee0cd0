import contextlib
import io
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tests.conftest import COCO_SAMPLE_ANNOTATIONS

ROOT = Path(__file__).resolve().parents[2]
ANNOTATIONS = COCO_SAMPLE_ANNOTATIONS  # the coco_gt fixture (tests/conftest.py) loads it
NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")




@pytest.fixture(scope="module")
def results_file(coco_gt, tmp_path_factory):
    """Jittered, rescored, partly dropped ground truth as a COCO results file."""
    rng = random.Random(0)
    dets = []
    for a in coco_gt.dataset["annotations"]:
        if rng.random() < 0.8:
            x, y, w, h = a["bbox"]
            box = [x + rng.gauss(0, 0.1 * w), y + rng.gauss(0, 0.1 * h), w * rng.uniform(0.8, 1.2), h]
            dets.append({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": box, "score": rng.random()})
    path = tmp_path_factory.mktemp("results") / "detections.json"
    path.write_text(json.dumps(dets))
    return path


def cocoeval_stats(coco, results, img_ids=None):
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco, coco.loadRes(str(results)), iouType="bbox")
        if img_ids is not None:
            ev.params.imgIds = img_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats.tolist()


def run_tool(*args):
    return subprocess.run([sys.executable, "-m", "tools.evaluate", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_writes_eval_json_into_a_new_folder_beside_the_detections(coco_gt, results_file, capsys):
    """Through main, in this process (the command line's own start: test_clear_errors)."""
    from tools.evaluate import main

    out = results_file.parent / "evaluate_detections" / "eval.json"
    main([str(ANNOTATIONS), str(results_file)])
    printed = capsys.readouterr().out.splitlines()
    assert sum(line.startswith(" Average ") for line in printed) == 12 and printed[-1] == f"wrote {out}"
    result = json.loads(out.read_text())
    assert [result[k] for k in NAMES] == cocoeval_stats(coco_gt, results_file)
    assert 0.1 < result["AP"] < 0.9
    assert len(result["per_category"]) == 80 and result["per_category"]["fire hydrant"] == -1.0


def test_out_and_image_ids(coco_gt, results_file, tmp_path):
    from tools.evaluate import main

    img_ids = sorted(coco_gt.getImgIds())[:20]
    out = tmp_path / "elsewhere" / "eval.json"
    main([str(ANNOTATIONS), str(results_file), "--out", str(out.parent), "--image-ids", *map(str, img_ids)])
    result = json.loads(out.read_text())
    assert [result[k] for k in NAMES] == cocoeval_stats(coco_gt, results_file, img_ids=img_ids)


def test_clear_errors(coco_gt, tmp_path):
    """One line on stderr and a non-zero exit, no traceback: the command line once, then each
    mistake through main (the same sys.exit, without a process's start-up per case)."""
    from tools.evaluate import main

    proc = run_tool(ANNOTATIONS, tmp_path / "missing.json")
    assert proc.returncode != 0 and "detections file not found" in proc.stderr and "missing.json" in proc.stderr
    assert "Traceback" not in proc.stderr

    def error(annotations, detections) -> str:
        with pytest.raises(SystemExit) as e:
            main([str(annotations), str(detections)])
        assert isinstance(e.value.code, str)  # a message, exit status 1
        return e.value.code

    assert "annotations file not found" in error(tmp_path / "no_annotations.json", tmp_path / "missing.json")

    not_list = tmp_path / "dict.json"
    not_list.write_text(json.dumps({"annotations": []}))
    msg = error(ANNOTATIONS, not_list)
    assert "dict.json" in msg and "expected a list of" in msg

    no_score = tmp_path / "no_score.json"
    no_score.write_text(json.dumps([{"image_id": 9, "category_id": 1, "bbox": [0, 0, 5, 5]}]))
    msg = error(ANNOTATIONS, no_score)
    assert "no_score.json[0]" in msg and "score" in msg

    bad_json = tmp_path / "bad.json"
    bad_json.write_text("[{")
    msg = error(ANNOTATIONS, bad_json)
    assert "bad.json" in msg and "not valid JSON" in msg

    wrong_cat = tmp_path / "wrong_cat.json"
    img = coco_gt.getImgIds()[0]
    wrong_cat.write_text(json.dumps([{"image_id": img, "category_id": 0, "bbox": [0, 0, 5, 5], "score": 1.0}]))
    msg = error(ANNOTATIONS, wrong_cat)
    assert "wrong_cat.json" in msg and "category_id=0" in msg
    assert not (tmp_path / "eval.json").exists()


def test_ground_truth_without_area_or_iscrowd_is_filled(coco_gt, results_file, tmp_path, capsys):
    """Filled as the training path fills them; COCOeval used to die with KeyError: 'area'."""
    from tools.evaluate import main

    data = json.loads(ANNOTATIONS.read_text())
    for a in data["annotations"]:
        del a["area"], a["iscrowd"]
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(data))
    result = main([str(bare), str(results_file), "--out", str(tmp_path)])
    # The sample's crowd boxes become ordinary boxes; their areas become box areas.
    for a in data["annotations"]:
        a["iscrowd"], a["area"] = 0, a["bbox"][2] * a["bbox"][3]
    full = tmp_path / "full.json"
    full.write_text(json.dumps(data))
    assert [result[k] for k in NAMES] == cocoeval_stats(COCO(str(full)), results_file)
