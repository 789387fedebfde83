"""A function run on the ranks of a torch.distributed job on this machine.

`Launch(job)` starts an agent process (its own session, so a Ctrl-C reaches only
this process, which passes it on) that runs PyTorch's elastic launcher
(torch.distributed.launcher.api.elastic_launch; c10d rendezvous on a free local port,
no restarts). The launcher spawns job.nproc ranks; each joins the process group
(train.distributed.join) and calls job.target(ranks, address, *job.args). Rank 0
may connect to `address` (a Unix socket this process listens on) to talk while it
runs; the return values of all ranks come back through the agent.

A rank that dies makes the launcher stop the others (SIGTERM, then SIGKILL after
SHUTDOWN_S) and the job raises RankDied naming the rank and how it ended. The agent
and the ranks end with the process that started them (stop.end_with_parent).
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

import autobatch.frames as frames
import autobatch.stop as stop
from autobatch.errors import RankDied
from autobatch.train.distributed import join, leave

SHUTDOWN_S = 5  # how long a rank has to end after SIGTERM before SIGKILL
MONITOR_S = 0.1  # how often the launcher looks at its ranks
AGENT = ("import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
         "from autobatch.train.launcher import agent_main; "
         "agent_main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))")


@dataclass(frozen=True, kw_only=True)
class RankJob:
    """target: 'module:function', called on every rank as fn(ranks, address, *args).
    device: 'cpu' (gloo) or 'cuda' (NCCL, rank i on cuda_devices[i], else cuda:i)."""

    target: str
    args: tuple[Any, ...]
    nproc: int
    device: str
    cuda_devices: tuple[str, ...] | None = None


class Launch:
    """A running job; use it as a context manager, which stops and cleans up."""

    def __init__(self, job: RankJob) -> None:
        self._dir = tempfile.mkdtemp(prefix="autobatch-ranks-")
        self.address = str(Path(self._dir) / "rank0")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.address)
        self._listener.listen(1)
        self._conn: socket.socket | None = None
        to_agent_r, to_agent_w = os.pipe()
        from_agent_r, from_agent_w = os.pipe()
        env = dict(os.environ)
        if job.cuda_devices:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(job.cuda_devices)
        self._agent = subprocess.Popen(
            [sys.executable, "-c", AGENT, str(to_agent_r), str(from_agent_w), str(os.getpid())],
            pass_fds=(to_agent_r, from_agent_w), env=env, start_new_session=True)
        os.close(to_agent_r)
        os.close(from_agent_w)
        self._reader = frames.Reader(from_agent_r)
        frames.send(to_agent_w, (job, self.address))
        os.close(to_agent_w)

    def connection(self) -> int | None:
        """The file descriptor of rank 0's connection; None when the job ended first."""
        self._listener.settimeout(frames.IDLE_S)
        while self._agent.poll() is None:
            stop.check()  # a stop signal is obeyed while waiting on the ranks
            try:
                self._conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self._conn.setblocking(True)
            return self._conn.fileno()
        return None

    def results(self, within: float = math.inf) -> list[Any]:
        """Every rank's return value, in rank order; RankDied when a rank died, or when
        the ranks have not all ended `within` seconds (a rank that hangs: the launcher
        then stops them all)."""
        deadline = time.monotonic() + within

        def waiting() -> None:
            stop.check()
            if time.monotonic() > deadline:
                raise RankDied(f"a rank was still running {within:g}s after rank 0 ended "
                               "(hung); the ranks were stopped")

        message = self._reader.next(idle=waiting)
        status = self._agent.wait()
        if message is None:
            raise RankDied(f"the launcher of the ranks ended without a report (exit status "
                           f"{status})")
        kind, payload = message
        if kind == "died":
            raise RankDied(payload)
        return payload

    def __enter__(self) -> Launch:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._agent.poll() is None:  # stopped early: the launcher stops the ranks
            self._agent.send_signal(signal.SIGTERM)
            self._agent.wait()
        for s in (self._conn, self._listener):
            if s is not None:
                s.close()
        os.close(self._reader.fd)
        Path(self.address).unlink(missing_ok=True)
        os.rmdir(self._dir)


def agent_main(read_fd: int, write_fd: int, parent: int) -> None:
    """The agent process: read (job, address), launch the ranks, report their values."""
    # the launcher's loggers take their level from $LOGLEVEL when first imported (here):
    # RankDied says what happened, in one line
    os.environ["LOGLEVEL"] = "CRITICAL"
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    stop.end_with_parent(parent)
    for name in ("torch.distributed.elastic", "torch.multiprocessing"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    job, address = frames.Reader(read_fd).next()
    target_of(job.target)  # imported once here: the ranks are forked from this process
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=job.nproc, run_id=str(uuid.uuid4()),
        rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
        monitor_interval=MONITOR_S, shutdown_timeout=SHUTDOWN_S, start_method="fork")
    try:
        values = elastic_launch(config, rank_main)(job, address, os.getpid())
        outcome: tuple[str, Any] = ("ok", [values[rank] for rank in range(job.nproc)])
    except ChildFailedError as exc:
        outcome = ("died", "; ".join(f"rank {rank} {ended(f.exitcode)}"
                                     for rank, f in sorted(exc.failures.items())))
    except SignalException:  # the launcher has stopped the ranks; the parent is stopping
        return
    frames.send(write_fd, outcome)


def ended(exitcode: int) -> str:
    """How a rank's process ended, in words."""
    if exitcode < 0:
        return f"was killed by {signal.Signals(-exitcode).name}"
    return f"exited with status {exitcode} without reporting"


def rank_main(job: RankJob, address: str, agent: int) -> Any:
    """One rank: join the group, call the target, leave."""
    stop.end_with_parent(agent)
    ranks = join(torch.device(job.device))
    try:
        return target_of(job.target)(ranks, address, *job.args)
    finally:
        leave()


def target_of(name: str) -> Callable[..., Any]:
    module, _, function = name.partition(":")
    return getattr(importlib.import_module(module), function)
