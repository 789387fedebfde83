"""The trial-runner seam: how the objective gets one configuration trained.

A runner takes a RunConfig, an `on_eval` callback and the Segment of the run to train
(resume from a checkpoint, pause at a rung, keep the model at target: runners whose
`can_pause` is True honour it), trains, and returns the RunResult. `on_eval` receives
every evaluation point and answers True to stop (the pruner speaks through it). The
objective knows only this protocol, so where and how a trial trains (this process, a
child process, a torch.distributed job, a framework's own trainer, a user's script) is
the runner's business.

- InProcessRunner: autobatch's training loop in this process (the default on CPU).
- SubprocessRunner: the same loop in a fresh Python process that rebuilds the
  workload from its spec and streams evaluation points back over a pipe. A sticky
  CUDA error or a crash in native code ends that process, not the study (the trial
  fails with reason 'crashed'); used for CUDA trials.
- ParallelRunner (parallel_runner.py): a torch.distributed job of N ranks.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Protocol

import torch

import autobatch.frames as frames
import autobatch.stop as stop
from autobatch.config import RunConfig
from autobatch.errors import TrialCrashed
from autobatch.search.parallel_runner import ParallelRunner, rank_spec
from autobatch.search.script_runner import ScriptRunner
from autobatch.search.trial_child import UserExit, result_of
from autobatch.train import EvalCallback, RunResult, Segment, run
from autobatch.workloads import ScriptWorkload, Workload

log = logging.getLogger(__name__)

# A stop signal to the process group (Ctrl-C) or its leader (SIGTERM) is the parent's
# to obey: it ends the child. Ignored first, so none lands during the child's imports.
CHILD = ("import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
         "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
         "from autobatch.search.trial_child import main; main(int(sys.argv[1]), int(sys.argv[2]))")


class TrialRunner(Protocol):
    device: torch.device  # where memory is released after an out-of-memory error

    @property
    def can_pause(self) -> bool:
        """Whether run() honours a Segment (else it trains from scratch to the end)."""
        ...

    def run(self, config: RunConfig, on_eval: EvalCallback,
            segment: Segment = Segment()) -> RunResult:
        """Train `config`; on_eval(point) -> True stops the run (stop_reason 'stopped').

        A run that runs out of memory raises an error that device.is_oom() recognises.
        """
        ...


@dataclass(frozen=True)
class InProcessRunner:
    workload: Workload
    device: torch.device

    @property
    def can_pause(self) -> bool:
        return self.workload.trainer is None  # a framework's trainer has no pause

    def run(self, config: RunConfig, on_eval: EvalCallback,
            segment: Segment = Segment()) -> RunResult:
        try:
            return run(self.workload, config, device=self.device, on_eval=on_eval,
                       pause=segment.pause, resume=segment.resume,
                       keep_model=segment.keep_model)
        except SystemExit as exc:
            raise UserExit(exc.code) from None


@dataclass(frozen=True)
class SubprocessRunner:
    """Train in a child Python process; the workload travels as its spec (how
    load_workload() built it), so only loaded workloads can run here."""

    workload_spec: dict[str, Any]
    device: torch.device
    can_pause: bool = True

    def run(self, config: RunConfig, on_eval: EvalCallback,
            segment: Segment = Segment()) -> RunResult:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(to_child_r), str(from_child_w)],
            pass_fds=(to_child_r, from_child_w))
        os.close(to_child_r)
        os.close(from_child_w)
        reader = frames.Reader(from_child_r)
        try:
            frames.send(to_child_w, (self.workload_spec, config, str(self.device), segment))
            # a stop signal is obeyed while the child trains (it ignores Ctrl-C itself)
            while (message := reader.next(idle=stop.check)) is not None \
                    and message[0] == "eval":
                frames.send(to_child_w, bool(on_eval(message[1])))
            status = child.wait()
        except BaseException:
            child.kill()
            child.wait()
            raise
        finally:
            os.close(to_child_w)
            os.close(from_child_r)
        if message is None:
            raise TrialCrashed(f"the trial's process died without reporting (exit status "
                               f"{status}): a crash in native code or a sticky CUDA error")
        return result_of(message)


def runner_for(workload: Workload | ScriptWorkload, device: torch.device,
               nproc: int = 1) -> TrialRunner:
    """A script's own runner; the data-parallel runner for nproc > 1 ranks; the
    subprocess runner for CUDA trials (isolation), in-process otherwise."""
    if nproc > 1:
        return ParallelRunner(rank_spec(workload, nproc), device, nproc)
    if isinstance(workload, ScriptWorkload):
        return ScriptRunner(workload, device)
    if device.type == "cuda":
        if workload.spec is not None:
            return SubprocessRunner(workload.spec, device)
        log.warning("workload %r was built in code, not loaded by name, so its CUDA trials "
                    "run in this process (a sticky CUDA error ends the study)", workload.name)
    return InProcessRunner(workload, device)
