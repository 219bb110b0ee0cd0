"""reports/table1d.py: OHEM against the focal loss beside Lin et al. 2017, Table 1d."""

from reports.runs import Run
from reports.table1d import FL_ROW, TABLE_1D, row_of, table1d_section

OHEM = "losses.ohem.OHEMLoss"
FOCAL = "losses.focal.FocalLoss"


def run(tmp_path, name, loss, seed, ap=None, status="finished", **config):
    return Run(dir=tmp_path / name, name=name, status=status, seed=seed,
               config={"seed": seed, "loss": loss, **config}, eval=None if ap is None else {"AP": ap})


def ohem(nms, batch, ratio=None, base="softmax"):
    return {"_target_": OHEM, "base": base, "nms_thresh": nms, "batch_per_image": batch, "neg_per_pos": ratio,
            "nms_boxes": "predicted"}


def test_rows_from_configs():
    assert row_of({"loss": ohem(0.7, 256)}) == ("OHEM", 0.7, 256, None)
    assert row_of({"loss": ohem(0.5, 512, 3)}) == ("OHEM 1:3", 0.5, 512, 3.0)
    assert row_of({"loss": {"_target_": FOCAL, "gamma": 2.0, "alpha": 0.25}}) == FL_ROW
    assert row_of({"loss": {"_target_": FOCAL, "gamma": 1.0, "alpha": 0.25}}) is None
    assert row_of({"loss": ohem(0.5, 256, base="sigmoid")}) is None  # the paper's OHEM is softmax
    assert row_of({"loss": ohem(0.6, 256)}) is None
    assert row_of({"loss": ohem(None, 256)}) is None
    assert len(TABLE_1D) == 10 and TABLE_1D[FL_ROW] == 36.0 and TABLE_1D[("OHEM 1:3", 0.5, 512, 3.0)] == 24.0


def test_section_numbers_and_paired_differences(tmp_path):
    groups = {
        "loss=focal": [run(tmp_path, f"fl{s}", {"_target_": FOCAL, "gamma": 2.0, "alpha": 0.25}, s, ap)
                       for s, ap in enumerate((0.40, 0.42, 0.41))],
        "ohem b128": [run(tmp_path, f"a{s}", ohem(0.7, 128), s, ap) for s, ap in enumerate((0.30, 0.31, 0.33))],
        "ohem b256": [run(tmp_path, f"b{s}", ohem(0.7, 256), s, ap) for s, ap in enumerate((0.35, 0.36))]
        + [run(tmp_path, "b2", ohem(0.7, 256), 2, status="diverged")],
        "ohem 1:3": [run(tmp_path, f"c{s}", ohem(0.5, 128, 3), s, ap) for s, ap in enumerate((0.20, 0.22, 0.21))],
        "loss=softmax_bg": [run(tmp_path, f"s{s}", {"_target_": "losses.softmax_bg.SoftmaxBgLoss"}, s, 0.38)
                            for s in range(2)],
        "tuning": [run(tmp_path, "t0", ohem(0.5, 256), 0, 0.5, eval_split="tune")],
    }
    md = "\n".join(table1d_section(groups))
    assert "## Against the paper (Table 1d)" in md
    lines = md.splitlines()
    row = next(line for line in lines if line.startswith("| OHEM | 0.7 | 128 "))
    # mean 31.3, paired differences to FL: -10, -11, -8 -> mean -9.7
    assert "| 31.1 | 31.3 ± 1.5 [27.5, 35.1] | 3 | -9.7 AP [" in row and "FL better" in row
    row = next(line for line in lines if line.startswith("| OHEM | 0.7 | 256 "))
    assert "35.5 ± 0.7" in row and "| 2, 1 diverged |" in row and "2 paired seeds" in row
    assert next(line for line in lines if line.startswith("| OHEM | 0.5 | 256 ")).count("not in this sweep") == 1
    assert "| FL | – | – | 36.0 | 41.0 ± 1.0" in md
    assert "| `loss=softmax_bg` |  |  | not in the paper | 38.0 ± 0.0" in md  # other groups follow the table
    assert "tuning" not in md  # runs on the tuning split are no rows
    # the paper orders FL (36.0) > OHEM .7/256 (31.8) > .7/128 (31.1) = 1:3/128 (31.1); ours FL > 256 > 128 > 1:3
    assert "over the 4 rows both have: rho = +0.95" in md


def test_too_few_rows_give_nothing(tmp_path):
    groups = {"loss=focal": [run(tmp_path, "f", {"_target_": FOCAL, "gamma": 2.0}, 0, 0.4)],
              "ohem": [run(tmp_path, "o", ohem(0.7, 256), 0, 0.3)]}
    assert table1d_section(groups) == []
