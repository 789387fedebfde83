"""The workload kinds of the framework integrations: registered with the core's kinds,
each loading its framework only when one of its workloads is loaded."""

from __future__ import annotations

from pathlib import Path

from autobatch.workloads import KindOption, Workload, WorkloadKind


def load_lightning(spec: str, datamodule: str | None = None, metric: str | None = None,
                   app_dir: str | None = None) -> Workload:
    from autobatch.integrations.lightning import load

    return load(spec, datamodule=datamodule, metric=metric, app_dir=app_dir)


LIGHTNING = WorkloadKind(
    name="lightning", usage="lightning:module:LightningModule",
    entries=(("lightning:M:C", "LightningModule C of module M, with --datamodule M:DATA and "
                               "--metric KEY, trained by Lightning's Trainer"),),
    matches=lambda spec: spec.startswith("lightning:"), load=load_lightning,
    options=(KindOption("datamodule", str, "LightningDataModule of a lightning: workload, "
                                           "as package.module:Class."),
             KindOption("metric", str, "Validation metric a lightning: workload logs "
                                       "(e.g. val_acc)."),
             KindOption("app_dir", Path, "Folder put first on sys.path before importing a "
                                         "module:function workload.")))
