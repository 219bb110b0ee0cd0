"""Data pipeline targets (issue 4), run from the repository root:

    python -m benchmarks.bench_data [--rounds 5] [--gen-reps 1]

1. A DataLoader with 2 workers over coco128 at shorter side 512 (training transforms) must
   deliver >= 40 images/s. Reference, interleaved round by round in the same run: the same
   pipeline decoding with PIL through torchvision.datasets.CocoDetection.
2. The default synthetic dataset (2000 + 300 images at 192 px) must be generated in <= 60 s.

The machine is noisy: medians are quoted, and the loader ratio compares runs made side by side.
"""

import argparse
import contextlib
import io
import statistics
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

import torch
import torchvision
from torch.utils.data import DataLoader, Dataset
from torchvision.ops import box_convert

from datasets.coco import CocoDetection
from datasets.synthetic import generate
from datasets.transforms import build_transforms, collate

ROOT = Path(__file__).resolve().parents[1]

# Optional real data beside the checkout; --coco128 points elsewhere. The shipped
# tests/data/coco_sample (8 images, two batches) is too small to time a loader on.
COCO128 = ROOT / "../shared/data/coco128"


class PILReference(Dataset):
    """torchvision's CocoDetection (PIL decoding) turned into our target format."""

    def __init__(self, images, annotations, transforms):
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' progress prints
            self.ds = torchvision.datasets.CocoDetection(str(images), str(annotations))
        self.transforms = transforms

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        img, anns = self.ds[i]
        image = torchvision.transforms.functional.to_tensor(img)
        boxes = [a["bbox"] for a in anns if not a["iscrowd"]]
        crowd = [a["bbox"] for a in anns if a["iscrowd"]]
        target = {
            "boxes": box_convert(
                torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "xywh", "xyxy"
            ),
            "labels": torch.tensor(
                [a["category_id"] for a in anns if not a["iscrowd"]], dtype=torch.int64
            ),
            "ignore_boxes": box_convert(
                torch.tensor(crowd, dtype=torch.float32).reshape(-1, 4), "xywh", "xyxy"
            ),
            "image_id": self.ds.ids[i],
            "orig_size": image.shape[-2:],
        }
        return self.transforms(image, target)


def images_per_second(dataset, batch_size=4, workers=2):
    """One shuffled epoch; the clock starts when the first batch arrives (workers started)."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        collate_fn=partial(collate, size_divisible=128),
        persistent_workers=False,
    )
    it = iter(loader)
    next(it)
    start, n = time.perf_counter(), 0
    for images, _ in it:
        n += images.shape[0]
    return n / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved loader rounds (one epoch each)"
    )
    parser.add_argument(
        "--gen-reps", type=int, default=1, help="default synthetic generations (about 20 s each)"
    )
    parser.add_argument(
        "--coco128", type=Path, default=COCO128,
        help="folder with train2017/ and annotations/instances_train2017.json (default: ../shared/data/coco128)",
    )
    args = parser.parse_args()
    images, annotations = args.coco128 / "train2017", args.coco128 / "annotations/instances_train2017.json"
    if not annotations.is_file():
        parser.error(
            f"coco128 not found: no {annotations.resolve()}. coco128 (128 real COCO train2017 images) is "
            "optional data that lives beside the checkout, at ../shared/data/coco128; elsewhere pass "
            "--coco128 <folder with train2017/ and annotations/instances_train2017.json>"
        )
    warnings.simplefilter(
        "ignore", DeprecationWarning
    )  # torchvision.io's decoders are deprecated in 0.29
    torch.set_num_threads(1)  # each worker is one core; the main process only collates

    transforms = build_transforms(train=True, min_size=512, max_size=853)
    ours = CocoDetection(images, annotations, transforms=transforms)
    ref = PILReference(images, annotations, transforms)
    rates = {"ours": [], "ref": []}
    for _ in range(args.rounds):
        rates["ours"].append(images_per_second(ours))
        rates["ref"].append(images_per_second(ref))
    m_ours, m_ref = statistics.median(rates["ours"]), statistics.median(rates["ref"])
    print(
        f"loader coco128 @512/853, 2 workers, batch 4, {args.rounds} rounds: "
        f"ours median {m_ours:.1f} img/s (min {min(rates['ours']):.1f}, max {max(rates['ours']):.1f}); "
        f"PIL reference {m_ref:.1f} img/s; ratio ours/ref {m_ours / m_ref:.2f}x; "
        f"target >= 40 img/s: {'PASS' if m_ours >= 40 else 'FAIL'} ({m_ours / 40:.2f}x target)"
    )

    times = []
    for _ in range(args.gen_reps):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            generate(Path(tmp) / "shapes", progress=False)
            times.append(time.perf_counter() - start)
    m = statistics.median(times)
    print(
        f"synthetic default (2000 + 300 images @192): median {m:.1f} s over {len(times)} run(s); "
        f"target <= 60 s: {'PASS' if m <= 60 else 'FAIL'} ({60 / m:.2f}x under budget)"
    )


if __name__ == "__main__":
    main()
