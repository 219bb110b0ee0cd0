"""analysis/draw_anchors.py on the shipped real COCO images: every anchor inside the image is
counted once per level, every ground-truth box gets a foreground anchor (low-quality matches),
a crowd region makes ignored anchors, and the figure is written."""

import pytest
import torch

from analysis.draw_anchors import assignment, draw, main
from detection import build
from tests.conftest import compose_config

SAMPLE = ["dataset=coco_sample"]


def test_counts_per_level_cover_every_anchor_inside_the_image(tmp_path):
    cfg = compose_config(SAMPLE)
    index = build.dataset(cfg, "val", augment=False).image_ids.index(315)  # 40 boxes, 2 of them crowd
    image, target, anchors, labels, per_level, strides, names = assignment(cfg, "val", index)
    counts = draw(image, target, anchors, labels, per_level, strides, names, tmp_path / "a.png")
    h, w = target["size"]
    cx, cy = (anchors[:, 0] + anchors[:, 2]) / 2, (anchors[:, 1] + anchors[:, 3]) / 2
    inside = (cx < w) & (cy < h)
    assert [c["stride"] for c in counts] == strides and len(per_level) == len(strides)
    assert sum(c["fg"] + c["ignore"] + c["bg"] for c in counts) == int(inside.sum())
    assert sum(c["fg"] for c in counts) == int(((labels >= 0) & (labels < len(names)) & inside).sum())
    assert sum(c["fg"] for c in counts) >= len(target["boxes"]) > 0  # each box's best anchor at least
    assert len(target["ignore_boxes"]) == 2 and sum(c["ignore"] for c in counts) > 0  # image 315: 2 crowd boxes
    assert (tmp_path / "a.png").stat().st_size > 10_000


def test_command_line_and_an_index_out_of_range(tmp_path, capsys):
    main(["--out", str(tmp_path / "b.png"), "--index", "1", *SAMPLE])
    assert "P3 stride 8: fg" in capsys.readouterr().out and (tmp_path / "b.png").is_file()
    with pytest.raises(SystemExit, match="--index 6: the train split of dataset=coco_sample has 6 images"):
        main(["--out", str(tmp_path / "c.png"), "--index", "6", *SAMPLE])


def test_under_atss_only_crowd_regions_are_ignored(tmp_path, capsys):
    from detection.matcher import in_ignore_regions

    cfg = compose_config([*SAMPLE, "assigner=atss"])
    index = build.dataset(cfg, "val", augment=False).image_ids.index(315)  # 2 crowd boxes
    image, target, anchors, labels, per_level, strides, names = assignment(cfg, "val", index)
    crowd = in_ignore_regions(anchors, [target["ignore_boxes"]], cfg.assigner.ignore_ioa_thresh)[0]
    fg = (labels >= 0) & (labels < len(names))
    assert torch.equal(labels == -1, crowd & ~fg)  # no ignore band
    counts = draw(image, target, anchors, labels, per_level, strides, names, tmp_path / "a.png", assigner="ATSS()")
    assert sum(c["ignore"] for c in counts) > 0 and sum(c["fg"] for c in counts) > 0
    main(["--out", str(tmp_path / "b.png"), "--index", "1", *SAMPLE, "assigner=atss"])
    assert "P3 stride 8: fg" in capsys.readouterr().out and (tmp_path / "b.png").stat().st_size > 10_000
