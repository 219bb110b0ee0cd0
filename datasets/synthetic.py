"""The embedded "shapes" dataset: a deterministic, COCO-format synthetic detection dataset.

Each image has a textured background (two-colour gradient, low-frequency blotches, pixel
noise), unlabeled distractors drawn under the objects as hard negatives (lines, shape
outlines, arcs, pie slices), 2-12 filled shapes of K classes in random colours, and in a
fixed fraction of images a dense cluster of small shapes annotated as one ``iscrowd`` region.
A fixed fraction of images has no object at all. Objects may overlap, but none is more than
half covered by the ones drawn after it, so every box is learnable.

The data is written once under ``<root>/shapes-<hash of the parameters>/`` (``train/``,
``val/``, ``instances_train.json``, ``instances_val.json``, ``params.json``) and reused. It
is built in a temporary folder renamed into place, under a file lock, so several processes
of a sweep can ask for it at once and a crash never leaves a half-written dataset.
"""

import contextlib
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from datasets.coco import CocoDetection
from datasets.shapes import SHAPES, render_image

# Bump when this file or datasets/shapes.py changes the output: old caches must not be reused.
VERSION = 1

DEFAULTS = {
    "seed": 0,
    "image_size": 192,
    "num_train": 2000,
    "num_val": 300,
    "num_classes": 6,
    "objects_per_image": [2, 12],
    "object_size": [10, 80],
    "distractors_per_image": [0, 4],
    "empty_fraction": 0.05,
    "crowd_fraction": 0.05,
    "jpeg_quality": 95,
}


def _plain(value):
    """DictConfig/ListConfig/tuples -> plain dicts and lists (for hashing and JSON)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    return value


def check_params(**params) -> dict:
    """Generator parameters (defaults filled in) checked -> a plain dict."""
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise ValueError(
            f"unknown synthetic generator parameter(s) {unknown}; valid: {', '.join(DEFAULTS)}"
        )
    p = {**DEFAULTS, **_plain(params)}

    def bad(key, expected):
        return ValueError(f"synthetic generator parameter {key}={p[key]!r}: expected {expected}")

    for key in ("seed", "image_size", "num_train", "num_val", "num_classes", "jpeg_quality"):
        if isinstance(p[key], bool) or not isinstance(p[key], int) or p[key] < 0:
            raise bad(key, "a non-negative int")
    for key in ("objects_per_image", "object_size", "distractors_per_image"):
        v = p[key]
        if not (
            isinstance(v, list)
            and len(v) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
            and 0 <= v[0] <= v[1]
        ):
            raise bad(key, "[low, high] ints with 0 <= low <= high")
    for key in ("empty_fraction", "crowd_fraction"):
        if not (isinstance(p[key], (int, float)) and 0 <= p[key] <= 1):
            raise bad(key, "a fraction in [0, 1]")
        p[key] = float(p[key])
    if not 1 <= p["num_classes"] <= len(SHAPES):
        raise bad("num_classes", f"1..{len(SHAPES)} (shapes: {', '.join(SHAPES)})")
    if p["image_size"] < 32:
        raise bad("image_size", "at least 32 px")
    if not (2 <= p["object_size"][0] and p["object_size"][1] <= p["image_size"]):
        raise bad("object_size", f"sides within 2..image_size={p['image_size']} px")
    if not 1 <= p["jpeg_quality"] <= 100:
        raise bad("jpeg_quality", "1..100")
    return p


def dataset_key(params: dict) -> str:
    """Short hash naming the cache folder of a parameter set (and of this code's VERSION)."""
    blob = json.dumps({"version": VERSION, **params}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _generate_split(p, split, out, progress):
    n = p[f"num_{split}"]
    code = {"train": 0, "val": 1}[split]
    n_empty = math.ceil(p["empty_fraction"] * n)
    n_crowd = math.ceil(p["crowd_fraction"] * n)
    if n_empty + n_crowd > n:
        raise ValueError(
            f"synthetic generator: empty_fraction={p['empty_fraction']} and crowd_fraction="
            f"{p['crowd_fraction']} ask for {n_empty} + {n_crowd} of {n} {split} images; expected at most {n}"
        )
    order = np.random.default_rng([p["seed"], code]).permutation(n)
    kinds = ["normal"] * n
    for i in order[:n_empty]:
        kinds[i] = "empty"
    for i in order[n_empty : n_empty + n_crowd]:
        kinds[i] = "crowd"
    (out / split).mkdir()
    images, annotations = [], []
    for i in range(n):
        # One stream per image: an image depends only on (seed, split, index).
        rng = np.random.default_rng([p["seed"], code, i])
        image, objects = render_image(p, rng, kinds[i])
        name = f"{i:06d}.jpg"
        # 4:4:4 chroma at high quality: colour edges of small shapes stay sharp.
        image.save(out / split / name, quality=p["jpeg_quality"], subsampling=0)
        images.append(
            {"id": i + 1, "file_name": name, "width": p["image_size"], "height": p["image_size"]}
        )
        for cls, (x, y, w, h), crowd in objects:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": cls + 1,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": crowd,
                    "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
                }
            )
        progress.update()
    doc = {
        "info": {
            "description": f"anchorbg synthetic shapes ({split})",
            "version": VERSION,
            "params": p,
        },
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": c + 1, "name": SHAPES[c], "supercategory": "shape"}
            for c in range(p["num_classes"])
        ],
    }
    (out / f"instances_{split}.json").write_text(json.dumps(doc, separators=(",", ":")))


def generate(out_dir, progress=True, **params) -> Path:
    """Writes the dataset into ``out_dir`` (which must not exist yet); returns it."""
    p = check_params(**params)
    out = Path(out_dir)
    out.mkdir(parents=True)
    with tqdm(
        total=p["num_train"] + p["num_val"],
        desc=f"generating synthetic dataset {out.name}",
        disable=not (progress and sys.stderr.isatty()),  # off a terminal: no carriage-return redraws
    ) as bar:
        for split in ("train", "val"):
            _generate_split(p, split, out, bar)
    (out / "params.json").write_text(json.dumps(p, indent=1))
    return out


@contextlib.contextmanager
def _lock(path: Path):
    """An exclusive lock file, so concurrent processes generate a dataset once."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): the atomic rename alone keeps the cache sound
        yield
        return
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_synthetic(root=".cache/synthetic", progress=True, **params) -> Path:
    """The dataset folder for these parameters, generated first if it is not cached yet."""
    p = check_params(**params)
    root = Path(root)
    final = root / f"shapes-{dataset_key(p)}"
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    with _lock(root / f".{final.name}.lock"):
        if final.is_dir():  # another process finished it while we waited
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=root))
        try:
            generate(tmp / final.name, progress=progress, **p)
            os.rename(tmp / final.name, final)  # atomic: the folder appears complete or not at all
        except OSError:
            if not final.is_dir():
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def synthetic_coco(split, generator=None, root=".cache/synthetic", **coco_kwargs) -> CocoDetection:
    """Hydra ``_target_``: the "train" or "val" split of the synthetic dataset (generated on
    first use) as a ``CocoDetection``; ``coco_kwargs`` go to ``CocoDetection``."""
    if split not in ("train", "val"):
        raise ValueError(f"split is {split!r}, expected 'train' or 'val'")
    path = ensure_synthetic(root=root, **_plain(generator or {}))
    return CocoDetection(
        images=path / split, annotations=path / f"instances_{split}.json", **coco_kwargs
    )
