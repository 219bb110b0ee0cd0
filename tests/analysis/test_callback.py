"""The Hydra callback that writes every finished run's analysis/: real tiny runs (single and
multirun, val and tune), the jobs it skips, and errors that are logged, never raised."""

import contextlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys

import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import instantiate
from omegaconf import OmegaConf
from pycocotools.coco import COCO

from analysis.analyze import evaluated_ground_truth
from analysis.callback import AnalysisCallback
from analysis.coco_files import load_results
from analysis.errors import tide_errors
from analysis.folder import analysis_dir
from detection import build
from detection.evaluation import coco_evaluate
from detection.run_folder import RunFolder
from tests.conftest import ROOT, compose_config, tiny_overrides
from tools.analysis_callback import main

# score_thresh 0: a model trained for 2 iterations scores every object about the prior (0.01)
TINY = ["schedule.max_iters=2", "model.score_thresh=0.0", "loss_cdf_images=0"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def overrides(cache):
    return [o for o in tiny_overrides(cache) if not o.startswith("schedule.max_iters")] + TINY


def train_py(args):
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, env=ENV,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def read(path):
    return json.loads(path.read_text())


def breakdown_on(coco, image_ids, detections_path):
    """TIDE's breakdown of a run's detections against ``coco`` cut down to ``image_ids`` here."""
    cut = COCO()
    cut.dataset = {**coco.dataset, "images": [coco.imgs[i] for i in image_ids],
                   "annotations": [a for i in image_ids for a in coco.imgToAnns[i]]}
    with contextlib.redirect_stdout(io.StringIO()):
        cut.createIndex()
    return tide_errors(cut, load_results(detections_path, cut))


def assert_same_breakdown(errors, r):
    assert errors["counts"] == r.counts
    assert {k: errors[k] for k in ("AP50", *r.dap)} == pytest.approx({"AP50": r.ap50, **r.dap}, abs=1e-9)


def check_analysis(run_dir, images, split):
    """analysis/ of a finished run: AP50 is eval.json's (in points), one entry per band, the C50 curve."""
    errors, bands = read(run_dir / "analysis" / "errors.json"), read(run_dir / "analysis" / "bands.json")
    assert read(run_dir / "detections.json")  # something to analyze
    assert errors["AP50"] == pytest.approx(100 * read(run_dir / "eval.json")["AP50"], abs=1e-6)
    assert (errors["images"], errors["split"]) == (images, split)
    assert set(errors["counts"]) == {"Cls", "Loc", "Both", "Dupe", "Bkg", "Miss"}
    curve = bands["pr"]["C50"]
    assert len(curve) == len(bands["pr"]["recall"]) == 101
    assert sum(curve) / 101 == pytest.approx(bands["overall"]["C50"], abs=1e-5)  # the same curve as the C50 band
    assert bands["overall_area"]["BG"] == pytest.approx(bands["overall"]["BG"] - bands["overall"]["Oth"])
    assert (run_dir / "analysis" / "bands_overall.png").is_file()
    assert (run_dir / "analysis" / "confusion.md").read_text().startswith("Confusion matrix (IoU 0.5, score >= 0.3)")
    return errors, bands


@pytest.fixture(scope="module")
def single_run(tmp_path_factory, synthetic_cache):
    """`python train.py` (no -m): Hydra calls on_job_end for single runs too; per_class from the command line."""
    run_dir = tmp_path_factory.mktemp("single") / "run"
    log = train_py([*overrides(synthetic_cache), f"hydra.run.dir={run_dir}", "hydra.callbacks.analysis.per_class=true"])
    return run_dir, log


def test_a_single_run_ends_with_its_analysis(single_run, synthetic_cache):
    run_dir, log = single_run
    cfg = compose_config(overrides(synthetic_cache))
    val = build.dataset(cfg, "val", augment=False)
    errors, bands = check_analysis(run_dir, images=6, split="val")
    assert errors["AP50"] > 0  # (0.23 here: 2 true positives) so that equal AP50s say something
    assert bands["classes"] and bands["skipped"]  # synthetic shapes share one supercategory: no Sim
    assert_same_breakdown(errors, breakdown_on(val.coco, val.image_ids, run_dir / "detections.json"))
    per_class = sorted(p.name for p in (run_dir / "analysis").glob("bands_*.png"))
    assert len(per_class) == 1 + sum(ap["C50"] >= 0 for ap in bands["classes"].values())  # overall + each class
    assert "error analysis:" in log and "TIDE errors: AP50" in RunFolder(run_dir).log.read_text()
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".analysis")]  # no temporary folder left
    # background false positives against recall: none before the first detection, at most all of them
    curve = errors["bkg_vs_recall"]
    assert len(curve["recall"]) == 101 and curve["bkg_per_image"][0] == 0.0
    reached = [b for b in curve["bkg_per_image"] if b is not None]
    assert reached == sorted(reached) and reached[-1] <= errors["counts"]["Bkg"] / 6 + 1e-9
    # the anchor scores: model.score_thresh=0, so every background anchor is "above" it
    scores = read(run_dir / "analysis" / "anchor_scores.json")
    assert scores["images"] == 6 and scores["score_thresh"] == 0.0
    assert sum(scores["bg"]) == scores["bg_anchors"] > 0 and sum(scores["fg"]) == scores["fg_anchors"] > 0
    assert scores["bg_above_thresh_per_image"] == pytest.approx(scores["bg_anchors"] / 6)
    assert scores["fg_above_thresh_share"] == 1.0
    assert (run_dir / "analysis" / "anchor_scores.png").is_file() and (run_dir / "analysis" / "bkg_recall.png").is_file()
    assert "anchor scores (6 images)" in RunFolder(run_dir).log.read_text()


def test_a_tune_multirun_analyzes_the_tuning_images_and_ends_with_its_report(tmp_path, synthetic_cache):
    """`python train.py -m` with configs/config.yaml's callbacks: each job's analysis, then the
    sweep's report (reports/callback.py) with its background errors and its loss over anchors."""
    sweep = tmp_path / "multirun"
    with_losses = [o for o in overrides(synthetic_cache) if not o.startswith("loss_cdf_images=")] + ["loss_cdf_images=2"]
    logged = train_py(["-m", *with_losses, "eval_split=tune", "loss=focal,softmax_bg", f"hydra.sweep.dir={sweep}"])
    cfg = compose_config(overrides(synthetic_cache))
    train = build.dataset(cfg, "train", augment=False)
    tune = build.tuning_ids(train.image_ids, cfg.tune_fraction, cfg.tune_seed)
    assert 0 < len(tune) < len(train.image_ids)
    for job in ("0_synthetic_focal", "1_synthetic_softmax_bg"):
        errors, _ = check_analysis(sweep / job, images=len(tune), split="tune")
        assert_same_breakdown(errors, breakdown_on(train.coco, tune, sweep / job / "detections.json"))
        # on all the training images, their other boxes would be missed
        assert breakdown_on(train.coco, train.image_ids, sweep / job / "detections.json").counts["Miss"] > errors["counts"]["Miss"]
        assert {d["image_id"] for d in read(sweep / job / "detections.json")} <= set(tune)
    md = (sweep / "report.md").read_text()
    section = md.split("## Background errors")[1].split("\n## ")[0]
    assert "| loss=focal | 1 |" in section and "| loss=softmax_bg | 1 |" in section
    assert "not in these numbers" not in section and (sweep / "plots" / "pr_overlay.png").is_file()
    assert "2 runs in 2 methods: 2 finished." in md and f"sweep report: {sweep / 'report.md'}" in logged
    section = md.split("### Loss over anchors")[1].split("###")[0]
    assert "| loss=focal | 0_synthetic_focal |" in section and "not drawn" not in section
    assert (sweep / "plots" / "loss_cdf.png").is_file()


def test_the_ground_truth_of_the_evaluated_images_scores_as_coco_evaluate(coco_gt):
    """The subset holds what COCOeval scores with image_ids and cat_ids: the same AP on it."""
    images, cats = sorted(coco_gt.getImgIds())[:5], sorted(coco_gt.getCatIds())[::2]
    subset = evaluated_ground_truth(coco_gt, images, cats)
    assert sorted(subset.getImgIds()) == images and sorted(subset.getCatIds()) == cats
    assert all(a["image_id"] in images and a["category_id"] in cats for a in subset.dataset["annotations"])
    assert len(subset.dataset["annotations"]) == len(coco_gt.getAnnIds(imgIds=images, catIds=cats))
    # detections: the boxes of every image and category, every other one shifted off its object
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 0.9 - 0.01 * (i % 50),
             "bbox": [a["bbox"][0] + (a["bbox"][2] * 0.6 if i % 2 else 0), *a["bbox"][1:]]}
            for i, a in enumerate(coco_gt.dataset["annotations"])]
    full = coco_evaluate(coco_gt, dets, image_ids=images, cat_ids=cats, verbose=False)
    kept = [d for d in dets if d["image_id"] in images and d["category_id"] in cats]
    restricted = coco_evaluate(subset, kept, verbose=False)
    assert 0 < full["AP50"] < 1 and restricted["AP50"] == pytest.approx(full["AP50"], abs=1e-12)
    assert restricted["AP"] == pytest.approx(full["AP"], abs=1e-12)


# --- the callback called directly on a copy of the single run's folder --------------------------------------

def copy_run(single_run, tmp_path, status=None, **info):
    run_dir = tmp_path / "run"
    shutil.copytree(single_run[0], run_dir, ignore=shutil.ignore_patterns("analysis", "checkpoints", "tb"))
    if status is not None:
        RunFolder(run_dir).write_status(status, **info)
    return run_dir


def job_end(run_dir, status=JobStatus.COMPLETED, dry_run=False, callback=None):
    config = OmegaConf.create({"dry_run": dry_run, "hydra": {"runtime": {"output_dir": str(run_dir)}}})
    (callback or AnalysisCallback()).on_job_end(config, JobReturn(status=status))


@pytest.mark.parametrize("status, info, why", [
    ("diverged", {"message": "non-finite loss at iteration 1"}, "the run is diverged"),
    ("failed", {"message": "RuntimeError"}, "the run is failed"),
    ("finished", {"AP": None}, "no final evaluation"),  # eval_at_end=false, a stop_after slice
])
def test_runs_that_did_not_finish_an_evaluation_get_no_analysis(single_run, tmp_path, caplog, status, info, why):
    run_dir = copy_run(single_run, tmp_path, status, **info)
    with caplog.at_level(logging.INFO, logger="anchorbg.analysis"):
        job_end(run_dir)
    assert not (run_dir / "analysis").exists() and why in caplog.text


def test_dry_runs_failed_jobs_and_runs_without_detections_get_no_analysis(single_run, tmp_path, caplog):
    run_dir = copy_run(single_run, tmp_path)  # finished, with detections.json: would be analyzed
    job_end(run_dir, dry_run=True)
    job_end(run_dir, status=JobStatus.FAILED)
    assert not (run_dir / "analysis").exists()
    RunFolder(run_dir).detections.unlink()
    with caplog.at_level(logging.INFO, logger="anchorbg.analysis"):
        job_end(run_dir)
    assert not (run_dir / "analysis").exists() and "no detections.json" in caplog.text


def test_an_up_to_date_analysis_is_kept_and_new_detections_redo_it(single_run, tmp_path):
    run_dir = copy_run(single_run, tmp_path)
    callback = instantiate({"_target_": "analysis.callback.AnalysisCallback", "score_thresh": 0.5})
    job_end(run_dir, callback=callback)
    errors = run_dir / "analysis" / "errors.json"
    assert "score >= 0.5" in (run_dir / "analysis" / "confusion.md").read_text()
    assert [p.name for p in (run_dir / "analysis").glob("bands_*.png")] == ["bands_overall.png"]  # per_class off
    written = errors.stat().st_mtime_ns
    job_end(run_dir, callback=callback)  # a rerun sweep skipping the finished job
    assert errors.stat().st_mtime_ns == written
    os.utime(RunFolder(run_dir).detections)  # evaluated again (eval_only in the same folder)
    job_end(run_dir, callback=callback)
    assert errors.stat().st_mtime_ns > written
    assert read(errors) == read(single_run[0] / "analysis" / "errors.json")


def test_an_error_in_the_analysis_is_logged_not_raised(single_run, tmp_path, caplog, monkeypatch):
    run_dir = copy_run(single_run, tmp_path)

    def broken(*args, **kwargs):
        raise RuntimeError("boom in the analysis")

    monkeypatch.setattr("analysis.analyze.analyze", broken)
    with caplog.at_level(logging.ERROR, logger="anchorbg.analysis"):
        job_end(run_dir)
    assert "could not write the error analysis of run" in caplog.text and "boom in the analysis" in caplog.text
    assert caplog.records[-1].exc_info is not None  # with its traceback
    assert not [p for p in run_dir.iterdir() if "analysis" in p.name]  # neither analysis/ nor a temporary folder

    monkeypatch.undo()
    RunFolder(run_dir).detections.write_text('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1], "score": 1}]')
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="anchorbg.analysis"):
        job_end(run_dir)
    assert "detections.json[0].bbox" in caplog.text and not (run_dir / "analysis").exists()


def test_the_command_line_analyzes_run_folders_and_skips_unfinished_ones(single_run, tmp_path, capsys):
    run_dir = copy_run(single_run, tmp_path)
    other = tmp_path / "diverged"
    shutil.copytree(run_dir, other)
    RunFolder(other).write_status("diverged")
    assert main([str(run_dir), str(other)]) == [analysis_dir(run_dir)]
    assert read(run_dir / "analysis" / "errors.json")["images"] == 6
    assert f"{other}: skipped: the run is diverged" in capsys.readouterr().out


def test_the_command_line_draws_the_gallery_and_anchor_scores_need_the_weights(single_run, tmp_path, caplog):
    run_dir = copy_run(single_run, tmp_path)  # a copy without checkpoints/, as tools.records makes
    with caplog.at_level(logging.INFO, logger="anchorbg.analysis"):
        main([str(run_dir), "--gallery", "3"])
    assert (run_dir / "analysis" / "gallery.png").is_file() and not (run_dir / "analysis" / "anchor_scores.json").exists()
    assert "no anchor scores:" in caplog.text
    shutil.copytree(single_run[0] / "checkpoints", run_dir / "checkpoints")
    main([str(run_dir)])
    assert read(run_dir / "analysis" / "anchor_scores.json") == read(single_run[0] / "analysis" / "anchor_scores.json")
    assert not (run_dir / "analysis" / "gallery.png").exists()  # only on request
    with pytest.raises(ValueError, match="gallery=-1"):
        AnalysisCallback(gallery=-1)
