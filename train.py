"""Train a RetinaNet-style detector and evaluate it with COCO AP.

    python train.py                                   # embedded synthetic data, focal loss
    python train.py loss=softmax_bg dataset=coco128 optim.lr=0.005
    python train.py -m experiment=bg_ablation         # a sweep (see configs/experiment/)
    torchrun --nproc_per_node=2 train.py ...          # DDP
    python train.py eval_only=true checkpoint=outputs/.../checkpoints/last.pt

Every run writes a folder (printed at the start): config.yaml (resolved), train.log,
metrics.jsonl, TensorBoard events (tb/), checkpoints/last.pt, and after evaluation eval.json
and detections.json. Only this file sees the config; everything else takes plain arguments.
"""

import json
import logging
import math
import time
from functools import partial
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from datasets.sampler import SeededItems, StreamSampler, shard
from datasets.transforms import build_transforms, collate
from detection import checkpoint as ckpt
from detection import distributed as ddp
from detection.evaluation import coco_evaluate, write_json_atomic
from detection.optim import build_sgd, lr_factor

log = logging.getLogger("anchorbg")

# `loss=focal` -> run names like synthetic_focal (from the loss's module name)
OmegaConf.register_new_resolver("loss_name", lambda target: target.split(".")[-2], replace=True)
# The paper's best alpha for each gamma (Lin et al. 2017, Table 1b), for experiment=gamma_sweep.
FOCAL_PAPER_ALPHA = {0: 0.75, 0.1: 0.75, 0.2: 0.75, 0.5: 0.5, 1: 0.25, 2: 0.25, 5: 0.25}


def focal_paper_alpha(gamma) -> float:
    if float(gamma) not in FOCAL_PAPER_ALPHA:
        raise ValueError(f"loss.gamma={gamma}: the paper gives a best alpha only for gamma in {sorted(FOCAL_PAPER_ALPHA)}")
    return FOCAL_PAPER_ALPHA[float(gamma)]


OmegaConf.register_new_resolver("focal_paper_alpha", focal_paper_alpha, replace=True)


class NonFiniteLossError(RuntimeError):
    pass


def pick_device(spec: str, local_rank: int) -> torch.device:
    if spec == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={spec!r}: CUDA is not available on this machine (use device=cpu or auto)")
    return device


def amp_dtype(amp: str, device: torch.device):
    """The autocast dtype (None: full precision). fp16 also needs a GradScaler."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp not in ("auto", "bf16", "fp16"):
        raise ValueError(f"amp={amp!r}: expected auto, bf16, fp16 or off")
    if device.type != "cuda" and amp != "bf16":
        raise ValueError(f"amp={amp}: fp16 needs a CUDA device (this run is on {device}); "
                         "bf16 autocast also runs on the CPU")
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def to_device(images, targets, device, channels_last=False):
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    tensors = ("boxes", "labels", "ignore_boxes")
    targets = [{k: (v.to(device, non_blocking=True) if k in tensors else v) for k, v in t.items()} for t in targets]
    return images, targets


def build_datasets(cfg):
    d = cfg.dataset
    train_ds = instantiate(d.train, transforms=build_transforms(True, d.min_size, d.max_size))
    val_ds = instantiate(d.val, transforms=build_transforms(False, d.min_size, d.max_size))
    if val_ds.cat_ids != train_ds.cat_ids:
        raise ValueError(
            f"dataset {d.name}: train and val select different categories ({train_ds.class_names} vs "
            f"{val_ds.class_names}); set dataset.categories explicitly"
        )
    return train_ds, val_ds


@torch.no_grad()
def evaluate(model, ds, cfg, device, dtype, run_dir: Path, rank: int, world: int) -> dict | None:
    """Detections on every image of ``ds`` (sharded over ranks), COCO AP on rank 0."""
    model.eval()
    loader = DataLoader(Subset(ds, shard(len(ds), rank, world)), batch_size=cfg.schedule.eval_batch_size,
                        collate_fn=partial(collate, size_divisible=cfg.dataset.size_divisible),
                        num_workers=cfg.num_workers)
    detections = []
    for batch in tqdm(loader, desc="eval", disable=not ddp.is_main(), leave=False):
        if batch is None:  # only unreadable images (on_bad_image=skip)
            continue
        images, targets = batch
        images, _ = to_device(images, [], device, cfg.channels_last)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            results = model(images, targets)
        for t, r in zip(targets, results):
            xywh = r["boxes"].clone()
            xywh[:, 2:] -= xywh[:, :2]
            for box, score, label in zip(xywh.tolist(), r["scores"].tolist(), r["labels"].tolist()):
                detections.append({"image_id": int(t["image_id"]), "category_id": int(ds.cat_ids[label]),
                                   "bbox": [round(v, 2) for v in box], "score": round(score, 5)})
    detections = ddp.all_gather_list(detections)
    if not ddp.is_main():
        return None
    write_json_atomic(run_dir / "detections.json", detections)
    stats = coco_evaluate(ds.coco, detections, image_ids=ds.image_ids, cat_ids=ds.cat_ids)
    write_json_atomic(run_dir / "eval.json", stats)
    log.info("COCO AP %.4f  AP50 %.4f  AP75 %.4f  APs %.4f  APm %.4f  APl %.4f  (%d images, %d detections)",
             stats["AP"], stats["AP50"], stats["AP75"], stats["APs"], stats["APm"], stats["APl"],
             len(ds), len(detections))
    return stats


def keep_metrics_until(path: Path, last_iter: int) -> None:
    """On resume, drop metric lines logged after the checkpoint (they will be logged again)."""
    if path.exists():
        lines = [line for line in path.read_text().splitlines() if line and json.loads(line)["iter"] <= last_iter]
        path.write_text("".join(line + "\n" for line in lines))


def run(cfg: DictConfig, run_dir: Path) -> dict | None:
    """Trains and/or evaluates as ``cfg`` says; returns the evaluation stats (rank 0)."""
    rank, world, local_rank = ddp.init_from_env(
        "cuda" if cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu")
    device = pick_device(cfg.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dtype = amp_dtype(cfg.amp, device)
    main = ddp.is_main()
    run_dir = ddp.broadcast_object(run_dir)  # every rank uses rank 0's run folder
    run_dir.mkdir(parents=True, exist_ok=True)
    if main:
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        log.info("run folder: %s  (device %s, %d process(es), amp %s)", run_dir, device, world, dtype)

    torch.manual_seed(cfg.seed)
    train_ds, val_ds = build_datasets(cfg)
    cls_loss = instantiate(cfg.loss)
    model = instantiate(cfg.model, num_classes=train_ds.num_classes, cls_loss=cls_loss).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if main:
        log.info("dataset %s: %d train / %d val images, %d classes %s; loss %r; %.2fM parameters",
                 cfg.dataset.name, len(train_ds), len(val_ds), train_ds.num_classes, train_ds.class_names,
                 cls_loss, sum(p.numel() for p in model.parameters()) / 1e6)

    s, o = cfg.schedule, cfg.optim
    optimizer = build_sgd(model, o.lr, o.momentum, o.weight_decay, o.weight_decay_norm, o.nesterov)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    start_iter, ckpt_path = 0, run_dir / "checkpoints" / "last.pt"
    if cfg.resume:
        path = ckpt.resolve(cfg.resume, run_dir)
        state = ckpt.load(path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start_iter = state["iter"]
        log.info("resumed from %s at iteration %d", path, start_iter)
    elif cfg.checkpoint:
        path = ckpt.resolve(cfg.checkpoint, run_dir)
        model.load_state_dict(ckpt.load(path)["model"])
        log.info("weights from %s", path)

    if cfg.eval_only:
        stats = evaluate(model, val_ds, cfg, device, dtype, run_dir, rank, world)
        ddp.destroy()
        return stats

    if world > 1:
        if cfg.sync_bn:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    else:
        net = model
    if s.batch_size % world:
        raise ValueError(f"schedule.batch_size={s.batch_size} must be divisible by the {world} processes")
    loader = DataLoader(
        SeededItems(train_ds), batch_size=s.batch_size // world, num_workers=cfg.num_workers,
        collate_fn=partial(collate, size_divisible=cfg.dataset.size_divisible),
        sampler=StreamSampler(len(train_ds), cfg.seed, start_iter * s.batch_size, rank, world),
        pin_memory=device.type == "cuda", persistent_workers=False,
    )
    end_iter = s.max_iters if s.stop_after is None else min(s.max_iters, start_iter + s.stop_after)
    metrics_path = run_dir / "metrics.jsonl"
    writer = None
    if main:
        keep_metrics_until(metrics_path, start_iter)
        writer = SummaryWriter(str(run_dir / "tb"))
    params = [p for p in model.parameters() if p.requires_grad]
    schedule = partial(lr_factor, max_iters=s.max_iters, warmup_iters=s.warmup_iters, warmup_factor=s.warmup_factor,
                       decay=s.decay, steps=tuple(s.steps), gamma=s.gamma, min_lr_factor=s.min_lr_factor)
    last_good = f"{ckpt_path} (iteration {start_iter})" if cfg.resume else "none yet"
    bar = tqdm(total=s.max_iters, initial=start_iter, desc="train", disable=not main, dynamic_ncols=True)
    t_log, images_seen = time.perf_counter(), 0
    data = iter(loader)
    net.train()
    for it in range(start_iter, end_iter):
        batch = next(data)
        while batch is None:  # every image of the batch was unreadable (on_bad_image=skip)
            batch = next(data)
        images, targets = to_device(*batch, device, cfg.channels_last)
        lr = o.lr * schedule(it)
        for group in optimizer.param_groups:
            group["lr"] = lr
        log_now = (it + 1) % s.log_every == 0 or it + 1 == s.max_iters
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = net(images, targets, with_stats=log_now)
        loss = out["loss"]
        finite = torch.isfinite(loss.detach()).float()
        if world > 1:
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        if finite.item() == 0:
            raise NonFiniteLossError(
                f"non-finite loss at iteration {it} (cls {out['loss_cls'].item()}, box {out['loss_box'].item()}); "
                f"weights were not updated with it. Last good checkpoint: {last_good}"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        max_norm = o.clip_grad_norm if o.clip_grad_norm is not None else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        if not torch.isfinite(grad_norm) and not scaler.is_enabled():
            raise NonFiniteLossError(f"non-finite gradient norm at iteration {it}. Last good checkpoint: {last_good}")
        scaler.step(optimizer)  # skips the step itself when fp16 gradients overflowed
        scaler.update()
        images_seen += len(images) * world
        bar.update(1)

        if log_now:
            stats = ddp.mean_over_ranks({k: v for k, v in out.items() if torch.is_tensor(v)})
            elapsed = time.perf_counter() - t_log
            record = {"iter": it + 1, "lr": lr, **{k: round(float(v.detach()), 6) for k, v in stats.items()},
                      "grad_norm": round(float(grad_norm), 4), "images_per_s": round(images_seen / elapsed, 2)}
            t_log, images_seen = time.perf_counter(), 0
            bar.set_postfix(loss=f"{record['loss']:.4f}", img_s=f"{record['images_per_s']:.1f}")
            if main:
                with metrics_path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                for k, v in record.items():
                    if k != "iter":
                        writer.add_scalar(f"train/{k}", v, it + 1)
                log.info("iter %d/%d  loss %.4f (cls %.4f box %.4f)  fg/img %.1f  bg share %.3f  lr %.5f  %.1f img/s",
                         it + 1, s.max_iters, record["loss"], record["loss_cls"], record["loss_box"],
                         record["num_fg"], record["bg_share"], lr, record["images_per_s"])
        if (it + 1) % s.checkpoint_every == 0 or it + 1 == end_iter:
            if main:
                ckpt.save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                  "scaler": scaler.state_dict(), "iter": it + 1,
                                  "config": OmegaConf.to_container(cfg, resolve=True)}, ckpt_path)
            last_good = f"{ckpt_path} (iteration {it + 1})"
    bar.close()
    if writer:
        writer.close()
    stats = None
    if cfg.eval_at_end and end_iter == s.max_iters:
        stats = evaluate(model, val_ds, cfg, device, dtype, run_dir, rank, world)
        if writer is not None and stats is not None:
            with SummaryWriter(str(run_dir / "tb")) as w:
                for k in ("AP", "AP50", "AP75"):
                    w.add_scalar(f"eval/{k}", stats[k], end_iter)
    ddp.destroy()
    return stats


def write_status(run_dir: Path, status: str, **info) -> None:
    """status.json: running | finished | diverged | failed, read by tools/report.py."""
    if ddp.env_rank() == 0:
        write_json_atomic(run_dir / "status.json", {"status": status, "time": time.time(), **info})


@hydra.main(config_path="configs", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if cfg.dry_run:  # list what a sweep would launch, train nothing
        overrides = " ".join(HydraConfig.get().overrides.task)
        print(f"dry run: job {HydraConfig.get().job.num}: {overrides or '(no overrides)'} -> {run_dir}")
        return None
    if ddp.env_rank() > 0:
        # Under torchrun every process starts Hydra; only rank 0 logs to the run folder.
        ddp.quiet_logging()
    write_status(run_dir, "running")
    t0 = time.time()
    try:
        stats = run(cfg, run_dir)
    except NonFiniteLossError as e:
        write_status(run_dir, "diverged", message=str(e), seconds=time.time() - t0)
        log.error("%s", e)
        # In a sweep a diverged run is a result (the report flags it), not a reason to stop.
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            return None
        raise
    except BaseException as e:
        write_status(run_dir, "failed", message=f"{type(e).__name__}: {e}", seconds=time.time() - t0)
        raise
    write_status(run_dir, "finished", seconds=time.time() - t0, AP=None if stats is None else stats["AP"])
    return None if stats is None else stats["AP"]  # the sweep's objective


if __name__ == "__main__":
    main()
