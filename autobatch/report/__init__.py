"""Presentation: the HTML report, the figures, and publishing to optuna-dashboard."""

from autobatch.report.dashboard import artifact_folder, is_loopback, publish, serve
from autobatch.report.facts import load_study
from autobatch.report.page import write_report
from autobatch.report.plots import plot_profile

__all__ = ["artifact_folder", "is_loopback", "load_study", "plot_profile", "publish", "serve",
           "write_report"]
