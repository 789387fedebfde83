"""The names under which autobatch stores facts in an Optuna study: one place for all.

Trial user attributes hold every measured figure of a trial (what the dashboard
shows); study user attributes hold what a resumed study or a worker needs.
"""

from __future__ import annotations

# ---- trial user attributes (besides the Hyperparams fields, stored under their names)
# The recipe in words (Hyperparams.summary); capitalised, so that it heads the
# dashboard's alphabetical list of a trial's user attributes.
RECIPE = "Recipe"
TARGET_REACHED = "target_reached"
STOP_REASON = "stop_reason"
PRUNE_REASON = "prune_reason"
FAIL_REASON = "fail_reason"
FAIL_DETAIL = "fail_detail"  # a crashed trial's message (a script's output tail)
STEPS = "steps"
SAMPLES = "samples"
EPOCHS = "epochs"
TRAIN_SECONDS = "train_seconds"
EVAL_OVERHEAD_S = "eval_overhead_s"
SAMPLES_PER_S = "samples_per_s"
BEST_METRIC = "best_metric"
STEPS_TO_TARGET = "steps_to_target"
PEAK_MEMORY_BYTES = "peak_memory_bytes"
MEASURED_TIME_S = "measured_time_s"
MODELED_TIME_S = "modeled_time_s"
TRIAL_BUDGET_S = "trial_budget_s"  # the budget its intermediate values are censored at
CURVE = "curve"  # [[training seconds, metric], ...] per evaluation
# a trial that stopped short of the target: its curve extrapolated (search/extrapolate.py)
PREDICTED_TIME_S = "predicted_time_to_target_s"  # null: its plateau lies below the target
PREDICTED_INTERVAL = "predicted_interval_s"  # [low, high] (80%; null: unbounded)
PREDICTED_REACHABLE = "predicted_reachable"  # share of bootstrap fits reaching the target
# rungs (search/rungs.py): the rung a trial trained to (0: the first); where it paused;
# the paused trial it resumed from (set when the promotion queues it); why it restarted
RUNG = "rung"
PAUSED_AT_RUNG = "paused_at_rung"
CONTINUES = "continues_trial"
RESTARTED = "restarted_because"

# ---- study user attributes
CONTRACT = "autobatch_contract"  # what a resumed study must share with its first run
PRIOR = "autobatch_prior"  # the measurements and the search space
SETTINGS = "autobatch_settings"  # what a worker needs to rebuild the objective
RESULT = "autobatch_result"  # the verified recommendation (best.json's content)
# Readable beside those JSON documents: the recommendation and the verdict in words.
# The dashboard lists a study's user attributes in the order they were first set, so a
# new study sets them first, with PENDING until the tune publishes.
RECOMMENDATION_TEXT = "Recommendation"
VERDICT_TEXT = "Verdict"
PENDING = "not yet: the study has not been published by `autobatch tune`"


def reason(attrs: dict) -> str | None:
    """Why a trial was pruned or failed (None when it was neither)."""
    return attrs.get(PRUNE_REASON) or attrs.get(FAIL_REASON)
