"""Checkpoints written atomically: a crash while saving never leaves a truncated file."""

import os
from pathlib import Path

import torch


def save_atomic(state: dict, path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def resolve(spec, run_dir) -> Path:
    """``true`` -> this run's last.pt; a run folder -> its last.pt; a file -> itself."""
    path = Path(run_dir) if spec is True else Path(str(spec))
    if path.is_dir():
        path = path / "checkpoints" / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist (resume/checkpoint expects a .pt file or a run "
            "folder holding checkpoints/last.pt; to resume in place, run with "
            "hydra.run.dir=<that run folder> resume=true)"
        )
    return path


def load(path, map_location="cpu") -> dict:
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # a clear message instead of a pickle traceback
        raise RuntimeError(f"checkpoint {path} could not be read: {e}") from e
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"checkpoint {path} holds no 'model' entry: not an anchorbg checkpoint")
    return state
