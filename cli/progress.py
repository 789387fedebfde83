"""The tune's progress on stderr: a live trial table on a terminal, plain lines otherwise."""

from __future__ import annotations

import time

from rich.live import Live
from rich.table import Table

import autobatch.keys as keys
from autobatch.events import TuneEvent, trial_line, trial_row
from autobatch_cli.output import PLAIN_PROGRESS_S, Every, stderr

# Stage events printed above a live view (as are the re-measurements), so that they
# stay on screen.
KEPT = frozenset({"warning", "verdict", "storage", "resume", "dashboard"})


class Progress:
    """A live trial table on a terminal; one plain line per event otherwise."""

    def __init__(self, timeout_s: float | None = None, started: float | None = None) -> None:
        """timeout_s: the tune's wall-clock limit, counted from `started` (epoch seconds)."""
        self.live = stderr.is_terminal
        self.started = started or time.time()  # workers count from it too
        self.deadline = self.started + timeout_s if timeout_s else None
        self.rows: list[tuple[str, ...]] = []
        self.stage = ""
        self.best: float | None = None
        self._live: Live | None = None
        self.plain: dict[str, Every] = {}  # per stage: its first step, then now and then
        self.clock = time.monotonic

    def __enter__(self) -> Progress:
        if self.live:
            # re-rendered on every refresh, so the clock ticks between trials
            self._live = Live(console=stderr, refresh_per_second=4, get_renderable=self._render)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def __call__(self, event: TuneEvent) -> None:
        elapsed = time.time() - self.started
        if event.kind == "trial" and event.trial is not None:
            if event.trial.user_attrs.get(keys.TARGET_REACHED) and event.trial.value is not None:
                self.best = min(self.best or event.trial.value, event.trial.value)
            self.rows.append(trial_row(event.trial))
            line = trial_line(event.trial)
        elif event.kind == "progress":  # the status line on a terminal, else now and then
            self.stage = f"{event.name}: {event.message}"
            if self._live is not None:
                self._live.refresh()
            elif self.plain.setdefault(event.name, Every(PLAIN_PROGRESS_S, self.clock)).due():
                stderr.print(f"[{elapsed:7.1f}s] {self.stage}", markup=False)
            return
        else:
            self.stage = f"{event.name}: {event.message}"
            line = self.stage
        if self._live is not None:
            if event.kind == "verify" or event.name in KEPT:  # the next event would hide it
                self._live.console.print(line, markup=False, highlight=False)
            self._live.refresh()
        else:
            stderr.print(f"[{elapsed:7.1f}s] {line}", markup=False)

    def _render(self) -> Table:
        left = (f" ({max(0.0, self.deadline - time.time()):.0f}s of the timeout left)"
                if self.deadline is not None else "")
        table = Table(title=f"{self.stage}", caption=(
            f"elapsed {time.time() - self.started:.0f}s{left}; best "
            + (f"{self.best:.3f}s" if self.best else "-")))
        for column in ("trial", "state", "batch", "LR", "momentum", "time to target / reason"):
            table.add_column(column)
        for row in self.rows[-15:]:
            table.add_row(*row)
        return table
