"""Stopping a run cleanly: SIGTERM, SIGINT and a cluster's preemption signal become a request
that the training loop honours at the end of its current step (checkpoint, status
``interrupted``, exit 128 + the signal's number: 143 for SIGTERM, 130 for SIGINT).

    stop = StopRequest(handover=preemption_signals()).install()
    ...                                   # in the loop, after each step:
    if stop.requested(device, world):     # every rank agrees (an all-reduce)
        save the checkpoint; raise Interrupted(iteration, signum)
    ...
    stop.hand_over(signum)                # submitit: checkpoint the job and requeue it

A second SIGINT raises KeyboardInterrupt at once (Ctrl-C twice: no waiting for the step).

Under Hydra's submitit launcher on SLURM, submitit handles the preemption / time-limit signal
(``SUBMITIT_PREEMPT_SIGNAL``, USR2 by default) by calling the launcher's ``checkpoint()``, which
returns a DelayedSubmission of the same job (same overrides, same job number, so the same run
folder), requeueing it and exiting. ``StopRequest`` takes that signal first: the step ends, the
checkpoint and status are written, and only then is submitit's handler called. The requeued
job finds its folder ``interrupted`` and resumes it (a sweep resumes such runs).
"""

import os
import signal

import torch
import torch.distributed as dist


class Interrupted(Exception):
    """A stop request honoured: the checkpoint at ``iteration`` is written."""

    def __init__(self, iteration: int, signum: int):
        self.iteration, self.signum = iteration, signum
        super().__init__(f"stopped at iteration {iteration} by {self.signal_name}; run the same command to resume")

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum


def preemption_signals() -> tuple[int, ...]:
    """The signal submitit sends a job before its time limit or on preemption, when this
    process runs inside a submitit job (SUBMITIT_EXECUTOR is set); else none."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return ()
    return (getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")),)


class StopRequest:
    """Records the first of SIGTERM, SIGINT and the ``handover`` signals that arrives.

    ``handover`` signals had a handler before (submitit's requeue): ``hand_over`` calls it once
    the checkpoint is written. ``install``/``uninstall`` replace and restore the handlers (main
    thread only)."""

    def __init__(self, handover: tuple[int, ...] = ()):
        self.signum: int | None = None
        self.handover = tuple(handover)
        self.previous: dict[int, object] = {}

    def install(self) -> "StopRequest":
        for s in (signal.SIGTERM, signal.SIGINT, *self.handover):
            self.previous[s] = signal.signal(s, self._handle)
        return self

    def uninstall(self) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        self.previous = {}

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        if self.signum is None:
            self.signum = signum
            # os.write: logging and print are not safe inside a signal handler
            os.write(2, f"{signal.Signals(signum).name} received: stopping after this step "
                        "(a second SIGINT stops at once)\n".encode())

    def requested(self, device: torch.device | None = None, world: int = 1) -> int | None:
        """The signal that stops the run now, the same on every rank (the largest number any
        rank received: an all-reduce, so all ranks stop at one iteration); None to go on."""
        flag = self.signum or 0
        if world > 1 and dist.is_initialized():
            t = torch.tensor([flag], device=device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = int(t.item())
        return flag or None

    def hand_over(self, signum: int) -> None:
        """Calls the handler ``signum`` had before ``install`` if it is a handover signal
        (submitit's checkpoint-and-requeue, which exits the process)."""
        previous = self.previous.get(signum)
        if signum in self.handover and callable(previous):
            previous(signum, None)


def ignore_in_worker(worker_id: int) -> None:
    """A DataLoader worker's ``worker_init_fn``: SIGINT and SIGTERM are for the main process.
    Ctrl-C and a scheduler signal the whole process group; a worker that died of it would fail
    the main process's next batch before it could finish its step and save. The workers end
    with the main process (their loader shuts them down; they watch their parent)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
