import json

import pytest
import torch

from detection.run_folder import (
    RunFolder,
    flatten,
    load_checkpoint,
    resolve_checkpoint,
    save_atomic,
    write_json_atomic,
)


def test_flatten_joins_nested_keys_with_dots_and_keeps_leaves_as_they_are():
    cfg = {"seed": 0, "optim": {"lr": 0.1, "steps": [6, 8]}, "model": {"head": {"convs": 4}, "name": None}}
    assert flatten(cfg) == {"seed": 0, "optim.lr": 0.1, "optim.steps": [6, 8], "model.head.convs": 4,
                            "model.name": None}
    assert flatten({}) == {} and flatten({"a": {}}) == {}  # an empty group leaves no key


def test_save_is_atomic_and_resolve_finds_last(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.save_checkpoint({"model": {"w": torch.ones(2)}, "iter": 3})
    folder.save_checkpoint({"model": {"w": torch.zeros(2)}, "iter": 4})  # replaces, leaves no temp file
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    assert folder.checkpoint == path and sorted(p.name for p in path.parent.iterdir()) == ["last.pt", "previous.pt"]
    assert resolve_checkpoint(tmp_path / "run", tmp_path) == path
    assert resolve_checkpoint(True, tmp_path / "run") == path
    assert load_checkpoint(path)["iter"] == 4


def test_a_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "x.pt"
    save_atomic({"model": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        save_atomic({"model": Unpicklable()}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"] and load_checkpoint(path)["model"] == 1
    write_json_atomic(tmp_path / "a.json", {"b": [1, 2]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"b": [1, 2]}


def test_bad_checkpoints_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt does not exist"):
        resolve_checkpoint(tmp_path / "missing.pt", tmp_path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="junk.pt could not be read"):
        load_checkpoint(junk)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no 'model' entry"):
        load_checkpoint(tmp_path / "other.pt")


def test_metrics_status_and_readers(tmp_path):
    folder = RunFolder(tmp_path)
    assert folder.read_metrics() == ([], []) and folder.read_status() is None and folder.read_eval() is None
    for it in (2, 4, 6):
        folder.append_metrics({"iter": it, "loss": it / 10})
    with folder.metrics.open("a") as f:
        f.write('{"iter": 8, "lo')  # a line cut short by a kill
    rows, bad = folder.read_metrics()
    assert [r["iter"] for r in rows] == [2, 4, 6] and bad == [4]
    folder.truncate_metrics(4)  # resuming from the checkpoint of iteration 4
    assert folder.metrics.read_text() == '{"iter": 2, "loss": 0.2}\n{"iter": 4, "loss": 0.4}\n'

    folder.write_status("finished", seconds=3.5)
    status = folder.read_status()
    assert status["status"] == "finished" and status["seconds"] == 3.5 and status["time"] > 0
    with pytest.raises(ValueError, match="run status 'done'"):
        folder.write_status("done")
    folder.status.write_text('{"status": "exploded"}')
    with pytest.raises(ValueError, match="exploded"):
        folder.read_status()

    folder.overrides.parent.mkdir()
    folder.overrides.write_text("- loss=focal\n- seed=1\n")
    assert folder.read_overrides() == ["loss=focal", "seed=1"]
    folder.save_anchor_losses(torch.tensor([1.0, 2.0]), torch.zeros(3))
    losses = folder.load_anchor_losses()
    assert losses["fg"].tolist() == [1.0, 2.0] and losses["bg"].tolist() == [0.0] * 3


def test_effective_status_tells_a_killed_run_from_a_live_one(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    from detection.run_folder import STALE_AFTER, StatusWriter, effective_status

    folder = RunFolder(tmp_path)
    writer = StatusWriter(folder, base_seconds=100.0)
    writer.running()
    status = folder.read_status()
    assert status["pid"] == os.getpid() and status["host"] == socket.gethostname()
    assert effective_status(status) == "running"  # this process is alive
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert effective_status({**status, "pid": int(dead.stdout)}) == "killed"
    assert effective_status({**status, "pid_start": "0"}) == "killed"  # the pid now belongs to another process
    other = {"status": "running", "host": "elsewhere", "pid": 1, "heartbeat": 1000.0}
    assert effective_status(other, now=1000.0 + STALE_AFTER) == "running"
    assert effective_status(other, now=1001.0 + STALE_AFTER) == "interrupted"
    assert effective_status({"status": "diverged"}) == "diverged" and effective_status(None) is None
    writer.end("finished", AP=0.5)
    status = folder.read_status()
    assert status["status"] == "finished" and status["AP"] == 0.5 and status["seconds"] >= 100.0  # earlier sessions


def test_save_checkpoint_keeps_the_previous_one(tmp_path):
    folder = RunFolder(tmp_path)
    folder.save_checkpoint({"model": {}, "iter": 3})
    assert not folder.previous_checkpoint.exists()
    folder.save_checkpoint({"model": {}, "iter": 6})
    assert load_checkpoint(folder.checkpoint)["iter"] == 6 and load_checkpoint(folder.previous_checkpoint)["iter"] == 3


def test_the_code_version_follows_the_code_that_decides_a_run(tmp_path, monkeypatch):
    from detection import run_folder

    for f in ("train.py", "detection/a.py", "losses/l.py", "configs/x.yaml", "tools/report.py", "README.md"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("1")
    monkeypatch.setattr(run_folder, "ROOT", tmp_path)
    version = run_folder.code_version()
    (tmp_path / "tools" / "report.py").write_text("2")  # a tool or a doc: the same runs
    (tmp_path / "README.md").write_text("2")
    (tmp_path / "configs" / "x.yaml").write_text("2")  # a config: compared as the resolved config instead
    assert run_folder.code_version() == version
    (tmp_path / "losses" / "l.py").write_text("2")  # the code of a run: another version
    changed = run_folder.code_version()
    assert changed != version
    (tmp_path / "detection" / "a.py").rename(tmp_path / "detection" / "b.py")  # a moved file too
    assert run_folder.code_version() != changed


@pytest.mark.parametrize("code, says", [("EACCES", "permission denied (EACCES)"),
                                        ("EROFS", "permission denied (read-only file system) (EROFS)"),
                                        ("ENOSPC", "no space left on device (ENOSPC)"),
                                        ("EDQUOT", "no space left (disk quota exceeded) (EDQUOT)")])
def test_a_write_error_is_one_line_naming_the_path_and_the_errno(tmp_path, monkeypatch, code, says):
    import errno
    import os

    from detection.run_folder import WriteError, probe_writable

    def refuse(fd, data):
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))

    monkeypatch.setattr(os, "write", refuse)
    with pytest.raises(WriteError) as e:
        probe_writable(tmp_path / "run")
    monkeypatch.undo()
    message = str(e.value)
    assert message.startswith(f"cannot write to {tmp_path / 'run'}: {says}") and "\n" not in message
    assert "hydra.run.dir=" in message and e.value.errno == getattr(errno, code)
    assert list((tmp_path / "run").iterdir()) == []  # the probe's file is gone


def test_the_write_probe_leaves_nothing_and_names_a_folder_it_cannot_make(tmp_path):
    from detection.run_folder import WriteError, probe_writable

    probe_writable(tmp_path / "a" / "b")
    assert list((tmp_path / "a" / "b").iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteError, match=f"cannot write to {tmp_path / 'file' / 'run'}: .*ENOTDIR"):
        probe_writable(tmp_path / "file" / "run")


def test_a_checkpoint_write_failing_midway_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """A full disk while torch.save writes: part of the file is written, then OSError."""
    import errno

    from detection import run_folder
    from detection.run_folder import WriteError

    folder = RunFolder(tmp_path)
    folder.save_checkpoint({"model": {"w": torch.ones(3)}, "iter": 3})
    real_save = torch.save

    def half_then_full(state, f):
        real_save(state, f)
        f.truncate(f.tell() // 2)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_folder.torch, "save", half_then_full)
    with pytest.raises(WriteError) as e:
        folder.save_checkpoint({"model": {"w": torch.zeros(3)}, "iter": 6})
    assert str(e.value) == (f"cannot write the checkpoint {folder.checkpoint}: no space left on device (ENOSPC): free "
                            "some space or choose another folder (hydra.run.dir=..., hydra.sweep.dir=...); "
                            f"{folder.checkpoint} still holds the previous checkpoint")
    monkeypatch.undo()
    state = load_checkpoint(folder.checkpoint)
    assert state["iter"] == 3 and torch.equal(state["model"]["w"], torch.ones(3))
    assert sorted(p.name for p in folder.checkpoint.parent.iterdir()) == ["last.pt"]  # no temporary file left


def test_status_records_the_provenance_of_a_run(tmp_path):
    import platform
    import subprocess

    import hydra
    import numpy
    import torchvision

    from detection.run_folder import ROOT, StatusWriter

    StatusWriter(RunFolder(tmp_path)).running()
    p = RunFolder(tmp_path).read_status()["provenance"]
    assert set(p) == {"python", "torch", "torchvision", "numpy", "pycocotools", "hydra", "git_commit", "git_dirty",
                      "cpu", "gpu"}
    assert (p["python"], p["torch"].split("+")[0], p["torchvision"].split("+")[0], p["numpy"], p["hydra"]) == (
        platform.python_version(), torch.__version__.split("+")[0], torchvision.__version__.split("+")[0],
        numpy.__version__, hydra.__version__)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert p["git_commit"] == head.stdout.strip() and isinstance(p["git_dirty"], bool)
    assert p["cpu"] and (p["gpu"] is None) == (not torch.cuda.is_available())


def test_interrupted_is_a_status_a_rerun_resumes_never_a_result(tmp_path):
    from detection.run_folder import ENDED, RESUMABLE, STATUSES, STOPPED, effective_status

    folder = RunFolder(tmp_path)
    folder.write_status("interrupted", iteration=40, signal="SIGTERM")
    assert effective_status(folder.read_status()) == "interrupted"
    assert "interrupted" in STATUSES and "interrupted" in STOPPED and set(STOPPED) <= set(RESUMABLE)
    assert not set(STOPPED) & set(ENDED)


CPU32 = {"device": "cpu (2 threads)", "kind": "cpu", "precision": "fp32"}
H200 = {"device": "NVIDIA H200", "kind": "cuda", "precision": "bf16"}


def test_status_lists_each_device_a_run_trained_on_and_its_iterations(tmp_path):
    from detection.run_folder import StatusWriter

    folder = RunFolder(tmp_path)
    first = StatusWriter(folder, session=H200)
    first.heartbeat(start_iteration=0, checkpoint_iteration=0)
    for it in range(1, 5):
        first.heartbeat(iteration=it)
    first.end("interrupted", iteration=4)
    assert folder.read_status()["devices"] == [{**H200, "iterations": 4}]
    second = StatusWriter(folder, devices=folder.read_status()["devices"], session=CPU32)
    second.running()
    assert folder.read_status()["devices"] == [{**H200, "iterations": 4}]  # nothing trained here yet
    second.heartbeat(start_iteration=4)
    second.heartbeat(iteration=6)
    second.end("finished")
    assert folder.read_status()["devices"] == [{**H200, "iterations": 4}, {**CPU32, "iterations": 2}]
    third = StatusWriter(folder, devices=folder.read_status()["devices"], session=CPU32)  # same device: one entry
    third.heartbeat(start_iteration=6)
    third.heartbeat(iteration=9)
    assert third.devices() == [{**H200, "iterations": 4}, {**CPU32, "iterations": 5}]


def test_a_resume_keeps_the_iterations_its_checkpoint_holds():
    from detection.run_folder import kept_devices

    devices = [{**H200, "iterations": 4}, {**CPU32, "iterations": 3}]
    assert kept_devices(devices, 7) == devices
    assert kept_devices(devices, 5) == [{**H200, "iterations": 4}, {**CPU32, "iterations": 1}]  # killed after 5
    assert kept_devices(devices, 3) == [{**H200, "iterations": 3}]
    assert kept_devices(devices, 9) == [{**H200, "iterations": 4}, {**CPU32, "iterations": 5}]  # heartbeat lag
    assert kept_devices([], 2) == [{"device": None, "kind": None, "precision": None, "iterations": 2}]
    assert kept_devices(devices, 0) == []


def test_a_device_change_is_another_kind_or_precision():
    from detection.run_folder import device_change

    assert device_change(None, CPU32) is None and device_change([], CPU32) is None
    assert device_change([{**H200, "iterations": 4}], {**H200, "device": "NVIDIA H100 80GB HBM3"}) is None
    assert device_change([{**H200, "iterations": 4}], CPU32) == (
        "it started on cuda bf16 (NVIDIA H200), this session would train on cpu fp32 (cpu (2 threads))")
    assert device_change([{**CPU32, "iterations": 4}], {**CPU32, "precision": "bf16"}).startswith(
        "it started on cpu fp32")
