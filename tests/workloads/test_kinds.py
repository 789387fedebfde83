"""Workload kinds: a new kind is one registration; its options reach the loader, the
command line and study files."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from autobatch.errors import WorkloadError
from autobatch.studyfile import TuneOptions
from autobatch.workloads import KINDS, KindOption, WorkloadKind, kind_of, load_workload, register
from autobatch_cli.options import WorkloadOptions, with_workload_options
from tests.conftest import tiny_workload


@pytest.fixture
def toy_kind():
    """A kind 'toy:NAME' with an option `width`, registered before the catch-all."""
    saved = list(KINDS)
    toy = WorkloadKind(
        name="toy", usage="toy:NAME", entries=(("toy:NAME", "a test kind"),),
        matches=lambda spec: spec.startswith("toy:"),
        load=lambda spec, width=8: tiny_workload(name=f"{spec}/{width}"),
        options=(KindOption("width", int, "Width of the toy."),))
    KINDS.insert(len(KINDS) - 1, toy)
    yield toy
    KINDS[:] = saved


def test_the_kinds_are_asked_in_order_and_the_catch_all_is_last():
    assert [k.name for k in KINDS] == ["builtin", "torchvision", "script", "lightning",
                                       "entry point"]
    assert kind_of("mnist1d-cnn").name == "builtin"
    assert kind_of("script:python train.py --epochs 3").name == "script"
    assert kind_of("torchvision:resnet18").name == "torchvision"
    assert kind_of("lightning:pkg.mod:Module").name == "lightning"
    assert kind_of("pkg.mod:fn").name == "entry point"
    with pytest.raises(WorkloadError, match="unknown workload 'nope'; built-ins: digits-cnn"):
        kind_of("nope")


def test_a_new_kind_loads_with_its_options_and_keeps_them_in_the_spec(toy_kind):
    workload = load_workload("toy:a", width=3)
    assert workload.name == "toy:a/3"
    assert workload.spec == {"spec": "toy:a", "width": 3}
    assert load_workload(**workload.spec).name == workload.name  # what a worker rebuilds


def test_options_of_another_kind_are_ignored_with_a_warning(toy_kind, caplog):
    with caplog.at_level(logging.WARNING, logger="autobatch.workloads.kinds"):
        workload = load_workload("toy:a", data="fake")
    assert workload.spec == {"spec": "toy:a"}
    assert "--data does not apply to toy:a; ignored" in caplog.text
    with pytest.raises(WorkloadError, match="unknown workload option 'colour'"):
        load_workload("toy:a", colour="red")


def test_registering_twice_replaces_and_a_clashing_option_type_is_refused(toy_kind):
    register(toy_kind)
    assert [k.name for k in KINDS].count("toy") == 1
    assert KINDS[-1].name == "entry point"  # a kind registered later still comes first
    clash = WorkloadKind(name="other", usage="other:X", entries=(), matches=lambda s: False,
                         load=lambda spec: None, options=(KindOption("width", str, "?"),))
    with pytest.raises(WorkloadError, match="'width' is declared with two types"):
        register(clash)


def test_the_command_line_and_study_files_offer_every_kinds_options(toy_kind, tmp_path):
    app = typer.Typer()
    received: dict[str, Any] = {}

    @app.command()
    @with_workload_options
    def show(name: str = "x", workload_options: WorkloadOptions | None = None) -> None:
        received.update(workload_options or {})

    result = CliRunner().invoke(app, ["--width", "5", "--data", "fake"])
    assert result.exit_code == 0, result.output
    assert received == {"data": "fake", "image_size": None, "num_classes": None,
                        "report_timeout": None, "datamodule": None, "metric": None,
                        "app_dir": None, "width": 5}
    study = tmp_path / "s.toml"
    study.write_text('workload = "toy:a"\ntarget = 0.9\nwidth = 7\n')
    assert TuneOptions.from_file(study).workload_options == {"width": 7}
