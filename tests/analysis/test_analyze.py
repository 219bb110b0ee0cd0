import json

import pytest

from analysis import analyze
from analysis.errors import MAIN_TYPES, SPECIAL_TYPES, tide_errors
from tests.analysis.error_fixtures import DETS, GT, to_coco

KEYS = ["AP50", *MAIN_TYPES, *SPECIAL_TYPES, "counts", "detections", "units", "bkg_vs_recall"]


def write(tmp_path, name, obj):
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return str(path)


def test_prints_the_table_and_writes_errors_json(tmp_path, capsys):
    out = tmp_path / "analysis"
    result = analyze.main([write(tmp_path, "gt.json", GT), write(tmp_path, "dets.json", DETS), "--out", str(out)])
    written = json.loads((out / "errors.json").read_text())
    assert list(written) == KEYS and result["errors"] == written
    expected = tide_errors(to_coco(GT), DETS)  # the hand-computed fixture of test_errors.py
    assert written["counts"] == {t: 1 for t in MAIN_TYPES} and written["AP50"] == pytest.approx(expected.ap50)
    assert {k: written[k] for k in expected.dap} == pytest.approx(expected.dap)
    assert written["detections"] == {"TP": 4, "Cls": 1, "Loc": 1, "Both": 1, "Dupe": 1, "Bkg": 1,
                                     "ignored": 0, "over_max_dets": 0}
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"TIDE errors: AP50 {expected.ap50:.2f} (IoU foreground 0.5, background 0.1)"
    assert lines[1].split() == ["type", "count", "dAP50"]
    assert lines[2].split() == ["Cls", "1", f"{expected.dap['Cls']:.2f}"]
    assert lines[9].split() == ["FalseNeg", "-", f"{expected.dap['FalseNeg']:.2f}"]
    assert lines[10].startswith("PR bands (AP): C75 ")
    assert lines[-1] == f"wrote errors.json, bands.json, confusion.md and the figures to {out}"
    # the other analyses, each from its own module (tested there): here, that they are written
    bands = json.loads((out / "bands.json").read_text())
    assert bands["overall"]["C50"] == pytest.approx(expected.ap50 / 100, abs=1e-6)  # C50 is COCOeval's AP50
    assert (out / "bands_overall.png").read_bytes().startswith(b"\x89PNG")
    # the one Bkg error (score .8) comes after the first true positive (.9): 7 GT on 2 images
    curve = written["bkg_vs_recall"]
    assert curve["bkg_per_image"][14] == 0.0 and curve["bkg_per_image"][15] == 0.5  # recall .14 < 1/7 < .15
    assert curve["max_recall"] == pytest.approx(4 / 7) and curve["bkg_per_image"][58] is None
    assert (out / "bkg_recall.png").read_bytes().startswith(b"\x89PNG")
    confusion = (out / "confusion.md").read_text()
    assert confusion.startswith("Confusion matrix (IoU 0.5, score >= 0.3)") and "| background |" in confusion
    assert result["confusion"]["names"][-1] == "background" and (out / "confusion.png").is_file()


def test_per_class_band_figures_on_request(tmp_path):
    out = tmp_path / "analysis"
    analyze.main([write(tmp_path, "gt.json", GT), write(tmp_path, "dets.json", DETS), "--out", str(out)])
    assert sorted(p.name for p in out.glob("bands_*.png")) == ["bands_overall.png"]
    analyze.main([write(tmp_path, "gt.json", GT), write(tmp_path, "dets.json", DETS), "--out", str(out), "--per-class"])
    names = [c["name"] for c in GT["categories"]]
    assert len(list(out.glob("bands_*.png"))) == 1 + len(names)


def test_empty_results_are_zero_ap_and_all_miss(tmp_path):
    result = analyze.main([write(tmp_path, "gt.json", GT), write(tmp_path, "dets.json", []), "--out", str(tmp_path)])
    errors = result["errors"]
    assert errors["AP50"] == 0 and errors["counts"] == {**{t: 0 for t in MAIN_TYPES}, "Miss": 7}


def test_ground_truth_without_area_or_iscrowd(tmp_path):
    bare = {**GT, "annotations": [{k: a[k] for k in ("id", "image_id", "category_id", "bbox")}
                                  for a in GT["annotations"]]}
    result = analyze.main([write(tmp_path, "gt.json", bare), write(tmp_path, "dets.json", DETS), "--out", str(tmp_path)])
    assert result["errors"]["AP50"] == pytest.approx(tide_errors(to_coco(GT), DETS).ap50)


def test_bad_results_exit_naming_the_entry(tmp_path):
    bad = [*DETS[:2], {**DETS[2], "image_id": 99}]
    with pytest.raises(SystemExit, match=r"tools.analyze: error: .*dets.json\[2\].image_id=99 is not an image"):
        analyze.main([write(tmp_path, "gt.json", GT), write(tmp_path, "dets.json", bad), "--out", str(tmp_path / "a")])
    assert not (tmp_path / "a").exists()
