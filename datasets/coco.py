"""A COCO-format detection dataset with deliberate subsets.

Choose a subset by category names, by count (a seeded random pick) or by an id list. Objects
of categories left out of the subset are handled by the ``others`` policy:

- ``ignore`` (default): their boxes become ignore regions. An unlabeled person in a
  "cars only" subset is still a person; teaching the anchors on it that it is background
  would bias exactly the background treatment this project studies.
- ``background``: they are dropped, so whatever they cover is background.
- ``drop_images``: images that contain any of them are removed from the subset.

Crowd boxes (``iscrowd``) of the chosen categories are ignore regions, never background and
never dropped (crowd boxes of left-out categories follow ``others`` like their other boxes). Images with no target box are kept (pure background is what the study is
about) unless ``drop_empty``.

Files whose crowd flags were lost (boxes converted from YOLO labels, e.g. coco_person) can
recover them with ``crowd_min_centres``: a box that contains the centres of at least that
many other boxes of its category is taken for a crowd region (``implied_crowds``).
"""

import random
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from datasets.coco_json import first_values, load_coco_json, read_image, read_image_ids

OTHERS = ("ignore", "background", "drop_images")
ON_BAD_IMAGE = ("error", "skip")


def implied_crowds(boxes: np.ndarray, min_centres: int, min_aspect: float | None = None) -> np.ndarray:
    """Which of one image's boxes of one category look like crowd regions: those that contain
    the centres of at least ``min_centres`` other boxes (and, with ``min_aspect``, are at
    least that many times as wide as they are high).

    A COCO crowd region is one box around a group whose members are also boxed one by one, so
    it holds their centres; a box of one object rarely holds the centres of several others of
    its kind. When it does, it is mostly a large object in front of small ones; for upright
    objects (people) ``min_aspect=1`` tells those (taller than wide) from the groups (a row
    of people is wider than high). Borders count as inside.

    Args:
        boxes: float array[M, 4], xyxy pixels.
        min_centres: int >= 1.
        min_aspect: None, or a number > 0: width / height at least this.

    Returns:
        bool array[M].

    Example: a 0..100 box around three 10 px boxes, a fourth box elsewhere; with
    ``min_centres=3`` only the big one is a crowd region, and with ``min_aspect=1.5`` none::

        >>> b = np.array([[0, 0, 100, 100], [10, 10, 20, 20], [40, 40, 50, 50],
        ...               [70, 70, 80, 80], [200, 0, 210, 10]], dtype=np.float32)
        >>> implied_crowds(b, 3).tolist()
        [True, False, False, False, False]
        >>> implied_crowds(b, 3, min_aspect=1.5).tolist()
        [False, False, False, False, False]
    """
    if isinstance(min_centres, bool) or not isinstance(min_centres, int) or min_centres < 1:
        raise ValueError(f"min_centres is {min_centres!r}, expected an int >= 1")
    if min_aspect is not None and (
        isinstance(min_aspect, bool) or not isinstance(min_aspect, (int, float)) or not min_aspect > 0
    ):
        raise ValueError(f"min_aspect is {min_aspect!r}, expected a number > 0 (width / height) or None")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2  # (M,)
    inside = (
        (boxes[:, None, 0] <= cx[None]) & (cx[None] <= boxes[:, None, 2])
        & (boxes[:, None, 1] <= cy[None]) & (cy[None] <= boxes[:, None, 3])
    )  # (M, M): box i holds the centre of box j
    np.fill_diagonal(inside, False)
    crowd = inside.sum(1) >= min_centres
    if min_aspect is not None:
        crowd &= boxes[:, 2] - boxes[:, 0] >= min_aspect * (boxes[:, 3] - boxes[:, 1])
    return crowd


def _describe(image_ids) -> str:
    """image_ids for an error message: a file name, or the first few ids of a list."""
    if image_ids is None or isinstance(image_ids, (str, Path)):
        return repr(image_ids)
    return f"[{first_values(image_ids)}]"


class CocoDetection(Dataset):
    """Images and detection targets of a COCO instances file.

    Item ``i`` is ``(image, target)``, or ``None`` for an unreadable image under
    ``on_bad_image="skip"`` (``transforms.collate`` drops it):

    - image: float32 Tensor[3, H, W] in [0, 1] (before normalization).
    - target: ``boxes`` Tensor[M, 4] float32 xyxy pixels, ``labels`` Tensor[M] int64 in
      0..K-1, ``ignore_boxes`` Tensor[Q, 4] float32 xyxy, ``image_id`` int, ``orig_size``
      (h, w); transforms may change boxes and add ``size``.

    Args:
        images: folder holding the files named by ``images[].file_name``.
        annotations: the instances JSON.
        categories: names of the target categories (label order = this order); None: all,
            in category-id order.
        max_images: keep at most this many images, picked at random with ``seed`` (after the
            other filters; dataset order is kept).
        image_ids: a list of image ids, or a file of ids (JSON list or one per line).
        others: ``ignore | background | drop_images`` for objects of other categories.
        drop_empty: remove images with no target box.
        min_box_size: boxes narrower or shorter than this (in pixels, after clipping to the
            image) are dropped, with one warning that counts them.
        on_bad_image: ``error | skip`` for missing, corrupt or wrongly sized image files.
        crowd_min_centres: None, or an int: a box of a chosen category that contains the
            centres of at least this many other non-crowd boxes of its category (in the file,
            before ``min_box_size``) is marked ``iscrowd`` in ``coco`` and so is an ignore
            region in training and a crowd region in COCOeval (``implied_crowds``). Marked
            annotations also get ``"implied_crowd": True``; ``implied_crowd_ids`` lists them.
        crowd_min_aspect: None, or a number: with ``crowd_min_centres``, only boxes at least
            this many times as wide as high are crowd regions.
        allow_no_annotations: a selection holding no box of the chosen categories is an
            error (naming the file and the categories) unless this is true (a split meant
            to be background only).
        transforms: callable ``(image, target) -> (image, target)``.

    Attributes: ``num_classes`` (K), ``class_names``, ``cat_ids`` (COCO category id of each
    label), ``image_ids`` (selected, dataset order), ``coco`` (pycocotools COCO holding the
    file's original annotations, for COCOeval), ``skipped`` (images skipped in this process),
    ``cached_mb`` (decoded images held in memory by ``cache_images``).
    """

    def __init__(
        self,
        images,
        annotations,
        categories=None,
        max_images=None,
        image_ids=None,
        seed=0,
        others="ignore",
        drop_empty=False,
        min_box_size=1.0,
        on_bad_image="error",
        crowd_min_centres=None,
        crowd_min_aspect=None,
        allow_no_annotations=False,
        transforms=None,
    ):
        if others not in OTHERS:
            raise ValueError(f"others is {others!r}, expected one of {', '.join(OTHERS)}")
        if on_bad_image not in ON_BAD_IMAGE:
            raise ValueError(
                f"on_bad_image is {on_bad_image!r}, expected one of {', '.join(ON_BAD_IMAGE)}"
            )
        if max_images is not None and (
            isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 0
        ):
            raise ValueError(f"max_images is {max_images!r}, expected a non-negative int or None")
        if (
            isinstance(min_box_size, bool)
            or not isinstance(min_box_size, (int, float))
            or min_box_size < 0
        ):
            raise ValueError(f"min_box_size is {min_box_size!r}, expected a number of pixels >= 0")
        self.images_dir = Path(images)
        self.annotations = Path(annotations)
        if not self.images_dir.is_dir():
            raise FileNotFoundError(
                f"image folder not found: {self.images_dir} (expected the folder of the images "
                f"listed in {self.annotations})"
            )
        self.coco = load_coco_json(self.annotations)
        if crowd_min_centres is not None and (
            isinstance(crowd_min_centres, bool) or not isinstance(crowd_min_centres, int) or crowd_min_centres < 1
        ):
            raise ValueError(f"crowd_min_centres is {crowd_min_centres!r}, expected an int >= 1 or None")
        if crowd_min_aspect is not None and (
            isinstance(crowd_min_aspect, bool) or not isinstance(crowd_min_aspect, (int, float))
            or not crowd_min_aspect > 0
        ):
            raise ValueError(
                f"crowd_min_aspect is {crowd_min_aspect!r}, expected a number > 0 (width / height) or None"
            )
        if crowd_min_aspect is not None and crowd_min_centres is None:
            raise ValueError(
                f"crowd_min_aspect is {crowd_min_aspect!r} but crowd_min_centres is None: the aspect only "
                "narrows the centres rule; set crowd_min_centres too"
            )
        self.on_bad_image = on_bad_image
        self.transforms = transforms
        self.skipped = 0
        self._pixels = None  # cache_images(): all images, uint8, one buffer

        cats = sorted(self.coco.dataset["categories"], key=lambda c: c["id"])
        chosen = cats if categories is None else self._pick_categories(cats, categories)
        self.cat_ids = [c["id"] for c in chosen]
        self.class_names = [c["name"] for c in chosen]
        self.num_classes = len(chosen)
        label_of = {cid: i for i, cid in enumerate(self.cat_ids)}
        self.implied_crowd_ids = (
            [] if crowd_min_centres is None
            else self._mark_implied_crowds(crowd_min_centres, crowd_min_aspect)
        )

        order = [img["id"] for img in self.coco.dataset["images"]]
        if image_ids is not None:
            wanted = read_image_ids(image_ids, self.annotations)
            unknown = [i for i in wanted if i not in self.coco.imgs]
            if unknown:
                raise ValueError(f"{self.annotations}: image_ids not in 'images': {first_values(unknown)}")
            order = wanted

        self._targets, small = {}, {}
        kept = []
        for img_id in order:
            boxes, labels, ignore, n_small, has_other = self._image_target(
                img_id, label_of, min_box_size, others
            )
            if others == "drop_images" and has_other:
                continue
            if drop_empty and len(boxes) == 0:
                continue
            kept.append(img_id)
            self._targets[img_id] = (boxes, labels, ignore)
            small[img_id] = n_small
        if max_images is not None and max_images < len(kept):
            pick = sorted(random.Random(seed).sample(range(len(kept)), max_images))
            kept = [kept[i] for i in pick]
        self.image_ids = self._check_files(kept)
        if not self.image_ids:
            raise ValueError(
                f"{self.annotations}: the subset selects no images (categories={categories!r}, "
                f"max_images={max_images!r}, image_ids={_describe(image_ids)}, others={others!r}, "
                f"drop_empty={drop_empty!r}); expected at least one"
            )
        self._targets = {i: self._targets[i] for i in self.image_ids}
        if not allow_no_annotations and not any(len(t[1]) for t in self._targets.values()):
            raise ValueError(
                f"{self.annotations}: the {len(self.image_ids)} selected images hold no box of the "
                f"categories {self.class_names} (after min_box_size={min_box_size}): nothing to learn "
                "or to score (every AP would be -1). Set dataset.allow_no_annotations=true if a split "
                "without objects is meant (e.g. a background-only set)"
            )
        n_small = sum(small[i] for i in self.image_ids)
        if n_small:
            warnings.warn(
                f"{self.annotations}: dropped {n_small} boxes smaller than min_box_size={min_box_size} px "
                "(width or height) in the selected images",
                stacklevel=2,
            )

    def _pick_categories(self, cats, names):
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, Sequence) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"categories is {names!r}, expected a list of category names")
        by_name = {c["name"]: c for c in cats}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ValueError(
                f"{self.annotations}: unknown categories {unknown}; valid names: {', '.join(sorted(by_name))}"
            )
        if not names:
            raise ValueError(
                "categories is empty, expected at least one category name (or null for all)"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"categories {list(names)} repeats a name")
        return [by_name[n] for n in names]

    def _mark_implied_crowds(self, min_centres: int, min_aspect) -> list[int]:
        """Marks the implied crowd regions of the chosen categories ``iscrowd`` in ``coco``
        (every image of the file: evaluation reads the same object); returns their ids."""
        marked = []
        chosen = set(self.cat_ids)
        for anns in self.coco.imgToAnns.values():
            by_cat = {}
            for ann in anns:
                if ann["category_id"] in chosen and not ann["iscrowd"]:
                    by_cat.setdefault(ann["category_id"], []).append(ann)
            for group in by_cat.values():
                xywh = np.array([a["bbox"] for a in group], dtype=np.float64)  # (M, 4)
                xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
                for ann, crowd in zip(group, implied_crowds(xyxy, min_centres, min_aspect)):
                    if crowd:
                        ann["iscrowd"], ann["implied_crowd"] = 1, True
                        marked.append(ann["id"])
        return sorted(marked)

    def _image_target(self, img_id, label_of, min_box_size, others):
        """Boxes, labels and ignore regions of one image, from its annotations."""
        info = self.coco.imgs[img_id]
        w, h = info["width"], info["height"]
        boxes, labels, ignore = [], [], []
        n_small, has_other = 0, False
        for ann in self.coco.imgToAnns[img_id]:
            x, y, bw, bh = ann["bbox"]
            # Clip to the image: real COCO boxes overshoot the border by a pixel at times.
            x1, y1 = min(max(x, 0.0), w), min(max(y, 0.0), h)
            x2, y2 = min(max(x + bw, 0.0), w), min(max(y + bh, 0.0), h)
            label = label_of.get(ann["category_id"])
            if label is None:
                has_other = True
                if others == "background":
                    continue
            # `not >=` also catches width or height <= 0 when min_box_size is 0.
            if not (x2 - x1 >= min_box_size and y2 - y1 >= min_box_size and x2 > x1 and y2 > y1):
                n_small += 1
                continue
            if label is None or ann["iscrowd"]:
                ignore.append((x1, y1, x2, y2))
            else:
                boxes.append((x1, y1, x2, y2))
                labels.append(label)
        return (
            np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            np.asarray(labels, dtype=np.int64),
            np.asarray(ignore, dtype=np.float32).reshape(-1, 4),
            n_small,
            has_other,
        )

    def _check_files(self, img_ids):
        """Missing image files: an error, or (on_bad_image="skip") left out and counted."""
        missing = [
            i for i in img_ids if not (self.images_dir / self.coco.imgs[i]["file_name"]).is_file()
        ]
        if not missing:
            return img_ids
        first = self.images_dir / self.coco.imgs[missing[0]]["file_name"]
        if self.on_bad_image == "error":
            raise FileNotFoundError(
                f"image file not found: {first} (image id {missing[0]} in {self.annotations}); "
                f"{len(missing)} of the selected images are missing"
            )
        self.skipped += len(missing)
        warnings.warn(
            f"skipped {len(missing)} images whose files are missing, e.g. {first}", stacklevel=3
        )
        gone = set(missing)
        return [i for i in img_ids if i not in gone]

    def __len__(self):
        return len(self.image_ids)

    def target(self, index: int) -> dict:
        """The target of item ``index`` before transforms, without reading the image."""
        img_id = self.image_ids[index]
        info = self.coco.imgs[img_id]
        boxes, labels, ignore = self._targets[img_id]
        return {
            "boxes": torch.from_numpy(boxes.copy()),
            "labels": torch.from_numpy(labels.copy()),
            "ignore_boxes": torch.from_numpy(ignore.copy()),
            "image_id": img_id,
            "orig_size": (info["height"], info["width"]),
        }

    def cache_images(self, max_mb: float) -> bool:
        """Decodes every image once and keeps them in memory (uint8, one buffer) when they take
        at most ``max_mb`` MiB; returns whether they are held.

        Items then read their pixels from memory: the same decoder made them, so items are
        equal to uncached ones. The size comes from the annotations' widths and heights,
        so a dataset over the limit is never decoded here (it keeps reading the files). A bad
        image raises now under ``on_bad_image="error"``; under ``"skip"`` its item is
        skipped (and warned about) each time it is read, as without the cache. Call it
        before a DataLoader starts its workers: forked workers share the buffer.
        """
        if isinstance(max_mb, bool) or not isinstance(max_mb, (int, float)) or not max_mb >= 0:
            raise ValueError(f"cache_images(max_mb={max_mb!r}): expected a number of MiB >= 0")
        if self._pixels is not None:
            return True
        sizes = [3 * self.coco.imgs[i]["height"] * self.coco.imgs[i]["width"] for i in self.image_ids]
        if sum(sizes) > max_mb * 2**20:
            return False
        pixels = torch.empty(sum(sizes), dtype=torch.uint8)
        offsets, bad, offset = [], {}, 0
        for index, size in enumerate(sizes):
            offsets.append(offset)
            try:
                pixels[offset : offset + size] = self._read(index).reshape(-1)
            except (FileNotFoundError, ValueError) as e:
                if self.on_bad_image == "error":
                    raise
                bad[index] = str(e)
            offset += size
        self._pixels, self._offsets, self._bad = pixels, offsets, bad
        return True

    @property
    def cached_mb(self) -> float:
        """MiB of decoded images held in memory (0: none, items read the files)."""
        return 0.0 if self._pixels is None else self._pixels.numel() / 2**20

    def _read(self, index):
        """The image of item ``index`` from its file, uint8 Tensor[3, H, W], checked against
        the annotated size; raises FileNotFoundError or ValueError naming the file."""
        img_id = self.image_ids[index]
        info = self.coco.imgs[img_id]
        path = self.images_dir / info["file_name"]
        try:
            image = read_image(path)
            if tuple(image.shape[-2:]) != (info["height"], info["width"]):
                raise ValueError(
                    f"image is {image.shape[-1]}x{image.shape[-2]} px, but {self.annotations} gives "
                    f"width x height {info['width']}x{info['height']}"
                )
        except (OSError, RuntimeError, ValueError) as e:
            message = f"bad image file {path} (image id {img_id}): {e}"
            raise (FileNotFoundError if isinstance(e, FileNotFoundError) else ValueError)(
                message
            ) from e
        return image

    def _image(self, index):
        """uint8 Tensor[3, H, W] of item ``index``: a view of the cache, or read from its file."""
        if self._pixels is None:
            return self._read(index)
        if index in self._bad:
            raise ValueError(self._bad[index])
        info = self.coco.imgs[self.image_ids[index]]
        h, w = info["height"], info["width"]
        offset = self._offsets[index]
        return self._pixels[offset : offset + 3 * h * w].view(3, h, w)

    def __getitem__(self, index):
        try:
            image = self._image(index)
        except (FileNotFoundError, ValueError) as e:
            if self.on_bad_image == "error":
                raise
            self.skipped += 1
            warnings.warn(f"skipped {e}", stacklevel=2)
            return None
        target = self.target(index)
        image = image.float().div_(255)  # a new tensor: the transforms never touch the cache
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target
