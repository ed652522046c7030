"""Early-termination policies on hand-built histories: Azure ML's Bandit, MedianStopping and TruncationSelection.

Every threshold in these histories is exactly representable in binary (0.75/1.5 = 0.5, 0.5*1.5 = 0.75, ...), so
"exactly at the threshold" really is equal, not off by a rounding error.
"""

import math
import re

import pytest
from azure.ai.ml import load_job
from azure.ai.ml.sweep import BanditPolicy as SdkBandit
from azure.ai.ml.sweep import MedianStoppingPolicy as SdkMedian
from azure.ai.ml.sweep import TruncationSelectionPolicy as SdkTruncation

from aml_local import AmlLocalError
from aml_local.jobs.early_termination import (
    BanditPolicy,
    Decision,
    MedianStoppingPolicy,
    NoTerminationPolicy,
    TruncationSelectionPolicy,
    from_sdk,
)

METRIC = "validation_acc"
NAN = math.nan


def bandit(goal="maximize", **settings):
    return BanditPolicy(goal, METRIC, **{"evaluation_interval": 1, **settings})


def median(goal="maximize", **settings):
    return MedianStoppingPolicy(goal, METRIC, **{"evaluation_interval": 1, **settings})


def truncation(goal="maximize", **settings):
    return TruncationSelectionPolicy(goal, METRIC, **{"evaluation_interval": 1, **settings})


# ---------------------------------------------------------------- when a policy is applied


@pytest.mark.parametrize(
    ("evaluation_interval", "delay_evaluation", "points"),
    [
        (1, 0, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
        (1, 5, [5, 6, 7, 8, 9, 10]),
        (2, 5, [6, 8, 10]),
        (2, 4, [4, 6, 8, 10]),
        (3, 0, [3, 6, 9]),
        # The SDK's value for an omitted evaluation_interval; the YAML reference documents 1.
        (0, 0, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
    ],
)
def test_evaluation_points_are_the_multiples_of_the_interval_from_the_delay_on(
    evaluation_interval, delay_evaluation, points
):
    policy = median(evaluation_interval=evaluation_interval, delay_evaluation=delay_evaluation)
    assert [x for x in range(1, 11) if policy.is_evaluation_point(x)] == points


def test_delay_evaluation_spares_the_intervals_before_it_and_judges_the_one_at_it():
    policy = bandit(slack_amount=0.25, delay_evaluation=3)
    histories = {"leader": [0.9, 0.9, 0.9, 0.9], "laggard": [0.1]}
    assert policy.decide("laggard", histories) is None  # interval 1
    histories["laggard"].append(0.1)
    assert policy.decide("laggard", histories) is None  # interval 2
    histories["laggard"].append(0.1)
    decision = policy.decide("laggard", histories)
    assert (decision.trial, decision.interval) == ("laggard", 3)


def test_between_evaluation_points_nothing_is_judged():
    policy = bandit(slack_amount=0.25, evaluation_interval=2, delay_evaluation=3)
    histories = {"leader": [0.9] * 6, "laggard": [0.1, 0.1, 0.1]}
    assert policy.decide("laggard", histories) is None  # 1..3: none is a multiple of 2 that is >= 3
    histories["laggard"].append(0.1)
    assert policy.decide("laggard", histories).interval == 4


def test_a_history_that_grew_by_several_values_is_judged_at_every_point_it_passed():
    policy = bandit(slack_amount=0.25, evaluation_interval=2)
    histories = {"leader": [0.5, 0.5, 0.5, 0.95, 0.95, 0.95], "trial": [0.5, 0.5, 0.5, 0.6, 0.99, 0.99]}
    # One call sees six values. At 2 the trial ties the leader; at 4 its best 0.6 is below 0.95 - 0.25; at 6 it
    # leads. Judging only the latest interval would keep it.
    decision = policy.decide("trial", histories)
    assert decision.interval == 4
    assert decision.reason == "Bandit: best validation_acc 0.6 at interval 4 is below 0.95 - 0.25 = 0.7"
    assert policy.decide("trial", histories) is None  # every point up to 6 is judged now; nothing new


def test_a_point_waits_for_a_peer_and_is_then_judged_once():
    policy = bandit(slack_amount=0.25)
    histories = {"early": [0.1, 0.1]}
    # Alone at intervals 1 and 2: nobody to compare with yet, so the points wait.
    assert policy.decide("early", histories) is None
    histories["late"] = [0.9]
    # "late" reached interval 1: "early" is judged there now, although it is already at interval 2.
    decision = policy.decide("early", histories)
    assert decision.interval == 1
    assert decision.reason == "Bandit: best validation_acc 0.1 at interval 1 is below 0.9 - 0.25 = 0.65"
    # Judged once: the same point does not cancel twice; interval 2 still waits for "late".
    assert policy.decide("early", histories) is None
    histories["late"].append(0.9)
    assert policy.decide("early", histories).interval == 2


def test_a_judged_point_is_not_reopened_by_a_trial_arriving_later():
    policy = bandit(slack_amount=0.25)
    histories = {"a": [0.5], "b": [0.6]}
    assert policy.decide("a", histories) is None  # 0.5 >= 0.6 - 0.25
    histories["c"] = [0.9]  # a much better trial reaches interval 1 afterwards
    assert policy.decide("a", histories) is None  # "a" was judged at 1 with what was known then
    assert policy.decide("b", histories).interval == 1  # "b" is judged at 1 only now: 0.6 < 0.9 - 0.25
    histories["a"].append(0.5)
    histories["c"].append(0.9)
    assert policy.decide("a", histories).interval == 2  # at 2, "c" is there: 0.5 < 0.9 - 0.25


# ---------------------------------------------------------------- Bandit


def test_bandit_slack_factor_maximize_cancels_below_best_over_one_plus_factor():
    policy = bandit(slack_factor=0.5)
    # Interval 1: 0.4 vs 0.5/1.5; interval 2: 0.45 vs 0.6/1.5 = 0.4; interval 3: 0.49 vs 0.75/1.5 = 0.5.
    histories = {"a": [0.5, 0.6, 0.75], "b": [0.4, 0.45, 0.49]}
    decision = policy.decide("b", histories)
    assert decision == Decision("b", 3, "Bandit: best validation_acc 0.49 at interval 3 is below 0.75/(1+0.5) = 0.5")
    assert policy.decide("a", histories) is None


def test_bandit_keeps_a_trial_exactly_at_the_threshold():
    for settings in ({"slack_factor": 0.5}, {"slack_amount": 0.25}):
        histories = {"a": [0.75], "b": [0.5]}  # 0.75/(1+0.5) = 0.5 and 0.75 - 0.25 = 0.5
        assert bandit(**settings).decide("b", histories) is None
        histories["b"] = [0.4999]
        assert bandit(**settings).decide("b", histories) is not None


def test_bandit_slack_amount_maximize():
    decision = bandit(slack_amount=0.25).decide("b", {"a": [0.75], "b": [0.3]})
    assert decision.reason == "Bandit: best validation_acc 0.3 at interval 1 is below 0.75 - 0.25 = 0.5"


def test_bandit_minimize_is_the_mirror():
    histories = {"a": [0.9, 0.5], "b": [0.9, 0.75], "c": [0.9, 0.76]}
    policy = bandit("minimize", slack_factor=0.5, delay_evaluation=2)
    assert policy.decide("b", histories) is None  # 0.5*(1+0.5) = 0.75: exactly at the threshold
    assert policy.decide("c", histories).reason == (
        "Bandit: best validation_acc 0.76 at interval 2 is above 0.5*(1+0.5) = 0.75"
    )
    policy = bandit("minimize", slack_amount=0.25, delay_evaluation=2)
    assert policy.decide("b", histories) is None
    assert policy.decide("c", histories).reason == (
        "Bandit: best validation_acc 0.76 at interval 2 is above 0.5 + 0.25 = 0.75"
    )


def test_bandit_uses_each_trials_best_up_to_the_interval_not_its_latest_value():
    # b dipped at interval 3 but its best (0.7) is within 0.75/(1+0.5) = 0.5.
    histories = {"a": [0.5, 0.6, 0.75], "b": [0.7, 0.2, 0.1]}
    assert bandit(slack_factor=0.5, delay_evaluation=3).decide("b", histories) is None


def test_bandit_compares_only_with_the_first_x_values_of_trials_that_reached_x():
    # At interval 2, "fast" counts with its first two values (best 0.3), not its later 0.99.
    histories = {"fast": [0.3, 0.3, 0.99], "slow": [0.2, 0.25], "short": [0.99]}
    policy = bandit(slack_factor=0.5, delay_evaluation=2)
    assert policy.decide("slow", histories) is None  # best 0.3/(1.5) = 0.2; "short" never reached 2


def test_bandit_with_negative_metric_keeps_the_threshold_on_the_worse_side():
    histories = {"a": [-1.0], "b": [-1.4], "c": [-1.6]}
    policy = bandit(slack_factor=0.5)
    assert policy.decide("a", histories) is None  # the leader
    assert policy.decide("b", histories) is None  # above -1*(1+0.5) = -1.5
    assert policy.decide("c", histories).reason == (
        "Bandit: best validation_acc -1.6 at interval 1 is below -1*(1+0.5) = -1.5"
    )
    histories = {"a": [-1.0], "b": [-0.7], "c": [-0.4]}
    policy = bandit("minimize", slack_factor=0.5)
    assert policy.decide("b", histories) is None  # below -1/(1+0.5) = -0.667
    assert "is above -1/(1+0.5) = -0.6667" in policy.decide("c", histories).reason


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"slack_factor": 0.1, "slack_amount": 0.2}, "early_termination: bandit takes slack_factor or slack_amount"),
        ({}, "early_termination: bandit needs slack_factor or slack_amount"),
        ({"slack_factor": -0.1}, "early_termination.slack_factor: expected a number >= 0"),
        ({"slack_amount": 0.1, "delay_evaluation": -1}, "early_termination.delay_evaluation: expected an integer"),
    ],
)
def test_bandit_settings_azure_rejects(settings, message):
    with pytest.raises(AmlLocalError, match="^" + re.escape(message)) as raised:
        from_sdk(SdkBandit(**settings), "maximize", METRIC)
    assert "\n" not in str(raised.value)


# ---------------------------------------------------------------- MedianStopping


def test_median_stopping_cancels_below_the_median_of_running_averages():
    # Running averages over intervals 1..2: 0.75, 0.5, and the judged trial's own 0.25 -> median 0.5.
    histories = {"a": [0.5, 1.0], "b": [0.5, 0.5], "t": [0.25, 0.25]}
    assert median(delay_evaluation=2).decide("t", histories) == Decision(
        "t",
        2,
        "MedianStopping: best validation_acc 0.25 at interval 2 is below 0.5, "
        "the median of the running averages (intervals 1..2) of 3 trials",
    )


def test_median_stopping_counts_the_judged_trial_and_keeps_ties():
    # Averages 0.75, 0.5 and t's 0.375 -> median 0.5; t's best is exactly 0.5.
    histories = {"a": [0.5, 1.0], "b": [0.5, 0.5], "t": [0.25, 0.5]}
    assert median(delay_evaluation=2).decide("t", histories) is None


def test_median_stopping_uses_the_best_value_against_running_averages():
    # t's average is low (0.35) but its best (0.6) beats the median of averages (0.5).
    histories = {"a": [0.5, 0.5], "b": [0.4, 0.6], "t": [0.1, 0.6]}
    assert median(delay_evaluation=2).decide("t", histories) is None


def test_median_stopping_minimize():
    histories = {"a": [1.0, 0.5], "b": [0.5, 0.5], "t": [1.0, 1.0]}  # averages 0.75, 0.5, 1.0 -> 0.75
    decision = median("minimize", delay_evaluation=2).decide("t", histories)
    assert decision.reason == (
        "MedianStopping: best validation_acc 1 at interval 2 is above 0.75, "
        "the median of the running averages (intervals 1..2) of 3 trials"
    )
    histories["t"] = [1.0, 0.75]  # best 0.75 equals the median of 0.75, 0.5, 0.875
    assert median("minimize", delay_evaluation=2).decide("t", histories) is None


def test_median_stopping_with_an_even_number_of_trials_takes_the_middle_mean():
    histories = {"a": [1.0], "t": [0.4]}  # median of 1.0 and 0.4 is 0.7
    assert "is below 0.7," in median().decide("t", histories).reason


# ---------------------------------------------------------------- TruncationSelection


def test_truncation_cancels_the_lowest_percentage_at_the_interval():
    histories = {name: [value] for name, value in zip("abcde", [0.1, 0.2, 0.3, 0.4, 0.5], strict=True)}
    policy = truncation(truncation_percentage=20)
    assert policy.decide("a", histories).reason == (
        "TruncationSelection: validation_acc 0.1 at interval 1 is among the worst 20% of the 5 trials there "
        "(1 at or below it, floor(5*20/100) = 1 cancelled)"
    )
    assert [policy.decide(name, histories) for name in "bcde"] == [None] * 4


def test_truncation_rounds_down_so_too_few_trials_cancel_nothing():
    histories = {name: [value] for name, value in zip("abcd", [0.1, 0.2, 0.3, 0.4], strict=True)}
    assert truncation(truncation_percentage=20).decide("a", histories) is None  # floor(4*0.2) = 0
    cancelled = [name for name in "abcd" if truncation(truncation_percentage=50).decide(name, histories)]
    assert cancelled == ["a", "b"]  # floor(4*0.5) = 2


def test_truncation_with_two_trials_and_99_percent_cancels_the_worse():
    histories = {"a": [0.1], "b": [0.2]}
    assert truncation(truncation_percentage=99).decide("a", histories).interval == 1
    assert truncation(truncation_percentage=99).decide("b", histories) is None


def test_truncation_keeps_ties_at_the_boundary():
    histories = {name: [value] for name, value in zip("abcde", [0.1, 0.1, 0.3, 0.4, 0.5], strict=True)}
    assert truncation(truncation_percentage=20).decide("a", histories) is None  # two share the lowest place


def test_truncation_compares_the_value_at_the_interval_not_the_best():
    histories = {"a": [0.9, 0.1], "b": [0.2, 0.2], "c": [0.3, 0.3], "d": [0.4, 0.4], "e": [0.5, 0.5]}
    assert truncation(truncation_percentage=20, delay_evaluation=2).decide("a", histories).interval == 2


def test_truncation_minimize_cancels_the_highest():
    histories = {name: [value] for name, value in zip("abcde", [0.1, 0.2, 0.3, 0.4, 0.5], strict=True)}
    policy = truncation("minimize", truncation_percentage=20)
    assert [name for name in "abcde" if policy.decide(name, histories)] == ["e"]


def test_truncation_exclude_finished_jobs_leaves_finished_trials_out_of_the_pool():
    histories = {name: [value] for name, value in zip("abcdef", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], strict=True)}
    finished = {"e", "f"}
    # All six count: floor(6*40/100) = 2, so "b" goes; without e and f: floor(4*40/100) = 1, so "b" stays.
    assert truncation(truncation_percentage=40).decide("b", histories, finished) is not None
    assert truncation(truncation_percentage=40, exclude_finished_jobs=True).decide("b", histories, finished) is None


@pytest.mark.parametrize("percentage", [0, 100, 150])
def test_truncation_percentage_must_be_1_to_99(percentage):
    with pytest.raises(AmlLocalError, match=r"^early_termination\.truncation_percentage: expected an integer"):
        from_sdk(SdkTruncation(truncation_percentage=percentage), "maximize", METRIC)


# ---------------------------------------------------------------- alone, NaN, no policy


@pytest.mark.parametrize(
    "make_policy",
    [
        lambda goal: bandit(goal, slack_factor=0.01),
        lambda goal: bandit(goal, slack_amount=0.001),
        median,
        lambda goal: truncation(goal, truncation_percentage=99),
    ],
    ids=["bandit-factor", "bandit-amount", "median", "truncation"],
)
@pytest.mark.parametrize("goal", ["maximize", "minimize"])
@pytest.mark.parametrize("values", [[0.9, 0.1, 0.05, 0.01, 0.5], [-3.0, 2.0, -7.0, 0.0, 1.0]])
def test_a_single_trial_never_stops_itself(make_policy, goal, values):
    policy = make_policy(goal)
    histories = {"only": []}
    for value in values:
        histories["only"].append(value)
        assert policy.decide("only", histories) is None


def test_nan_values_are_left_out_of_every_statistic():
    histories = {"nan": [NAN, NAN], "a": [0.75, 0.75], "b": [0.3, 0.3]}
    # The all-NaN trial is not judged (the driver fails it) and does not count as the best.
    assert bandit(slack_factor=0.5).decide("nan", histories) is None
    assert "below 0.75/(1+0.5)" in bandit(slack_factor=0.5).decide("b", histories).reason
    # A NaN among a trial's values: its best is taken over the others.
    histories["mixed"] = [NAN, 0.7]
    assert bandit(slack_factor=0.5, delay_evaluation=2).decide("mixed", histories) is None
    # Median of averages 0.75 and 0.3 (the NaN trial has none; "mixed" averages 0.7): 0.7.
    assert "is below 0.7," in median(delay_evaluation=2).decide("b", histories).reason
    # Truncation: a NaN at the interval is not in the pool and is not judged.
    assert truncation(truncation_percentage=50).decide("nan", histories) is None
    # At interval 1 only a (0.75) and b (0.3) have a number: floor(2*50/100) = 1.
    assert "of the 2 trials there" in truncation(truncation_percentage=50).decide("b", histories).reason


def test_no_policy_never_stops_anything():
    policy = from_sdk(None, "maximize", METRIC)
    assert isinstance(policy, NoTerminationPolicy)
    assert policy.decide("t", {"t": [0.0] * 10, "best": [1.0] * 10}) is None


def test_goal_must_be_maximize_or_minimize():
    with pytest.raises(AmlLocalError, match=r"^objective\.goal: expected maximize or minimize"):
        from_sdk(SdkMedian(), "bigger", METRIC)


# ---------------------------------------------------------------- from the YAML, through the SDK


def write_sweep(tmp_path, early_termination, goal="maximize"):
    import yaml

    spec = {
        "$schema": "https://azuremlschemas.azureedge.net/latest/sweepJob.schema.json",
        "type": "sweep",
        "trial": {"code": ".", "command": "python train.py --lr ${{search_space.lr}}", "environment": "azureml:e@1"},
        "compute": "azureml:cpu",
        "sampling_algorithm": "random",
        "search_space": {"lr": {"type": "uniform", "min_value": 0.01, "max_value": 0.1}},
        "objective": {"goal": goal, "primary_metric": METRIC},
        "early_termination": early_termination,
        "limits": {"max_total_trials": 4},
    }
    path = tmp_path / "sweep.yml"
    path.write_text(yaml.safe_dump(spec))
    return load_job(path)


@pytest.mark.parametrize(
    ("spec", "policy_class", "settings"),
    [
        (
            {"type": "bandit", "slack_factor": 0.1, "delay_evaluation": 5},
            BanditPolicy,
            {"slack_factor": 0.1, "slack_amount": 0, "evaluation_interval": 1, "delay_evaluation": 5},
        ),
        (
            {"type": "median_stopping", "evaluation_interval": 2},
            MedianStoppingPolicy,
            {"evaluation_interval": 2, "delay_evaluation": 0},
        ),
        (
            {"type": "truncation_selection", "truncation_percentage": 20, "evaluation_interval": 3},
            TruncationSelectionPolicy,
            {"truncation_percentage": 20, "evaluation_interval": 3, "exclude_finished_jobs": False},
        ),
    ],
)
def test_policies_built_from_a_sweep_yaml(tmp_path, spec, policy_class, settings):
    job = write_sweep(tmp_path, spec, goal="minimize")
    policy = from_sdk(job.early_termination, job.objective.goal, job.objective.primary_metric)
    assert type(policy) is policy_class
    assert {name: getattr(policy, name) for name in settings} == settings
    assert policy.maximize is False and policy.primary_metric == METRIC


def test_the_sdk_lets_both_bandit_slacks_through_and_we_do_not(tmp_path):
    job = write_sweep(tmp_path, {"type": "bandit", "slack_factor": 0.1, "slack_amount": 0.2})
    assert (job.early_termination.slack_factor, job.early_termination.slack_amount) == (0.1, 0.2)
    with pytest.raises(AmlLocalError, match="not both"):
        from_sdk(job.early_termination, job.objective.goal, job.objective.primary_metric)
