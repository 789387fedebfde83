"""A throughput profile's own quality bar: a profile that fails it is retaken once,
never cached, and, failing again, used with a warning that gives its numbers.

The bar (benchmarks/RESULTS.md): on a quiet machine the fit of t(B) = alpha + beta * B
misses its own points by a few percent (2.9% in the README's run) and sizes held out
of it by 4-16% even under a load of 5 on 2 cores; the profile taken beside other work
that put B_sat at 52 instead of ~370 missed them by 67%, with samples/s falling from
12,201 at one size to 3,417 at the next. FIT_ERROR_LIMIT sits above every honest fit
and far below that one. samples/s of a linear step time only rises with the batch, so
a fall to below DROP_LIMIT of a smaller size's is a burst of load, not the device.
A profile the user saved (`tune --profile FILE`) is read here, and held to the same bar.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from autobatch.errors import ConfigError
from autobatch.measure.throughput import ProfileResult

log = logging.getLogger(__name__)

FIT_ERROR_LIMIT = 0.15
DROP_LIMIT = 0.5


def profile_doubt(result: ProfileResult) -> str | None:
    """Why `result` fails the quality bar, with its numbers; None when it passes."""
    rows = [r for r in result.rows if r.fits and r.samples_per_s]
    speeds = (f"samples/s {' / '.join(f'{r.samples_per_s:,.0f}' for r in rows)} at batch "
              f"{' / '.join(str(r.batch_size) for r in rows)}")
    if result.fit_error is not None and result.fit_error > FIT_ERROR_LIMIT:
        return (f"step-time fit error {result.fit_error:.0%} (the bar is "
                f"{FIT_ERROR_LIMIT:.0%}); {speeds}")
    fastest = None
    for row in rows:
        if fastest is not None and row.samples_per_s < DROP_LIMIT * fastest.samples_per_s:
            return (f"samples/s falls from {fastest.samples_per_s:,.0f} at batch "
                    f"{fastest.batch_size} to {row.samples_per_s:,.0f} at batch "
                    f"{row.batch_size}; {speeds}")
        if fastest is None or row.samples_per_s > fastest.samples_per_s:
            fastest = row
    return None


def trusted(result: ProfileResult) -> bool:
    return profile_doubt(result) is None


def retaken(measure: Callable[[], ProfileResult]) -> tuple[ProfileResult, str | None]:
    """measure(), and once more when the result fails the bar: (the profile, None) when
    one passes, else (the better of the two, a warning naming both)."""
    first = measure()
    doubt = profile_doubt(first)
    if doubt is None:
        return first, None
    log.info("profile fails its quality bar (%s): retaking it", doubt)
    second = measure()
    again = profile_doubt(second)
    if again is None:
        return second, None
    errors = [p.fit_error if p.fit_error is not None else 0.0 for p in (first, second)]
    best = second if errors[1] <= errors[0] else first
    return best, (f"the throughput profile failed its quality bar twice (the machine "
                  f"may be busy): {again}; first try: {doubt}. Not cached; B_sat and "
                  f"the predicted best batch may be wrong")


def read_profile(path: str | Path, workload: str) -> ProfileResult:
    """The profile a user saved (`autobatch profile --json` or `--save`) for `workload`;
    a ConfigError of one line when it is missing, unreadable or of another workload."""
    where = f"--profile {str(path)!r}"
    try:
        result = ProfileResult.load(path)
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{where} is a directory") from None
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read: {exc.strerror or exc}") from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ConfigError(f"{where} is not a profile from `autobatch profile --json` or "
                          f"--save ({type(exc).__name__}: {exc})") from None
    if result.workload != workload:
        raise ConfigError(f"{where} profiles workload {result.workload!r}, not {workload!r}")
    return result
