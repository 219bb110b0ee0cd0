"""The seeded sample stream: SeededItems draws as torch.manual_seed(seed) would, and leaves
the caller's random state as it was."""

import torch
from torch.utils.data import Dataset

from datasets.sampler import SeededItems, StreamSampler


class Draws(Dataset):
    def __len__(self):
        return 3

    def __getitem__(self, index):
        return torch.rand(4), torch.randint(0, 1000, (2,))


def test_seeded_items_draw_like_manual_seed_and_restore_the_state():
    items = SeededItems(Draws())
    torch.manual_seed(7)
    before = torch.get_rng_state()
    for seed in (0, 1, 10**12 + 3):
        u, k = items[(1, seed)]
        torch.manual_seed(seed)
        assert torch.equal(u, torch.rand(4)) and torch.equal(k, torch.randint(0, 1000, (2,)))
        torch.set_rng_state(before)
    a, b = items[(0, 5)], items[(2, 5)]
    assert torch.equal(a[0], b[0])  # the seed, not the index, decides the draws
    assert torch.equal(torch.get_rng_state(), before)


def test_seeded_items_restore_the_state_when_an_item_raises():
    class Bad(Draws):
        def __getitem__(self, index):
            torch.rand(3)
            raise ValueError("bad image")

    before = torch.get_rng_state()
    try:
        SeededItems(Bad())[(0, 1)]
    except ValueError:
        pass
    assert torch.equal(torch.get_rng_state(), before)


def test_stream_resumes_at_any_position():
    whole = StreamSampler(5, seed=3)
    first = [x for _, x in zip(range(13), whole)]
    assert [x for _, x in zip(range(6), StreamSampler(5, seed=3, start=7))] == first[7:13]
    assert sorted(i for i, _ in first[:5]) == list(range(5))  # an epoch is a permutation
