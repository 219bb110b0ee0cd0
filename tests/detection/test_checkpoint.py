import pytest
import torch

from detection import checkpoint as ckpt


def test_save_is_atomic_and_resolve_finds_last(tmp_path):
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    ckpt.save_atomic({"model": {"w": torch.ones(2)}, "iter": 3}, path)
    ckpt.save_atomic({"model": {"w": torch.zeros(2)}, "iter": 4}, path)  # replaces, leaves no temp file
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]
    assert ckpt.resolve(tmp_path / "run", tmp_path) == path
    assert ckpt.resolve(True, tmp_path / "run") == path
    assert ckpt.load(path)["iter"] == 4


def test_bad_checkpoints_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt does not exist"):
        ckpt.resolve(tmp_path / "missing.pt", tmp_path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="junk.pt could not be read"):
        ckpt.load(junk)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no 'model' entry"):
        ckpt.load(tmp_path / "other.pt")
