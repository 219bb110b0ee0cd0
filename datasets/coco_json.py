"""Reading COCO-format files: the instances JSON, image-id lists and image files.

Every check here exists so that bad input fails at construction with a message naming the
file, the field or id, and what was expected -- never a bare KeyError mid-epoch.
"""

import contextlib
import io
import json
import math
import random
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from pycocotools.coco import COCO
from torch import Tensor

try:  # deprecated in torchvision 0.29 (moving to TorchCodec); PIL takes over once it is gone
    from torchvision.io import ImageReadMode, decode_image, read_file
except ImportError:  # pragma: no cover
    decode_image = None


def first_values(values, n: int = 10) -> str:
    """The first ``n`` of ``values`` for an error message: ``1, 2, ... (12 in all)``."""
    values = list(values)
    more = f", ... ({len(values)} in all)" if len(values) > n else ""
    return ", ".join(repr(v) for v in values[:n]) + more


def _require(path, where: str, entry, fields: dict) -> None:
    """Raises if ``entry`` (a dict) lacks a field or holds one of the wrong type."""
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: {where} is {type(entry).__name__}, expected an object")
    for name, types in fields.items():
        if name not in entry:
            raise ValueError(f"{path}: {where} has no field '{name}'")
        value = entry[name]
        # bool is an int subclass; an id of True is a broken file, not an id.
        if isinstance(value, bool) or not isinstance(value, types):
            expected = " or ".join(
                t.__name__ for t in (types if isinstance(types, tuple) else (types,))
            )
            raise ValueError(f"{path}: {where} field '{name}' is {value!r}, expected {expected}")


def load_coco_json(path) -> COCO:
    """Loads and checks a COCO instances file; returns a pycocotools ``COCO`` object.

    The annotations are kept as they are in the file (crowd flags and categories outside any
    subset included) because evaluation runs COCOeval on this object. Only fields COCOeval
    needs and some COCO-format files omit are filled in: ``iscrowd`` (0), ``area`` (box
    area) and ``id`` (numbered after the largest id).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            # The absolute path too: a relative one is read from wherever the run started.
            f"annotation file not found: {path} (looked at {path.resolve()}; expected a COCO instances JSON)"
        )
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e}); expected a COCO instances file") from e
    missing = [
        k
        for k in ("images", "annotations", "categories")
        if not isinstance(data, dict) or k not in data
    ]
    if missing:
        raise ValueError(
            f"{path}: not a COCO instances file: no top-level field(s) {', '.join(map(repr, missing))} "
            "(expected 'images', 'annotations' and 'categories' lists)"
        )
    for key in ("images", "annotations", "categories"):
        if not isinstance(data[key], list):
            raise ValueError(
                f"{path}: field '{key}' is {type(data[key]).__name__}, expected a list"
            )

    cat_ids, img_ids = set(), set()
    for i, cat in enumerate(data["categories"]):
        _require(path, f"categories[{i}]", cat, {"id": int, "name": str})
        if cat["id"] in cat_ids:
            raise ValueError(f"{path}: categories[{i}] repeats category id {cat['id']}")
        cat_ids.add(cat["id"])
    for i, img in enumerate(data["images"]):
        _require(
            path, f"images[{i}]", img, {"id": int, "file_name": str, "width": int, "height": int}
        )
        if img["id"] in img_ids:
            raise ValueError(f"{path}: images[{i}] repeats image id {img['id']}")
        img_ids.add(img["id"])

    ann_ids = set()
    for i, ann in enumerate(data["annotations"]):
        _require(
            path, f"annotations[{i}]", ann, {"image_id": int, "category_id": int, "bbox": list}
        )
        where = f"annotations[{i}] (id {ann.get('id')})"
        box = ann["bbox"]
        if len(box) != 4 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in box
        ):
            raise ValueError(
                f"{path}: {where} has bbox {box!r}, expected 4 finite numbers [x, y, w, h]"
            )
        if box[2] < 0 or box[3] < 0:
            raise ValueError(
                f"{path}: {where} has bbox {box!r}: a negative width or height (expected "
                "[x, y, w, h] with w, h >= 0)"
            )
        if ann["image_id"] not in img_ids:
            raise ValueError(
                f"{path}: {where} refers to image_id {ann['image_id']}, which is not in 'images'"
            )
        if ann["category_id"] not in cat_ids:
            raise ValueError(
                f"{path}: {where} refers to category_id {ann['category_id']}, which is not in "
                f"'categories' (ids: {first_values(sorted(cat_ids), 20)})"
            )
        if "id" in ann:
            if ann["id"] in ann_ids:
                raise ValueError(f"{path}: {where} repeats annotation id {ann['id']}")
            ann_ids.add(ann["id"])

    next_id = max(ann_ids, default=0) + 1
    for ann in data["annotations"]:
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", float(ann["bbox"][2] * ann["bbox"][3]))
        if "id" not in ann:
            ann["id"] = next_id
            next_id += 1

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints "creating index..."
        coco.createIndex()
    return coco


def read_image_ids(spec, source) -> list[int]:
    """``image_ids`` as given (a list of ints, or a file of ids) -> list of ints.

    A file holds a JSON list, or ids separated by whitespace or commas (``#`` starts a
    comment). ``source`` names the annotation file in error messages.
    """
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(
                f"image_ids file not found: {path} (expected a list of image ids)"
            )
        text = path.read_text(encoding="utf-8")
        if text.lstrip().startswith("["):
            try:
                values = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: not a valid JSON list of image ids ({e})") from e
        else:
            values = [
                tok
                for line in text.splitlines()
                for tok in line.split("#")[0].replace(",", " ").split()
            ]
        where = str(path)
    elif isinstance(spec, Sequence):
        values, where = list(spec), "image_ids"
    else:
        raise ValueError(f"image_ids is {spec!r}, expected a list of ints or a file path")
    ids = []
    for v in values:
        try:
            if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
                raise ValueError
            ids.append(int(v))
        except (TypeError, ValueError):
            raise ValueError(f"{where}: image id {v!r} is not an integer") from None
    dup = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dup:
        raise ValueError(f"{where}: image ids repeated: {first_values(dup)}")
    return ids


def split_image_ids(annotations, split: str, num_val: int, seed: int = 0) -> list[int]:
    """Deterministic, disjoint train/val split of the images of a COCO file.

    ``num_val`` images drawn by ``seed`` (from the ids in sorted order, so the split does not
    depend on the file's order) form "val"; the rest form "train". Both are returned sorted.
    Meant as a nested Hydra ``_target_`` giving ``CocoDetection(image_ids=...)``.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split is {split!r}, expected 'train' or 'val'")
    ids = sorted(img["id"] for img in load_coco_json(annotations).dataset["images"])
    if not 0 < num_val < len(ids):
        raise ValueError(
            f"num_val is {num_val}, expected 1..{len(ids) - 1} for the {len(ids)} images of {annotations}"
        )
    val = set(random.Random(seed).sample(ids, num_val))
    return [i for i in ids if (i in val) == (split == "val")]


def read_image(path: Path) -> Tensor:
    """Decodes an image file -> uint8 Tensor[3, H, W] (RGB).

    torchvision.io (libjpeg-turbo / libpng) decodes the usual formats with no PIL object in
    between, about 1.5x faster than PIL + conversion on coco128; PIL is the fallback for the
    formats it does not read (BMP, TIFF, ...) and for torchvisions without image decoding.
    Raises FileNotFoundError, or RuntimeError/OSError for a corrupt file.
    """
    if decode_image is not None:
        with warnings.catch_warnings():
            # The deprecation is known (see the import); repeating it per image is noise.
            warnings.simplefilter("ignore", DeprecationWarning)
            data = read_file(str(path))
            try:
                return decode_image(data, mode=ImageReadMode.RGB)
            except RuntimeError as e:
                if "Unsupported image file" not in str(e):
                    raise
    from PIL import Image

    with Image.open(path) as im:
        return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).contiguous()
