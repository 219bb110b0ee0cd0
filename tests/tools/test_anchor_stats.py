from tests.conftest import compose_config
from tools.anchor_stats import anchor_stats


def _stats(dataset, cache, **gen):
    overrides = [f"dataset={dataset}", f"dataset.cache_dir={cache}", "dataset.generator.num_train=16",
                 "dataset.generator.num_val=2"] + [f"dataset.generator.{k}={v}" for k, v in gen.items()]
    return anchor_stats(compose_config(overrides), max_images=16, batch_size=8)


def test_counts_add_up_and_sparser_datasets_are_more_imbalanced(tmp_path):
    dense = _stats("synthetic", tmp_path)
    # 192 px, no padding: 9 anchors on 24^2 + 12^2 + 6^2 + 3^2 + 2^2 cells
    assert dense["anchors"] == 9 * (576 + 144 + 36 + 9 + 4)
    assert abs(dense["fg"] + dense["bg"] + dense["ignore"] - dense["anchors"]) < 1e-6
    assert dense["fg"] > 0 and dense["bg_per_fg"] == dense["bg"] / dense["fg"]
    sparse = _stats("synthetic_bg2000", tmp_path)
    assert sparse["bg_per_fg"] > 10 * dense["bg_per_fg"]
