"""A run folder that cannot be written: refused before training with one line, or, when the
disk fills during training, a failed checkpoint that leaves the previous one intact."""

import os
import subprocess
import sys

import pytest
import torch

from detection.run_folder import RunFolder, load_checkpoint
from tests.conftest import ROOT, tiny_overrides

# train.py's entry point with a disk that fills while the second checkpoint is written.
FULL_DISK = """
import errno, sys
import torch
import train
real_save, calls = torch.save, []
def save(state, f, *args, **kwargs):
    calls.append(1)
    real_save(state, f, *args, **kwargs)
    if len(calls) == 2:
        f.truncate(f.tell() // 2)
        raise OSError(errno.ENOSPC, "No space left on device")
torch.save = save
sys.argv = ["train.py", *sys.argv[1:]]
train.main()
"""


def _train(args, script=None):
    cmd = [sys.executable, "train.py", *args] if script is None else [
        sys.executable, "-c", script, f"--config-path={ROOT / 'configs'}", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_a_folder_that_cannot_be_made_is_one_line_before_anything_runs(tmp_path):
    (tmp_path / "file").write_text("x")
    out = _train([f"hydra.run.dir={tmp_path / 'file' / 'run'}"])
    assert out.returncode == 2
    assert out.stderr.strip() == f"cannot write to {tmp_path / 'file' / 'run'}: Not a directory (ENOTDIR)"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_an_unwritable_folder_is_one_line_naming_it(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_dir.chmod(0o500)
    try:
        out = _train([f"hydra.run.dir={run_dir}"])
    finally:
        run_dir.chmod(0o700)
    assert out.returncode == 2
    assert out.stderr.startswith(f"cannot write to {run_dir}: permission denied (EACCES)")
    assert "Traceback" not in out.stderr


def test_a_disk_full_during_training_keeps_the_last_checkpoint_and_says_so(tmp_path, synthetic_cache):
    run_dir = tmp_path / "run"
    out = _train([*tiny_overrides(synthetic_cache), "eval_at_end=false", f"hydra.run.dir={run_dir}"], FULL_DISK)
    folder = RunFolder(run_dir)
    line = (f"cannot write the checkpoint {folder.checkpoint}: no space left on device (ENOSPC): free some space "
            f"or choose another folder (hydra.run.dir=..., hydra.sweep.dir=...); {folder.checkpoint} still holds "
            "the previous checkpoint")
    assert out.returncode == 1, out.stderr[-3000:]
    assert line in out.stdout + out.stderr and "Traceback" not in out.stderr
    status = folder.read_status()
    assert status["status"] == "failed" and status["message"] == line
    assert load_checkpoint(folder.checkpoint)["iter"] == 3  # the checkpoint of iteration 6 failed
    assert sorted(p.name for p in folder.checkpoint.parent.iterdir()) == ["last.pt"]
    assert all(torch.isfinite(v).all() for v in load_checkpoint(folder.checkpoint)["model"].values()
               if torch.is_tensor(v) and v.is_floating_point())
