"""A user's own training script: ``script:COMMAND`` (on the command line, everything
after ``--``: ``autobatch tune --target 0.9 -- python train.py --epochs 50``).

The command runs once per trial and speaks the trial protocol (autobatch/script.py);
autobatch sees no model and no data, only what the script reports.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from typing import Any

from autobatch.errors import WorkloadError
from autobatch.hyperparams import Hyperparams
from autobatch.workloads.kinds import KindOption, WorkloadKind

PREFIX = "script:"
# How long a script may go without a report before its trial fails, beyond twice the
# trial's training budget (start-up: imports, data loading, the first evaluation).
DEFAULT_REPORT_TIMEOUT_S = 120.0


def script_spec(command: list[str]) -> str:
    """The workload name of a command: script:COMMAND, quoted as a shell would."""
    return PREFIX + shlex.join(command)


@dataclass(frozen=True, kw_only=True)
class ScriptWorkload:
    """A command that trains one recipe per run and reports through autobatch.trial().

    report_timeout_s: the longest wait for the next report (None: twice the trial's
    budget plus DEFAULT_REPORT_TIMEOUT_S).
    """

    name: str
    command: tuple[str, ...]
    report_timeout_s: float | None = None
    reference: Hyperparams | None = None  # a script declares none
    description: str = ""
    spec: dict[str, Any] | None = None

    def fingerprint(self) -> str:
        """Changes with the command (its arguments included)."""
        return hashlib.sha256("\0".join(self.command).encode()).hexdigest()[:16]


def load(spec: str, report_timeout: float | None = None) -> ScriptWorkload:
    text = spec[len(PREFIX):]
    try:
        command = tuple(shlex.split(text))
    except ValueError as exc:
        raise WorkloadError(f"script command {text!r} does not parse: {exc}") from None
    if not command:
        raise WorkloadError("the script command is empty: give it after `--`, as in "
                            "`autobatch tune --target 0.9 -- python train.py`")
    if report_timeout is not None and report_timeout <= 0:
        raise WorkloadError(f"report_timeout must be > 0 seconds, got {report_timeout!r}")
    script = next((part for part in command if part.endswith(".py")), command[0])
    return ScriptWorkload(name=f"script:{script}", command=command,
                          report_timeout_s=report_timeout,
                          description=f"the command {shlex.join(command)}")


KIND = WorkloadKind(
    name="script", usage="script:COMMAND (or the command after `--`)",
    entries=(("-- COMMAND", "your own training script, reporting through autobatch.trial()"),),
    matches=lambda spec: spec.startswith(PREFIX), load=load,  # type: ignore[arg-type]
    options=(KindOption("report_timeout", float,
                        "Seconds a script may go without a report before its trial fails "
                        "(default: twice the trial budget + 120)."),))
