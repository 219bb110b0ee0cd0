"""Writes tests/data/coco_sample/ from a coco128 folder: a few real COCO train2017 images,
unchanged, with their original annotations (crowd boxes, non-contiguous category ids, empty
images), the full category list, COCO's info and licences, and SOURCE.md naming each image's
licence.

    python tests/data/make_coco_sample.py ../shared/data/coco128
"""

import json
import shutil
import sys
from pathlib import Path

# 9: bowls, oranges, broccoli (the hand-checked image); 25, 30: one or two categories;
# 49: person, horse, plant; 149 and 315: crowd boxes (315 has two, of two categories);
# 250 and 508: no annotation at all (pure background).
IMAGE_IDS = [9, 25, 30, 49, 149, 250, 315, 508]
OUT = Path(__file__).resolve().parent / "coco_sample"


def main(coco128: str) -> None:
    src = Path(coco128)
    data = json.loads((src / "annotations" / "instances_train2017.json").read_text())
    images = [img for img in data["images"] if img["id"] in IMAGE_IDS]
    sample = {"info": data["info"], "licenses": data["licenses"], "categories": data["categories"],
              "images": images, "annotations": [a for a in data["annotations"] if a["image_id"] in IMAGE_IDS]}
    (OUT / "train2017").mkdir(parents=True, exist_ok=True)
    (OUT / "annotations").mkdir(exist_ok=True)
    for img in images:
        shutil.copyfile(src / "train2017" / img["file_name"], OUT / "train2017" / img["file_name"])
    (OUT / "annotations" / "instances_train2017.json").write_text(json.dumps(sample))
    licences = {lic["id"]: lic for lic in data["licenses"]}
    rows = [f"| {img['file_name']} | {img['id']} | {licences[img['license']]['name']} "
            f"({licences[img['license']]['url']}) | {img['flickr_url']} |" for img in images]
    (OUT / "SOURCE.md").write_text(SOURCE.format(n=len(images), crowd=sum(a["iscrowd"] for a in sample["annotations"]),
                                                 boxes=len(sample["annotations"]), table="\n".join(rows)))


SOURCE = """# coco_sample: {n} real COCO 2017 images for the tests

Made by `python tests/data/make_coco_sample.py <coco128 folder>` from coco128 (the public
repository developer0hye/COCO128, commit 47a3de3, which cut the first 128 images of COCO
train2017). The JPEGs are unchanged; `annotations/instances_train2017.json` holds their
original annotations ({boxes} boxes, {crowd} of them `iscrowd`), the full list of 80 categories
(ids 1..90, not contiguous) and COCO's own `info` and `licenses` entries.

Terms: COCO's terms of use (https://cocodataset.org/#termsofuse). The annotations are
© COCO Consortium under CC BY 4.0; each image is under the Flickr licence named below.

| file | image id | licence | Flickr |
|---|---|---|---|
{table}
"""


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/coco128")
