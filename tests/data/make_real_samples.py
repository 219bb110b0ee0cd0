"""Writes tests/data/coco_person_sample/ and tests/data/bccd_sample/: 8 images of each real
dataset beside the checkout (../shared/data/coco_person, ../shared/data/bccd), their JPEG
bytes unchanged, with their annotations split into the same files as the source, so the
tests run ``dataset=coco_person`` and ``dataset=bccd`` with ``dataset.root=<sample>``.

    python tests/data/make_real_samples.py ../shared/data

coco_person: 8 one-person images (6 train, 2 val) chosen for their licence: each is CC BY 2.0
on Flickr, as recorded for val2017 in COCO's own instances file (the copy in
github.com/minto5z/coco_yolo@4715f5c, coco/annotations/instances_val2017.json; coco_person's
build has no per-image licences). Two hold small people (17x26 and 10x15 px).
bccd: 8 images (4 train, 1 val, 3 test), MIT licence, two of them without a WBC.
"""

import json
import shutil
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent
# image id -> Flickr URL; licence 4 ("Attribution License", CC BY 2.0) for all eight.
COCO_PERSON = {
    456496: "http://farm4.staticflickr.com/3810/10095484263_8ff0024f65_z.jpg",
    486438: "http://farm8.staticflickr.com/7154/6676693439_47455f5609_z.jpg",
    321214: "http://farm9.staticflickr.com/8030/8037209348_6491cf571e_z.jpg",
    96493: "http://farm4.staticflickr.com/3226/3076742158_8615337d86_z.jpg",
    363840: "http://farm3.staticflickr.com/2797/4256603007_6fbbea22de_z.jpg",
    84477: "http://farm9.staticflickr.com/8454/7897786544_4e902801e3_z.jpg",
    80671: "http://farm8.staticflickr.com/7067/7040483871_bae1b789be_z.jpg",
    261061: "http://farm3.staticflickr.com/2579/3661648054_10cef105c9_z.jpg",
}
BCCD = ["BloodImage_00001.jpg", "BloodImage_00003.jpg", "BloodImage_00005.jpg", "BloodImage_00133.jpg",
        "BloodImage_00000.jpg", "BloodImage_00007.jpg", "BloodImage_00011.jpg", "BloodImage_00135.jpg"]


def copy_subset(src: Path, out: Path, splits, keep) -> list[dict]:
    """The images for which ``keep(image)`` holds, from each split's file; returns them."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(exist_ok=True)
    kept = []
    for split in splits:
        name = f"instances_{split}.json"
        data = json.loads((src / "annotations" / name).read_text())
        images = [img for img in data["images"] if keep(img)]
        ids = {img["id"] for img in images}
        data = {**data, "images": images, "annotations": [a for a in data["annotations"] if a["image_id"] in ids]}
        (out / "annotations" / name).write_text(json.dumps(data))
        for img in images:
            shutil.copyfile(src / "images" / img["file_name"], out / "images" / img["file_name"])
        kept += [{**img, "split": split, "boxes": sum(a["image_id"] == img["id"] for a in data["annotations"])}
                 for img in images]
    return kept


def main(shared: str) -> None:
    root = Path(shared)
    people = copy_subset(root / "coco_person", OUT / "coco_person_sample", ("train", "val"),
                         lambda img: img["id"] in COCO_PERSON)
    rows = "\n".join(f"| {i['file_name']} | {i['split']} | {i['width']}x{i['height']} | {i['boxes']} | "
                     f"{COCO_PERSON[i['id']]} |" for i in people)
    (OUT / "coco_person_sample" / "SOURCE.md").write_text(COCO_PERSON_SOURCE.format(n=len(people), table=rows))
    cells = copy_subset(root / "bccd", OUT / "bccd_sample", ("train", "val", "test"),
                        lambda img: img["file_name"] in BCCD)
    rows = "\n".join(f"| {i['file_name']} | {i['split']} | {i['boxes']} |" for i in cells)
    licence = (root / "bccd" / "SOURCE.md").read_text().split("## Licence (verbatim from the source repository)")[1]
    (OUT / "bccd_sample" / "SOURCE.md").write_text(BCCD_SOURCE.format(n=len(cells), table=rows, licence=licence.strip()))


COCO_PERSON_SOURCE = """# coco_person_sample: {n} images of coco_person for the tests

Made by `python tests/data/make_real_samples.py ../shared/data` from coco_person
(`../shared/data/coco_person/SOURCE.md`): COCO val2017 photographs downscaled to a long side
of 384 px by coco_person's builder (the JPEG bytes here are its files, unchanged), with their
person boxes (from YOLO labels: one category, `iscrowd` 0) in the source's train/val files.
All eight have one person, so none holds a crowd region.

Terms: COCO's terms of use (https://cocodataset.org/#termsofuse). The annotations are
© COCO Consortium under CC BY 4.0. Each image is © its Flickr owner under the Attribution
License, CC BY 2.0 (http://creativecommons.org/licenses/by/2.0/), as COCO's val2017
instances file records; they were downscaled (modified) from the originals.

| file | split | size | boxes | Flickr |
|---|---|---|---|---|
{table}
"""

BCCD_SOURCE = """# bccd_sample: {n} images of BCCD for the tests

Made by `python tests/data/make_real_samples.py ../shared/data` from bccd
(`../shared/data/bccd/SOURCE.md`: github.com/Shenggan/BCCD_Dataset@d272fb1): 640x480 blood
smears, JPEG bytes unchanged, with their boxes (RBC, WBC, Platelets) in the source's
train/val/test files. BloodImage_00133 and 00135 have no WBC.

| file | split | boxes |
|---|---|---|
{table}

## Licence (verbatim from the source repository)
{licence}
"""


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
