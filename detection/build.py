"""Builds a run's parts from a composed config: with train.py, the only code that reads it.

train.py and the tools (``tools.anchor_stats``, the benchmarks) build their dataset, model,
optimizer, schedule and loaders here, so a config means the same thing everywhere. Everything
built takes plain kwargs (``_target_`` + ``hydra.utils.instantiate``): below this module no
code sees a config.

Importing this module registers the resolvers the configs use (``${loss_name:...}``,
``${focal_paper_alpha:...}``).
"""

import json
import random
import time
from functools import partial
from pathlib import Path
from typing import NamedTuple

import torch
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Subset

from datasets.loading import hold_images, worker_count
from datasets.sampler import SeededItems, StreamSampler, shard
from datasets.transforms import build_transforms, collate
from detection import distributed as ddp
from detection import run_folder
from detection.optim import build_sgd, lr_factor
from detection.signals import ignore_in_worker

# `loss=focal` -> run names like synthetic_focal: the loss class's `name` (losses/focal.py's FocalLoss.name)
OmegaConf.register_new_resolver("loss_name", lambda target: get_class(target).name, replace=True)
# A single run's folder name from its command line (configs/config.yaml's hydra.run.dir).
OmegaConf.register_new_resolver("run_key", run_folder.run_key, replace=True)
# The paper's best alpha for each gamma (Lin et al. 2017, Table 1b), for the gamma_sweep study (studies/specs/followups.yaml).
FOCAL_PAPER_ALPHA = {0: 0.75, 0.1: 0.75, 0.2: 0.75, 0.5: 0.5, 1: 0.25, 2: 0.25, 5: 0.25}


def focal_paper_alpha(gamma) -> float:
    if float(gamma) not in FOCAL_PAPER_ALPHA:
        raise ValueError(f"loss.gamma={gamma}: the paper gives a best alpha only for gamma in {sorted(FOCAL_PAPER_ALPHA)}")
    return FOCAL_PAPER_ALPHA[float(gamma)]


OmegaConf.register_new_resolver("focal_paper_alpha", focal_paper_alpha, replace=True)


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def config(overrides=()) -> DictConfig:
    """The config ``python train.py <overrides>`` runs with (for tools and tests). An option a
    group does not have (``assigner=foo``) is a one-line ValueError naming it and the options."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        try:
            return compose(config_name="config", overrides=list(overrides))
        except MissingConfigException as e:
            raise ValueError(unknown_option(e, overrides)) from None


def unknown_option(error: MissingConfigException, overrides) -> str:
    """Hydra's many-line "Could not find 'assigner/foo'" as one line: the override, the file
    it looked for and the group's options."""
    group, _, name = (error.missing_cfg_file or "").rpartition("/")
    options = sorted(p.stem for p in (CONFIGS / group).glob("*.yaml")) if group else []
    given = next((o for o in overrides if o.lstrip("+~").split("=")[0] == group), f"{group}={name}")
    if not options:
        return str(error).splitlines()[0]
    return f"{given}: there is no configs/{group}/{name}.yaml; expected {group}= one of {', '.join(options)}"


class Runtime(NamedTuple):
    rank: int
    world: int
    device: torch.device
    amp_dtype: torch.dtype | None  # None: full precision


def runtime(cfg: DictConfig) -> Runtime:
    """Joins the process group under torchrun (else a single process); device and precision."""
    wants_cuda = cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())
    rank, world, local_rank = ddp.init_from_env("cuda" if wants_cuda else "cpu")
    device = pick_device(cfg.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return Runtime(rank, world, device, amp_dtype(cfg.amp, device))


def pick_device(spec: str, local_rank: int = 0) -> torch.device:
    if spec == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={spec!r}: CUDA is not available on this machine (use device=cpu or auto)")
    return device


def device_name(device: torch.device) -> str:
    """``"cpu (2 threads)"`` or the card's name (``"NVIDIA H200"``): what a run's time was spent on."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({torch.get_num_threads()} threads)"


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
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


def precision(amp: str, device: torch.device) -> str:
    """``"fp32"``, ``"bf16"`` or ``"fp16"``: what a run's steps compute in on ``device``."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp_dtype(amp, device)]


def dataset(cfg: DictConfig, split: str, augment: bool, **overrides):
    """``split`` ("train" | "val") of ``cfg.dataset``; ``augment`` adds the random flip;
    ``overrides`` replace the split's keys (e.g. ``image_ids``)."""
    d = cfg.dataset
    check_files(d, split)
    return instantiate(d[split], transforms=build_transforms(augment, d.min_size, d.max_size), **overrides)


def check_files(d: DictConfig, split: str) -> None:
    """Raises FileNotFoundError naming the field, the absolute path and what to do when a file
    of a COCO-format dataset is missing. Hydra's own error would wrap it and name a nested key
    (dataset.train.image_ids) and a path relative to wherever the run started. A dataset that
    lives elsewhere (beside the checkout) says so in its config's ``missing_hint``."""
    for field in ("annotations", "images"):  # the order they are read in
        path = d[split].get(field)  # None for generated data (synthetic)
        if path is None or Path(path).exists():
            continue
        where = f"dataset={d.name}: dataset.{split}.{field}={path} not found (looked at {Path(path).resolve()})."
        hint = d.get("missing_hint") or f"Set dataset.root (or dataset.{split}.{field}) to where it is."
        raise FileNotFoundError(f"{where} {hint}")


def datasets(cfg: DictConfig):
    """(train set with augmentation, evaluation set), checked to share their categories.

    ``eval_split=val``: the whole training set, and the val set. ``eval_split=tune``: a
    tuning split carved from the training images (``tune_fraction`` of them, drawn by
    ``tune_seed``) is held out and evaluated on, the rest trained on: settings are chosen
    without ever looking at val.
    """
    if cfg.eval_split not in ("val", "tune"):
        raise ValueError(f"eval_split={cfg.eval_split!r}: expected val or tune")
    if cfg.eval_split == "val":
        train_ds, val_ds = dataset(cfg, "train", augment=True), dataset(cfg, "val", augment=False)
    else:
        ids = dataset(cfg, "train", augment=False).image_ids
        tune = set(tuning_ids(ids, cfg.tune_fraction, cfg.tune_seed))
        train_ds = dataset(cfg, "train", augment=True, image_ids=[i for i in ids if i not in tune])
        val_ds = dataset(cfg, "train", augment=False, image_ids=[i for i in ids if i in tune])
    if val_ds.cat_ids != train_ds.cat_ids:
        raise ValueError(
            f"dataset {cfg.dataset.name}: train and val select different categories ({train_ds.class_names} vs "
            f"{val_ds.class_names}); set dataset.categories explicitly"
        )
    return train_ds, val_ds


def tuning_ids(image_ids: list[int], fraction: float, seed: int) -> list[int]:
    """The tuning split: ``round(fraction * n)`` of the ``n`` training image ids (at least one,
    and one short of all), drawn by ``seed`` from the sorted ids, returned sorted."""
    if not 0 < fraction < 1:
        raise ValueError(f"tune_fraction={fraction!r}: expected a fraction in (0, 1)")
    if len(image_ids) < 2:
        raise ValueError(f"eval_split=tune needs at least 2 training images, got {len(image_ids)}")
    n = min(max(1, round(fraction * len(image_ids))), len(image_ids) - 1)
    return sorted(random.Random(seed).sample(sorted(image_ids), n))


def model(cfg: DictConfig, num_classes: int):
    """The detector of ``cfg.model`` with the classification loss of ``cfg.loss`` and the
    anchor assigner of ``cfg.assigner``."""
    return instantiate(cfg.model, num_classes=num_classes, cls_loss=instantiate(cfg.loss),
                       assigner=instantiate(cfg.assigner))


def optimizer(cfg: DictConfig, net: torch.nn.Module) -> torch.optim.Optimizer:
    o = cfg.optim
    return build_sgd(net, o.lr, o.momentum, o.weight_decay, o.weight_decay_norm, o.nesterov)


def lr_schedule(cfg: DictConfig):
    """iteration -> learning rate."""
    s = cfg.schedule
    factor = partial(lr_factor, max_iters=s.max_iters, warmup_iters=s.warmup_iters, warmup_factor=s.warmup_factor,
                     decay=s.decay, steps=tuple(s.steps), gamma=s.gamma, min_lr_factor=s.min_lr_factor)
    return lambda it: cfg.optim.lr * factor(it)


def train_loader(cfg: DictConfig, ds, start_iter: int, rt: Runtime) -> DataLoader:
    """This rank's share of the seeded sample stream, from iteration ``start_iter`` on: a
    resumed run sees exactly the batches (and flips) of the uninterrupted one. Images are
    decoded once and held in memory when they fit in ``cache_images_mb``."""

    s = cfg.schedule
    if s.batch_size % rt.world:
        raise ValueError(f"schedule.batch_size={s.batch_size} must be divisible by the {rt.world} processes")
    workers = worker_count(cfg.num_workers, rt.device.type)
    hold_images(ds, cfg.cache_images_mb)  # before the workers start: they share the memory
    return DataLoader(
        SeededItems(ds), batch_size=s.batch_size // rt.world, num_workers=workers,
        collate_fn=partial(collate, size_divisible=cfg.dataset.size_divisible, channels_last=cfg.channels_last),
        sampler=StreamSampler(len(ds), cfg.seed, start_iter * s.batch_size, rt.rank, rt.world),
        pin_memory=rt.device.type == "cuda", persistent_workers=False, worker_init_fn=ignore_in_worker,
    )


def eval_loader(cfg: DictConfig, ds, indices=None) -> DataLoader:
    """``ds`` (or its ``indices``) in order, in batches of ``schedule.eval_batch_size``;
    images held in memory as for ``train_loader`` (repeated evaluations decode them once)."""

    workers = worker_count(cfg.num_workers, pick_device(cfg.device).type)
    hold_images(ds, cfg.cache_images_mb)
    return DataLoader(Subset(ds, list(range(len(ds))) if indices is None else list(indices)),
                      batch_size=cfg.schedule.eval_batch_size, num_workers=workers,
                      collate_fn=partial(collate, size_divisible=cfg.dataset.size_divisible,
                                         channels_last=cfg.channels_last), worker_init_fn=ignore_in_worker)


def label_loader(cfg: DictConfig, train_ds, rt: Runtime) -> DataLoader:
    """This rank's share of the training images (those of ``train_ds``) without augmentation,
    in batches of ``schedule.eval_batch_size``, decoded once and not held: what a loss that
    measures the training set's label frequencies counts (``RetinaNet.fit_label_counts``)."""
    ds = dataset(cfg, "train", augment=False, image_ids=list(train_ds.image_ids))
    return DataLoader(Subset(ds, shard(len(ds), rt.rank, rt.world)), batch_size=cfg.schedule.eval_batch_size,
                      num_workers=worker_count(cfg.num_workers, rt.device.type),
                      collate_fn=partial(collate, size_divisible=cfg.dataset.size_divisible,
                                         channels_last=cfg.channels_last))


def eval_shard(cfg: DictConfig, ds, rt: Runtime) -> DataLoader:
    """This rank's share of ``ds`` for evaluation: every world-th image."""
    return eval_loader(cfg, ds, shard(len(ds), rt.rank, rt.world))


class Speed(NamedTuple):
    train: float  # training images/s: forward, loss, backward, SGD step
    eval: float  # evaluation images/s: forward and post-processing


_speeds: dict[str, Speed] = {}


def speed(cfg: DictConfig, steps: int = 3, warmup: int = 1) -> Speed:
    """Images/s of ``cfg``'s model at its batch sizes on this machine: a few training steps and
    evaluation batches on random images of the dataset's size (``min_size`` high, 4:3 up to
    ``max_size``) with 8 random boxes each, so no data is read. The real loop runs at ~0.94
    of the training figure (benchmarks/bench_loop.py). Measured once per process for what
    sets the speed (model, assigner, image size, batch sizes, device, precision, memory format)."""
    s, d = cfg.schedule, cfg.dataset
    key = "\n".join([OmegaConf.to_yaml(cfg.model), OmegaConf.to_yaml(cfg.assigner),
                     str((d.min_size, d.max_size, d.size_divisible, s.batch_size, s.eval_batch_size, cfg.device,
                          cfg.amp, cfg.channels_last))])
    if key in _speeds:
        return _speeds[key]
    device = pick_device(cfg.device)
    amp = amp_dtype(cfg.amp, device)
    generator = torch.Generator().manual_seed(0)
    div = d.size_divisible
    h, w = d.min_size, min(d.max_size, round(d.min_size * 4 / 3))
    h, w = -(-h // div) * div, -(-w // div) * div
    net = model(cfg, num_classes=2).to(device)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    net = net.to(memory_format=memory_format)
    opt = optimizer(cfg, net)
    for group in opt.param_groups:  # the steps of a run's start: its warmup learning rate
        group["lr"] = lr_schedule(cfg)(0)

    def batch(n):
        images = torch.rand(n, 3, h, w, generator=generator).to(device).contiguous(memory_format=memory_format)
        xy = torch.rand(n, 8, 2, generator=generator) * torch.tensor([w, h]) * 0.7
        wh = (torch.rand(n, 8, 2, generator=generator) * 0.25 + 0.05) * torch.tensor([w, h])
        targets = [{"boxes": torch.cat([xy[i], xy[i] + wh[i]], 1).to(device),
                    "labels": torch.randint(2, (8,), generator=generator).to(device),
                    "ignore_boxes": torch.zeros(0, 4, device=device), "size": (h, w), "orig_size": (h, w)}
                   for i in range(n)]
        return images, targets

    def timed(fn, batch_size, n) -> float:
        held = [batch(batch_size) for _ in range(warmup + n)]
        for images, targets in held[:warmup]:
            fn(images, targets)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for images, targets in held[warmup:]:
            fn(images, targets)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return n * batch_size / (time.perf_counter() - t0)

    def train_step(images, targets):
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss = net(images, targets)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.no_grad()
    def eval_step(images, targets):
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            net(images, targets)

    net.train()
    train_ips = timed(train_step, s.batch_size, steps)
    net.eval()
    _speeds[key] = Speed(train_ips, timed(eval_step, s.eval_batch_size, max(1, steps // 2)))
    return _speeds[key]


class Estimate(NamedTuple):
    train_images: int
    evaluations: int
    seconds: float  # the training's
    job_seconds: float  # the whole job's: training, start-up, evaluations, error analysis


# What a job costs beyond its training steps on this machine, measured once by
# benchmarks/bench_job_overheads.py: {"per_job_s", "per_evaluation_s", "measured", "command"}.
JOB_OVERHEADS = CONFIGS.parent / "benchmarks" / "job_overheads.json"


def job_overheads() -> tuple[float, float]:
    """(seconds per job, seconds per evaluation) from JOB_OVERHEADS; (0, 0) when missing."""
    try:
        measured = json.loads(JOB_OVERHEADS.read_text())
        return float(measured["per_job_s"]), float(measured["per_evaluation_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0, 0.0


def estimate(cfg: DictConfig, speed: Speed, start_iter: int = 0) -> Estimate:
    """The time of a run of ``cfg`` from ``start_iter`` at ``speed``: its training and, with the
    per-job and per-evaluation costs measured here (``job_overheads``), the whole job; and how
    many evaluations it makes (every ``schedule.eval_every`` and at the end)."""
    s = cfg.schedule
    iters = max(0, s.max_iters - start_iter) if not cfg.eval_only else 0
    evals = int(cfg.eval_only or cfg.eval_at_end)
    if s.eval_every and not cfg.eval_only:
        evals += len([i for i in range(start_iter + 1, s.max_iters) if i % s.eval_every == 0])
    train_s = iters * s.batch_size / speed.train
    per_job, per_eval = job_overheads()
    return Estimate(iters * s.batch_size, evals, train_s, train_s + per_job + evals * per_eval)


def duration(seconds: float) -> str:
    """``3725`` -> ``"1 h 02 min"``; under an hour ``"12 min"``, under a minute ``"40 s"``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
