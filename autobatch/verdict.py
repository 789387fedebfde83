"""How sure the verification is: intervals, paired comparisons, and the verdict.

Every candidate is re-run on the same fresh seeds (run i of each uses seed
VERIFY_SEED + i), so run i of two candidates is a pair. A run that missed the target
is slower than any run that reached it, so a time-based test (t-test, bootstrap of
differences) has no number for it, while the exact sign test needs only which of a
pair was faster: it counts wins and losses (ties and pairs where both missed drop
out) and gives the one-sided probability of that many wins or more by a coin flip.
It assumes nothing about the times' distribution and is exact at any run count.

At the default 3 runs the smallest p is 1/8 (three wins of three), so the level is
ALPHA = 1/8: the recommendation must beat the reference recipe on every paired seed
at 3 runs, on 4 of 4 or 5 of 5 at 4-5 runs, and so on. Otherwise the verdict is
"keep_reference": the tuned recipe was not shown to be faster than the user's own.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from autobatch.candidate import REFERENCE, Candidate, recommendation

ALPHA = 0.125
MIN_PAIRS = 3  # the fewest pairs in which all wins reach ALPHA
# The median's interval: order statistics covering it with at least this probability.
INTERVAL_COVERAGE = 0.9
TEST = "exact one-sided sign test on paired fresh seeds"
VerdictName = Literal["recommendation", "keep_reference"]


def binomial_tail(n: int, k: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2), exactly."""
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n if n else 1.0


def faster(a: float | None, b: float | None) -> int:
    """+1 when a is faster than b, -1 when slower, 0 for a tie (None: missed)."""
    x, y = (math.inf if a is None else a), (math.inf if b is None else b)
    return (x < y) - (x > y)


@dataclass(frozen=True, kw_only=True)
class Paired:
    """One candidate against another on the seeds both ran."""

    against: str
    wins: int
    losses: int
    ties: int
    p_value: float  # of this many wins or more by chance (sign test, one-sided)
    median_ratio: float | None  # median over pairs of other / this (> 1: this is faster)

    def significant(self) -> bool:
        return self.wins > self.losses and self.p_value <= ALPHA

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "significant": self.significant()}


def paired(a: Candidate, b: Candidate) -> Paired:
    pairs = list(zip(a.runs, b.runs))
    signs = [faster(x, y) for x, y in pairs]
    wins, losses = signs.count(1), signs.count(-1)
    ratios = sorted(y / x for x, y in pairs if x is not None and y is not None and x > 0)
    ratio = (ratios[len(ratios) // 2] if len(ratios) % 2
             else (ratios[len(ratios) // 2 - 1] + ratios[len(ratios) // 2]) / 2) \
        if ratios else None
    return Paired(against=b.name, wins=wins, losses=losses, ties=signs.count(0),
                  p_value=binomial_tail(wins + losses, wins), median_ratio=ratio)


def separated(racing: list[Candidate]) -> list[Candidate]:
    """The candidates of a race that a paired test separates from its leader (the
    recommendation among them), faster or slower: they need no more runs."""
    leader = recommendation(racing)
    return [c for c in racing if c is not leader
            and (paired(leader, c).significant() or paired(c, leader).significant())]


def median_interval(runs: tuple[float | None, ...]) -> dict[str, Any]:
    """A distribution-free interval for the median time: the k-th smallest and largest
    runs, k as large as keeps the coverage 1 - 2 P(Bin(n, 1/2) < k) >= INTERVAL_COVERAGE
    (at least the extremes); high None: a run above it missed the target."""
    n = len(runs)
    if not n:
        return {"low": None, "high": None, "coverage": None}
    times = sorted(math.inf if r is None else r for r in runs)

    def coverage(k: int) -> float:
        return 1.0 - 2.0 * (1.0 - binomial_tail(n, k))

    k = max([k for k in range(1, n // 2 + 1) if coverage(k) >= INTERVAL_COVERAGE], default=1)
    high = times[n - k]
    return {"low": times[k - 1] if math.isfinite(times[k - 1]) else None,
            "high": high if math.isfinite(high) else None, "coverage": coverage(k)}


def at_floor(candidates: list[Candidate]) -> bool:
    """Every candidate that ran reached the target at its first evaluation in every run:
    the target is too easy to tell them apart."""
    ran = [c for c in candidates if c.runs]
    return len(ran) > 1 and all(c.first_evals == len(c.runs) for c in ran)


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """Whether to take the recommendation or keep the reference recipe, and why."""

    verdict: VerdictName
    reason: str
    vs_reference: Paired | None
    vs_runner_up: Paired | None
    floor_tie: bool

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "verdict_reason": self.reason, "evidence": {
            "test": TEST, "alpha": ALPHA, "floor_tie": self.floor_tie,
            "vs_reference": self.vs_reference.to_dict() if self.vs_reference else None,
            "vs_runner_up": self.vs_runner_up.to_dict() if self.vs_runner_up else None}}


def judge(candidates: list[Candidate], best: Candidate) -> Verdict:
    reference = next((c for c in candidates if c.name == REFERENCE and c.runs), None)
    others = [c for c in candidates if c.tuned and c is not best and c.runs]
    runner_up = min(others, key=lambda c: (-c.reached_share(), c.median() or math.inf),
                    default=None)
    floor = at_floor(candidates)
    vs_ref = paired(best, reference) if reference and best.runs else None
    vs_next = paired(best, runner_up) if runner_up and best.runs else None
    if floor:
        verdict, reason = "keep_reference", (
            "every candidate reached the target at its first evaluation: the target is "
            "too easy to separate them (raise --target)")
    elif vs_ref is None:
        verdict, reason = "recommendation", ("not re-measured beside a reference recipe"
                                             if reference is None else "not re-measured")
    elif vs_ref.significant():
        verdict, reason = "recommendation", (
            f"faster than the reference recipe on {vs_ref.wins} of "
            f"{vs_ref.wins + vs_ref.losses + vs_ref.ties} paired fresh seeds "
            f"(sign test p = {vs_ref.p_value:.3g})")
    elif vs_ref.wins + vs_ref.losses + vs_ref.ties < MIN_PAIRS:
        verdict, reason = "keep_reference", (
            f"too few paired fresh seeds to tell: won {vs_ref.wins}, lost {vs_ref.losses}, "
            f"tied {vs_ref.ties} against the reference recipe, and the sign test needs "
            f"{MIN_PAIRS} wins at p <= {ALPHA:g} (re-measuring was cut short: raise "
            "--timeout); keep your recipe until then")
    else:
        verdict, reason = "keep_reference", (
            f"not shown faster than the reference recipe: won {vs_ref.wins}, lost "
            f"{vs_ref.losses}, tied {vs_ref.ties} of "
            f"{vs_ref.wins + vs_ref.losses + vs_ref.ties} paired fresh seeds (sign test "
            f"p = {vs_ref.p_value:.3g} > {ALPHA:g}); keep your recipe")
    return Verdict(verdict=verdict, reason=reason, vs_reference=vs_ref,
                   vs_runner_up=vs_next, floor_tie=floor)
