"""Train a RetinaNet-style detector and evaluate it with COCO AP.

    python train.py                                   # embedded synthetic data, focal loss
    python train.py loss=softmax_bg dataset=coco128 optim.lr=0.005
    python train.py -m loss=softmax_bg,focal seed=0,1   # a sweep; the studies: make ablation, make followups
    torchrun --nproc_per_node=2 train.py ...          # DDP
    python train.py eval_only=true checkpoint=outputs/.../checkpoints/last.pt

Every run writes a folder, printed at the start (its files: detection/run_folder.py). This
file and detection/build.py are the only code that sees the config; everything else takes
plain arguments. Read top to bottom: ``main`` (status of the run), ``run`` (build, restore,
train, evaluate), ``train`` (the loop), ``step`` (one optimizer step, detection/engine.py), ``evaluate``.
"""

import contextlib
import logging
import sys
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from detection import build
from detection import distributed as ddp
from detection.engine import NonFiniteLossError, step, to_device
from detection.evaluation import coco_evaluate
from detection.config_rules import ConfigError
from detection.preflight import USAGE_ERROR, check_or_exit, debugging, exit_with
from detection.run_folder import (
    RESUMABLE,
    MetricsWriter,
    RunFolder,
    RunFolderBusy,
    StatusWriter,
    WriteError,
    code_version,
    device_change,
    effective_status,
    identity_differences,
    load_checkpoint,
    resolve_checkpoint,
)
from detection.signals import Interrupted, StopRequest, preemption_signals

log = logging.getLogger("anchorbg")


class RunRefused(Exception):
    """A run this command must not start or continue here; the message says why and what to do."""


@hydra.main(config_path="configs", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    check_or_exit(cfg, run_dir)  # values in range, folder writable: else one line and exit 2
    folder = RunFolder(run_dir)
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    if cfg.dry_run:  # list what a sweep would launch and what it would cost; train nothing
        if not folder.holds_run():
            write_hydra(folder, cfg)
        return dry_run(cfg, run_dir)
    rank0 = ddp.env_rank() == 0
    if not rank0:  # under torchrun every process starts Hydra; only rank 0 logs to the run folder
        ddp.quiet_logging()
    try:
        lock = folder.lock() if rank0 else None  # one writer per run folder
    except RunFolderBusy as e:
        if multirun:  # a study's jobs run side by side (tools.study_jobs): another process has this one
            log.info("%s, skipped", e)
            return None
        refuse(str(e))
    try:
        action = run_action(cfg, folder)
        if action == "skip":
            return (folder.read_eval() or {}).get("AP")
        return run_and_record(cfg, folder, action, multirun)
    except RunRefused as e:
        refuse(str(e))
    finally:
        if lock is not None:
            lock.close()


def refuse(message: str):
    """Ends the process with status 2 and ``message`` on stderr, before anything is written
    into the run folder (not even its log)."""
    print(f"train.py: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def write_hydra(folder: RunFolder, cfg: DictConfig) -> None:
    """The run's .hydra/ (what Hydra writes itself with ``hydra.output_subdir`` set: here only
    once the run is accepted, so a refused start leaves an existing run's alone)."""
    hc = HydraConfig.get()
    folder.write_hydra(OmegaConf.to_yaml(cfg), OmegaConf.to_yaml(OmegaConf.create({"hydra": hc})),
                       list(hc.overrides.task))


def run_and_record(cfg: DictConfig, folder: RunFolder, action: str, multirun: bool) -> float | None:
    """Runs ``action`` ("start", "start_over", "resume"), with status.json saying how it went:
    finished, paused (a ``stop_after`` slice), interrupted (a signal: a checkpoint at that
    iteration), diverged or failed."""
    rank0 = ddp.env_rank() == 0
    previous = read_status_or_none(folder) if action == "resume" else None
    try:
        device = build.pick_device(cfg.device)
        session = {"device": build.device_name(device), "kind": device.type,
                   "precision": build.precision(cfg.amp, device)}
    except ValueError as e:  # device=cuda without one, amp=fp16 on a CPU
        exit_with(ConfigError(str(e)), cfg, USAGE_ERROR)
    change = device_change((previous or {}).get("devices"), session)
    if change and not cfg.allow_device_change:  # a run's iterations all come from one kind of device
        exit_with(ConfigError(f"{folder.path}: {change}; add allow_device_change=true to continue it there anyway "
                              "(the run is then marked as trained on mixed devices)"), cfg, USAGE_ERROR)
    if rank0 and action == "start_over":
        moved = folder.move_aside()
        if moved is not None:
            log.info("%s: the earlier run's records moved to %s; starting again from iteration 0", folder.path, moved)
    if rank0 and action != "resume":
        write_hydra(folder, cfg)
    elif rank0 and cfg.force and check_same_run(cfg, folder):  # forced to continue another config: say what runs now
        folder.write_config(OmegaConf.to_yaml(cfg, resolve=True))
    if action == "resume":
        cfg.resume = True
    elif action == "start_over" and cfg.resume is True:  # start_over=true resume=true: the override wins
        cfg.resume = False
    status = StatusWriter(folder, base_seconds=(previous or {}).get("seconds") or 0.0, enabled=rank0,
                          device=session["device"], devices=(previous or {}).get("devices"), session=session)
    status.running()
    stop = StopRequest(handover=preemption_signals()).install()
    try:
        stats = run(cfg, folder.path, status.heartbeat, stop)
    except Interrupted as e:  # SIGTERM, SIGINT, preemption: the checkpoint at e.iteration is written
        status.end("interrupted", iteration=e.iteration, signal=e.signal_name, message=str(e))
        if rank0:
            log.warning("%s", e)
        stop.hand_over(e.signum)  # under submitit: checkpoint the job and requeue it (exits)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:  # a second SIGINT: at once, from the last checkpoint written
        at = status.progress.get("checkpoint_iteration", 0)
        message = f"stopped at once by a second SIGINT; run the same command to resume from iteration {at}"
        status.end("interrupted", iteration=at, signal="SIGINT", message=message)
        if rank0:
            log.warning("%s", message)
        sys.exit(130)
    except NonFiniteLossError as e:
        status.end("diverged", message=str(e))
        log.error("%s", e)
        if multirun:  # in a sweep a diverged run is a result (the report flags it), not a reason to stop
            return None
        raise
    except WriteError as e:  # an unwritable or full run folder: one line, the last checkpoint kept
        logging.raiseExceptions = False  # train.log may not take the line either
        with contextlib.suppress(OSError):
            status.end("failed", message=str(e))
        if debugging(cfg):
            raise
        log.error("%s", e)
        sys.exit(1)
    except BaseException as e:
        status.end("failed", message=f"{type(e).__name__}: {e}")
        raise
    finally:
        stop.uninstall()
    if not cfg.eval_only and status.iteration is not None and status.iteration < cfg.schedule.max_iters:
        status.end("paused", iteration=status.iteration, max_iters=cfg.schedule.max_iters)
        log.info("paused at iteration %d of %d: the same command continues it", status.iteration,
                 cfg.schedule.max_iters)
        return None
    status.end("finished", AP=None if stats is None else stats["AP"])
    return None if stats is None else stats["AP"]  # the sweep's objective


def dry_run(cfg, run_dir: Path) -> float:
    """Prints the job (its overrides, its run folder) and its estimated time: its training at
    the images/s its model measures here (``build.speed``: no data is read), and the whole job
    with the start-up, evaluations and analysis measured here (``build.job_overheads``);
    returns the whole job's seconds (the sweep's report callback adds them up)."""
    hc = HydraConfig.get()
    overrides = " ".join(hc.overrides.task)
    speed = build.speed(cfg)
    est = build.estimate(cfg, speed)
    job = f"job {hc.job.num}" if hc.mode == RunMode.MULTIRUN else "the run"  # a single run has no job number
    print(f"dry run: {job}: {overrides or '(no overrides)'} -> {run_dir}\n"
          f"  ~{build.duration(est.job_seconds)} in all: ~{build.duration(est.seconds)} of training ({est.train_images} "
          f"images at {speed.train:.1f}/s measured on {build.device_name(build.pick_device(cfg.device))}), "
          f"{est.evaluations} evaluation(s), start-up and analysis", flush=True)
    return est.job_seconds


def run_action(cfg, folder: RunFolder) -> str:
    """What the command does with what its run folder already holds, for a single run and a
    sweep's job alike (the same command run again continues its run):

    - "start": the folder holds no run;
    - "skip": a finished run, or a diverged one (unless ``retry_diverged=true``);
    - "resume": a run in a RESUMABLE state (paused, killed, interrupted, failed) with a
      checkpoint, continued from it;
    - "start_over": ``start_over=true``, a diverged run with ``retry_diverged=true``, or a run
      with nothing to continue: the old records move to ``replaced/<time>/``, never truncated.

    A folder holding a run of another config (RUN_CONTROL keys aside) is refused with one line
    per key, and a resume on another code version too, unless ``force=true``. A run that is
    over stays what it is whatever the code is now: its status.json records the version that
    made it, and the code may grow (a new loss file) under a study. Raises RunRefused."""
    if not folder.holds_run():
        return "start"
    if cfg.start_over:
        return "start_over"
    status = read_status_or_none(folder)
    # Under torchrun rank 0 decides (run() broadcasts its resume); another rank may meet the
    # folder while rank 0 writes it, and would read a config cut short as a different one.
    diffs = check_same_run(cfg, folder) if ddp.env_rank() == 0 else []
    if diffs and not cfg.force:
        raise RunRefused("\n".join([
            f"{folder.path} holds a run of another configuration (recorded -> given); nothing was written. "
            "Run it with its own command, start_over=true to replace it (its records move aside), or force=true "
            "to continue it anyway:", *(f"  {d}" for d in diffs)]))
    state = effective_status(status)
    was = (status or {}).get("code")
    if state == "finished" or (state == "diverged" and not cfg.retry_diverged):
        log.info("%s: %s, skipped (%s)%s", folder.path, state,
                 "retry_diverged=true reruns it" if state == "diverged" else "start_over=true trains it again",
                 f" (made by code version {was})" if was and was != code_version() else "")
        return "skip"
    # "running": its process is gone or on its way out (this one holds the folder's lock)
    resumable = state in RESUMABLE or state in ("running", None)
    if resumable and (folder.checkpoint.is_file() or folder.previous_checkpoint.is_file()):
        if was and was != code_version() and not cfg.force:
            raise RunRefused(f"{folder.path} holds a checkpoint of another code version (code version: {was} -> "
                             f"{code_version()}); continuing it would mix two versions in one run: start_over=true "
                             "starts it again, force=true continues it anyway")
        log.info("%s: %s, resumed from its checkpoint", folder.path, state or "no status")
        return "resume"
    if cfg.resume is True:
        raise RunRefused(f"resume=true, but {folder.path} holds no checkpoint to resume (status {state}); "
                         "start_over=true starts it again")
    log.info("%s: %s, nothing to resume: starting again", folder.path, state or "no status")
    return "start_over"


def check_same_run(cfg, folder: RunFolder) -> list[str]:
    """How ``cfg`` differs from the config recorded in ``folder`` (RUN_CONTROL aside), one
    ``key: recorded -> given`` line per key."""
    return identity_differences(folder.read_config() or {}, OmegaConf.to_container(cfg, resolve=True))


def read_status_or_none(folder: RunFolder) -> dict | None:
    try:
        return folder.read_status()
    except ValueError as e:
        log.warning("%s: %s", folder.status, e)
        return None


def run(cfg: DictConfig, run_dir: Path, heartbeat=lambda **info: None, stop: StopRequest | None = None) -> dict | None:
    """Trains and/or evaluates as ``cfg`` says; returns the evaluation stats (rank 0).
    ``heartbeat(iteration=..., checkpoint_iteration=...)`` is called every step (status.json's,
    throttled there). A ``stop`` requested (a signal) ends training after the current step with
    a checkpoint there: Interrupted."""
    rt = build.runtime(cfg)
    writer = None
    try:
        folder = RunFolder(ddp.broadcast_object(Path(run_dir)))  # every rank uses rank 0's folder
        cfg.resume = ddp.broadcast_object(cfg.resume)  # rank 0 decided (main's run_action)
        if rt.rank == 0:
            if cfg.resume is not True or not folder.config.is_file():  # a resumed run keeps its record
                folder.write_config(OmegaConf.to_yaml(cfg, resolve=True))
            writer = MetricsWriter(folder)
            log.info("run folder: %s  (device %s, %d process(es), amp %s)", folder.path, rt.device, rt.world,
                     rt.amp_dtype)

        torch.manual_seed(cfg.seed)
        train_ds, val_ds = build.datasets(cfg)
        model = build.model(cfg, train_ds.num_classes).to(rt.device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        log.info("dataset %s: %d train / %d val images, %d classes %s; loss %r; %.2fM parameters",
                 cfg.dataset.name, len(train_ds), len(val_ds), train_ds.num_classes, train_ds.class_names,
                 model.cls_loss, sum(p.numel() for p in model.parameters()) / 1e6)
        if rt.rank == 0:  # what tools.evaluate / tools.analyze need to work from the run folder alone
            folder.write_data({"annotations": str(val_ds.annotations.resolve()), "image_ids": val_ds.image_ids,
                               "cat_ids": val_ds.cat_ids, "eval_split": cfg.eval_split})
            log.info("evaluation annotations: %s (%d images; recorded in %s)", val_ds.annotations.resolve(),
                     len(val_ds), folder.data)
        optimizer = build.optimizer(cfg, model)
        scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.amp_dtype == torch.float16)
        start_iter, counts = restore(cfg, folder, model, optimizer, scaler)
        if model.fits_label_counts and start_iter == 0 and not cfg.checkpoint and not cfg.eval_only:
            # a loss that starts from the training set's measured label frequencies (sampling_free)
            seen = model.fit_label_counts(b for b in build.label_loader(cfg, train_ds, rt) if b is not None)
            log.info("label counts over the training set (ignored, classes..., background): %s; loss %r",
                     seen.tolist(), model.cls_loss)
        heartbeat(iteration=start_iter)

        end_iter = start_iter
        if not cfg.eval_only:
            evaluate_now = partial(evaluate, cfg, rt, model, val_ds, folder, writer, final=False)
            end_iter = train(cfg, rt, model, optimizer, scaler, train_ds, folder, writer, start_iter, counts,
                             heartbeat, evaluate_now, stop or StopRequest())
            if not (cfg.eval_at_end and end_iter == cfg.schedule.max_iters):
                return None
        return evaluate(cfg, rt, model, val_ds, folder, writer, end_iter)
    finally:
        if writer is not None:
            writer.close()
        ddp.destroy()


@dataclass
class DataCounts:
    """What the data path left out, counted over the whole run (kept in the checkpoint)."""

    skipped_images: int = 0  # unreadable images skipped (dataset.on_bad_image=skip)
    dropped_boxes: int = 0  # boxes the transforms removed (degenerate after resizing)

    def add(self, batch, batch_size: int):
        if batch is None:
            self.skipped_images += batch_size
            return
        self.skipped_images += batch_size - len(batch[1])
        self.dropped_boxes += sum(int(t.get("dropped_boxes", 0)) for t in batch[1])


def restore(cfg, folder: RunFolder, model, optimizer, scaler) -> tuple[int, DataCounts]:
    """``resume``: weights, optimizer and iteration of a checkpoint; ``checkpoint``: its
    weights only. Returns the iteration to start at and the data counts so far.

    ``resume=true`` (this run folder) falls back to checkpoints/previous.pt when last.pt
    cannot be read (a truncated file), and to iteration 0 when neither can, naming the file.
    """
    if cfg.resume:
        for path in checkpoints_to_resume(cfg.resume, folder):
            try:
                state = load_checkpoint(path)
            except (RuntimeError, ValueError) as e:
                if cfg.resume is not True:
                    raise
                log.error("%s; trying an earlier checkpoint", e)
                continue
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            log.info("resumed from %s at iteration %d", path, state["iter"])
            return state["iter"], DataCounts(**state.get("data_counts", {}))
        log.error("no readable checkpoint in %s: the run starts again from iteration 0", folder.path)
    elif cfg.checkpoint:
        path = resolve_checkpoint(cfg.checkpoint, folder.path)
        model.load_state_dict(load_checkpoint(path)["model"])
        log.info("weights from %s", path)
    return 0, DataCounts()


def checkpoints_to_resume(spec, folder: RunFolder) -> list[Path]:
    """``resume=true``: this folder's last.pt then previous.pt (those that exist); a path:
    that checkpoint only (its errors are raised, not worked around)."""
    if spec is True:
        found = [p for p in (folder.checkpoint, folder.previous_checkpoint) if p.is_file()]
        return found or [resolve_checkpoint(True, folder.path)]  # raises, naming the file
    return [resolve_checkpoint(spec, folder.path)]


def train(cfg, rt: build.Runtime, model, optimizer, scaler, ds, folder: RunFolder, writer, start_iter: int,
          counts: DataCounts, heartbeat, evaluate_now, stop: StopRequest) -> int:
    """The training loop from ``start_iter``; returns the iteration it stopped at.
    ``evaluate_now(iteration)`` every ``schedule.eval_every`` iterations (an AP curve). After
    each step, a ``stop`` request (on any rank) writes the checkpoint there and raises Interrupted."""
    s = cfg.schedule
    net = model
    if rt.world > 1:
        if cfg.sync_bn:
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
        net = DistributedDataParallel(net, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    batches = iter(build.train_loader(cfg, ds, start_iter, rt))
    lr_at = build.lr_schedule(cfg)
    params = [p for p in model.parameters() if p.requires_grad]  # what the gradient norm is over
    end_iter = s.max_iters if s.stop_after is None else min(s.max_iters, start_iter + s.stop_after)
    if writer is not None:
        folder.truncate_metrics(start_iter)
    last_good = f"{folder.checkpoint} (iteration {start_iter})" if cfg.resume else "none yet"
    heartbeat(start_iteration=start_iter, checkpoint_iteration=start_iter)

    def save_checkpoint(iteration: int) -> None:
        nonlocal last_good
        if rt.rank == 0:
            folder.save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                    "scaler": scaler.state_dict(), "iter": iteration, "data_counts": asdict(counts),
                                    "config": OmegaConf.to_container(cfg, resolve=True)})
        last_good = f"{folder.checkpoint} (iteration {iteration})"
        heartbeat(checkpoint_iteration=iteration)

    bar = progress_bar(total=s.max_iters, initial=start_iter, desc="train")
    t_log, images_seen, steps, clipped = time.perf_counter(), 0, 0, 0
    net.train()
    for it in range(start_iter, end_iter):
        batch = next(batches)
        counts.add(batch, s.batch_size // rt.world)
        while batch is None:  # every image of the batch was unreadable (on_bad_image=skip)
            batch = next(batches)
            counts.add(batch, s.batch_size // rt.world)
        images, targets = to_device(*batch, rt.device, cfg.channels_last)
        lr = lr_at(it)
        for group in optimizer.param_groups:
            group["lr"] = lr
        log_now = (it + 1) % s.log_every == 0 or it + 1 == s.max_iters
        try:
            out, grad_norm = step(net, optimizer, scaler, images, targets, params, cfg.optim.clip_grad_norm, rt,
                                  log_now)
        except NonFiniteLossError as e:
            raise NonFiniteLossError(f"{e} at iteration {it}; the weights were not updated with it. "
                                     f"Last good checkpoint: {last_good}") from None
        images_seen += len(images) * rt.world
        steps += 1
        clipped += cfg.optim.clip_grad_norm is not None and float(grad_norm) > cfg.optim.clip_grad_norm
        bar.update(1)
        heartbeat(iteration=it + 1)

        if log_now:
            stats = ddp.mean_over_ranks({k: v for k, v in out.items() if torch.is_tensor(v)})
            seconds, t_log = time.perf_counter() - t_log, time.perf_counter()
            record = {"iter": it + 1, "lr": lr, **{k: round(float(v.detach()), 6) for k, v in stats.items()},
                      "grad_norm": round(float(grad_norm), 4), "clipped_share": round(clipped / steps, 4),
                      "images_per_s": round(images_seen / seconds, 2),
                      **total_over_ranks(asdict(counts))}
            images_seen, steps, clipped = 0, 0, 0
            bar.set_postfix(loss=f"{record['loss']:.4f}", img_s=f"{record['images_per_s']:.1f}")
            log_step(record, s.max_iters, writer)
        saved = (s.checkpoint_every and (it + 1) % s.checkpoint_every == 0) or it + 1 == end_iter
        if saved:
            save_checkpoint(it + 1)
        if s.eval_every and (it + 1) % s.eval_every == 0 and it + 1 < s.max_iters:
            evaluate_now(it + 1)
            net.train()
        signum = stop.requested(rt.device, rt.world)
        if signum:
            if not saved:
                save_checkpoint(it + 1)
            if rt.world > 1:  # no rank leaves (its launcher then stops the others) before rank 0 saved
                torch.distributed.barrier()
            bar.close()
            raise Interrupted(it + 1, signum)
    bar.close()
    return end_iter


def log_step(record: dict, max_iters: int, writer: MetricsWriter | None) -> None:
    """One logged step to metrics.jsonl, TensorBoard and the log (rank 0)."""
    if writer is None:
        return
    writer.log(record)
    dropped = ""
    if record["skipped_images"] or record["dropped_boxes"]:
        dropped = f"  skipped {record['skipped_images']} images, dropped {record['dropped_boxes']} boxes so far"
    log.info("iter %d/%d  loss %.4f (cls %.4f box %.4f)  fg/img %.1f  bg share %.3f  lr %.5f  %.1f img/s%s",
             record["iter"], max_iters, record["loss"], record["loss_cls"], record["loss_box"],
             record["num_fg"], record["bg_share"], record["lr"], record["images_per_s"], dropped)


@torch.no_grad()
def evaluate(cfg, rt: build.Runtime, model, ds, folder: RunFolder, writer, iteration: int,
             final: bool = True) -> dict | None:
    """Detections on every image of ``ds`` (sharded over ranks); COCO AP on rank 0, as a
    point of the AP curve in metrics.jsonl (``{"iter": i, "eval": {...}}``) and TensorBoard.
    ``final``: also eval.json, detections.json and the per-anchor losses of the first
    ``loss_cdf_images`` images (anchor_losses.pt)."""
    model.eval()
    detections = []
    for batch in progress_bar(build.eval_shard(cfg, ds, rt), desc="eval", leave=False):
        if batch is None:  # only unreadable images (on_bad_image=skip)
            continue
        images, targets = batch
        images, _ = to_device(images, [], rt.device, cfg.channels_last)
        with torch.autocast(rt.device.type, dtype=rt.amp_dtype, enabled=rt.amp_dtype is not None):
            results = model(images, targets)
        detections += coco_results(targets, results, ds.cat_ids)
    detections = ddp.all_gather_list(detections)
    if rt.rank != 0:
        return None
    stats = coco_evaluate(ds.coco, detections, image_ids=ds.image_ids, cat_ids=ds.cat_ids, verbose=final)
    curve = {k: stats[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")}
    if not cfg.eval_only:
        folder.append_metrics({"iter": iteration, "eval": curve})
    writer.scalars("eval", curve, iteration)
    if final:
        folder.write_eval(stats, detections)
        folder.save_anchor_losses(*anchor_losses(cfg, rt, model, ds, cfg.loss_cdf_images))
    log.info("COCO AP %.4f  AP50 %.4f  AP75 %.4f  APs %.4f  APm %.4f  APl %.4f  (%d images, %d detections)",
             stats["AP"], stats["AP50"], stats["AP75"], stats["APs"], stats["APm"], stats["APl"],
             len(ds), len(detections))
    return stats


def coco_results(targets: list[dict], results: list[dict], cat_ids: list[int]) -> list[dict]:
    """The model's detections (xyxy boxes, labels 0..K-1) as COCO results entries."""
    entries = []
    for t, r in zip(targets, results):
        xywh = r["boxes"].clone()
        xywh[:, 2:] -= xywh[:, :2]
        for box, score, label in zip(xywh.tolist(), r["scores"].tolist(), r["labels"].tolist()):
            entries.append({"image_id": int(t["image_id"]), "category_id": int(cat_ids[label]),
                            "bbox": [round(v, 2) for v in box], "score": round(score, 5)})
    return entries


@torch.no_grad()
def anchor_losses(cfg, rt: build.Runtime, model, ds, num_images: int):
    """Per-anchor classification losses of the foreground and of the background anchors of
    the first ``num_images`` images, Tensor[P] and Tensor[Q] float32: the data of the
    report's Figure 4 (the loss spread over anchors). Padding anchors count as background,
    as in training."""
    fg, bg = [torch.zeros(0)], [torch.zeros(0)]
    if num_images > 0:
        k = model.num_classes
        for batch in build.eval_loader(cfg, ds, range(min(num_images, len(ds)))):
            if batch is None:
                continue
            losses, labels = model.anchor_losses(*to_device(*batch, rt.device, cfg.channels_last))  # (N, R)
            losses, labels = losses.float().cpu(), labels.cpu()
            fg.append(losses[(labels >= 0) & (labels < k)])
            bg.append(losses[labels == k])
    return torch.cat(fg), torch.cat(bg)


def total_over_ranks(counts: dict[str, int]) -> dict[str, int]:
    if not torch.distributed.is_initialized():
        return counts
    summed = ddp.mean_over_ranks({k: torch.tensor(float(v)) for k, v in counts.items()})
    return {k: round(float(v) * torch.distributed.get_world_size()) for k, v in summed.items()}


def progress_bar(iterable=None, **kwargs):
    """A tqdm bar on a terminal (rank 0); none when the output goes to a file or a pipe,
    where the periodic log lines say the same without thousands of carriage returns."""
    return tqdm(iterable, disable=not (ddp.is_main() and sys.stderr.isatty()), dynamic_ncols=True, **kwargs)


if __name__ == "__main__":
    main()
