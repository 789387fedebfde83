"""`autobatch report`: the study as one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from autobatch.report.page import write_report
from autobatch.storage import default_storage_url
from autobatch_cli.output import exits_cleanly, stderr, stdout


@exits_cleanly
def report(
    out: Annotated[Path, typer.Option(help="The HTML file to write (replaced atomically).")],
    storage: Annotated[Optional[str], typer.Option(help=(
        "Optuna storage URL (default $AUTOBATCH_STORAGE or sqlite:///autobatch.db)."))] = None,
    study_name: Annotated[Optional[str], typer.Option(help=(
        "The study; may be left out when the storage holds exactly one."))] = None,
) -> None:
    """Write an HTML report of a tuned study: plots, recommendation, every trial."""
    with stderr.status("rendering the report ..."):
        path = write_report(storage or default_storage_url(), out, study_name)
    stdout.print(str(path), markup=False)
