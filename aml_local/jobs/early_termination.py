"""A sweep job's early-termination policy (Bandit, MedianStopping, TruncationSelection), as Azure ML applies it.

Pure: the sweep driver feeds it the primary metric values each trial has logged and cancels the trials it names.
No MLflow, no processes.

API
---
``policy = from_sdk(sweep_job.early_termination, sweep_job.objective.goal, sweep_job.objective.primary_metric)``
    builds the policy (``None`` gives a policy that never stops anything); raises ``AmlLocalError`` naming the field
    for settings Azure rejects and the SDK lets through.
``policy.decide(trial, histories, finished=()) -> Decision | None``
    ``histories`` maps each trial name to the list of its primary-metric values in logged order (finished trials
    included, and ``trial`` itself); ``finished`` names the trials that have ended (only ``exclude_finished_jobs``
    uses it). Returns a ``Decision(trial, interval, reason)`` when ``trial`` is to be cancelled, else ``None``.
``policy.is_evaluation_point(interval) -> bool``
    whether the policy is applied at that interval.

Intervals and evaluation points (Azure's definition)
----------------------------------------------------
Each value a trial logs for the primary metric is one interval: its n-th value is interval n (1-based). With
``evaluation_interval=k`` and ``delay_evaluation=d`` the policy is applied at every interval X with X % k == 0 and
X >= d ("every multiple of evaluation_interval that is greater than or equal to delay_evaluation"); so k=1, d=5
gives 5, 6, 7, ...; k=2, d=5 gives 6, 8, 10, ...; k=3, d=0 gives 3, 6, 9, .... The SDK fills an omitted
``evaluation_interval`` with 0 while the YAML reference documents 1 as its default: 0 is read as 1.

When a trial is judged
----------------------
``decide`` judges a trial at each evaluation point X it has reached that no earlier call judged, in order, and
stops at the first that cancels it: if the history grew by several values since the last call, every evaluation
point in between is judged. A point is judged once, as soon as at least one other trial has reached X too,
against the trials' histories as they stand at that call, cut to their first X values. Until then it waits: a
trial running ahead of all the others is judged at X when the first peer gets there (so its lead does not spare
it the comparison), and a trial no other trial ever catches up with is never cancelled at X. Only trials that
have reached X (logged at least X values) take part, the judged trial included.

The rules at interval X ("better"/"worse" follow the objective's goal)
----------------------------------------------------------------------
Bandit (Azure): cancel when the trial's best value up to X is below best/(1+slack_factor), or below
    best - slack_amount, where best is the best value up to X over the trials that reached X (the judged trial
    included, so the leader is never cancelled). A value exactly at the threshold is kept.
    Minimize (ours, the mirror): cancel when the trial's best is above best*(1+slack_factor) or best + slack_amount.
    Azure states the factor rule for positive metrics; when best < 0 we divide where the positive case multiplies
    (maximize: best*(1+s); minimize: best/(1+s)) so the threshold always lies on the worse side of best.
    Exactly one of slack_factor and slack_amount must be > 0.
MedianStopping (Azure): cancel when the trial's best value up to X is worse than the median of the running
    averages (mean of intervals 1..X) of the trials that reached X, the judged trial included. Equal is kept.
TruncationSelection (Azure: "cancels a percentage of lowest performing jobs"; the counting is ours): the pool is
    the trials that reached X (with exclude_finished_jobs, those not finished, plus the judged trial); their
    values at X (not their best) are compared. With n trials in the pool and percentage p, floor(n*p/100) trials
    make "the lowest p%"; the judged trial is cancelled when the number of pool values worse than or equal to its
    own (itself included) is at most that count, so ties at the boundary are kept. Nothing is cancelled until
    n >= 100/p (p=20: 5 trials at X). exclude_finished_jobs is documented by Azure but absent from the installed
    SDK (so from a YAML file it is always false: finished trials count); a policy object built with it true
    leaves the ``finished`` trials out of the pool.

NaN
---
A NaN value never wins or loses a comparison: it is left out of every best, average and pool. A trial whose
own statistic at X is NaN (all its values up to X are NaN; for truncation, its value at X) is not judged at X:
the driver records a trial that logs NaN as failed, and stops it for that reason, not this one.
"""

import math
import statistics
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from aml_local import AmlLocalError

GOALS = ("maximize", "minimize")


@dataclass(frozen=True)
class Decision:
    """Cancel ``trial``: the policy's rule held at ``interval``; ``reason`` says so in one line."""

    trial: str
    interval: int
    reason: str


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _finite(values) -> list[float]:
    return [float(v) for v in values if not math.isnan(v)]


class Policy:
    """Base of the policies: when to judge a trial, and the bookkeeping of what was judged."""

    name = "Policy"

    def __init__(self, goal: str, primary_metric: str, evaluation_interval: int = 1, delay_evaluation: int = 0):
        if str(goal).lower() not in GOALS:
            raise AmlLocalError(f"objective.goal: expected maximize or minimize, got {goal!r}")
        for field, value in (("evaluation_interval", evaluation_interval), ("delay_evaluation", delay_evaluation)):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise AmlLocalError(f"early_termination.{field}: expected an integer >= 0, got {value!r}")
        self.maximize = str(goal).lower() == "maximize"
        self.primary_metric = primary_metric
        # The SDK stores an omitted evaluation_interval as 0; the YAML reference's default is 1.
        self.evaluation_interval = evaluation_interval or 1
        self.delay_evaluation = delay_evaluation or 0
        self._judged: dict[str, set[int]] = {}

    def is_evaluation_point(self, interval: int) -> bool:
        return interval >= 1 and interval >= self.delay_evaluation and interval % self.evaluation_interval == 0

    def decide(
        self, trial: str, histories: Mapping[str, Sequence[float]], finished: Collection[str] = ()
    ) -> Decision | None:
        """Judge ``trial`` at each evaluation point it reached that another trial has reached too and that was not
        judged yet, in order; the first that cancels it wins. A point no other trial has reached yet waits (the
        trial is ahead of all the others there), so the trial's lead does not spare it a comparison later."""
        reached = len(histories[trial])
        judged = self._judged.setdefault(trial, set())
        for interval in range(1, reached + 1):
            if interval in judged or not self.is_evaluation_point(interval):
                continue
            if not any(len(h) >= interval for name, h in histories.items() if name != trial):
                continue  # alone at this interval so far: judged when a peer gets there
            judged.add(interval)
            reason = self._judge(trial, interval, histories, finished)
            if reason is not None:
                return Decision(trial, interval, reason)
        return None

    def _judge(self, trial, interval, histories, finished) -> str | None:
        """The reason to cancel ``trial`` at ``interval``, or None to keep it."""
        raise NotImplementedError

    # Helpers shared by the policies: "best" and "worse" follow the goal.
    def _best(self, values) -> float | None:
        finite = _finite(values)
        if not finite:
            return None
        return max(finite) if self.maximize else min(finite)

    def _worse(self, value: float, than: float) -> bool:
        return value < than if self.maximize else value > than

    @property
    def _worse_word(self) -> str:
        return "below" if self.maximize else "above"

    @staticmethod
    def _reached(histories, interval) -> dict[str, Sequence[float]]:
        return {name: history[:interval] for name, history in histories.items() if len(history) >= interval}


class NoTerminationPolicy(Policy):
    """No early_termination in the sweep job: every trial runs to its end."""

    name = "NoTermination"

    def decide(self, trial, histories, finished=()) -> None:
        return None


class BanditPolicy(Policy):
    name = "Bandit"

    def __init__(self, goal, primary_metric, evaluation_interval=1, delay_evaluation=0, slack_factor=0, slack_amount=0):
        super().__init__(goal, primary_metric, evaluation_interval, delay_evaluation)
        slack_factor, slack_amount = slack_factor or 0, slack_amount or 0
        for field, value in (("slack_factor", slack_factor), ("slack_amount", slack_amount)):
            if not math.isfinite(value) or value < 0:
                raise AmlLocalError(f"early_termination.{field}: expected a number >= 0, got {value!r}")
        if slack_factor > 0 and slack_amount > 0:
            raise AmlLocalError(
                f"early_termination: bandit takes slack_factor or slack_amount, not both "
                f"(got slack_factor={slack_factor}, slack_amount={slack_amount})"
            )
        if slack_factor == 0 and slack_amount == 0:
            raise AmlLocalError("early_termination: bandit needs slack_factor or slack_amount (a number > 0)")
        self.slack_factor = slack_factor
        self.slack_amount = slack_amount

    def threshold(self, best: float) -> tuple[float, str]:
        """The bound a trial's best may not cross, and how it was computed (for the reason line)."""
        if self.slack_amount:
            sign = "-" if self.maximize else "+"
            bound = best - self.slack_amount if self.maximize else best + self.slack_amount
            return bound, f"{_fmt(best)} {sign} {self.slack_amount:g}"
        factor = 1 + self.slack_factor
        # Divide on the maximize side for best >= 0 (Azure's formula); multiply for best < 0 and mirror for
        # minimize, so the bound is always on the worse side of best.
        divide = (best >= 0) == self.maximize
        bound = best / factor if divide else best * factor
        return bound, f"{_fmt(best)}{'/' if divide else '*'}(1+{self.slack_factor:g})"

    def _judge(self, trial, interval, histories, finished):
        own = self._best(histories[trial][:interval])
        if own is None:
            return None
        bests = [self._best(values) for values in self._reached(histories, interval).values()]
        best = self._best([b for b in bests if b is not None])
        bound, formula = self.threshold(best)
        if not self._worse(own, bound):
            return None
        return (
            f"Bandit: best {self.primary_metric} {_fmt(own)} at interval {interval} is {self._worse_word} "
            f"{formula} = {_fmt(bound)}"
        )


class MedianStoppingPolicy(Policy):
    name = "MedianStopping"

    def _judge(self, trial, interval, histories, finished):
        own = self._best(histories[trial][:interval])
        if own is None:
            return None
        averages = []
        for values in self._reached(histories, interval).values():
            finite = _finite(values)
            if finite:
                averages.append(statistics.fmean(finite))
        median = statistics.median(averages)
        if not self._worse(own, median):
            return None
        return (
            f"MedianStopping: best {self.primary_metric} {_fmt(own)} at interval {interval} is {self._worse_word} "
            f"{_fmt(median)}, the median of the running averages (intervals 1..{interval}) of {len(averages)} trials"
        )


class TruncationSelectionPolicy(Policy):
    name = "TruncationSelection"

    def __init__(
        self,
        goal,
        primary_metric,
        evaluation_interval=1,
        delay_evaluation=0,
        truncation_percentage=0,
        exclude_finished_jobs=False,
    ):
        super().__init__(goal, primary_metric, evaluation_interval, delay_evaluation)
        if not isinstance(truncation_percentage, int) or not 1 <= truncation_percentage <= 99:
            raise AmlLocalError(
                f"early_termination.truncation_percentage: expected an integer from 1 to 99, "
                f"got {truncation_percentage!r}"
            )
        self.truncation_percentage = truncation_percentage
        self.exclude_finished_jobs = bool(exclude_finished_jobs)

    def _judge(self, trial, interval, histories, finished):
        own = histories[trial][interval - 1]
        if math.isnan(own):
            return None
        pool = [
            values[interval - 1]
            for name, values in self._reached(histories, interval).items()
            if not math.isnan(values[interval - 1])
            and (name == trial or not (self.exclude_finished_jobs and name in finished))
        ]
        cut = len(pool) * self.truncation_percentage // 100
        worse_or_equal = sum(1 for value in pool if not self._worse(own, value))
        if worse_or_equal > cut:
            return None
        return (
            f"TruncationSelection: {self.primary_metric} {_fmt(own)} at interval {interval} is among the worst "
            f"{self.truncation_percentage}% of the {len(pool)} trials there ({worse_or_equal} at or "
            f"{self._worse_word} it, floor({len(pool)}*{self.truncation_percentage}/100) = {cut} cancelled)"
        )


def from_sdk(early_termination, goal: str, primary_metric: str) -> Policy:
    """The policy for a sweep job's ``early_termination`` (an azure.ai.ml.sweep policy, or None for none)."""
    if early_termination is None:
        return NoTerminationPolicy(goal, primary_metric)
    kind = str(getattr(early_termination, "type", "")).lower()
    timing = {
        "evaluation_interval": early_termination.evaluation_interval,
        "delay_evaluation": early_termination.delay_evaluation,
    }
    if kind == "bandit":
        return BanditPolicy(
            goal,
            primary_metric,
            **timing,
            slack_factor=early_termination.slack_factor,
            slack_amount=early_termination.slack_amount,
        )
    if kind == "median_stopping":
        return MedianStoppingPolicy(goal, primary_metric, **timing)
    if kind == "truncation_selection":
        return TruncationSelectionPolicy(
            goal,
            primary_metric,
            **timing,
            truncation_percentage=early_termination.truncation_percentage,
            # Azure documents this flag; the installed SDK has no such field, so it is read only if present.
            exclude_finished_jobs=getattr(early_termination, "exclude_finished_jobs", False),
        )
    raise AmlLocalError(
        f"early_termination.type: expected bandit, median_stopping or truncation_selection, got {kind or None!r}"
    )
