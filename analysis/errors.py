"""TIDE's error breakdown of box detections (Bolya et al., ECCV 2020; github.com/dbolya/tide).

Every false positive gets one type, tested in TIDE's order (``t_f`` = 0.5, ``t_b`` = 0.1; IoU
with non-crowd ground truth; "right class" = the detection's class):

  Loc   t_b <= max IoU with a right-class GT <= t_f (that GT may already be matched)
  Cls   IoU >= t_f with a GT of another class
  Dupe  IoU >= t_f with a right-class GT already matched by a higher-scoring detection
  Bkg   IoU <= t_b with every GT of any class (or the image has no GT)
  Both  anything else (in practice t_b < IoU < t_f with a GT of another class)

and a GT is a Miss if no detection matched it and no Cls or Loc error points at it.

dAP50 of a type is TIDE's fixing oracle: the AP50 gained by fixing only that type. A Cls or Loc
error becomes a true positive of its GT's class if it is the highest-scoring such error on a
GT no detection matched (every other one is dropped); Dupe, Bkg and Both errors are dropped;
a Miss removes its GT. FalsePos scores every true positive 1 and every false positive 0;
FalseNeg sets each class's GT count to its true positives. Main dAPs are clipped at 0 as TIDE
does; the two special ones are not.

AP is COCO's: per class, the precision envelope read at 101 recall points; the mean over
classes; reported in AP points (0-100) as TIDE does. Detections are matched greedily by score
per image, each to the unmatched right-class GT of highest IoU >= t_f, as TIDE and COCOeval do.

Crowd regions: a detection that matches no GT but a same-class crowd box (crowd IoU, i.e.
intersection over the detection's area, > t_f, as tidecv) is left out of AP as in COCOeval. As in
tidecv it still gets a type, so a poorly placed one can be the fix of a Loc or Cls error and
keep its GT from Miss; the dAPs and the Miss count are tidecv's.

Where this differs from tidecv 1.0.1, on purpose:
- Detections in crowd regions are not counted as errors (tidecv counts them, mostly as Bkg,
  though a crowd is foreground): the five false-positive counts are exactly the false
  positives in the AP, and ``det_types`` marks the others "ignored".
- Classes without non-crowd GT are left out of the mean, as in COCOeval; tidecv averages them
  in with AP 0 when they have detections. So AP50 here equals COCOeval's AP50 when no image
  has over ``max_dets`` detections (TIDE caps per image over all classes, COCOeval per class).
- An evaluation without any class left gives AP 0 (tidecv divides by zero).
- Score ties are broken in COCOeval's order (image id, then position in the results).
"""

from dataclasses import dataclass, field

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

MAIN_TYPES = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")
SPECIAL_TYPES = ("FalsePos", "FalseNeg")
# Per-detection codes: a true positive, the five false-positive types, and two kinds of
# detection that are not in the AP at all.
DET_TYPES = ("TP", "Cls", "Loc", "Both", "Dupe", "Bkg", "ignored", "over_max_dets")
TP, CLS, LOC, BOTH, DUPE, BKG, IGNORED, OVER_MAX = range(len(DET_TYPES))
_RECALLS = np.linspace(0.0, 1.0, 101)  # COCOeval's recThrs


@dataclass
class ErrorBreakdown:
    """What ``tide_errors`` finds; AP values in points (0-100)."""

    ap50: float
    dap: dict  # {"Cls", ..., "Miss", "FalsePos", "FalseNeg"}: dAP50
    counts: dict  # {"Cls", ..., "Miss"}: number of errors of each main type
    det_types: np.ndarray  # (D,) int: index into DET_TYPES, one per input detection
    missed_ann_ids: list = field(default_factory=list)  # annotation ids of the Miss errors

    def to_json(self) -> dict:
        n = np.bincount(self.det_types, minlength=len(DET_TYPES))
        return {"AP50": self.ap50, **self.dap, "counts": dict(self.counts),
                "detections": {name: int(n[i]) for i, name in enumerate(DET_TYPES)},
                "units": "AP points (0-100), as TIDE reports them"}


def tide_errors(coco_gt: COCO, detections: list[dict], pos_thresh: float = 0.5,
                bg_thresh: float = 0.1, max_dets: int = 100) -> ErrorBreakdown:
    """TIDE's main and special errors of COCO results against a ground truth.

    Args:
        coco_gt: the ground truth, with ``iscrowd`` and ``area`` on every annotation
            (``analysis.coco_files.load_ground_truth`` fills them).
        detections: checked COCO results (``analysis.coco_files.check_results``):
            {"image_id", "category_id", "bbox": [x, y, w, h], "score"}.
        pos_thresh, bg_thresh: TIDE's foreground and background IoU thresholds.
        max_dets: detections kept per image (highest scores, over all classes, as TIDE).

    Example: one class, two GT; detections scored 0.9 (on a GT), 0.8 (on nothing), 0.7 (on
    the other GT) give AP50 = (51 * 1 + 50 * 2/3) / 101 = 83.5 and one Bkg error worth
    dAP50 = 16.5: dropping it leaves precision 1 at every recall.
    """
    cat_ids = sorted(coco_gt.getCatIds())
    cat_index = {c: k for k, c in enumerate(cat_ids)}
    K = len(cat_ids)
    anns = coco_gt.dataset["annotations"]
    g_img = np.array([a["image_id"] for a in anns], dtype=np.int64)
    g_cls = np.array([cat_index[a["category_id"]] for a in anns], dtype=np.int64)
    g_box = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
    g_crowd = np.array([bool(a["iscrowd"]) for a in anns], dtype=bool)

    D = len(detections)
    d_img = np.array([d["image_id"] for d in detections], dtype=np.int64)
    d_cls = np.array([cat_index[d["category_id"]] for d in detections], dtype=np.int64)
    d_box = np.array([d["bbox"] for d in detections], dtype=np.float64).reshape(-1, 4)
    d_score = np.array([d["score"] for d in detections], dtype=np.float64)

    # COCOeval's order: images by id, then score (ties: position in the results).
    order = np.lexsort((np.arange(D), -d_score, d_img))
    d_img, d_cls, d_box, d_score = d_img[order], d_cls[order], d_box[order], d_score[order]
    det_type = np.full(D, TP)  # TIDE's type, crowd-ignored detections included
    ignored = np.zeros(D, dtype=bool)
    fix_cls = np.full(D, -1)  # class of the TP this error becomes when its type is fixed
    g_matched = np.zeros(len(anns), dtype=bool)
    g_usable = np.zeros(len(anns), dtype=bool)  # a Cls/Loc error could recover it

    g_order = np.argsort(g_img, kind="stable")
    img_ids = np.union1d(g_img, d_img)
    d_bounds = np.searchsorted(d_img, np.stack([img_ids, img_ids + 1]))
    g_bounds = np.searchsorted(g_img[g_order], np.stack([img_ids, img_ids + 1]))
    for i in range(len(img_ids)):
        d0, d1 = d_bounds[0, i], d_bounds[1, i]
        gs = g_order[g_bounds[0, i]:g_bounds[1, i]]
        det_type[d0 + max_dets:d1] = OVER_MAX
        d1 = min(d1, d0 + max_dets)
        if d1 > d0:
            _eval_image(slice(d0, d1), gs[~g_crowd[gs]], gs[g_crowd[gs]], d_cls, d_box, g_cls,
                        g_box, det_type, ignored, fix_cls, g_matched, g_usable, pos_thresh,
                        bg_thresh)

    real = ~g_crowd
    num_gt = np.bincount(g_cls[real], minlength=K)
    missed = real & ~g_matched & ~g_usable
    miss_per_class = np.bincount(g_cls[missed], minlength=K)
    has_gt = num_gt > 0
    in_ap = (det_type != OVER_MAX) & ~ignored
    cls, score, tp = d_cls[in_ap], d_score[in_ap], det_type[in_ap] == TP

    def mean_ap(cls, score, tp, num_gt):
        return _mean_ap(cls, score, tp, num_gt, has_gt, K)

    ap = mean_ap(cls, score, tp, num_gt)
    dap = {}
    fp_types = (("Cls", CLS), ("Loc", LOC), ("Both", BOTH), ("Dupe", DUPE), ("Bkg", BKG))
    for name, code in fp_types:
        # Fixing a type: its best Cls/Loc errors (crowd-ignored ones too) become TPs of the
        # GT's class; its other errors go.
        keep = (in_ap & (det_type != code)) | ((det_type == code) & (fix_cls >= 0))
        fixed = det_type[keep] == code
        new_cls = np.where(fixed, fix_cls[keep], d_cls[keep])
        new_tp = fixed | (det_type[keep] == TP)
        dap[name] = max(mean_ap(new_cls, d_score[keep], new_tp, num_gt) - ap, 0.0)
    dap["Miss"] = max(mean_ap(cls, score, tp, num_gt - miss_per_class) - ap, 0.0)
    dap["FalsePos"] = mean_ap(cls, tp.astype(np.float64), tp, num_gt) - ap
    dap["FalseNeg"] = mean_ap(cls, score, tp, np.bincount(cls[tp], minlength=K)) - ap

    out_types = np.empty(D, dtype=np.int64)
    out_types[order] = np.where(ignored, IGNORED, det_type)
    counts = {name: int((in_ap & (det_type == code)).sum()) for name, code in fp_types}
    counts["Miss"] = int(missed.sum())
    return ErrorBreakdown(
        ap50=ap, dap={k: dap[k] for k in MAIN_TYPES + SPECIAL_TYPES}, counts=counts,
        det_types=out_types, missed_ann_ids=[anns[j]["id"] for j in np.flatnonzero(missed)])


def _eval_image(ds, gt, crowd, d_cls, d_box, g_cls, g_box, det_type, ignored, fix_cls,
                g_matched, g_usable, pos_thresh, bg_thresh) -> None:
    """Matches one image's detections (slice ``ds``, sorted by score) and types its false
    positives, writing into the per-detection and per-GT arrays. ``gt``, ``crowd``: indices of
    the image's non-crowd and crowd annotations."""
    cls, box = d_cls[ds], d_box[ds]
    n, m = len(cls), len(gt)
    matched = np.zeros(n, dtype=bool)
    used = np.zeros(m, dtype=bool)
    if m:
        iou = np.asarray(mask_utils.iou(box, g_box[gt], [0] * m)).reshape(n, m)  # (n, m)
        same = cls[:, None] == g_cls[gt][None, :]
        cls_iou = np.where(same, iou, 0.0)
        # Greedy matching, in score order; only rows with some IoU >= t_f can match.
        for i in np.flatnonzero(cls_iou.max(1) >= pos_thresh):
            row = np.where(used, 0.0, cls_iou[i])
            j = row.argmax()
            if row[j] >= pos_thresh:
                matched[i], used[j] = True, True
        g_matched[gt] = used
    fp = ~matched
    if len(crowd):
        # COCO's crowd IoU: intersection over the detection's area.
        c_iou = np.asarray(mask_utils.iou(box, g_box[crowd], [1] * len(crowd))).reshape(n, -1)
        in_crowd = ((c_iou > pos_thresh) & (cls[:, None] == g_cls[crowd][None, :])).any(1)
        ignored[ds] = fp & in_crowd
    types = det_type[ds]  # a view: writes go to det_type
    if not m:
        types[fp] = BKG
        return
    loc_j, loc_v = cls_iou.argmax(1), cls_iou.max(1)
    other_iou = np.where(same, 0.0, iou)
    cls_j, cls_v = other_iou.argmax(1), other_iou.max(1)
    dupe_v = np.where(same & used[None, :], iou, 0.0).max(1)
    is_loc = fp & (bg_thresh <= loc_v) & (loc_v <= pos_thresh)
    is_cls = fp & ~is_loc & (cls_v >= pos_thresh)
    is_dupe = fp & ~is_loc & ~is_cls & (dupe_v >= pos_thresh)
    rest = fp & ~is_loc & ~is_cls & ~is_dupe
    is_bkg = rest & (iou.max(1) <= bg_thresh)
    types[is_loc], types[is_cls], types[is_dupe] = LOC, CLS, DUPE
    types[is_bkg], types[rest & ~is_bkg] = BKG, BOTH
    # TIDE's BestGTMatch: of the Cls and Loc errors pointing at one unmatched GT, only the
    # first (highest-scoring) becomes its TP when its type is fixed; the GT is not a Miss.
    target = np.where(is_loc, loc_j, cls_j)
    fixable = np.flatnonzero((is_loc | is_cls) & ~used[target])
    if len(fixable):
        first_gt, first = np.unique(target[fixable], return_index=True)
        best = fixable[first]
        fix_cls[ds][best] = g_cls[gt][first_gt]
        g_usable[gt[first_gt]] = True


def _mean_ap(cls, score, tp, num_gt, has_gt, K) -> float:
    """COCO's 101-point AP per class, averaged over the classes with GT (points, 0-100).

    A class whose GT count an oracle brought to 0 scores 0 if it still has detections and is
    left out if it has none, as in TIDE."""
    order = np.lexsort((np.arange(len(cls)), -score, cls))
    cls, tp = cls[order], tp[order]
    starts = np.searchsorted(cls, np.arange(K + 1))
    aps = []
    for k in np.flatnonzero(has_gt):
        t = tp[starts[k]:starts[k + 1]]
        if num_gt[k] == 0:
            if len(t):
                aps.append(0.0)
            continue
        tps = np.cumsum(t)
        precision = tps / np.arange(1, len(t) + 1)
        precision = np.maximum.accumulate(precision[::-1])[::-1]  # the envelope
        recall = tps / num_gt[k]
        idx = np.searchsorted(recall, _RECALLS, side="left")
        q = np.zeros(len(_RECALLS))
        q[idx < len(t)] = precision[idx[idx < len(t)]]
        aps.append(q.mean())
    return 100.0 * float(np.mean(aps)) if aps else 0.0


def bkg_vs_recall(det_types: np.ndarray, scores, num_gt: int, num_images: int, points: int = 101) -> dict:
    """Background false positives per image against recall, over all classes pooled.

    Lowering a score threshold from the top admits detections in score order; at each
    threshold recall is #TP / ``num_gt`` (TIDE's true positives: right class, IoU >= 0.5, not a
    duplicate) and the background cost is #Bkg / ``num_images``. Read at ``points`` recall
    levels 0, 1/(points-1), ..., 1: the first threshold reaching that recall (None: never
    reached). It says how many confident detections on nothing a method pays for its recall,
    the one number the study's question is about, without AP's per-class averaging.

    Args:
        det_types: (D,) codes into DET_TYPES (``ErrorBreakdown.det_types``).
        scores: (D,) the detections' scores, in the same order.
        num_gt: non-crowd ground-truth boxes over all classes; num_images: evaluated images.

    Example: scores .9 TP, .8 Bkg, .7 TP with 2 GT on 1 image: recall .5 costs 0 background
    false positives per image, recall 1 costs 1 (score threshold .7).
    """
    det_types, scores = np.asarray(det_types), np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    tp = np.cumsum(det_types[order] == TP)
    bkg = np.cumsum(det_types[order] == BKG)
    recall_levels = np.linspace(0.0, 1.0, points)
    out = {"recall": [round(float(r), 4) for r in recall_levels], "bkg_per_image": [], "score": []}
    for r in recall_levels:
        # first detection whose cumulative recall reaches r (recall 0 is reached before any)
        i = np.searchsorted(tp, r * num_gt - 1e-9) if num_gt else len(tp)
        if r == 0:
            out["bkg_per_image"].append(0.0)
            out["score"].append(None)
        elif i < len(tp) and num_images:
            out["bkg_per_image"].append(round(float(bkg[i]) / num_images, 6))
            out["score"].append(round(float(sorted_scores[i]), 6))
        else:
            out["bkg_per_image"].append(None)
            out["score"].append(None)
    out["max_recall"] = round(float(tp[-1]) / num_gt, 6) if num_gt and len(tp) else 0.0
    return out
