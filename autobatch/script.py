"""The trial protocol seen from a user's own training script.

`autobatch tune -- python train.py` runs the command once per trial with the trial's
recipe in the environment (AUTOBATCH_TRIAL, a JSON object). The script reads it and
reports each evaluation::

    trial = autobatch.trial()
    loader = DataLoader(data, batch_size=trial.batch_size, shuffle=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=trial.lr, momentum=trial.momentum)
    while True:
        for x, y in loader:
            ...                              # forward, backward, optimizer.step()
            if trial.step():                 # True: a measurement run has its steps
                sys.exit(0)
        with trial.evaluating():             # not counted as training time
            accuracy = evaluate(model)
        if trial.report(metric=accuracy):    # True: target, budget or pruned: stop
            break

Training time runs from autobatch.trial() on, less the `evaluating()` blocks, so
the time to target is seconds of training as autobatch's own loop counts it (the
device is synchronised before each clock read once CUDA is in use).

Outside autobatch (no AUTOBATCH_TRIAL) trial() raises unless it is given a recipe
(`autobatch.trial("best.json")`: how the tuned recipe is applied back): a script
silently training with made-up hyperparameters would look like a tuned one.

Under torchrun every rank reads the same recipe (the environment is inherited); only
rank 0 (RANK) talks to autobatch, and report() returns False on the other ranks:
broadcast rank 0's answer so that all stop together.

This module imports no torch at import time, so `import autobatch.script` is cheap.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ENV = "AUTOBATCH_TRIAL"
STANDALONE = "standalone"  # a tuned recipe run outside autobatch: nothing to report to


class NotInTrial(RuntimeError):
    """autobatch.trial() was called in a process that autobatch did not start."""


def _synchronize() -> None:
    torch = sys.modules.get("torch")  # only a script that already uses torch
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _peak_bytes() -> int:
    """The process's peak memory: CUDA's peak reserved bytes once CUDA is in use, else
    the peak resident set (what a container limit counts)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        return int(torch.cuda.max_memory_reserved())
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


class Trial:
    """One trial's recipe and its line back to autobatch.

    batch_size, lr, momentum, optimizer ('sgd' or 'adam': for Adam, momentum is
    beta1), seed: the recipe to train. mode: 'train' (a study trial or a
    re-measurement), 'measure' (the profile: run `measure_steps` steps at
    batch_size, calling step() after each; step() then returns True) or 'standalone'
    (a tuned recipe outside autobatch, see trial()).
    """

    def __init__(self, data: dict[str, Any], clock: Any = time.perf_counter) -> None:
        self.data = data
        self.mode: str = data["mode"]
        recipe = data["recipe"]
        self.batch_size: int = recipe["batch_size"]
        self.lr: float = recipe["lr"]
        self.momentum: float = recipe["momentum"]
        self.optimizer: str = recipe.get("optimizer") or "sgd"
        self.seed: int = data.get("seed", 0)
        self.target: float | None = data.get("target")
        self.measure_steps: int = data.get("measure_steps", 0)
        self.rank = int(os.environ.get("RANK", "0"))
        self._clock = clock
        self._started = clock()
        self._paused = 0.0  # seconds spent in evaluating() blocks
        self._eval_seconds = 0.0  # of those, since the last report
        self._steps = 0
        self._step_times: list[float] = []
        self._last_step = self._started
        self._socket: socket.socket | None = None
        self._lines: Iterator[str] | None = None

    def train_seconds(self) -> float:
        """Training time so far: since trial() less the evaluating() blocks."""
        _synchronize()
        return self._clock() - self._started - self._paused

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """Time in this block is evaluation, not training."""
        _synchronize()
        began = self._clock()
        try:
            yield
        finally:
            _synchronize()
            spent = self._clock() - began
            self._paused += spent
            self._eval_seconds += spent
            self._last_step += spent

    def step(self) -> bool:
        """Call after each optimizer step. In measure mode, True once measure_steps steps
        are timed (the step times and peak memory went to autobatch): exit then."""
        self._steps += 1
        if self.mode != "measure":
            return False
        _synchronize()
        now = self._clock()
        self._step_times.append(now - self._last_step)
        self._last_step = now
        if len(self._step_times) < self.measure_steps:
            return False
        self._ask({"measure": {"step_s": self._step_times, "peak_bytes": _peak_bytes()}})
        return True

    def report(self, *, metric: float, samples: int | None = None,
               loss: float | None = None) -> bool:
        """Report one evaluation: metric in [0, 1] (higher is better), samples trained
        so far (default: steps x batch_size), the mean training loss since the last
        report if known. True: stop now (target reached, budget spent or pruned)."""
        trained = self.train_seconds()
        if self.rank != 0 or self.mode == STANDALONE:
            return False
        point = {"train_seconds": trained, "steps": self._steps,
                 "samples": samples if samples is not None else self._steps * self.batch_size,
                 "metric": float(metric), "loss": loss, "eval_seconds": self._eval_seconds,
                 "peak_bytes": _peak_bytes()}
        self._eval_seconds = 0.0
        return bool(self._ask({"report": point})["stop"])

    def _ask(self, message: dict[str, Any]) -> dict[str, Any]:
        if self._socket is None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._socket.connect(self.data["socket"])
            self._lines = iter(self._socket.makefile("r", encoding="utf-8"))
        self._socket.sendall((json.dumps(message) + "\n").encode())
        assert self._lines is not None
        return json.loads(next(self._lines))


def trial(recipe: str | os.PathLike[str] | dict[str, Any] | None = None) -> Trial:
    """This process's trial (see the module docstring).

    Outside autobatch, `recipe` (a best.json path from `autobatch tune --output`, or a
    dict with batch_size, lr and momentum) makes a standalone trial: the tuned recipe,
    report() always False, so the script trains as it would on its own. Without it,
    NotInTrial.
    """
    text = os.environ.get(ENV)
    if text is not None:
        return Trial(json.loads(text))
    if recipe is None:
        raise NotInTrial(f"autobatch.trial() needs the {ENV} environment variable that "
                         "autobatch sets: run this script through `autobatch tune -- python "
                         "SCRIPT ...`, or pass the tuned recipe: autobatch.trial('best.json')")
    if not isinstance(recipe, dict):
        with open(recipe, encoding="utf-8") as file:
            recipe = json.load(file)
    return Trial({"mode": STANDALONE, "recipe": recipe})
