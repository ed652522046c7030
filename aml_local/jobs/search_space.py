"""A sweep job's search space: checking it as Azure ML would, sampling trials from it, and putting the values in.

Pure: the sweep driver (aml_local/sweep.py) starts the trials; this module only decides their parameters.

API
---
``validate(sweep_job) -> list[str]``
    ``sweep_job`` is what ``azure.ai.ml.load_job`` returns for a sweep YAML. Raises ``AmlLocalError`` (one line,
    naming the field) for what Azure ML rejects and the SDK lets through offline; returns warnings (one line each)
    for what is allowed but probably a mistake.
``make_sampler(sweep_job, seed=None) -> Sampler``
    validates, then returns the sampler for ``sampling_algorithm``. ``seed`` is used only where the job names none
    (random without ``seed``; bayesian, which has no seed field): tests pass it to be reproducible.
``sampler.suggest() -> dict | None``
    the next trial's parameters, ``{name: value}`` with plain Python values (an int stays an int); None once the
    space is exhausted (grid only).
``sampler.report(params, value)``
    the trial's final primary-metric value (None for a failed or cancelled trial); only bayesian uses it.
``substitute(command, params) -> str``
    puts the values into ``${{search_space.name}}`` (shell-quoted), leaving ``${{inputs.x}}``/``${{outputs.x}}``.
``parameter_names(search_space) -> list[str]``
    every name a trial's parameters can hold, in search-space order.
``algorithm(sweep_job) -> Algorithm(kind, seed, rule, logbase)``
    the sampling algorithm, whether the YAML gave a string or a mapping.

What validate rejects (Azure rejects it; load_job accepts it)
--------------------------------------------------------------
grid with anything but choice; bayesian with anything but choice, uniform, quniform, or with an
early_termination policy; a ``${{search_space.x}}`` in trial.command naming no parameter (or naming a nested
choice itself, or, outside ``$[[...]]``, a name only some of its options set); an empty search_space; bad bounds
(min_value >= max_value, q <= 0, sigma <= 0, an empty choice, randint upper < 1, a non-finite number); a nested
choice mixing mappings and plain values, or two entries setting the same name; logbase <= 0 or 1; and what
early_termination.from_sdk rejects (bandit with both or neither of slack_factor and slack_amount, a negative
slack, delay_evaluation or evaluation_interval < 0, truncation_percentage outside 1..99).
For a pipeline's sweep node, whose trial is a component, ``${{inputs.x}}`` in the component's command counts as
``${{search_space.x}}`` for every parameter name x, as the SDK rewrites it (``Sweep._to_job``).
Warnings: a parameter trial.command never uses; bayesian with max_total_trials under 20 per parameter (Azure's
advice); grid with max_total_trials under the number of grid points.

Expressions (Azure's definitions, https://learn.microsoft.com/azure/machine-learning/reference-yaml-job-sweep)
---------------------------------------------------------------------------------------------------------
choice(values): one of the values. randint(upper): an integer in [0, upper). uniform(min_value, max_value).
quniform: round(uniform/q)*q. loguniform: exp(uniform(min_value, max_value)) (the bounds are exponents).
qloguniform: round(exp(uniform)/q)*q. normal(mu, sigma). qnormal: round(normal/q)*q. lognormal: exp(normal).
qlognormal: round(exp(normal)/q)*q. ``round`` is Python's (half to even). A q-expression gives an int when q is
an int, else a float trimmed to 12 significant digits (so 3*0.1 is 0.3). A random algorithm's ``logbase`` (the
SDK's "base for log based random sampling"; "e" or a number) replaces exp(x) by logbase**x.

Nested choice (what we decided; Azure documents the SDK form ``Choice(values=[{"space1": True}, ...])`` but not
how a trial sees it): a choice whose values are mappings picks one mapping, and the trial gets that mapping's
keys as parameters, each literal as is and each expression sampled (nesting may go deeper). The nested choice's
own name is not a parameter (its options may use it as a key: ``model: [{model: mlp, ...}, {model: cnn}]``).
Different options may share a key; two search_space entries may not set the same name. A name set by only some
options may be used in ``trial.command`` only inside ``$[[...]]``, which ``substitute`` drops when the trial's
option lacks it.

Sampling algorithms
-------------------
random: numpy's default Generator seeded with the algorithm's ``seed``. ``rule: sobol``: a scrambled Sobol
    sequence (scipy.stats.qmc.Sobol, seeded) with one dimension per expression (a nested choice's selector and
    every expression inside every option each get their own), each coordinate taken at the centre of its Sobol
    cell and mapped through the expression's inverse CDF (choice and randint: index floor(u*n)).
grid: choice only; the cartesian product of the values, the first parameter varying slowest and each list in
    its written order; repeated values are tried once; exhaustive, then suggest() returns None.
bayesian: choice, uniform and quniform only (Azure's list), no early_termination. Optuna's TPE sampler through
    ask/tell, in the objective's direction: choice is suggest_categorical over the option indices, uniform is
    suggest_float, quniform is suggest_float rounded to q afterwards (so its prior is exactly Azure's).
    A trial reported as None or NaN is told to Optuna as failed.
"""

import itertools
import math
import re
import shlex
from dataclasses import dataclass

import numpy as np

from aml_local import AmlLocalError
from aml_local.jobs import early_termination

SEARCH_SPACE_REF = re.compile(r"\$\{\{\s*search_space\.([A-Za-z0-9_]+)\s*\}\}")
OPTIONAL_PART = re.compile(r"\$\[\[(.*?)\]\]", re.S)
INPUT_REF = re.compile(r"\$\{\{\s*inputs\.([A-Za-z0-9_]+)\s*\}\}")

UNIFORM_KINDS = ("uniform", "quniform", "loguniform", "qloguniform")
NORMAL_KINDS = ("normal", "qnormal", "lognormal", "qlognormal")
KINDS = ("choice", "randint", *UNIFORM_KINDS, *NORMAL_KINDS)
ALGORITHM_KINDS = {"random": KINDS, "grid": ("choice",), "bayesian": ("choice", "uniform", "quniform")}
# Azure's advice for bayesian sampling: at least 20 trials per hyperparameter.
BAYESIAN_TRIALS_PER_PARAMETER = 20


def _is_expression(value) -> bool:
    return hasattr(value, "type") and str(value.type).lower() in KINDS


def _kind(expression) -> str:
    return str(expression.type).lower()


def _is_nested(expression) -> bool:
    return _kind(expression) == "choice" and any(isinstance(v, dict) for v in expression.values or [])


# ---------------------------------------------------------------- the sampling algorithm


@dataclass(frozen=True)
class Algorithm:
    kind: str  # random, grid or bayesian
    seed: int | None = None
    rule: str = "random"  # random or sobol (random only)
    logbase: float | None = None  # None: e


def algorithm(sweep_job) -> Algorithm:
    """The sweep job's sampling algorithm, whether the YAML gave it as a string or as a mapping."""
    spec = sweep_job.sampling_algorithm
    kind = str(spec if isinstance(spec, str) else getattr(spec, "type", "")).lower()
    if kind not in ALGORITHM_KINDS:
        raise AmlLocalError(f"sampling_algorithm: expected random, grid or bayesian, got {kind or None!r}")
    if kind != "random" or isinstance(spec, str):
        return Algorithm(kind)
    rule = str(spec.rule or "random").lower()
    logbase = spec.logbase
    if isinstance(logbase, str) and logbase.strip().lower() == "e":
        logbase = None
    if logbase is not None:
        try:
            logbase = float(logbase)
        except ValueError:
            raise AmlLocalError(f"sampling_algorithm.logbase: expected a number > 0 or 'e', got {logbase!r}") from None
        if not math.isfinite(logbase) or logbase <= 0 or logbase == 1:
            raise AmlLocalError(f"sampling_algorithm.logbase: expected a number > 0 other than 1, got {logbase:g}")
    return Algorithm(kind, spec.seed, rule, logbase)


# ---------------------------------------------------------------- checking


def _number(field: str, value, *, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AmlLocalError(f"{field}: expected a finite number, got {value!r}")
    if integer and not isinstance(value, int):
        raise AmlLocalError(f"{field}: expected an integer, got {value!r}")
    return value


def _check_expression(field: str, expression, allowed: tuple[str, ...], algorithm_kind: str) -> None:
    kind = _kind(expression)
    if kind not in allowed:
        raise AmlLocalError(
            f"{field}: {algorithm_kind} sampling takes only {', '.join(allowed)} expressions, not {kind}"
        )
    if kind == "choice":
        values = expression.values or []
        if not values:
            raise AmlLocalError(f"{field}.values: expected at least one value")
        dicts = [isinstance(v, dict) for v in values]
        if any(dicts) and not all(dicts):
            raise AmlLocalError(f"{field}.values: a nested choice takes only mappings, not a mix with plain values")
        for index, option in enumerate(values):
            if isinstance(option, dict):
                if not option:
                    raise AmlLocalError(f"{field}.values[{index}]: expected at least one key")
                for key, value in option.items():
                    if _is_expression(value):
                        _check_expression(f"{field}.values[{index}].{key}", value, allowed, algorithm_kind)
    elif kind == "randint":
        upper = _number(f"{field}.upper", expression.upper, integer=True)
        if upper < 1:
            raise AmlLocalError(f"{field}.upper: expected an integer >= 1 (values are 0..upper-1), got {upper}")
    else:
        if kind in UNIFORM_KINDS:
            low = _number(f"{field}.min_value", expression.min_value)
            high = _number(f"{field}.max_value", expression.max_value)
            if low >= high:
                raise AmlLocalError(f"{field}: expected min_value < max_value, got {low} and {high}")
        else:
            _number(f"{field}.mu", expression.mu)
            sigma = _number(f"{field}.sigma", expression.sigma)
            if sigma <= 0:
                raise AmlLocalError(f"{field}.sigma: expected a number > 0, got {sigma}")
        if kind.startswith("q"):
            q = _number(f"{field}.q", expression.q)
            if q <= 0:
                raise AmlLocalError(f"{field}.q: expected a number > 0, got {q}")


def _names(key: str, expression, field: str) -> tuple[set[str], set[str]]:
    """(names every trial gets, names some trial may get) from one search-space entry."""
    if not _is_expression(expression) or not _is_nested(expression):
        return {key}, {key}
    always: set[str] | None = None
    possible: set[str] = set()
    for index, option in enumerate(expression.values):
        option_always: set[str] = set()
        option_possible: set[str] = set()
        for sub_key, value in option.items():
            sub_always, sub_possible = _names(sub_key, value, f"{field}.values[{index}].{sub_key}")
            clash = option_possible & sub_possible
            if clash:
                raise AmlLocalError(
                    f"{field}.values[{index}].{sub_key}: sets {', '.join(sorted(clash))}, already set in this option"
                )
            option_always |= sub_always
            option_possible |= sub_possible
        always = option_always if always is None else always & option_always
        possible |= option_possible
    return always or set(), possible


def _name_sets(search_space) -> tuple[set[str], set[str], set[str]]:
    """(names every trial gets, names only some get, nested-choice names that are not also parameters)."""
    always: set[str] = set()
    possible: set[str] = set()
    nested: set[str] = set()
    for key, expression in search_space.items():
        entry_always, entry_possible = _names(key, expression, f"search_space.{key}")
        clash = possible & entry_possible
        if clash:
            raise AmlLocalError(
                f"search_space.{key}: sets {', '.join(sorted(clash))}, which another search_space entry sets too"
            )
        always |= entry_always
        possible |= entry_possible
        if _is_nested(expression):
            nested.add(key)
    # A nested choice's own name is free for its options to use as a key ({model: resnet, ...}).
    return always, possible - always, nested - possible


def _parameter_fields(search_space) -> dict[str, str]:
    """Each name a trial's parameters can hold -> the field that first defines it, in search-space order."""
    fields: dict[str, str] = {}

    def collect(key, expression, field):
        if _is_expression(expression) and _is_nested(expression):
            for index, option in enumerate(expression.values):
                for sub_key, value in option.items():
                    collect(sub_key, value, f"{field}.values[{index}].{sub_key}")
        else:
            fields.setdefault(key, field)

    for key, expression in (search_space or {}).items():
        collect(key, expression, f"search_space.{key}")
    return fields


def parameter_names(search_space) -> list[str]:
    """Every name a trial's parameters can hold, in search-space order (nested options flattened)."""
    return list(_parameter_fields(search_space))


def _check_command(command: str, search_space) -> list[str]:
    """Errors for references to nothing; warnings for parameters the command never uses."""
    always, sometimes, nested = _name_sets(search_space)
    optional_spans = [match.span() for match in OPTIONAL_PART.finditer(command)]
    used = set()
    for match in SEARCH_SPACE_REF.finditer(command):
        name = match[1]
        used.add(name)
        if name in nested:
            raise AmlLocalError(
                f"trial.command: ${{{{search_space.{name}}}}} names a nested choice, which is not a value itself; "
                f"use the keys of its options"
            )
        if name not in always and name not in sometimes:
            known = ", ".join(parameter_names(search_space)) or "none"
            raise AmlLocalError(
                f"trial.command: ${{{{search_space.{name}}}}} names no search_space parameter (parameters: {known})"
            )
        inside_optional = any(start <= match.start() < end for start, end in optional_spans)
        if name in sometimes and not inside_optional:
            raise AmlLocalError(
                f"trial.command: ${{{{search_space.{name}}}}} is set by only some options of a nested choice; "
                f"put it inside $[[...]] so trials without it drop that part"
            )
    return [
        f"{field}: {name} is not used in trial.command, so every trial runs the same command for it"
        for name, field in _parameter_fields(search_space).items()
        if name not in used
    ]


def _trial_command(sweep_job) -> str:
    """The trial's command as the sweep sees it.

    A pipeline's sweep node runs a component whose command reads ``${{inputs.x}}``; the SDK turns those into
    ``${{search_space.x}}`` for the search-space names when it makes the node a sweep job (``Sweep._to_job``),
    and so do we here, for every name a trial's parameters can hold."""
    from azure.ai.ml.sweep import SweepJob

    command = getattr(sweep_job.trial, "command", None) or ""
    if isinstance(sweep_job, SweepJob):
        return command
    names = set(parameter_names(sweep_job.search_space))

    def as_search_space(match):
        return f"${{{{search_space.{match[1]}}}}}" if match[1] in names else match[0]

    return INPUT_REF.sub(as_search_space, command)


def _grid_size(search_space) -> int:
    return math.prod(len(_grid_options(key, expression)) for key, expression in search_space.items())


def validate(sweep_job) -> list[str]:
    """Raise AmlLocalError for what Azure ML would reject; return warnings for what is allowed but doubtful."""
    search_space = sweep_job.search_space or {}
    if not search_space:
        raise AmlLocalError("search_space: expected at least one parameter")
    sampling = algorithm(sweep_job)
    allowed = ALGORITHM_KINDS[sampling.kind]
    for key, expression in search_space.items():
        if not _is_expression(expression):
            raise AmlLocalError(f"search_space.{key}: expected a parameter expression ({', '.join(KINDS)})")
        _check_expression(f"search_space.{key}", expression, allowed, sampling.kind)
    objective = sweep_job.objective
    early_termination.from_sdk(sweep_job.early_termination, objective.goal, objective.primary_metric)
    if sampling.kind == "bayesian" and sweep_job.early_termination is not None:
        raise AmlLocalError(
            "early_termination: bayesian sampling does not support an early termination policy "
            "(remove it, or use random or grid sampling)"
        )
    warnings = _check_command(_trial_command(sweep_job), search_space)
    max_total_trials = getattr(sweep_job.limits, "max_total_trials", None)
    if max_total_trials:
        names = parameter_names(search_space)
        wanted = BAYESIAN_TRIALS_PER_PARAMETER * len(names)
        if sampling.kind == "bayesian" and max_total_trials < wanted:
            warnings.append(
                f"limits.max_total_trials: {max_total_trials} is below Azure's advice for bayesian sampling, "
                f"20 per parameter ({wanted} for {len(names)})"
            )
        if sampling.kind == "grid" and max_total_trials < _grid_size(search_space):
            warnings.append(
                f"limits.max_total_trials: {max_total_trials} runs only part of the grid's "
                f"{_grid_size(search_space)} points"
            )
    return warnings


# ---------------------------------------------------------------- values


def _quantize(value: float, q) -> int | float:
    steps = round(float(value) / q)
    if isinstance(q, int) and not isinstance(q, bool):
        return steps * q
    # Trim the binary noise of steps*q (3*0.1 -> 0.30000000000000004) to what a person would write.
    return float(f"{steps * q:.12g}")


class _Scale:
    """exp, or logbase**x when the random algorithm sets a logbase."""

    def __init__(self, logbase: float | None):
        self.logbase = logbase

    def __call__(self, exponent: float) -> float:
        return math.exp(exponent) if self.logbase is None else self.logbase**exponent


def _sample_into(params: dict, key: str, expression, source, path: str, scale: _Scale) -> None:
    """Draw ``expression`` from ``source`` into ``params`` (a nested choice adds its chosen option's keys)."""
    kind = _kind(expression)
    if kind == "choice":
        index = source.choose(path, len(expression.values))
        chosen = expression.values[index]
        if not isinstance(chosen, dict):
            params[key] = chosen
            return
        for sub_key, value in chosen.items():
            if _is_expression(value):
                _sample_into(params, sub_key, value, source, f"{path}[{index}].{sub_key}", scale)
            else:
                params[sub_key] = value
        return
    if kind == "randint":
        params[key] = int(source.randint(path, expression.upper))
        return
    if kind in UNIFORM_KINDS:
        value = source.uniform(path, expression.min_value, expression.max_value)
    else:
        value = source.normal(path, expression.mu, expression.sigma)
    if kind in ("loguniform", "qloguniform", "lognormal", "qlognormal"):
        value = scale(value)
    params[key] = _quantize(value, expression.q) if kind.startswith("q") else float(value)


def _draw_paths(key: str, expression, path: str) -> list[str]:
    """Every path that consumes one random number, in a fixed order (Sobol gives each its own dimension)."""
    paths = [path]
    if _is_nested(expression):
        for index, option in enumerate(expression.values):
            for sub_key, value in option.items():
                if _is_expression(value):
                    paths += _draw_paths(sub_key, value, f"{path}[{index}].{sub_key}")
    return paths


class _RandomSource:
    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def choose(self, path, n):
        return int(self.rng.integers(n))

    def randint(self, path, upper):
        return int(self.rng.integers(upper))

    def uniform(self, path, low, high):
        return float(self.rng.uniform(low, high))

    def normal(self, path, mu, sigma):
        return float(self.rng.normal(mu, sigma))


class _UnitPointSource:
    """Reads each path's coordinate of one point in (0, 1)^d and maps it through the inverse CDF."""

    def __init__(self, point, columns: dict[str, int]):
        self.point = point
        self.columns = columns

    def _unit(self, path) -> float:
        return float(self.point[self.columns[path]])

    def choose(self, path, n):
        return min(int(self._unit(path) * n), n - 1)

    def randint(self, path, upper):
        return min(int(self._unit(path) * upper), upper - 1)

    def uniform(self, path, low, high):
        return low + self._unit(path) * (high - low)

    def normal(self, path, mu, sigma):
        from scipy.special import ndtri

        return mu + sigma * float(ndtri(self._unit(path)))


class _OptunaSource:
    """Bayesian sampling's kinds only (choice, uniform, quniform): validate() refuses the others."""

    def __init__(self, trial):
        self.trial = trial

    def choose(self, path, n):
        return self.trial.suggest_categorical(path, list(range(n)))

    def uniform(self, path, low, high):
        return self.trial.suggest_float(path, low, high)


class Sampler:
    """Hands out trial parameters; ``report`` feeds a finished trial's result back (bayesian uses it)."""

    def __init__(self, search_space: dict):
        self.search_space = search_space

    def suggest(self) -> dict | None:
        """The next trial's parameters, or None when there are no more."""
        raise NotImplementedError

    def report(self, params: dict, value: float | None) -> None:
        """Random, sobol and grid sampling do not learn from results."""


class RandomSampler(Sampler):
    def __init__(self, search_space, seed: int | None, logbase: float | None):
        super().__init__(search_space)
        self._source = _RandomSource(np.random.default_rng(seed))
        self._scale = _Scale(logbase)

    def suggest(self) -> dict:
        params: dict = {}
        for key, expression in self.search_space.items():
            _sample_into(params, key, expression, self._source, key, self._scale)
        return params


class SobolSampler(Sampler):
    def __init__(self, search_space, seed: int | None, logbase: float | None):
        from scipy.stats import qmc

        super().__init__(search_space)
        paths = [p for key, expression in search_space.items() for p in _draw_paths(key, expression, key)]
        self._columns = {path: column for column, path in enumerate(paths)}
        self._engine = qmc.Sobol(d=len(paths), scramble=True, seed=seed)
        # Sobol coordinates are multiples of 2**-bits: take each cell's centre, never 0 (ndtri(0) is -inf).
        self._half_cell = 0.5 / 2**self._engine.bits
        self._scale = _Scale(logbase)

    def suggest(self) -> dict:
        point = self._engine.random(1)[0] + self._half_cell
        source = _UnitPointSource(point, self._columns)
        params: dict = {}
        for key, expression in self.search_space.items():
            _sample_into(params, key, expression, source, key, self._scale)
        return params


def _grid_options(key: str, expression) -> list[dict]:
    """The distinct parameter dicts one search-space entry contributes to the grid, in written order."""
    options: list[dict] = []
    if _is_nested(expression):
        for option in expression.values:
            parts = [
                _grid_options(sub_key, value) if _is_expression(value) else [{sub_key: value}]
                for sub_key, value in option.items()
            ]
            options += [
                dict(item for part in combination for item in part.items()) for combination in itertools.product(*parts)
            ]
    else:
        options = [{key: value} for value in expression.values]
    distinct: list[dict] = []
    seen = set()
    for option in options:
        # Keys are unique within an option, so sorting by key never compares values of different types.
        signature = tuple(sorted(option.items(), key=lambda item: item[0]))
        if signature not in seen:
            seen.add(signature)
            distinct.append(option)
    return distinct


class GridSampler(Sampler):
    def __init__(self, search_space):
        super().__init__(search_space)
        per_entry = [_grid_options(key, expression) for key, expression in search_space.items()]
        self._points = itertools.product(*per_entry)

    def suggest(self) -> dict | None:
        combination = next(self._points, None)
        if combination is None:
            return None
        return {key: value for part in combination for key, value in part.items()}


class BayesianSampler(Sampler):
    def __init__(self, search_space, goal: str, seed: int | None):
        import optuna

        super().__init__(search_space)
        # Optuna logs every trial at INFO; the sweep driver reports trials itself.
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._study = optuna.create_study(direction=goal, sampler=optuna.samplers.TPESampler(seed=seed))
        self._pending: list[tuple[dict, object]] = []
        self._scale = _Scale(None)

    def suggest(self) -> dict:
        trial = self._study.ask()
        source = _OptunaSource(trial)
        params: dict = {}
        for key, expression in self.search_space.items():
            _sample_into(params, key, expression, source, key, self._scale)
        self._pending.append((params, trial))
        return dict(params)

    def report(self, params: dict, value: float | None) -> None:
        from optuna.trial import TrialState

        index = next((i for i, (pending, _) in enumerate(self._pending) if pending == params), None)
        if index is None:
            raise ValueError(f"report(): no suggested trial is waiting for a result with parameters {params!r}")
        _, trial = self._pending.pop(index)
        if value is None or math.isnan(value):
            self._study.tell(trial, state=TrialState.FAIL)
        else:
            self._study.tell(trial, float(value))


def make_sampler(sweep_job, seed: int | None = None) -> Sampler:
    """Validate the sweep job, then build the sampler its sampling_algorithm names."""
    validate(sweep_job)
    sampling = algorithm(sweep_job)
    search_space = dict(sweep_job.search_space)
    if sampling.kind == "grid":
        return GridSampler(search_space)
    if sampling.kind == "bayesian":
        return BayesianSampler(search_space, str(sweep_job.objective.goal).lower(), seed)
    chosen_seed = sampling.seed if sampling.seed is not None else seed
    if sampling.rule == "sobol":
        return SobolSampler(search_space, chosen_seed, sampling.logbase)
    return RandomSampler(search_space, chosen_seed, sampling.logbase)


# ---------------------------------------------------------------- the trial's command


def _command_text(value) -> str:
    # Booleans as the local tool writes input literals (job.resolve_command): true/false.
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def substitute(command: str, params: dict) -> str:
    """Put ``params`` into ``${{search_space.name}}`` (shell-quoted); other placeholders stay for the driver.

    A ``$[[...]]`` part that names a search_space parameter this trial lacks (an option of a nested choice that
    does not set it) is dropped; otherwise its values are put in and the brackets kept, so the driver still
    decides on the inputs it may name.
    """

    def put(match):
        name = match[1]
        if name not in params:
            known = ", ".join(params) or "none"
            raise AmlLocalError(f"trial.command: ${{{{search_space.{name}}}}} has no value in this trial ({known})")
        return shlex.quote(_command_text(params[name]))

    def optional(match):
        names = SEARCH_SPACE_REF.findall(match[1])
        if not all(name in params for name in names):
            return ""
        return "$[[" + SEARCH_SPACE_REF.sub(put, match[1]) + "]]"

    return SEARCH_SPACE_REF.sub(put, OPTIONAL_PART.sub(optional, command))
