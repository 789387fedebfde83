"""The host side of the trial protocol: a user's script as a TrialRunner.

Each run starts the command in its own process group with the recipe in
AUTOBATCH_TRIAL (see autobatch/script.py) and a Unix socket to report on; every
report is answered (stop or go on) from the target, the budget and the pruner. The
group is killed when the run ends, so nothing the script started outlives its trial.
A script that exits non-zero fails its trial with the tail of its output; one that
goes silent for longer than the report timeout fails with reason 'no_report'.
"""

from __future__ import annotations

import json
import math
import os
import select
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch

import autobatch.stop as stop
from autobatch.config import RunConfig
from autobatch.device import device_name
from autobatch.errors import TrialCrashed
from autobatch.hyperparams import Hyperparams
from autobatch.script import ENV
from autobatch.train import EvalCallback, EvalPoint, RunResult, Segment
from autobatch.workloads.script import DEFAULT_REPORT_TIMEOUT_S, ScriptWorkload

TAIL_CHARS = 2000  # of the script's output, in a failed trial's reason
GRACE_S = 5.0  # a script told to stop gets this long to exit before it is killed
POLL_S = 0.1
# One message from the script and the answer to send back (None: the run is over).
Handler = Callable[[dict[str, Any]], dict[str, Any]]


def tail(output: IO[bytes]) -> str:
    output.seek(0, os.SEEK_END)
    output.seek(max(0, output.tell() - TAIL_CHARS))
    return output.read().decode(errors="replace").strip()


def crash(status: int, text: str) -> Exception:
    """What a script's non-zero exit means: out of memory (an OOM the pruner knows),
    no autobatch where it runs, or a crash with its output's tail."""
    if "out of memory" in text.lower():
        return torch.OutOfMemoryError(text.splitlines()[-1] if text else "out of memory")
    if "No module named 'autobatch'" in text:
        return TrialCrashed("the script's Python cannot import autobatch: install autobatch "
                            "in the environment the command runs in", "no_autobatch")
    return TrialCrashed(f"the script exited with status {status}: {text}")


@dataclass(frozen=True)
class ScriptRunner:
    workload: ScriptWorkload
    device: torch.device
    can_pause: bool = False  # the script's state is its own

    def run(self, config: RunConfig, on_eval: EvalCallback,
            segment: Segment = Segment()) -> RunResult:
        """Run the script on `config`'s recipe until target, budget, pruner or its end
        (from scratch: `segment` is not honoured)."""
        budget = config.budget
        trace: list[EvalPoint] = []
        reason: list[str] = []
        peak = [0]

        def on_report(message: dict[str, Any]) -> dict[str, Any]:
            data = message["report"]
            loss = data.get("loss")
            point = EvalPoint(train_seconds=data["train_seconds"], steps=data["steps"],
                              samples=data["samples"], epochs=data.get("epochs") or 0.0,
                              train_loss=math.nan if loss is None else loss,
                              metric=data["metric"], eval_seconds=data["eval_seconds"],
                              lr=config.lr)
            trace.append(point)
            peak[0] = max(peak[0], data.get("peak_bytes") or 0)
            if not math.isfinite(point.metric) or (loss is not None and not math.isfinite(loss)):
                reason.append("diverged")
            elif config.target is not None and point.metric >= config.target:
                reason.append("target")
            elif (budget.seconds is not None and point.train_seconds >= budget.seconds) or (
                    budget.steps is not None and point.steps >= budget.steps):
                reason.append("budget")
            elif on_eval(point):
                reason.append("stopped")
            return {"stop": bool(reason)}

        self.session({"mode": "train", "recipe": Hyperparams.to_dict(config), "seed": config.seed,
                      "target": config.target}, on_report, self.report_timeout(config))
        if not trace:
            raise TrialCrashed("the script ended without reporting: call "
                               "trial.report(metric=...) after each evaluation", "no_report")
        last = trace[-1]
        hit = last if reason == ["target"] else None
        metrics = [p.metric for p in trace if math.isfinite(p.metric)]
        return RunResult(
            workload=self.workload.name, device=device_name(self.device), config=config,
            target_reached=hit is not None,
            time_to_target_s=hit.train_seconds if hit else None,
            steps_to_target=hit.steps if hit else None,
            samples_to_target=hit.samples if hit else None,
            steps=last.steps, samples=last.samples, epochs=last.epochs,
            train_seconds=last.train_seconds,
            eval_seconds=sum(p.eval_seconds for p in trace),
            samples_per_s=last.samples / last.train_seconds if last.train_seconds > 0 else 0.0,
            best_metric=max(metrics, default=None), final_metric=metrics[-1] if metrics else None,
            # a script that ends on its own ran out of its own budget (its epochs)
            stop_reason=reason[0] if reason else "budget", trace=tuple(trace),
            peak_memory_bytes=peak[0])

    def measure(self, hparams: Hyperparams, steps: int, timeout_s: float) -> dict[str, Any]:
        """Time `steps` optimizer steps of the script at hparams' batch: {"step_s": [...],
        "peak_bytes": n}. An out-of-memory exit raises torch.OutOfMemoryError."""
        found: list[dict[str, Any]] = []

        def on_measure(message: dict[str, Any]) -> dict[str, Any]:
            found.append(message.get("measure") or {})
            return {"stop": True}

        self.session({"mode": "measure", "recipe": hparams.to_dict(), "seed": 0,
                      "measure_steps": steps}, on_measure, timeout_s)
        if not found or "step_s" not in found[0]:
            raise TrialCrashed("the script ended without measuring: call trial.step() after "
                               "each optimizer step (the profile times them)", "no_report")
        return found[0]

    def report_timeout(self, config: RunConfig) -> float:
        if self.workload.report_timeout_s is not None:
            return self.workload.report_timeout_s
        return 2 * (config.budget.seconds or 0.0) + DEFAULT_REPORT_TIMEOUT_S

    def session(self, trial: dict[str, Any], handle: Handler, timeout_s: float) -> None:
        """Run the command once with `trial` in its environment; answer each message
        with handle(message) until an answer says stop, the script exits, or it stays
        silent for timeout_s."""
        with tempfile.TemporaryDirectory(prefix="autobatch-") as folder, \
                tempfile.TemporaryFile() as output, \
                socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            path = str(Path(folder) / "trial.sock")
            server.bind(path)
            server.listen(1)
            env = {**os.environ, ENV: json.dumps({**trial, "socket": path})}
            child = subprocess.Popen(self.workload.command, env=env, stdin=subprocess.DEVNULL,
                                     stdout=output, stderr=subprocess.STDOUT,
                                     start_new_session=True)
            try:
                done = self._converse(child, server, handle, timeout_s)
                status = child.wait(timeout=GRACE_S) if done else child.wait()
            except subprocess.TimeoutExpired:
                status = 0  # told to stop and slow to exit: its answer is in
            finally:
                kill_group(child)
            if status != 0 and not done:
                raise crash(status, tail(output))

    def _converse(self, child: subprocess.Popen[bytes], server: socket.socket,
                  handle: Handler, timeout_s: float) -> bool:
        """True once an answer said stop; False when the script exited first."""
        conn: socket.socket | None = None
        buffer = b""
        silent_since = time.monotonic()
        try:
            while True:
                stop.check()
                ready = select.select([conn or server], [], [], POLL_S)[0]
                if not ready:
                    if child.poll() is not None:
                        return False
                    if time.monotonic() - silent_since > timeout_s:
                        raise TrialCrashed(f"the script sent no report for {timeout_s:.0f}s: "
                                           "call trial.report(metric=...) after each "
                                           "evaluation (or raise --report-timeout)",
                                           "no_report")
                    continue
                if conn is None:
                    conn = server.accept()[0]
                    continue
                chunk = conn.recv(1 << 16)
                if not chunk:
                    return False
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    answer = handle(json.loads(line))
                    conn.sendall((json.dumps(answer) + "\n").encode())
                    silent_since = time.monotonic()
                    if answer["stop"]:
                        return True
        finally:
            if conn is not None:
                conn.close()


def kill_group(child: subprocess.Popen[bytes]) -> None:
    """End the script's whole process group (data loader workers, torchrun's ranks)."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.wait()
