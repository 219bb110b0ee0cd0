"""Builds a run's parts from a composed config: with train.py, the only code that reads it.

train.py and the tools (``tools.anchor_stats``, the benchmarks) build their dataset, model,
optimizer, schedule and loaders here, so a config means the same thing everywhere. Everything
built takes plain kwargs (``_target_`` + ``hydra.utils.instantiate``): below this module no
code sees a config.

Importing this module registers the resolvers the configs use (``${loss_name:...}``,
``${focal_paper_alpha:...}``).
"""

from functools import partial
from pathlib import Path
from typing import NamedTuple

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Subset

from datasets.sampler import SeededItems, StreamSampler, shard
from datasets.transforms import build_transforms, collate
from detection import distributed as ddp
from detection.optim import build_sgd, lr_factor

# `loss=focal` -> run names like synthetic_focal (from the loss's module name)
OmegaConf.register_new_resolver("loss_name", lambda target: target.split(".")[-2], replace=True)
# The paper's best alpha for each gamma (Lin et al. 2017, Table 1b), for experiment=gamma_sweep.
FOCAL_PAPER_ALPHA = {0: 0.75, 0.1: 0.75, 0.2: 0.75, 0.5: 0.5, 1: 0.25, 2: 0.25, 5: 0.25}


def focal_paper_alpha(gamma) -> float:
    if float(gamma) not in FOCAL_PAPER_ALPHA:
        raise ValueError(f"loss.gamma={gamma}: the paper gives a best alpha only for gamma in {sorted(FOCAL_PAPER_ALPHA)}")
    return FOCAL_PAPER_ALPHA[float(gamma)]


OmegaConf.register_new_resolver("focal_paper_alpha", focal_paper_alpha, replace=True)


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def config(overrides=()) -> DictConfig:
    """The config ``python train.py <overrides>`` runs with (for tools and tests)."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


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


def dataset(cfg: DictConfig, split: str, augment: bool):
    """``split`` ("train" | "val") of ``cfg.dataset``; ``augment`` adds the random flip."""
    d = cfg.dataset
    check_files(d, split)
    return instantiate(d[split], transforms=build_transforms(augment, d.min_size, d.max_size))


def check_files(d: DictConfig, split: str) -> None:
    """Raises FileNotFoundError naming the field, the absolute path and what to do when a file
    of a COCO-format dataset is missing. Hydra's own error would wrap it and name a nested key
    (dataset.train.image_ids) and a path relative to wherever the run started."""
    for field in ("annotations", "images"):  # the order they are read in
        path = d[split].get(field)  # None for generated data (synthetic)
        if path is None or Path(path).exists():
            continue
        where = f"dataset={d.name}: dataset.{split}.{field}={path} not found (looked at {Path(path).resolve()})."
        if d.name == "coco128":
            raise FileNotFoundError(
                f"{where} coco128 is optional real data (128 COCO train2017 images) that lives beside the "
                "checkout, at ../shared/data/coco128. Elsewhere set dataset.root=<folder with train2017/ and "
                "annotations/instances_train2017.json>, or use dataset=coco_sample (8 of its images, shipped "
                "in tests/data/coco_sample)."
            )
        raise FileNotFoundError(f"{where} Set dataset.root (or dataset.{split}.{field}) to where it is.")


def datasets(cfg: DictConfig):
    """(train set with augmentation, val set), checked to share their categories."""
    train_ds, val_ds = dataset(cfg, "train", augment=True), dataset(cfg, "val", augment=False)
    if val_ds.cat_ids != train_ds.cat_ids:
        raise ValueError(
            f"dataset {cfg.dataset.name}: train and val select different categories ({train_ds.class_names} vs "
            f"{val_ds.class_names}); set dataset.categories explicitly"
        )
    return train_ds, val_ds


def model(cfg: DictConfig, num_classes: int):
    """The detector of ``cfg.model`` with the classification loss of ``cfg.loss``."""
    return instantiate(cfg.model, num_classes=num_classes, cls_loss=instantiate(cfg.loss))


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
    resumed run sees exactly the batches (and flips) of the uninterrupted one."""
    s = cfg.schedule
    if s.batch_size % rt.world:
        raise ValueError(f"schedule.batch_size={s.batch_size} must be divisible by the {rt.world} processes")
    return DataLoader(
        SeededItems(ds), batch_size=s.batch_size // rt.world, num_workers=cfg.num_workers,
        collate_fn=partial(collate, size_divisible=cfg.dataset.size_divisible),
        sampler=StreamSampler(len(ds), cfg.seed, start_iter * s.batch_size, rt.rank, rt.world),
        pin_memory=rt.device.type == "cuda", persistent_workers=False,
    )


def eval_loader(cfg: DictConfig, ds, indices=None) -> DataLoader:
    """``ds`` (or its ``indices``) in order, in batches of ``schedule.eval_batch_size``."""
    return DataLoader(Subset(ds, list(range(len(ds))) if indices is None else list(indices)),
                      batch_size=cfg.schedule.eval_batch_size, num_workers=cfg.num_workers,
                      collate_fn=partial(collate, size_divisible=cfg.dataset.size_divisible))


def eval_shard(cfg: DictConfig, ds, rt: Runtime) -> DataLoader:
    """This rank's share of ``ds`` for evaluation: every world-th image."""
    return eval_loader(cfg, ds, shard(len(ds), rt.rank, rt.world))
