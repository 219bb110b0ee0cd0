"""Evaluates a COCO results file against COCO annotations, with the evaluator train.py uses.

    python -m tools.evaluate ANNOTATIONS.json DETECTIONS.json [--out eval.json] [--image-ids 1 2 ...]

Prints COCOeval's 12-line summary and writes eval.json (the 12 stats by name and per-category
AP; by default beside DETECTIONS.json).
"""

import argparse
import os
import sys

if not __package__:  # `python tools/evaluate.py`: the packages it imports are found from the root only
    sys.exit(f"run it from the repository root as a module: python -m tools.evaluate {' '.join(sys.argv[1:])}".rstrip())

from analysis.coco_files import load_ground_truth, load_results  # noqa: E402
from detection.evaluation import coco_evaluate  # noqa: E402
from detection.run_folder import write_json_atomic  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("annotations", help="COCO instances JSON (ground truth)")
    parser.add_argument("detections", help="COCO results JSON: a list of {image_id, category_id, bbox, score}")
    parser.add_argument("--out", help="where to write eval.json (default: beside the detections file)")
    parser.add_argument("--image-ids", type=int, nargs="+", help="evaluate on these image ids only")
    args = parser.parse_args(argv)

    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.detections)), "eval.json")
    try:
        coco_gt = load_ground_truth(args.annotations)  # fills area / iscrowd as training does
        detections = load_results(args.detections, coco_gt)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"tools.evaluate: error: {e}")
    try:
        result = coco_evaluate(coco_gt, detections, image_ids=args.image_ids, verbose=True)
    except ValueError as e:  # --image-ids not in the annotations
        sys.exit(f"tools.evaluate: error: {args.detections} against {args.annotations}: {e}")
    write_json_atomic(out, result)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
