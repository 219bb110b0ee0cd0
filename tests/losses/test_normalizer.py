import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from losses.normalizer import FgNormalizer


def test_plain_count_is_clamped():
    norm = FgNormalizer(ema_momentum=None)
    assert norm(7).item() == 7.0
    assert norm(torch.tensor(0)).item() == 1.0  # an all-background batch divides by 1
    assert norm(torch.tensor([3])).dtype == torch.float32


def test_ema_worked_example():
    norm = FgNormalizer(ema_momentum=0.9)
    got = [norm(c).item() for c in (10, 20, 0)]
    assert got == pytest.approx([10.0, 11.0, 10.0])  # 0.9*10 + 0.1*20; 0.9*11 + 0.1*max(0, 1)


def test_detectron2_start_value():
    norm = FgNormalizer(ema_momentum=0.9, initial=100)
    assert norm(10).item() == pytest.approx(91.0)
    assert norm(10).item() == pytest.approx(0.9 * 91 + 1)


def test_input_tensor_is_not_modified():
    count = torch.tensor(5.0)
    FgNormalizer(ema_momentum=None)(count)
    assert count.item() == 5.0


def test_resume_reproduces_the_uninterrupted_run():
    counts = [13, 2, 0, 41, 7, 7, 19, 3]
    straight = FgNormalizer()
    expected = [straight(c) for c in counts]
    first = FgNormalizer()
    got = [first(c) for c in counts[:4]]
    state = first.state_dict()
    resumed = FgNormalizer()
    resumed.load_state_dict(state)
    got += [resumed(c) for c in counts[4:]]
    assert all(torch.equal(a, b) for a, b in zip(got, expected))  # bitwise
    fresh = FgNormalizer()
    assert fresh.state_dict() == {"ema": None}
    fresh.load_state_dict(fresh.state_dict())
    assert fresh(5).item() == 5.0


def test_bad_arguments():
    for kwargs in ({"ema_momentum": 1.0}, {"ema_momentum": -0.1}, {"initial": 0}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            FgNormalizer(**kwargs)
    with pytest.raises(ValueError, match="num_fg"):
        FgNormalizer()(-1)
    with pytest.raises(ValueError, match="num_fg"):
        FgNormalizer()(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="'ema'"):
        FgNormalizer().load_state_dict({})


def _worker(rank, world_size, init_file, results):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        norm = FgNormalizer(ema_momentum=0.5)
        counts = [(3, 5), (0, 0), (10, 2)]  # per step: (rank 0, rank 1)
        out = [norm(torch.tensor(step[rank])).item() for step in counts]
        plain = FgNormalizer(ema_momentum=None)(counts[0][rank]).item()  # an int, not a Tensor
        results[rank] = out + [plain]
    finally:
        dist.destroy_process_group()


def test_count_is_all_reduced_over_ranks(tmp_path):
    # Global counts 8, 0 -> 1, 12, divided by the 2 ranks (DDP averages the gradients):
    # 4, 0.5, 6; EMA(0.5): 4, 2.25, 4.125 on both ranks.
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_worker, args=(2, str(tmp_path / "init"), results), nprocs=2, join=True)
        assert results[0] == results[1] == pytest.approx([4.0, 2.25, 4.125, 4.0])
