"""The prior of a user's script: its own steps timed at each batch, no model in sight.

autobatch cannot build a script's model, so the probe and the profile are one pass:
the script runs MEASURE_STEPS optimizer steps at each power of two in the user's
batch bounds (in measure mode, see autobatch/script.py), smallest first; the
largest batch that ran without running out of memory is the probe's answer, and the
step times are the profile (the step-time fit and the knee, as for any workload).
There is no LR range test and no noise scale: the study searches the user's LR range
(--lr-range) or FALLBACK_LR_RANGE, and the predicted best batch comes from the
throughput alone. Schedules are the script's business: the study keeps the LR
constant.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import torch

from autobatch.config import NUMERICS, SearchBounds
from autobatch.device import device_info, device_name, is_oom
from autobatch.errors import ConfigError, DoesNotFitError
from autobatch.events import EventCallback, TuneEvent
from autobatch.hyperparams import Hyperparams
from autobatch.measure import ProbeResult, ProfileResult
from autobatch.measure.probe_result import Attempt
from autobatch.measure.step_fit import find_knee, fit_step_time, spread
from autobatch.measure.throughput import ProfileRow
from autobatch.search.prior import BUCKET_BASE_STEPS, FALLBACK_LR_RANGE, Prior
from autobatch.search.script_runner import ScriptRunner
from autobatch.search.space import SearchSpace, nearest_power_of_two, powers_of_two

MEASURE_STEPS = 6  # timed steps per batch; the first is the warm-up and not counted
MEASURE_TIMEOUT_S = 120.0  # one measurement's start-up and steps, at most


def check_script_bounds(bounds: SearchBounds) -> None:
    """What a script's tune needs from the user, checked before any storage is touched."""
    if bounds.schedule not in ("auto", "constant"):
        raise ConfigError(f"schedule {bounds.schedule!r}: a script runs its own schedule, so "
                          "autobatch tunes scripts at a constant LR only")
    if bounds.batch_size is None and bounds.max_batch is None:
        raise ConfigError("a script's batch must be bounded: give --max-batch (or "
                          "--batch-size); autobatch cannot probe a model it cannot see")
    if bounds.to_dict().keys() & set(NUMERICS):
        raise ConfigError("--grad-accum, --precision and --channels-last are for workloads "
                          "autobatch trains: a script trains its own way")


def measure_script(runner: ScriptRunner, bounds: SearchBounds, emit: EventCallback
                   ) -> Prior:
    """Time the script at each batch of the user's bounds; the prior they define."""
    check_script_bounds(bounds)
    sizes = ([bounds.batch_size] if bounds.batch_size is not None
             else powers_of_two(bounds.min_batch, bounds.max_batch) or [bounds.max_batch])
    lr = bounds.lr or (bounds.lr_range[0] if bounds.lr_range else FALLBACK_LR_RANGE[0])
    started = time.time()
    attempts: list[Attempt] = []
    rows: list[ProfileRow] = []
    for batch in sizes:
        emit(TuneEvent("progress", "profile", f"batch {batch}: timing the script's steps"))
        began = time.time()
        recipe = Hyperparams(batch_size=batch, lr=lr, momentum=bounds.momentum or 0.9,
                             optimizer=bounds.optimizer)
        try:
            found = runner.measure(recipe, MEASURE_STEPS, MEASURE_TIMEOUT_S)
        except Exception as exc:
            if not is_oom(exc):
                raise
            attempts.append(Attempt(batch_size=batch, outcome="oom", peak_bytes=None,
                                    train_steps=0, seconds=time.time() - began))
            rows.append(ProfileRow(batch_size=batch, fits=False, reason="out of memory"))
            break
        step_s = found["step_s"][1:] or found["step_s"]
        iter_s, low, high = spread(step_s)
        attempts.append(Attempt(batch_size=batch, outcome="fit", peak_bytes=found["peak_bytes"],
                                train_steps=len(found["step_s"]), seconds=time.time() - began))
        rows.append(ProfileRow(batch_size=batch, fits=True, iter_s=iter_s, iter_s_min=low,
                               iter_s_max=high, samples_per_s=batch / iter_s,
                               repeats=len(step_s), steps_per_repeat=1, warmup_steps=1))
    fits = [r for r in rows if r.fits]
    if not fits:
        raise DoesNotFitError(f"the script ran out of memory at batch {sizes[0]}, the "
                              "smallest allowed")
    probe = script_probe(runner, bounds, attempts, started)
    fit = (fit_step_time([r.batch_size for r in fits], [r.iter_s for r in fits])
           if len(fits) > 1 else None)
    knee = find_knee([r.batch_size for r in fits], [r.samples_per_s for r in fits])
    profile = ProfileResult(
        workload=runner.workload.name, device=device_name(runner.device), train_size=0,
        max_batch=probe.max_batch_size, rows=tuple(rows), alpha=fit.alpha if fit else None,
        beta=fit.beta if fit else None, b_sat=fit.b_sat if fit else None,
        fit_error=fit.error if fit else None, knee=knee, knee_gain=0.10, eval_pass_s=None,
        noise=None, seconds=time.time() - started, torch_version=torch.__version__,
        threads=torch.get_num_threads())
    batches = [r.batch_size for r in fits]
    # without a noise scale the throughput's knee is the best guess at the best batch
    b_star = float(knee or batches[-1])
    anchor = nearest_power_of_two(b_star, batches)
    lr_range = None if bounds.lr is not None else bounds.lr_range or FALLBACK_LR_RANGE
    space = SearchSpace(batch_sizes=tuple(batches), anchor_batch=anchor, lr_range=lr_range,
                        lr_fixed=bounds.lr, momentum_range=bounds.momentum_range,
                        momentum_fixed=bounds.momentum, optimizer=bounds.optimizer,
                        schedules=("constant",))
    step_s = profile.predict_iter_s(anchor) or next(r.iter_s for r in fits
                                                    if r.batch_size == anchor)
    emit(TuneEvent("stage", "profile", f"script steps timed at batches {batches}; anchor "
                   f"batch {anchor}; searching LR {lr_range or bounds.lr}"))
    return Prior(probe=probe, profile=profile, lr_range=None, b_star=b_star, space=space,
                 bucket_base=BUCKET_BASE_STEPS * step_s,
                 lr_doubt="a script gets no LR range test" if lr_range else None)


def script_probe(runner: ScriptRunner, bounds: SearchBounds, attempts: list[Attempt],
                 started: float) -> ProbeResult:
    """The probe's answer from the measurement runs: the largest batch that ran."""
    ran = [a for a in attempts if a.outcome == "fit"]
    info = device_info(runner.device)
    peak = max(a.peak_bytes or 0 for a in ran)
    return ProbeResult(
        workload=runner.workload.name, fingerprint=runner.workload.fingerprint(), device=info,
        dtype="the script's", max_batch_size=ran[-1].batch_size,
        limited_by="memory" if len(ran) < len(attempts) else "max_batch",
        min_batch=attempts[0].batch_size, max_batch=attempts[-1].batch_size, headroom=0.0,
        memory_limit_bytes=None, usable_bytes=info.total_bytes, budget_bytes=info.total_bytes,
        peak_bytes=peak, fixed_bytes=None, bytes_per_sample=None, fit_r2=None,
        fit_max_rel_error=None, attempts=tuple(attempts),
        train_steps=sum(a.train_steps for a in attempts), seconds=time.time() - started,
        isolation="the script's own process", torch_version=torch.__version__,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"))
