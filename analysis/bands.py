"""COCO-analyze precision-recall bands: where a detector's AP goes, error type by error type.

The analysis of the COCO detection challenge (Hoiem-style; ``analyze()`` of the COCO API's
MATLAB ``CocoEval``, used in the Detectron era and reproduced by mmdetection's
``tools/analysis_tools/coco_error_analysis.py``). Seven precision-recall curves per class,
each forgiving more errors than the one before, on COCO's 101-point recall grid, with at most
100 detections per image and class, all object sizes:

    C75  PR at IoU .75.
    C50  PR at IoU .50.
    Loc  PR at IoU .10: localization errors (a box on the right object, but badly placed) forgiven.
    Sim  Loc, and detections on an object of another class of the SAME supercategory ignored.
    Oth  Loc, and detections on an object of ANY other class ignored (all class confusions).
    BG   Oth, and every remaining false positive removed: precision 1 at each recall Oth
         reaches. These are the background errors; ``area["BG"]`` = the AP they cost.
    FN   All errors removed: precision 1 everywhere; ``area["FN"]`` = the AP lost to objects
         never detected at any IoU >= .1.

"Ignored" is COCOeval's crowd rule: for class k, the ground truth of the other classes is added
as crowd boxes labelled k, and a detection of k that matches no box of k but covers such a box
(intersection over the detection's area >= .1) is neither a true nor a false positive.

The numbers are pycocotools' COCOeval with changed parameters, as mmdetection computes them,
with fewer runs (the result is the same, checked in tests/analysis/test_bands.py):
- C75, C50 and Loc come from ONE evaluation with iouThrs [.75, .5, .1] over all classes
  (mmdetection: the same; the MATLAB original too).
- Sim and Oth change the ground truth per class. mmdetection runs one COCOeval per class and
  band (2K runs); here ONE run per band gives every class its own ground truth: the crowd
  copies of the other classes' boxes are added to the ground truth under class k's id, in the
  images where k has detections (COCOeval evaluates each (image, class) on its own, and a
  crowd box changes nothing where there is no detection to cover).

Where this differs from mmdetection's script:
- Sim is the supercategory band of the original. mmdetection's Sim run forgets to relabel the
  same-supercategory boxes, so its Sim curve is its Loc curve. Sim needs supercategories:
  where the categories have none, or all share one (then Sim would be Oth), it is skipped and
  ``result["skipped"]["Sim"]`` says why.
- The overall curves average the classes WITH ground truth (as COCOeval's AP does, so overall
  C75/C50 equal COCOeval's AP75/AP50); mmdetection counts a class without any as precision 0.
- Area "all" only (mmdetection also draws small/medium/large).
"""

import contextlib
import io
import re
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from analysis.coco_files import check_results
from analysis.plots import save_png

BANDS = ("C75", "C50", "Loc", "Sim", "Oth", "BG", "FN")
RECALL = np.linspace(0.0, 1.0, 101)  # COCOeval's recThrs
# Fill colours of the MATLAB original (C75, C50 white there; light greys here to tell them apart).
COLORS = {"C75": (0.97, 0.97, 0.97), "C50": (0.85, 0.85, 0.85), "Loc": (0.31, 0.51, 0.74),
          "Sim": (0.75, 0.31, 0.30), "Oth": (0.36, 0.90, 0.38), "BG": (0.50, 0.39, 0.64), "FN": (1.0, 0.6, 0.0)}


def _coco(images, categories, annotations) -> COCO:
    coco = COCO()
    coco.dataset = {"images": images, "categories": categories, "annotations": annotations}
    with contextlib.redirect_stdout(io.StringIO()):  # "creating index..."
        coco.createIndex()
    return coco


def _gt_annotations(coco_gt: COCO) -> list[dict]:
    """Copies of the ground truth's annotations (COCOeval writes into them), area and iscrowd
    filled as the training path fills them (datasets/coco_json.py)."""
    anns = []
    for a in coco_gt.dataset["annotations"]:
        a = dict(a)
        a.setdefault("iscrowd", 0)
        a.setdefault("area", float(a["bbox"][2] * a["bbox"][3]))
        anns.append(a)
    return anns


def _dt_coco(coco_gt: COCO, dets: list[dict]) -> COCO:
    """What ``coco_gt.loadRes(dets)`` builds for boxes (without the polygons it adds), and
    also for an empty list, which loadRes refuses."""
    anns = [{**d, "id": i + 1, "area": d["bbox"][2] * d["bbox"][3], "iscrowd": 0} for i, d in enumerate(dets)]
    return _coco(coco_gt.dataset["images"], coco_gt.dataset["categories"], anns)


def _precision(gt: COCO, dt: COCO, iou_thrs, cat_ids) -> np.ndarray:
    """COCOeval's interpolated precision, ndarray[T, 101, K] (-1 where a class has no ground
    truth), all areas, 100 detections per image and class."""
    if not cat_ids:  # COCOeval would take an empty list for "all classes"
        return np.full((len(iou_thrs), len(RECALL), 0), -1.0)
    ev = COCOeval(gt, dt, iouType="bbox")
    p = ev.params
    p.imgIds, p.catIds = sorted(gt.getImgIds()), sorted(cat_ids)
    p.iouThrs, p.maxDets = np.array(iou_thrs, dtype=float), [100]
    p.areaRng, p.areaRngLbl = [[0.0, 1e10]], ["all"]
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
    return ev.eval["precision"][:, :, :, 0, 0]


def supercategory_groups(coco_gt: COCO) -> tuple[dict | None, str | None]:
    """``({category id: supercategory}, None)``, or ``(None, why Sim is skipped)``.

    A category without a (non-empty) supercategory is similar to no other class.
    """
    cats = coco_gt.dataset["categories"]
    sup = {c["id"]: c.get("supercategory") or None for c in cats}
    named = {s for s in sup.values() if s is not None}
    if not named:
        return None, "Sim skipped: the categories have no supercategory"
    if len(named) == 1 and all(s is not None for s in sup.values()):
        return None, f"Sim skipped: every category has the supercategory {next(iter(named))!r}, so Sim would equal Oth"
    return sup, None


def _confusion_gt(coco_gt: COCO, anns: list[dict], dt: COCO, cat_ids, similar) -> COCO:
    """The ground truth of the Sim or Oth run: ``anns``, and for each (image, class k of
    ``cat_ids`` with detections there) crowd copies, labelled k, of the image's boxes of the
    classes ``similar(their class, k)`` admits."""
    by_image = {}
    for a in anns:
        by_image.setdefault(a["image_id"], []).append(a)
    wanted = set(cat_ids)
    next_id = max((a["id"] for a in anns), default=0) + 1
    extra = []
    for (img, k) in sorted({(d["image_id"], d["category_id"]) for d in dt.dataset["annotations"]}):
        if k not in wanted:
            continue
        for a in by_image.get(img, ()):
            if a["category_id"] != k and similar(a["category_id"], k):
                extra.append({**a, "id": next_id, "category_id": k, "iscrowd": 1})
                next_id += 1
    return _coco(coco_gt.dataset["images"], coco_gt.dataset["categories"], [dict(a) for a in anns] + extra)


def _entry(curves: dict[str, np.ndarray], num_gt: int) -> dict:
    ap = {b: float(c.mean()) for b, c in curves.items()}
    area, before = {}, 0.0
    for b, v in ap.items():
        area[b], before = v - before, v
    return {"num_gt": num_gt, "ap": ap, "area": area, "precision": curves}


def bands(coco_gt: COCO, detections, cat_ids=None) -> dict:
    """The COCO-analyze bands of a results list, overall and per class.

    Args:
        coco_gt: the ground truth, a pycocotools ``COCO`` (not modified).
        detections: COCO results [{"image_id", "category_id", "bbox" [x, y, w, h], "score"}],
            validated by ``analysis.coco_files.check_results``; may be empty.
        cat_ids: the classes to analyze (default: all). The ground truth of every class still
            counts as a source of class confusion.

    Returns:
        {"bands": the bands computed, in order (BANDS, less the skipped),
         "skipped": {band: why} ({"Sim": ...} without usable supercategories),
         "recall": RECALL (101 points),
         "overall": entry over the classes with ground truth,
         "classes": {class name: entry}}, where an entry is
        {"num_gt": non-crowd ground-truth boxes,
         "ap": {band: area under its PR curve},
         "area": {band: ap[band] - ap[band before] (C75: ap): the band's area in the figure,
                  the AP gained by forgiving that error type; "BG": the AP background
                  false positives cost},
         "precision": {band: ndarray[101]}}.
        A class without ground truth has "ap" and "area" -1.0 for every band and no curves.
    """
    all_cats = sorted(coco_gt.getCatIds())
    cat_ids = all_cats if cat_ids is None else sorted(set(cat_ids))
    unknown = sorted(set(cat_ids) - set(all_cats))
    if unknown:
        raise ValueError(f"bands cat_ids: {unknown[:10]} are not categories of the ground truth")
    dt = _dt_coco(coco_gt, check_results(detections, coco_gt))
    anns = _gt_annotations(coco_gt)
    gt = _coco(coco_gt.dataset["images"], coco_gt.dataset["categories"], anns)

    # COCOeval visits every (image, class) pair; a class with neither boxes nor detections
    # would only cost time and get -1 anyway.
    present = {a["category_id"] for a in anns} | {d["category_id"] for d in dt.dataset["annotations"]}
    evaluated = [k for k in cat_ids if k in present]
    ps = {}  # band -> [101, K]
    main = _precision(gt, dt, [0.75, 0.5, 0.1], evaluated)
    ps["C75"], ps["C50"], ps["Loc"] = main[0], main[1], main[2]
    sup, why = supercategory_groups(coco_gt)
    skipped = {}
    if sup is None:
        skipped["Sim"] = why
    else:
        ps["Sim"] = _precision(_confusion_gt(coco_gt, anns, dt, evaluated, lambda c, k: sup[c] is not None and sup[c] == sup[k]),
                               dt, [0.1], evaluated)[0]
    ps["Oth"] = _precision(_confusion_gt(coco_gt, anns, dt, evaluated, lambda c, k: True), dt, [0.1], evaluated)[0]
    has_gt = ps["C75"][0] > -1  # (K,) COCOeval leaves -1 only where a class has no ground truth
    ps["BG"] = (ps["Oth"] > 0).astype(float)
    ps["FN"] = np.ones_like(ps["Oth"])

    num_gt = {k: 0 for k in cat_ids}
    for a in anns:
        if not a["iscrowd"] and a["category_id"] in num_gt:
            num_gt[a["category_id"]] += 1
    classes, column = {}, {k: i for i, k in enumerate(evaluated)}
    for k in cat_ids:
        name, i = coco_gt.cats[k]["name"], column.get(k)
        if i is not None and has_gt[i]:
            classes[name] = _entry({b: ps[b][:, i] for b in ps}, num_gt[k])
        else:
            classes[name] = {"num_gt": 0, "ap": dict.fromkeys(ps, -1.0), "area": dict.fromkeys(ps, -1.0), "precision": {}}
    if has_gt.any():
        overall = _entry({b: ps[b][:, has_gt].mean(axis=1) for b in ps}, sum(num_gt.values()))
    else:
        overall = {"num_gt": 0, "ap": dict.fromkeys(ps, -1.0), "area": dict.fromkeys(ps, -1.0), "precision": {}}
    return {"bands": [b for b in BANDS if b in ps], "skipped": skipped, "recall": RECALL,
            "overall": overall, "classes": classes}


def _ap_label(ap: float) -> str:
    text = f"{ap:.3f}"
    return text[1:] if text.startswith("0.") else text  # [.xxx] as in the original figures


def plot_bands(entry: dict, path, title: str, note: str | None = None) -> None:
    """The stacked PR figure of one entry of ``bands()`` (``result["overall"]`` or a class).

    Each band is the area between its curve and the one before (C75: from 0), labelled with
    its curve's AP as ``[.xxx]``. ``note`` (e.g. why Sim is skipped) goes under the title.
    """
    fig = Figure(figsize=(6, 4.8))
    # fixed margins, not tight_layout(): one layout pass less, a figure per class adds up
    ax = fig.add_axes((0.11, 0.1, 0.85, 0.78))
    below = np.zeros_like(RECALL)
    for band, curve in entry["precision"].items():
        ax.fill_between(RECALL, below, curve, color=COLORS[band], label=f"[{_ap_label(entry['ap'][band])}] {band}")
        ax.plot(RECALL, curve, color="black", linewidth=0.5)
        below = curve
    if not entry["precision"]:
        ax.text(0.5, 0.5, "no ground truth", ha="center", va="center")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.0))
    ax.set_title(title + (f"\n{note}" if note else ""), fontsize=10)
    if entry["precision"]:
        ax.legend(loc="lower left", fontsize=8)
    save_png(fig, path, dpi=100)


def file_stem(name: str) -> str:
    """A class name as a file name part: ``traffic light`` -> ``traffic_light``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "class"


def write_band_plots(result: dict, out_dir, classes=None) -> list[Path]:
    """``out_dir/bands_overall.png`` and ``out_dir/bands_<class>.png`` for each class with
    ground truth (or those of them named in ``classes``; ``()``: overall only). A figure
    takes ~0.1 s: 80 classes cost more than the rest of the analysis. Returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    note = "; ".join(result["skipped"].values()) or None
    overall = result["overall"]
    paths = [out_dir / "bands_overall.png"]
    plot_bands(overall, paths[0], f"all classes ({sum(e['num_gt'] > 0 for e in result['classes'].values())} "
                                  f"with ground truth, {overall['num_gt']} boxes)", note)
    seen = {"overall"}
    for name, entry in result["classes"].items():
        if not entry["precision"] or (classes is not None and name not in classes):
            continue
        stem = file_stem(name)
        while stem in seen:  # two names that sanitize alike
            stem += "_"
        seen.add(stem)
        paths.append(out_dir / f"bands_{stem}.png")
        plot_bands(entry, paths[-1], f"{name} ({entry['num_gt']} boxes)", note)
    return paths
