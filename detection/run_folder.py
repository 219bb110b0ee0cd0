"""The run folder: what one run of train.py writes, defined once.

``train.py`` writes a run through ``RunFolder``; ``tools/report.py`` reads runs back through it.
No other module spells these names::

    <run>/config.yaml              the fully resolved config that ran
    <run>/.hydra/overrides.yaml    Hydra's copy of the command-line overrides
    <run>/train.log                the log (Hydra's job logging, configs/hydra/job_logging)
    <run>/metrics.jsonl            one JSON object per logged step, with its "iter"
    <run>/tb/                      TensorBoard events of the same numbers
    <run>/checkpoints/last.pt      model, optimizer, scaler, iteration, config (atomic)
    <run>/checkpoints/previous.pt  the checkpoint before it (a fallback if last.pt is damaged)
    <run>/eval.json                COCOeval's 12 stats by name and AP per category
    <run>/detections.json          the detections in COCO results format
    <run>/anchor_losses.pt         per-anchor classification losses of the foreground and
                                   background anchors of the first val images (Figure 4)
    <run>/status.json              running | paused | finished | diverged | failed | interrupted,
                                   with the pid, host and heartbeat of the process running it,
                                   the wall seconds of every session so far, the code version,
                                   the provenance (package versions, git commit, CPU, GPU), a
                                   message; paused (a stop_after slice) and interrupted (SIGTERM,
                                   SIGINT, a cluster's preemption) also have the iteration its
                                   checkpoint holds
    <run>/data.json                the annotation files (and image ids) its evaluation used, so
                                   tools.evaluate / tools.analyze can be run on the folder alone
    <run>/.lock                    held (fcntl) by the one process writing the run, with its pid
    <run>/replaced/<time>/         the records of an earlier run moved aside by start_over=true

A run whose status.json says running but whose process is gone (same host) reads as
``killed``, one whose heartbeat stopped long ago (another host) as ``interrupted``:
``effective_status``. Paused, interrupted and killed runs are ``STOPPED``: never results.
A run in a ``RESUMABLE`` state (those, and failed) continues from its checkpoint when its
command is run again (train.py's ``run_action``).
Every file is replaced atomically (a temporary file in the same folder, fsync, rename): a
crash or a reader never sees half a file. metrics.jsonl is appended line by line; a reader
skips a last line cut short by a kill.
"""

import contextlib
import errno
import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import torch
import yaml

STATUSES = ("running", "paused", "finished", "diverged", "failed", "interrupted")
# How runs read (effective_status) that stopped before their end: never results, always to be resumed.
STOPPED = ("paused", "interrupted", "killed")
# what a rerun of a run's command continues from its checkpoint (effective statuses): a stopped
# run, and one that failed (e.g. a full disk)
RESUMABLE = (*STOPPED, "failed")
ENDED = ("finished", "diverged", "failed")  # over: tools.records copies them (a rerun may retry a failed one)
# config keys that say how a run is driven, not what it computes: two runs that differ only
# in them are the same run (train.py's run_action, the sweep tools, the run folder's name).
# A dotted key names that key; a plain one also everything under it.
RUN_CONTROL = ("resume", "force", "retry_diverged", "dry_run", "start_over", "schedule.stop_after", "debug",
               "allow_device_change")
HEARTBEAT_EVERY = 10.0  # seconds between heartbeats of a running run
STALE_AFTER = 600.0  # a heartbeat this old (and no process to ask) means the run is not running
ROOT = Path(__file__).resolve().parents[1]


def flatten(d: dict, prefix: str = "") -> dict:
    """A nested config dict as {"a.b.c": value}: what two runs' configs are compared by."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class RunFolderBusy(RuntimeError):
    """Another process holds the run folder's writer lock."""


def is_run_control(key: str) -> bool:
    """Whether the flattened config key ``key`` (``"optim.lr"``) is one of RUN_CONTROL."""
    return any(key == k or key.startswith(k + ".") for k in RUN_CONTROL)


def identity_differences(recorded: dict, given: dict) -> list[str]:
    """The keys in which two resolved configs (nested dicts) differ, RUN_CONTROL aside, one
    ``"key: recorded -> given"`` line each, sorted by key."""
    old = {k: v for k, v in flatten(recorded).items() if not is_run_control(k)}
    new = {k: v for k, v in flatten(given).items() if not is_run_control(k)}
    return [f"{k}: {old.get(k, '<unset>')!r} -> {new.get(k, '<unset>')!r}"
            for k in sorted(old.keys() | new.keys()) if old.get(k, "<unset>") != new.get(k, "<unset>")]


def run_key(overrides: str) -> str:
    """The folder name of a single run from its command line's overrides (Hydra's
    ``job.override_dirname``, RUN_CONTROL left out): the same command finds the same folder.
    ``"optim.lr=0.5,seed=7"`` -> ``"optim.lr-0.5_seed-7"`` (a name that a command line's
    ``hydra.run.dir=`` takes unquoted), ``""`` -> ``"defaults"``; other characters a file name
    or an override cannot hold become ``_``; a name over 80 characters is cut and ends with a
    hash of the whole."""
    if not overrides:
        return "defaults"
    name = "".join(c if c.isalnum() or c in ".-_" else "-" if c == "=" else "_" for c in overrides)
    if len(name) > 80:
        name = f"{name[:71]}-{hashlib.sha256(overrides.encode()).hexdigest()[:8]}"
    return name


def write_json_atomic(path, obj) -> None:
    """Writes ``obj`` as JSON to ``path`` through a temporary file and ``os.replace``."""
    _write_atomic(path, lambda f: f.write(json.dumps(obj, indent=2).encode()))


def save_atomic(state: dict, path) -> None:
    """``torch.save`` to ``path`` through a temporary file and ``os.replace``."""
    _write_atomic(path, lambda f: torch.save(state, f))


def _write_atomic(path, write, keep_previous=None) -> None:
    """``write(file)`` to a temporary file, then rename it to ``path`` (first renaming the
    old ``path``, if any, to ``keep_previous``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


# errno -> what the one-line message says (the errno's name follows it)
_WRITE_ERRORS = {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                 errno.EROFS: "permission denied (read-only file system)", errno.ENOSPC: "no space left on device",
                 errno.EDQUOT: "no space left (disk quota exceeded)"}


def write_error(path, error: OSError, what: str = "write to") -> str:
    """One line for an OSError met writing ``path``: ``cannot write to /runs/x: permission
    denied (EACCES)``; the full-disk and unwritable cases say what to do."""
    name = errno.errorcode.get(error.errno, str(error.errno))
    reason = _WRITE_ERRORS.get(error.errno, error.strerror or str(error))
    hint = ""
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = ": choose a writable folder (hydra.run.dir=..., or hydra.sweep.dir=... for a sweep)"
    elif error.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = ": free some space or choose another folder (hydra.run.dir=..., hydra.sweep.dir=...)"
    return f"cannot {what} {path}: {reason} ({name}){hint}"


class WriteError(OSError):
    """A run folder that cannot be written (OSError with ``errno``, ``filename`` and a one-line
    message, see ``write_error``)."""

    def __init__(self, path, error: OSError, what: str = "write to", then: str = ""):
        super().__init__(error.errno, write_error(path, error, what) + then, str(path))

    def __str__(self) -> str:
        return self.strerror


def probe_writable(path) -> None:
    """Creates the folder ``path`` and writes, fsyncs and removes a small file in it: an
    unwritable or full folder is a WriteError before any work is done, not a failure later."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path, prefix=".write_probe.")
        try:
            os.write(fd, bytes(4096))
            os.fsync(fd)
        finally:
            os.close(fd)
            os.remove(tmp)
    except OSError as e:
        raise WriteError(path, e) from e


def resolve_checkpoint(spec, run_dir) -> Path:
    """``true`` -> this run's last.pt; a run folder -> its last.pt; a file -> itself."""
    path = Path(run_dir) if spec is True else Path(str(spec))
    if path.is_dir():
        path = RunFolder(path).checkpoint
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist (resume/checkpoint expects a .pt file or a run "
            "folder holding checkpoints/last.pt; to resume in place, run with "
            "hydra.run.dir=<that run folder> resume=true)"
        )
    return path


# The code that decides a run's numbers: a run folder written by other code is "another version".
# tools/, tests and docs can change under a study without that, and so can configs/: what they
# give a run is its resolved config, which run folders keep and compare key by key.
RUN_CODE = ("train.py", "detection", "losses", "datasets")


def code_version() -> str:
    """A hash of the .py files of RUN_CODE, their paths and contents."""
    h = hashlib.sha256()
    for top in RUN_CODE:
        path = ROOT / top
        for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if f.suffix == ".py" and f.is_file() and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


# provenance key -> distribution whose version it records
PACKAGES = {"torch": "torch", "torchvision": "torchvision", "numpy": "numpy", "pycocotools": "pycocotools",
            "hydra": "hydra-core"}


def provenance() -> dict:
    """What made a run besides its config and code (status.json's ``provenance``): the Python
    and package versions, the git commit and whether tracked files differed from it, the CPU
    model and the GPU's name (None without one)::

        {"python": "3.11.9", "torch": "2.5.1", "torchvision": "0.20.1", "numpy": "2.1.3",
         "pycocotools": "2.0.8", "hydra": "1.3.2", "git_commit": "aba34b2...", "git_dirty": false,
         "cpu": "AMD EPYC 9654 96-Core Processor", "gpu": null}
    """
    from importlib.metadata import PackageNotFoundError, version

    info = {"python": platform.python_version()}
    for key, dist in PACKAGES.items():
        try:
            info[key] = version(dist)
        except PackageNotFoundError:
            info[key] = None
    commit, dirty = _git("rev-parse", "HEAD"), _git("status", "--porcelain", "--untracked-files=no")
    info["git_commit"], info["git_dirty"] = commit, None if commit is None or dirty is None else bool(dirty)
    info["cpu"] = _cpu_model()
    info["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return info


def _git(*args) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or None


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (from /proc; tells a live run from a reused pid)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, start: str | None) -> bool:
    if Path("/proc").is_dir():
        return _process_start(pid) is not None and (start is None or _process_start(pid) == start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def effective_status(status: dict | None, now: float | None = None) -> str | None:
    """The status of a run as it is now: status.json's, except that a "running" run whose
    process is gone (same host) is "killed", and one whose heartbeat is older than
    STALE_AFTER seconds (a process we cannot ask) is "interrupted"."""
    if status is None or status["status"] != "running":
        return None if status is None else status["status"]
    if status.get("host") == socket.gethostname() and "pid" in status:
        return "running" if _alive(status["pid"], status.get("pid_start")) else "killed"
    beat = status.get("heartbeat", status.get("time", 0))
    return "running" if (time.time() if now is None else now) - beat <= STALE_AFTER else "interrupted"


def load_checkpoint(path, map_location="cpu") -> dict:
    """A checkpoint written by ``RunFolder.save_checkpoint``, with errors naming the file."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # a clear message instead of a pickle traceback
        raise RuntimeError(f"checkpoint {path} could not be read: {e}") from e
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"checkpoint {path} holds no 'model' entry: not an anchorbg checkpoint")
    return state


class RunFolder:
    """Paths and readers/writers of one run folder (see the module docstring)."""

    def __init__(self, path):
        self.path = Path(path)
        self.config = self.path / "config.yaml"
        self.overrides = self.path / ".hydra" / "overrides.yaml"
        self.log = self.path / "train.log"
        self.metrics = self.path / "metrics.jsonl"
        self.tb = self.path / "tb"
        self.checkpoint = self.path / "checkpoints" / "last.pt"
        self.previous_checkpoint = self.path / "checkpoints" / "previous.pt"
        self.eval = self.path / "eval.json"
        self.detections = self.path / "detections.json"
        self.anchor_losses = self.path / "anchor_losses.pt"
        self.status = self.path / "status.json"
        self.data = self.path / "data.json"
        self.lock_file = self.path / ".lock"
        self.replaced = self.path / "replaced"

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def holds_run(self) -> bool:
        """Whether a run was started here (its config or status is written)."""
        return self.config.is_file() or self.status.is_file()

    # --- writing (train.py, rank 0) ---
    def lock(self):
        """Takes the folder's writer lock (fcntl, on ``.lock``, holding this process's pid) and
        returns the open lock file: closing it, or the process ending however it ends,
        releases it. RunFolderBusy names the pid of the process holding it."""
        try:
            import fcntl
        except ImportError:  # no flock (Windows): status.json's live-pid check alone
            return open(os.devnull, "w")
        self.path.mkdir(parents=True, exist_ok=True)
        f = open(self.lock_file, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "of unknown pid"
            f.close()
            raise RunFolderBusy(f"{self.path} is being written by process {holder}: one process per run folder "
                                "(wait for it to end or stop it)") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        return f

    def move_aside(self) -> Path | None:
        """Moves the records of the run held here into ``replaced/<time>/`` (train.log copied
        there and emptied: the running process's log handler keeps appending to it); returns
        that folder, or None when there was nothing to move."""
        keep = {self.lock_file.name, self.replaced.name, self.log.name}
        entries = [p for p in self.path.iterdir() if p.name not in keep] if self.path.is_dir() else []
        if not entries:
            return None
        dest = self.replaced / time.strftime("%Y-%m-%d_%H-%M-%S")
        while dest.exists():
            dest = dest.with_name(dest.name + "+")
        dest.mkdir(parents=True)
        for p in entries:
            os.replace(p, dest / p.name)
        if self.log.is_file():
            shutil.copy2(self.log, dest / self.log.name)
            with self.log.open("r+") as f:
                f.truncate(0)
        return dest

    def write_config(self, yaml_text: str) -> None:
        _write_atomic(self.config, lambda f: f.write(yaml_text.encode()))  # other ranks read it (run_action)

    def write_hydra(self, config_yaml: str, hydra_yaml: str, overrides: list[str]) -> None:
        """``.hydra/``: the config as composed, Hydra's own config and the command line's
        overrides (what Hydra writes itself, here written by train.py once the run is
        accepted: ``hydra.output_subdir`` is null, so a refused start leaves them alone)."""
        for name, text in (("config.yaml", config_yaml), ("hydra.yaml", hydra_yaml),
                           ("overrides.yaml", yaml.safe_dump([str(o) for o in overrides]))):
            _write_atomic(self.overrides.parent / name, lambda f, t=text: f.write(t.encode()))

    def write_data(self, info: dict) -> None:
        """data.json: the annotation files (and image ids) the run's evaluation used."""
        write_json_atomic(self.data, info)

    def write_status(self, status: str, **info) -> None:
        if status not in STATUSES:
            raise ValueError(f"run status {status!r}: expected one of {STATUSES}")
        write_json_atomic(self.status, {"status": status, "time": time.time(), **info})

    def save_checkpoint(self, state: dict) -> None:
        """last.pt, atomically; the checkpoint it replaces becomes previous.pt. A write that
        fails (a full disk) raises WriteError naming the file and leaves last.pt as it was."""
        try:
            _write_atomic(self.checkpoint, lambda f: torch.save(state, f), keep_previous=self.previous_checkpoint)
        except OSError as e:
            kept = next((p for p in (self.checkpoint, self.previous_checkpoint) if p.is_file()), None)
            then = f"; {kept} still holds the previous checkpoint" if kept else ""
            raise WriteError(self.checkpoint, e, "write the checkpoint", then) from e

    def append_metrics(self, record: dict) -> None:
        with self.metrics.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_metrics(self, last_iter: int) -> None:
        """On resume: drop the lines logged after the checkpoint (they will be logged again)."""
        rows, _ = self.read_metrics()
        self.metrics.write_text("".join(json.dumps(r) + "\n" for r in rows if r["iter"] <= last_iter))

    def write_eval(self, stats: dict, detections: list[dict]) -> None:
        write_json_atomic(self.detections, detections)
        write_json_atomic(self.eval, stats)

    def save_anchor_losses(self, fg, bg) -> None:
        save_atomic({"fg": fg, "bg": bg}, self.anchor_losses)

    # --- reading (tools/report.py, resume) ---
    def read_metrics(self) -> tuple[list[dict], list[int]]:
        """(rows with an int "iter", 1-based numbers of unreadable lines); none when missing."""
        rows, bad = [], []
        text = self.metrics.read_text() if self.metrics.is_file() else ""
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            if isinstance(row, dict) and isinstance(row.get("iter"), int):
                rows.append(row)
            else:  # e.g. a last line cut short when the job was killed while writing it
                bad.append(i)
        return rows, bad

    def read_status(self) -> dict | None:
        """status.json as a dict (None when missing); ValueError when it is not a run status."""
        status = self._read(self.status, json.loads)
        if status is not None and not (isinstance(status, dict) and status.get("status") in STATUSES):
            raise ValueError(f"{str(status)[:60]}: expected a dict with status in {STATUSES}")
        return status

    def read_config(self) -> dict | None:
        return self._read(self.config, yaml.safe_load)

    def read_overrides(self) -> list[str] | None:
        overrides = self._read(self.overrides, yaml.safe_load)
        if overrides is not None and not isinstance(overrides, list):
            raise ValueError(f"expected a list of overrides, got {str(overrides)[:80]}")
        return None if overrides is None else [str(o) for o in overrides]

    def read_eval(self) -> dict | None:
        return self._read(self.eval, json.loads)

    def read_data(self) -> dict | None:
        return self._read(self.data, json.loads)

    def load_anchor_losses(self) -> dict | None:
        """{"fg": Tensor[P], "bg": Tensor[Q]} float32, or None when the run wrote none."""
        if not self.anchor_losses.is_file():
            return None
        return torch.load(self.anchor_losses, map_location="cpu", weights_only=True)

    @staticmethod
    def _read(path: Path, parse):
        return parse(path.read_text()) if path.is_file() else None


class StatusWriter:
    """status.json of the run this process executes: "running" with a heartbeat, then how it
    ended. ``seconds`` counts the wall time of every session of the run: a resumed run starts
    from what its earlier sessions spent (``base_seconds``).

    ``devices`` lists what the run's iterations were trained on, in order:
    ``[{"device": "NVIDIA H200", "kind": "cuda", "precision": "bf16", "iterations": 4000},
    {"device": "cpu (2 threads)", "kind": "cpu", "precision": "fp32", "iterations": 2000}]``:
    the earlier sessions' (``devices``, from the status being resumed) and this one's
    (``session``: device, kind, precision), counting the iterations each contributed to the
    weights (a session resumed from iteration k keeps k iterations of the earlier ones)."""

    def __init__(self, folder: RunFolder, base_seconds: float = 0.0, enabled: bool = True, device: str | None = None,
                 devices: list[dict] | None = None, session: dict | None = None):
        self.folder, self.base, self.enabled = folder, float(base_seconds), enabled
        self.t0 = self.last_beat = time.time()
        self.progress: dict = {}  # the last heartbeat's info
        self.before, self.session = [dict(d) for d in devices or []], session
        self.iteration = None  # the last iteration heartbeat() was told of
        self.info = {"pid": os.getpid(), "pid_start": _process_start(os.getpid()), "host": socket.gethostname(),
                     "code": code_version(), "device": device, "provenance": provenance() if enabled else None}

    @property
    def seconds(self) -> float:
        return self.base + time.time() - self.t0

    def devices(self) -> list[dict]:
        """The run's devices so far: the earlier sessions', then this one's iterations."""
        if "start_iteration" not in self.progress:  # training has not started (yet)
            return [dict(d) for d in self.before]
        start = self.progress["start_iteration"]
        out = kept_devices(self.before, start)
        done = self.progress.get("iteration", start) - start
        if self.session is not None and done > 0:
            if out and all(out[-1].get(k) == self.session.get(k) for k in ("device", "kind", "precision")):
                out[-1]["iterations"] += done
            else:
                out.append({**self.session, "iterations": done})
        return out

    def _write(self, status: str, **info) -> None:
        if self.enabled:
            self.folder.write_status(status, **self.info, heartbeat=time.time(), seconds=round(self.seconds, 1),
                                     devices=self.devices(), **info)

    def running(self, **info) -> None:
        self._write("running", **info)

    def heartbeat(self, **info) -> None:
        """"running" again, at most every HEARTBEAT_EVERY seconds (cheap to call every step);
        ``info`` (``iteration``, ``start_iteration``, ``checkpoint_iteration``) is kept in
        ``progress`` at every call."""
        self.progress.update(info)
        self.iteration = info.get("iteration", self.iteration)
        if time.time() - self.last_beat >= HEARTBEAT_EVERY:
            self.last_beat = time.time()
            self._write("running", **self.progress)

    def end(self, status: str, **info) -> None:
        self._write(status, **info)


def kept_devices(devices: list[dict], iterations: int) -> list[dict]:
    """``devices`` cut or extended to ``iterations`` in all: what a run resumed from the
    checkpoint of that iteration keeps. Iterations past the checkpoint (lost with a killed
    process) are dropped from the end; iterations its heartbeats did not count yet go to the
    last device; with no record at all they are on an unknown device."""
    out, left = [], iterations
    for d in devices:
        if left <= 0:
            break
        out.append({**d, "iterations": min(d.get("iterations", 0), left)})
        left -= out[-1]["iterations"]
    if left > 0:
        if out:
            out[-1]["iterations"] += left
        else:
            out.append({"device": None, "kind": None, "precision": None, "iterations": left})
    return out


def device_change(devices: list[dict] | None, session: dict) -> str | None:
    """How ``session`` (its kind and precision) differs from what the run started on (the
    first of ``devices`` with a known kind), or None."""
    first = next((d for d in devices or [] if d.get("kind")), None)
    if first is None or (first["kind"], first.get("precision")) == (session["kind"], session["precision"]):
        return None
    return (f"it started on {first['kind']} {first.get('precision')} ({first.get('device')}), this session would train "
            f"on {session['kind']} {session['precision']} ({session['device']})")


class MetricsWriter:
    """The run's numbers to metrics.jsonl and TensorBoard; opened once per run (rank 0).

    ``log({"iter": 40, "loss": 0.3, ...})`` appends the line and adds every other number as
    the scalar ``train/<key>`` at step 40; ``scalars("eval", {"AP": .5}, 40)`` adds
    TensorBoard scalars only.
    """

    def __init__(self, folder: RunFolder):
        from torch.utils.tensorboard import SummaryWriter  # tensorboard is slow to import

        self.folder = folder
        self.tb = SummaryWriter(str(folder.tb))

    def log(self, record: dict) -> None:
        self.folder.append_metrics(record)
        self.scalars("train", {k: v for k, v in record.items() if k != "iter"}, record["iter"])

    def scalars(self, prefix: str, values: dict, step: int) -> None:
        for k, v in values.items():
            if isinstance(v, (int, float)):
                self.tb.add_scalar(f"{prefix}/{k}", v, step)

    def close(self) -> None:
        self.tb.close()
