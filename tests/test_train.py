"""End-to-end runs of train.py on a few small synthetic images."""

import json
import os
import subprocess
import sys

import pytest
import torch

import train
from datasets.transforms import collate
from detection import build
from detection.run_folder import RunFolder
from tests.conftest import (
    BCCD_SAMPLE,
    COCO_PERSON_SAMPLE,
    COCO_SAMPLE_ANNOTATIONS,
    ROOT,
    compose_config,
    tiny_overrides,
)

STATS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]


def _run(tmp_path, name, synthetic_cache, extra=()):
    cfg = compose_config(tiny_overrides(synthetic_cache) + list(extra))
    run_dir = tmp_path / name
    return train.run(cfg, run_dir), run_dir


def _check_artifacts(run_dir, max_iters=6):
    assert (run_dir / "config.yaml").is_file()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    lines = [r for r in rows if "eval" not in r]
    assert [r["iter"] for r in lines] == list(range(2, max_iters + 1, 2))
    ev = json.loads((run_dir / "eval.json").read_text())
    assert [r for r in rows if "eval" in r] == [{"iter": max_iters, "eval": {k: ev[k] for k in STATS[:6]}}]
    for key in ["loss", "loss_cls", "loss_box", "lr", "num_fg", "num_bg", "num_ignore", "fg_share",
                "bg_share", "easy_bg_share", "grad_norm", "clipped_share", "images_per_s"]:
        assert all(key in r for r in lines), key
    assert all(abs(r["fg_share"] + r["bg_share"] - 1) < 1e-4 for r in lines)
    assert any(p.name.startswith("events.out.tfevents") for p in (run_dir / "tb").iterdir())
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    assert state["iter"] == max_iters
    ev = json.loads((run_dir / "eval.json").read_text())
    assert set(STATS) <= set(ev) and "per_category" in ev
    dets = json.loads((run_dir / "detections.json").read_text())
    assert isinstance(dets, list)
    for d in dets[:50]:
        assert set(d) == {"image_id", "category_id", "bbox", "score"}
    return lines, ev


@pytest.mark.parametrize("loss", ["softmax_bg", "bce_alpha", "ohem", "ohem loss.neg_per_pos=3 loss.nms_thresh=0.5",
                                  "sampling", "softmax_focal", "ghmc loss.momentum=0.75", "qfl", "vfl",
                                  "sampling_free loss.prior=per_class", "rank_sort"])
def test_end_to_end_in_process(tmp_path, synthetic_cache, loss):
    stats, run_dir = _run(tmp_path, loss.split()[0], synthetic_cache, [f"loss={loss.split()[0]}", *loss.split()[1:]])
    lines, ev = _check_artifacts(run_dir)
    assert stats["AP"] == ev["AP"]


def test_end_to_end_command_line_writes_every_artifact(tmp_path, synthetic_cache):
    """`python train.py` as a user runs it: the Hydra entry point, train.log, DataLoader workers."""
    run_dir = tmp_path / "cli"
    overrides = [o for o in tiny_overrides(synthetic_cache) if not o.startswith("num_workers")]
    cmd = [sys.executable, "train.py", *overrides, "num_workers=2", "loss=focal", f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    _check_artifacts(run_dir)
    log = (run_dir / "train.log").read_text()
    assert "COCO AP" in log and "iter 6/6" in log
    assert "Average Precision" in out.stdout  # the standard COCOeval summary
    # Not a terminal: log lines, no progress bar redrawn with carriage returns.
    assert "\r" not in out.stderr and "\r" not in out.stdout
    assert (run_dir / "status.json").is_file() and RunFolder(run_dir).read_status()["status"] == "finished"


def test_resume_equals_uninterrupted_run(tmp_path, synthetic_cache):
    _, full = _run(tmp_path, "full", synthetic_cache, ["eval_at_end=false"])
    _, part = _run(tmp_path, "part", synthetic_cache, ["eval_at_end=false", "schedule.stop_after=3"])
    assert torch.load(part / "checkpoints" / "last.pt", weights_only=False)["iter"] == 3
    _, resumed = _run(tmp_path, "part", synthetic_cache, ["eval_at_end=false", "resume=true"])
    a = torch.load(full / "checkpoints" / "last.pt", weights_only=False)
    b = torch.load(resumed / "checkpoints" / "last.pt", weights_only=False)
    assert b["iter"] == 6
    for k, v in a["model"].items():
        if torch.is_tensor(v):
            assert torch.equal(v, b["model"][k]), k
    assert a["model"]["_extra_state"] == b["model"]["_extra_state"]  # the normalizer's EMA

    def metrics(d):
        rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "images_per_s"} for r in rows]

    assert metrics(full) == metrics(resumed)


def test_sampling_free_counts_the_labels_once_and_resumes_exactly(tmp_path, synthetic_cache):
    """The label counts are measured before a fresh run (its bias and thresholds), kept in the
    checkpoint, and not measured again on resume: the resumed run is the uninterrupted one."""
    extra = ["loss=sampling_free", "eval_at_end=false"]
    _, full = _run(tmp_path, "full", synthetic_cache, extra)
    _run(tmp_path, "part", synthetic_cache, [*extra, "schedule.stop_after=3"])
    _, resumed = _run(tmp_path, "part", synthetic_cache, [*extra, "resume=true"])
    a = torch.load(full / "checkpoints" / "last.pt", weights_only=False)["model"]
    b = torch.load(resumed / "checkpoints" / "last.pt", weights_only=False)["model"]
    for k, v in a.items():
        if torch.is_tensor(v):
            assert torch.equal(v, b[k]), k
    counts = a["_extra_state"]["cls_loss"]["label_counts"]
    assert torch.equal(counts, b["_extra_state"]["cls_loss"]["label_counts"])
    cfg = compose_config(tiny_overrides(synthetic_cache) + extra)
    train_ds = build.dataset(cfg, "train", augment=False)
    model = build.model(cfg, train_ds.num_classes)
    loader = build.label_loader(cfg, train_ds, build.runtime(cfg))
    assert torch.equal(model.fit_label_counts(loader), counts)  # every training image, unflipped
    assert 0 < 10 * counts[1:-1].sum() < counts[-1]  # far more background than foreground


def test_anchor_losses_are_the_final_model_on_the_first_val_images(tmp_path, synthetic_cache):
    """anchor_losses.pt (the report's Figure 4) holds the trained model's per-anchor losses, in
    eval mode, on the first ``loss_cdf_images`` val images, split into fg and bg anchors."""
    _, run_dir = _run(tmp_path, "cdf", synthetic_cache, ["loss=softmax_bg", "loss_cdf_images=5"])
    saved = RunFolder(run_dir).load_anchor_losses()
    cfg = compose_config(tiny_overrides(synthetic_cache) + ["loss=softmax_bg"])
    ds = build.dataset(cfg, "val", augment=False)
    model = build.model(cfg, ds.num_classes)
    model.load_state_dict(torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["model"])
    model.eval()
    images, targets = collate([ds[i] for i in range(5)], size_divisible=cfg.dataset.size_divisible)
    losses, labels = model.anchor_losses(images, targets)  # (N, R)
    k = ds.num_classes
    assert len(saved["fg"]) == int(((labels >= 0) & (labels < k)).sum()) > 0
    torch.testing.assert_close(saved["fg"], losses[(labels >= 0) & (labels < k)])
    torch.testing.assert_close(saved["bg"], losses[labels == k])


def test_data_counts_add_skipped_images_and_dropped_boxes():
    counts = train.DataCounts()
    counts.add(None, 4)  # a batch of 4 unreadable images
    counts.add((torch.zeros(3, 3, 8, 8), [{"dropped_boxes": 2}, {"dropped_boxes": 0}, {}]), 4)
    assert (counts.skipped_images, counts.dropped_boxes) == (5, 2)


def test_skipped_images_are_counted_in_the_log_and_metrics(tmp_path):
    """on_bad_image=skip: an unreadable training image is left out and counted, not lost."""
    cache = tmp_path / "data"
    overrides = tiny_overrides(cache) + ["dataset.on_bad_image=skip", "eval_at_end=false"]
    cfg = compose_config(overrides)
    ds = build.dataset(cfg, "train", augment=False)  # generates the images
    bad = ds.images_dir / ds.coco.imgs[ds.image_ids[0]]["file_name"]
    bad.write_bytes(b"not a jpeg")
    train.run(compose_config(overrides), tmp_path / "run")
    rows, _ = RunFolder(tmp_path / "run").read_metrics()
    # 6 iterations of 4 from 12 images: every image is drawn twice
    assert rows[-1]["skipped_images"] == 2 and rows[-1]["dropped_boxes"] == 0


def test_nan_loss_stops_with_last_good_checkpoint(tmp_path, synthetic_cache, monkeypatch):
    from losses.focal import FocalLoss

    calls = {"n": 0}
    original = FocalLoss.__call__

    def poisoned(self, logits, labels):
        calls["n"] += 1
        loss = original(self, logits, labels)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(FocalLoss, "__call__", poisoned)
    with pytest.raises(train.NonFiniteLossError, match=r"iteration 4.*last\.pt \(iteration 3\)"):
        _run(tmp_path, "nan", synthetic_cache, ["loss=focal"])
    state = torch.load(tmp_path / "nan" / "checkpoints" / "last.pt", weights_only=False)
    assert state["iter"] == 3
    assert all(torch.isfinite(v).all() for v in state["model"].values() if torch.is_tensor(v) and v.is_floating_point())


def test_eval_only_evaluates_a_checkpoint(tmp_path, synthetic_cache):
    _, run_dir = _run(tmp_path, "trained", synthetic_cache)
    first = json.loads((run_dir / "eval.json").read_text())
    ckpt = run_dir / "checkpoints" / "last.pt"
    stats, eval_dir = _run(tmp_path, "evaluated", synthetic_cache, ["eval_only=true", f"checkpoint={ckpt}"])
    assert stats["AP"] == first["AP"]
    assert not (eval_dir / "checkpoints").exists()


def test_missing_checkpoint_is_a_clear_error(tmp_path, synthetic_cache):
    with pytest.raises(FileNotFoundError, match="nothing.pt does not exist"):
        _run(tmp_path, "x", synthetic_cache, ["eval_only=true", f"checkpoint={tmp_path}/nothing.pt"])


def test_real_coco_subset_trains_and_evaluates(tmp_path, synthetic_cache):
    """dataset=coco_sample: real JPEGs, non-contiguous category ids, crowd boxes, empty images."""
    overrides = [o for o in tiny_overrides(synthetic_cache) if not o.startswith(("dataset.", "schedule.max_iters"))]
    cfg = compose_config(overrides + ["dataset=coco_sample", "dataset.min_size=128", "dataset.max_size=160",
                                      "schedule.max_iters=2", "model.score_thresh=0.0"])
    stats = train.run(cfg, tmp_path / "coco")
    dets = json.loads((tmp_path / "coco" / "detections.json").read_text())
    coco_ids = {c["id"] for c in json.loads(COCO_SAMPLE_ANNOTATIONS.read_text())["categories"]}
    assert dets and {d["category_id"] for d in dets} <= coco_ids  # original COCO ids, not labels
    assert len({d["image_id"] for d in dets}) == 2  # the fixed val split
    assert 0.0 <= stats["AP"] <= 1.0


@pytest.mark.parametrize("name,root,eval_images", [("coco_person", COCO_PERSON_SAMPLE, 2), ("bccd", BCCD_SAMPLE, 3)])
def test_real_dataset_slice_trains_a_step_and_evaluates(tmp_path, synthetic_cache, name, root, eval_images):
    """dataset=coco_person / bccd on their shipped 8-image slices: one SGD step, then COCO
    evaluation on the reported split (coco_person val, bccd test) with the files' own ids."""
    overrides = [o for o in tiny_overrides(synthetic_cache) if not o.startswith(("dataset.", "schedule.max_iters"))]
    cfg = compose_config(overrides + [f"dataset={name}", f"dataset.root={root}", "schedule.max_iters=1",
                                      "model.score_thresh=0.0"])
    stats = train.run(cfg, tmp_path / name)
    state = torch.load(tmp_path / name / "checkpoints" / "last.pt", weights_only=False)
    assert state["iter"] == 1
    dets = json.loads((tmp_path / name / "detections.json").read_text())
    cat_ids = {c["id"] for c in json.loads((root / "annotations" / "instances_train.json").read_text())["categories"]}
    assert dets and {d["category_id"] for d in dets} <= cat_ids
    assert len({d["image_id"] for d in dets}) == eval_images
    assert 0.0 <= stats["AP"] <= 1.0


def test_bf16_autocast_steps_stay_finite_and_close_to_fp32(tmp_path, synthetic_cache):
    """The mixed-precision path of the loop (autocast + float32 losses), on the CPU with bf16;
    on CUDA the same code runs with bf16 or fp16 + GradScaler."""
    extra = ["schedule.max_iters=2", "schedule.log_every=1", "eval_at_end=false"]
    _run(tmp_path, "fp32", synthetic_cache, extra)
    _run(tmp_path, "bf16", synthetic_cache, extra + ["amp=bf16"])

    def rows(name):
        return [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]

    fp32, bf16 = rows("fp32"), rows("bf16")
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in bf16)
    assert fp32[0]["num_fg"] == bf16[0]["num_fg"]  # matching does not depend on precision
    assert abs(fp32[0]["loss"] - bf16[0]["loss"]) <= 0.05 * fp32[0]["loss"]


def test_fp16_on_cpu_is_a_clear_error():
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        build.amp_dtype("fp16", torch.device("cpu"))
    assert build.amp_dtype("auto", torch.device("cpu")) is None
