import autobatch

PUBLIC = {
    "AutobatchError", "Budget", "CheckpointError", "ConfigError", "DataError", "DeviceError",
    "DoesNotFitError",
    "EvalPoint", "Hyperparams", "ProbeResult", "ProfileResult", "Recipe", "RunConfig", "RunResult",
    "Schedule", "load_recipe", "lr_scheduler",
    "TargetNotReachedError", "TensorData", "TuneConfig", "TuneResult", "Workload",
    "WorkloadError", "load_workload", "probe", "profile", "run", "trial", "tune",
}


def test_public_api_is_declared_once_and_pinned():
    assert set(autobatch.__all__) == PUBLIC
    namespace: dict = {}
    exec("from autobatch import *", namespace)
    assert set(namespace) - {"__builtins__"} == PUBLIC
    undocumented = [name for name in PUBLIC if not (getattr(autobatch, name).__doc__ or "")
                    .strip()]
    assert undocumented == []


def test_recipe_is_the_hyperparams_type_under_its_old_name():
    assert autobatch.Recipe is autobatch.Hyperparams
    assert issubclass(autobatch.RunConfig, autobatch.Hyperparams)


def test_every_error_has_its_documented_exit_code():
    codes = {autobatch.ConfigError: 2, autobatch.WorkloadError: 2, autobatch.DataError: 2,
             autobatch.DeviceError: 2, autobatch.TargetNotReachedError: 3,
             autobatch.DoesNotFitError: 4}
    for error, code in codes.items():
        assert issubclass(error, autobatch.AutobatchError) and error.exit_code == code


def test_the_library_does_not_import_the_cli():
    # (rich itself may arrive through scikit-learn; ruff's banned-api rule keeps our own
    # modules off it.)
    import subprocess
    import sys

    code = ("import sys, autobatch, autobatch.tuner, autobatch.report.page, "
            "autobatch.search.workers; "
            "print(sorted(m for m in ('typer', 'autobatch_cli') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
