"""Evaluates a COCO results file against COCO annotations, with the evaluator train.py uses.

    python -m tools.evaluate ANNOTATIONS.json DETECTIONS.json [--out eval.json] [--image-ids 1 2 ...]

Prints COCOeval's 12-line summary and writes eval.json (the 12 stats by name and per-category
AP; by default beside DETECTIONS.json).
"""

import argparse
import json
import os
import sys

from detection.evaluation import check_detections, coco_evaluate, load_coco
from detection.run_folder import write_json_atomic


def load_results(path: str) -> list[dict]:
    """Reads and validates a COCO results file, with errors naming it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"detections file not found: {path!r}")
    try:
        with open(path) as f:
            results = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"detections file {path!r} is not valid JSON ({e})") from e
    return check_detections(results, source=path)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("annotations", help="COCO instances JSON (ground truth)")
    parser.add_argument("detections", help="COCO results JSON: a list of {image_id, category_id, bbox, score}")
    parser.add_argument("--out", help="where to write eval.json (default: beside the detections file)")
    parser.add_argument("--image-ids", type=int, nargs="+", help="evaluate on these image ids only")
    args = parser.parse_args(argv)

    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.detections)), "eval.json")
    try:
        coco_gt = load_coco(args.annotations)
        detections = load_results(args.detections)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"tools.evaluate: error: {e}")
    try:
        result = coco_evaluate(coco_gt, detections, image_ids=args.image_ids, verbose=True)
    except ValueError as e:  # results that do not fit these annotations (ids)
        sys.exit(f"tools.evaluate: error: {args.detections} against {args.annotations}: {e}")
    write_json_atomic(out, result)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
