"""Options shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from autobatch.workload import Workload, load_workload

WorkloadOpt = Annotated[str, typer.Option(
    "--workload", "-w",
    help="Built-in name (see `autobatch workloads`), torchvision:MODEL, or module:function.")]
DataOpt = Annotated[Optional[str], typer.Option(
    help="Images for torchvision workloads: an ImageFolder path, a CIFAR-10 folder, or 'fake'.")]
ImageSizeOpt = Annotated[Optional[int], typer.Option(
    help="Image side in pixels for torchvision workloads (fake: default 224).")]
NumClassesOpt = Annotated[Optional[int], typer.Option(
    help="Classes for --data fake (default 10).")]
AppDirOpt = Annotated[Optional[Path], typer.Option(
    help="Folder put first on sys.path before importing a module:function workload.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
SeedOpt = Annotated[int, typer.Option(help="Seed for model initialisation and shuffling.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print strict JSON on stdout.")]


def workload_from(workload: str, data: str | None, image_size: int | None,
                  num_classes: int | None, app_dir: Path | None) -> Workload:
    return load_workload(workload, data=data, image_size=image_size,
                         num_classes=num_classes, app_dir=app_dir)
