"""Implied crowd regions (``dataset.crowd_min_centres``, ``datasets.coco.implied_crowds``):
how many boxes a dataset config's rule marks, and how the rule fares where the crowd flags are
real.

    python -m tools.crowd_stats dataset=coco_person            # the config's rule, per split
    python -m tools.crowd_stats dataset=coco_person dataset.crowd_min_aspect=null
    python -m tools.crowd_stats --against-flags ../shared/data/coco128/annotations/instances_train2017.json \\
        --category person --min-centres 3 --min-aspect 1

The second form forgets the file's ``iscrowd`` flags, applies the rule to all boxes of the
category and counts the boxes it marks that are flagged crowd (found) and not (false alarms).
"""

import argparse

import numpy as np

from datasets.coco import implied_crowds
from datasets.coco_json import load_coco_json
from detection import build


def config_counts(cfg) -> dict:
    """{split: {"boxes", "marked", "images", "examples" [(image id, annotation id), ...]}}
    for the train and val splits of ``cfg.dataset`` as its config builds them."""
    out = {}
    for split in ("train", "val"):
        ds = build.dataset(cfg, split, augment=False)
        chosen, selected = set(ds.cat_ids), set(ds.image_ids)
        anns = [a for a in ds.coco.dataset["annotations"] if a["image_id"] in selected and a["category_id"] in chosen]
        marked = [a for a in anns if a.get("implied_crowd")]
        out[split] = {"boxes": len(anns), "marked": len(marked), "images": len({a["image_id"] for a in marked}),
                      "examples": [(a["image_id"], a["id"]) for a in marked[:8]]}
    return out


def against_flags(annotations, category: str, min_centres: int, min_aspect=None) -> dict:
    """The rule on a file whose crowd flags are real, flags forgotten: {"boxes", "crowd"
    (flagged in the file), "found" (flagged and marked), "false_alarms" [(image id, annotation
    id), ...]}."""
    coco = load_coco_json(annotations)
    cat = [c["id"] for c in coco.dataset["categories"] if c["name"] == category]
    if not cat:
        raise ValueError(f"{annotations}: no category named {category!r}")
    boxes = crowd = found = 0
    false_alarms = []
    for anns in coco.imgToAnns.values():
        group = [a for a in anns if a["category_id"] == cat[0]]
        if not group:
            continue
        xywh = np.array([a["bbox"] for a in group], dtype=np.float64)  # (M, 4)
        marks = implied_crowds(np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1), min_centres, min_aspect)
        boxes += len(group)
        for a, m in zip(group, marks):
            crowd += bool(a["iscrowd"])
            found += bool(a["iscrowd"]) and bool(m)
            if m and not a["iscrowd"]:
                false_alarms.append((a["image_id"], a["id"]))
    return {"boxes": boxes, "crowd": crowd, "found": found, "false_alarms": false_alarms}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tools.crowd_stats", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="config overrides, as for train.py")
    p.add_argument("--against-flags", metavar="JSON", help="a COCO file with real crowd flags")
    p.add_argument("--category", default="person")
    p.add_argument("--min-centres", type=int, default=3)
    p.add_argument("--min-aspect", type=float, default=None)
    args = p.parse_args(argv)
    if args.against_flags:
        r = against_flags(args.against_flags, args.category, args.min_centres, args.min_aspect)
        print(f"{args.against_flags}: {r['boxes']} {args.category} boxes, {r['crowd']} flagged crowd; the rule "
              f"(>= {args.min_centres} centres, width/height >= {args.min_aspect}) finds {r['found']} of them and "
              f"marks {len(r['false_alarms'])} others: {r['false_alarms'][:8]}")
        return r
    cfg = build.config(args.overrides)
    counts = config_counts(cfg)
    d = cfg.dataset
    print(f"dataset={d.name}, crowd_min_centres={d.get('crowd_min_centres')} "
          f"crowd_min_aspect={d.get('crowd_min_aspect')}:")
    for split, c in counts.items():
        print(f"  {split}: {c['marked']} of {c['boxes']} boxes marked crowd ({100 * c['marked'] / max(c['boxes'], 1):.1f}%) "
              f"in {c['images']} images; e.g. (image id, annotation id) {c['examples'][:6]}")
    return counts


if __name__ == "__main__":
    main()
