"""Evaluates a COCO results file against COCO annotations, with the evaluator train.py uses.

    python -m tools.evaluate RUN [--out DIR] [--image-ids 1 2 ...]
    python -m tools.evaluate ANNOTATIONS.json DETECTIONS.json [--out DIR] [--image-ids 1 2 ...]

RUN: a run folder, evaluated as train.py did (the annotation file, images and categories in
its data.json, its detections.json). Prints COCOeval's 12-line summary and writes DIR/eval.json
(the 12 stats by name and per-category AP). DIR: by default a new folder beside the
detections (under the run) named by what was evaluated, e.g. ``<run>/evaluate_detections/``;
never a run folder itself: a run's eval.json is its record and is not replaced.
"""

import argparse
import os
import sys

if not __package__:  # `python tools/evaluate.py`: the packages it imports are found from the root only
    sys.exit(f"run it from the repository root as a module: python -m tools.evaluate {' '.join(sys.argv[1:])}".rstrip())

from analysis.coco_files import load_ground_truth, load_results, output_folder, tool_inputs  # noqa: E402
from detection.evaluation import coco_evaluate  # noqa: E402
from detection.run_folder import write_json_atomic  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", metavar="RUN | ANNOTATIONS.json DETECTIONS.json",
                        help="a run folder, or a COCO instances JSON and a COCO results JSON "
                             "(a list of {image_id, category_id, bbox, score})")
    parser.add_argument("--out", help="folder for eval.json (default: a new one under the run / beside the detections)")
    parser.add_argument("--image-ids", type=int, nargs="+", help="evaluate on these image ids only")
    args = parser.parse_args(argv)
    try:
        inputs = tool_inputs(args.paths, args.image_ids)
        out = output_folder(args.out, inputs, "evaluate", args.image_ids)
        coco_gt = load_ground_truth(inputs.annotations)  # fills area / iscrowd as training does
        detections = load_results(inputs.detections, coco_gt)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"tools.evaluate: error: {e}")
    try:
        result = coco_evaluate(coco_gt, detections, image_ids=inputs.image_ids, cat_ids=inputs.cat_ids, verbose=True)
    except ValueError as e:  # --image-ids not in the annotations
        sys.exit(f"tools.evaluate: error: {inputs.detections} against {inputs.annotations}: {e}")
    write_json_atomic(os.path.join(out, "eval.json"), result)
    print(f"wrote {os.path.join(out, 'eval.json')}")
    return result


if __name__ == "__main__":
    main()
