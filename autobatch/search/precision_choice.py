"""The study's numerics: which precision its trials train in (--precision auto), and how
far its global batches may go with gradient accumulation.

--precision auto probes and profiles each precision the device has (fp32 and bf16;
fp16 too on CUDA) and picks the one with the least profiled time per sample (its best
row of the profile: its fastest batch that fits). That is a choice for speed: how the
precision changes what accuracy the model reaches, and in how many steps, is not
modelled; the study then measures it, in the chosen precision only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import torch

from autobatch.config import SearchBounds
from autobatch.hyperparams import AUTO, PRECISIONS, Precision
from autobatch.measure import ProfileResult

T = TypeVar("T")


def precision_candidates(device: torch.device) -> tuple[Precision, ...]:
    """The precisions --precision auto compares on this device."""
    if device.type != "cuda":
        return ("fp32", "bf16")
    return PRECISIONS if torch.cuda.is_bf16_supported() else ("fp32", "fp16")


def seconds_per_sample(profile: ProfileResult) -> float | None:
    """The profile's least time per training sample over the batches that fit."""
    return min((r.iter_s / r.batch_size for r in profile.rows if r.fits and r.iter_s),
               default=None)


@dataclass(frozen=True, kw_only=True)
class PrecisionChoice(Generic[T]):
    """The precision picked, what was measured in it, and each candidate's seconds per
    sample (None: nothing fit)."""

    precision: Precision
    measured: T
    seconds_per_sample: dict[str, float | None]

    def words(self) -> str:
        return (f"training in {self.precision}: least profiled time per sample "
                f"({figures_words(self.seconds_per_sample)}); its effect on accuracy is not "
                "modelled")


def figures_words(seconds_per_sample: dict[str, float | None]) -> str:
    """'fp32 50 µs, bf16 25 µs' ('-' where nothing fit)."""
    return ", ".join(f"{p} {s * 1e6:.3g} µs" if s is not None else f"{p} -"
                     for p, s in seconds_per_sample.items())


def choose_precision(candidates: tuple[Precision, ...],
                     measure: Callable[[Precision], tuple[T, ProfileResult]],
                     ) -> PrecisionChoice[T]:
    """measure(precision) -> (what to keep, its profile) for each candidate; the one of
    least seconds per sample (the first candidate, fp32, on a tie or when none fit)."""
    kept: dict[str, T] = {}
    figures: dict[str, float | None] = {}
    for precision in candidates:
        kept[precision], profile = measure(precision)
        figures[precision] = seconds_per_sample(profile)
    best = min(candidates, key=lambda p: math.inf if figures[p] is None else figures[p])
    return PrecisionChoice(precision=best, measured=kept[best], seconds_per_sample=figures)


def study_precisions(bounds: SearchBounds, device: torch.device) -> tuple[Precision, ...]:
    return precision_candidates(device) if bounds.precision == AUTO else (bounds.precision,)


def largest_global_batch(bounds: SearchBounds, micro_max: int, n_train: int) -> int:
    """The largest global batch the study may try: what fits at once times a fixed
    accumulation, or with --grad-accum auto any batch; within max_batch and the
    training set either way."""
    limit = min(bounds.max_batch or n_train, n_train)
    return limit if bounds.grad_accum == AUTO else min(micro_max * bounds.grad_accum, limit)
