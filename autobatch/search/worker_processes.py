"""Local worker processes: `autobatch worker`s that `tune --workers N` starts and waits for.

They read the storage URL from $AUTOBATCH_STORAGE, never from the command line, so a
password does not show in the process list.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import autobatch.stop as stop
from autobatch.search.workers import WAIT_S
from autobatch.storage import ENV_STORAGE

POLL_S = 2.0  # how often the tune looks at a study its workers run


def worker_command(i: int, study_name: str, *, deadline: float,
                   verify_from: float = math.inf, devices: Sequence[str] | None = None,
                   started: float | None = None, parent: int | None = None,
                   nproc_per_trial: int = 1) -> tuple[list[str], dict[str, str]]:
    """Worker i's command line and the environment it adds. The storage URL is never on
    the command line (`ps` shows it to every user); with devices, worker i sees only
    its nproc_per_trial of them (devices[i % len(devices)] for one); started (epoch s):
    the clock its lines count from; parent: the pid whose end ends the worker too."""
    env: dict[str, str] = {}
    device = "auto"
    if devices:
        first = i * nproc_per_trial % len(devices)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(devices[first:first + nproc_per_trial])
        device = "cuda"
    cmd = [sys.executable, "-m", "autobatch_cli", "worker", "--study-name", study_name,
           "--device", device]
    if nproc_per_trial > 1:
        cmd += ["--nproc-per-trial", str(nproc_per_trial)]
    if math.isfinite(deadline):
        cmd += ["--deadline", str(deadline)]
    if math.isfinite(verify_from):
        cmd += ["--verify-from", str(verify_from)]
    if started is not None:
        cmd += ["--started", str(started)]
    if parent is not None:
        cmd += ["--parent", str(parent)]
    return cmd, env


def spawn_workers(n: int, storage_url: str, study_name: str, *, deadline: float,
                  verify_from: float = math.inf, devices: Sequence[str] | None = None,
                  started: float | None = None,
                  on_poll: Callable[[], None] | None = None,
                  nproc_per_trial: int = 1) -> list[int]:
    """Start n worker processes on the study and wait for them; their exit codes.
    on_poll: called every POLL_S while they run (the tune's watch over the study).

    Each gets the storage URL in $AUTOBATCH_STORAGE (see worker_command). Ctrl-C or
    SIGTERM here is passed on (as SIGTERM) to the workers, which close their trials.
    The workers run in a session of their own, so that this is the only way a stop
    reaches them: a Ctrl-C to the terminal's process group arrives once, not twice
    (the second would mean "stop at once"); and they end with this process.
    """
    procs = []
    for i in range(n):
        cmd, env = worker_command(i, study_name, deadline=deadline, verify_from=verify_from,
                                  devices=devices,
                                  started=started, parent=os.getpid(),
                                  nproc_per_trial=nproc_per_trial)
        procs.append(subprocess.Popen(cmd, env={**os.environ, ENV_STORAGE: storage_url, **env},
                                      start_new_session=True))
    try:
        next_poll = time.monotonic()
        while any(p.poll() is None for p in procs):
            stop.check()
            if on_poll is not None and time.monotonic() >= next_poll:
                on_poll()
                next_poll = time.monotonic() + POLL_S
            time.sleep(WAIT_S / 10)
        return [p.returncode for p in procs]
    except BaseException:
        for p in procs:
            p.send_signal(signal.SIGTERM)  # handled even by a worker that ignores SIGINT
        for p in procs:
            p.wait()
        raise
