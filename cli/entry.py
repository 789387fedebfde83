"""The `autobatch` program: stop signals are obeyed from its first moment.

A signal that arrives while the library is imported (seconds: torch) is recorded,
then handed to autobatch.stop, which obeys it at the first safe point; the signal
handling of a process that merely imports autobatch_cli (a test) is left alone, and
so are its standard streams: the program keeps stdout for its results.
"""

import signal

_early: list[int] = []


def _record(signum: int, frame: object) -> None:
    _early.append(signum)


def main() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _record)
    import autobatch.stop as stop
    from autobatch_cli.main import app
    from autobatch_cli.output import keep_stdout_for_results

    stop.install(_early)
    keep_stdout_for_results()
    app(prog_name="autobatch")
