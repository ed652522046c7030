"""The sweep search space: Azure ML's expressions as distributions, the three sampling algorithms, the checks Azure
makes that the SDK does not, and putting the values into the trial's command.

Distributions are checked on 20,000 draws with fixed seeds (so every run sees the same numbers): bounds,
quantization, and the shape with a KS test (continuous) or the CDF at every quantization step (q-expressions).
"""

import math

import numpy as np
import pytest
import yaml
from azure.ai.ml import load_job
from scipy import stats
from scipy.stats import qmc

from aml_local import AmlLocalError
from aml_local.jobs.search_space import make_sampler, parameter_names, substitute, validate

DRAWS = 20_000
SCHEMA = "https://azuremlschemas.azureedge.net/latest/sweepJob.schema.json"


def load_sweep(
    tmp_path,
    search_space,
    command=None,
    sampling_algorithm=None,
    early_termination=None,
    goal="maximize",
    max_total_trials=1000,
):
    """Write a sweep job YAML (the CLI v2 sweepJob schema) into tmp_path and load it the way `az ml` does."""
    if command is None:
        command = "python train.py " + " ".join(f"--{name} ${{{{search_space.{name}}}}}" for name in search_space)
    spec = {
        "$schema": SCHEMA,
        "type": "sweep",
        "trial": {"code": ".", "command": command, "environment": "azureml:train-env@latest"},
        "compute": "azureml:cpu-cluster",
        "sampling_algorithm": sampling_algorithm or {"type": "random", "seed": 7},
        "search_space": search_space,
        "objective": {"goal": goal, "primary_metric": "validation_acc"},
        "limits": {"max_total_trials": max_total_trials},
    }
    if early_termination is not None:
        spec["early_termination"] = early_termination
    path = tmp_path / "sweep.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_job(path)


def draws(tmp_path, expression, rule="random", seed=7, count=DRAWS):
    job = load_sweep(tmp_path, {"x": expression}, sampling_algorithm={"type": "random", "seed": seed, "rule": rule})
    sampler = make_sampler(job)
    return [sampler.suggest()["x"] for _ in range(count)]


def assert_quantized(values, q, cdf):
    """Every value a multiple of q, and P(value <= m*q) = cdf((m+1/2)*q) at every step m that occurs."""
    values = np.asarray(values, dtype=float)
    steps = values / q
    assert np.allclose(steps, np.round(steps), atol=1e-9)
    steps = np.round(steps)
    for step in np.unique(steps):
        empirical = np.mean(steps <= step)
        # 20,000 draws: the standard error of a proportion is at most 0.0035.
        assert abs(empirical - cdf((step + 0.5) * q)) < 0.015, step


# ---------------------------------------------------------------- the expressions, under random and sobol


RULES = ["random", "sobol"]


@pytest.mark.parametrize("rule", RULES)
def test_uniform(tmp_path, rule):
    values = draws(tmp_path, {"type": "uniform", "min_value": -2, "max_value": 3}, rule)
    assert all(isinstance(v, float) and -2 <= v <= 3 for v in values)
    assert stats.kstest(values, stats.uniform(loc=-2, scale=5).cdf).pvalue > 0.01


@pytest.mark.parametrize("rule", RULES)
def test_loguniform_bounds_are_natural_log_exponents(tmp_path, rule):
    values = draws(tmp_path, {"type": "loguniform", "min_value": -6, "max_value": -1}, rule)
    assert all(math.exp(-6) <= v <= math.exp(-1) for v in values)
    assert stats.kstest(np.log(values), stats.uniform(loc=-6, scale=5).cdf).pvalue > 0.01


@pytest.mark.parametrize("rule", RULES)
def test_normal(tmp_path, rule):
    values = draws(tmp_path, {"type": "normal", "mu": 10, "sigma": 3}, rule)
    assert all(isinstance(v, float) for v in values)
    assert stats.kstest(values, stats.norm(10, 3).cdf).pvalue > 0.01


@pytest.mark.parametrize("rule", RULES)
def test_lognormal(tmp_path, rule):
    values = draws(tmp_path, {"type": "lognormal", "mu": 0.5, "sigma": 0.7}, rule)
    assert min(values) > 0
    assert stats.kstest(np.log(values), stats.norm(0.5, 0.7).cdf).pvalue > 0.01


@pytest.mark.parametrize("rule", RULES)
def test_quniform_rounds_a_uniform_to_multiples_of_q(tmp_path, rule):
    values = draws(tmp_path, {"type": "quniform", "min_value": 0, "max_value": 10, "q": 2}, rule)
    assert all(type(v) is int for v in values)  # an integer q gives integers
    assert set(values) == {0, 2, 4, 6, 8, 10}
    assert_quantized(values, 2, stats.uniform(loc=0, scale=10).cdf)


def test_quniform_with_a_float_q_gives_clean_floats(tmp_path):
    values = draws(tmp_path, {"type": "quniform", "min_value": 0, "max_value": 1, "q": 0.1}, count=2000)
    assert all(type(v) is float for v in values)
    assert set(values) == {round(0.1 * k, 1) for k in range(11)}  # 0.3, not 0.30000000000000004


def test_quniform_as_in_azures_example_rounds_to_the_nearest_multiple(tmp_path):
    # Azure's TruncationSelectionPolicy sample: QUniform(min_value=0.05, max_value=0.75, q=1).
    values = draws(tmp_path, {"type": "quniform", "min_value": 0.05, "max_value": 0.75, "q": 1})
    assert set(values) == {0, 1}
    assert abs(np.mean(values) - (0.75 - 0.5) / 0.7) < 0.015  # P(uniform >= 0.5)


@pytest.mark.parametrize("rule", RULES)
def test_qloguniform(tmp_path, rule):
    values = draws(tmp_path, {"type": "qloguniform", "min_value": 0, "max_value": 4, "q": 5}, rule)
    assert all(type(v) is int for v in values)
    assert min(values) >= 0 and max(values) <= 55  # round(e**4 / 5) * 5

    def cdf(x):
        return float(np.clip(np.log(max(x, 1e-300)) / 4, 0, 1))

    assert_quantized(values, 5, cdf)


@pytest.mark.parametrize("rule", RULES)
def test_qnormal(tmp_path, rule):
    values = draws(tmp_path, {"type": "qnormal", "mu": 0, "sigma": 10, "q": 3}, rule)
    assert all(type(v) is int for v in values)
    assert_quantized(values, 3, stats.norm(0, 10).cdf)


@pytest.mark.parametrize("rule", RULES)
def test_qlognormal(tmp_path, rule):
    values = draws(tmp_path, {"type": "qlognormal", "mu": 2, "sigma": 0.5, "q": 1}, rule)
    assert all(type(v) is int and v >= 0 for v in values)
    assert_quantized(values, 1, stats.lognorm(s=0.5, scale=math.exp(2)).cdf)


@pytest.mark.parametrize("rule", RULES)
def test_randint_excludes_upper(tmp_path, rule):
    values = draws(tmp_path, {"type": "randint", "upper": 7}, rule)
    assert all(type(v) is int for v in values)
    assert set(values) == set(range(7))
    counts = np.bincount(values, minlength=7)
    assert stats.chisquare(counts).pvalue > 0.01


@pytest.mark.parametrize("rule", RULES)
def test_choice_keeps_value_types_and_picks_each_equally(tmp_path, rule):
    options = [16, 32, 0.5, "relu"]
    values = draws(tmp_path, {"type": "choice", "values": options}, rule)
    assert {type(v) for v in values} == {int, float, str}
    counts = [sum(1 for v in values if v == option and type(v) is type(option)) for option in options]
    assert sum(counts) == DRAWS
    assert stats.chisquare(counts).pvalue > 0.01


def test_logbase_replaces_e_for_random_sampling(tmp_path):
    sampling = {"type": "random", "seed": 3, "logbase": 10}
    job = load_sweep(
        tmp_path, {"x": {"type": "loguniform", "min_value": -3, "max_value": -1}}, sampling_algorithm=sampling
    )
    sampler = make_sampler(job)
    values = [sampler.suggest()["x"] for _ in range(DRAWS)]
    assert min(values) >= 1e-3 and max(values) <= 1e-1
    assert stats.kstest(np.log10(values), stats.uniform(loc=-3, scale=2).cdf).pvalue > 0.01


# ---------------------------------------------------------------- seeds, sobol


def test_a_seed_repeats_the_sequence_and_no_seed_does_not(tmp_path):
    space = {"x": {"type": "uniform", "min_value": 0, "max_value": 1}, "n": {"type": "randint", "upper": 100}}
    for rule in RULES:
        seeded = load_sweep(tmp_path, space, sampling_algorithm={"type": "random", "seed": 11, "rule": rule})
        first, second = make_sampler(seeded), make_sampler(seeded)
        assert [first.suggest() for _ in range(20)] == [second.suggest() for _ in range(20)]
        unseeded = load_sweep(tmp_path, space, sampling_algorithm={"type": "random", "rule": rule})
        first, second = make_sampler(unseeded), make_sampler(unseeded)
        assert [first.suggest() for _ in range(20)] != [second.suggest() for _ in range(20)]


def test_sobol_covers_the_space_more_evenly_than_random_with_the_same_seed(tmp_path):
    space = {name: {"type": "uniform", "min_value": 0, "max_value": 1} for name in ("x", "y")}
    points = {}
    for rule in RULES:
        job = load_sweep(tmp_path, space, sampling_algorithm={"type": "random", "seed": 5, "rule": rule})
        sampler = make_sampler(job)
        points[rule] = np.array([[p["x"], p["y"]] for p in (sampler.suggest() for _ in range(256))])
    # Centred L2 discrepancy: how far the points are from filling the unit square evenly (0 is perfect).
    sobol, random = qmc.discrepancy(points["sobol"]), qmc.discrepancy(points["random"])
    assert sobol < random / 5, (sobol, random)


# ---------------------------------------------------------------- nested choice


NESTED = {
    "model": {
        "type": "choice",
        "values": [
            {"model": "mlp", "units": {"type": "choice", "values": [64, 128]}},
            {"model": "cnn", "dropout": {"type": "uniform", "min_value": 0.1, "max_value": 0.5}},
        ],
    },
    "batch_size": {"type": "choice", "values": [16, 32]},
}
NESTED_COMMAND = (
    "python train.py --model ${{search_space.model}} --batch-size ${{search_space.batch_size}}"
    " $[[--units ${{search_space.units}}]] $[[--dropout ${{search_space.dropout}}]]"
)


def test_nested_choice_flattens_the_chosen_options_keys(tmp_path):
    job = load_sweep(tmp_path, NESTED, command=NESTED_COMMAND)
    assert validate(job) == []
    assert parameter_names(job.search_space) == ["model", "units", "dropout", "batch_size"]
    sampler = make_sampler(job)
    trials = [sampler.suggest() for _ in range(4000)]
    mlp = [t for t in trials if t["model"] == "mlp"]
    cnn = [t for t in trials if t["model"] == "cnn"]
    assert len(mlp) + len(cnn) == len(trials) and abs(len(mlp) / len(trials) - 0.5) < 0.03
    assert all(set(t) == {"model", "units", "batch_size"} and t["units"] in (64, 128) for t in mlp)
    assert all(set(t) == {"model", "dropout", "batch_size"} and 0.1 <= t["dropout"] <= 0.5 for t in cnn)


def test_nested_choice_under_sobol_gives_each_option_its_own_dimensions(tmp_path):
    job = load_sweep(
        tmp_path, NESTED, command=NESTED_COMMAND, sampling_algorithm={"type": "random", "rule": "sobol", "seed": 1}
    )
    sampler = make_sampler(job)
    trials = [sampler.suggest() for _ in range(1024)]
    dropouts = [t["dropout"] for t in trials if "dropout" in t]
    assert len(dropouts) == 512  # a balanced Sobol sequence: exactly half of 2**10 points per option
    assert stats.kstest(dropouts, stats.uniform(loc=0.1, scale=0.4).cdf).pvalue > 0.01


# ---------------------------------------------------------------- grid


def test_grid_is_the_exhaustive_cartesian_product_in_written_order(tmp_path):
    space = {
        "batch_size": {"type": "choice", "values": [16, 32]},
        "activation": {"type": "choice", "values": ["relu", "tanh", "relu", "sigmoid"]},
    }
    job = load_sweep(tmp_path, space, sampling_algorithm="grid", max_total_trials=6)
    assert validate(job) == []
    sampler = make_sampler(job)
    points = []
    while (point := sampler.suggest()) is not None:
        points.append(point)
    assert points == [
        {"batch_size": b, "activation": a} for b in (16, 32) for a in ("relu", "tanh", "sigmoid")
    ]  # the repeated "relu" is tried once
    assert sampler.suggest() is None


def test_grid_over_a_nested_choice(tmp_path):
    space = {k: v for k, v in NESTED.items()}
    space["model"] = {
        "type": "choice",
        "values": [{"model": "mlp", "units": {"type": "choice", "values": [64, 128]}}, {"model": "cnn"}],
    }
    command = "python train.py --model ${{search_space.model}} --batch-size ${{search_space.batch_size}}"
    command += " $[[--units ${{search_space.units}}]]"
    sampler = make_sampler(load_sweep(tmp_path, space, command=command, sampling_algorithm="grid"))
    points = []
    while (point := sampler.suggest()) is not None:
        points.append(point)
    assert points == [
        {"model": "mlp", "units": 64, "batch_size": 16},
        {"model": "mlp", "units": 64, "batch_size": 32},
        {"model": "mlp", "units": 128, "batch_size": 16},
        {"model": "mlp", "units": 128, "batch_size": 32},
        {"model": "cnn", "batch_size": 16},
        {"model": "cnn", "batch_size": 32},
    ]


def test_grid_warns_when_max_total_trials_cuts_it_short(tmp_path):
    space = {"a": {"type": "choice", "values": [1, 2, 3]}, "b": {"type": "choice", "values": [1, 2]}}
    warnings = validate(load_sweep(tmp_path, space, sampling_algorithm="grid", max_total_trials=4))
    assert warnings == ["limits.max_total_trials: 4 runs only part of the grid's 6 points"]


# ---------------------------------------------------------------- bayesian


def toy_score(params):
    """Best at x = 0.7, activation "tanh", depth 3."""
    bonus = 0.3 if params["activation"] == "tanh" else 0.0
    return -((params["x"] - 0.7) ** 2) - 0.02 * abs(params["depth"] - 3) + bonus


BAYESIAN_SPACE = {
    "x": {"type": "uniform", "min_value": 0, "max_value": 1},
    "activation": {"type": "choice", "values": ["relu", "tanh", "sigmoid"]},
    "depth": {"type": "quniform", "min_value": 0, "max_value": 8, "q": 1},
}


@pytest.mark.parametrize("goal", ["maximize", "minimize"])
def test_bayesian_concentrates_on_the_good_region(tmp_path, goal):
    job = load_sweep(tmp_path, BAYESIAN_SPACE, sampling_algorithm="bayesian", goal=goal)
    sampler = make_sampler(job, seed=3)
    trials = []
    for _ in range(60):
        params = sampler.suggest()
        score = toy_score(params)
        sampler.report(params, score if goal == "maximize" else -score)
        trials.append(params)
    assert all(type(t["depth"]) is int and 0 <= t["depth"] <= 8 for t in trials)
    late = trials[-20:]
    # Uniform sampling gives E|x - 0.7| = 0.29 and "tanh" a third of the time.
    assert np.mean([abs(t["x"] - 0.7) for t in late]) < 0.15
    assert sum(t["activation"] == "tanh" for t in late) >= 14


def test_bayesian_takes_failed_trials_and_rejects_unknown_reports(tmp_path):
    sampler = make_sampler(load_sweep(tmp_path, BAYESIAN_SPACE, sampling_algorithm="bayesian"), seed=1)
    first, second = sampler.suggest(), sampler.suggest()
    sampler.report(second, None)  # failed or cancelled, out of order
    sampler.report(first, math.nan)  # a NaN metric is a failed trial too
    assert set(sampler.suggest()) == {"x", "activation", "depth"}
    with pytest.raises(ValueError, match="no suggested trial"):
        sampler.report({"x": 2.0, "activation": "relu", "depth": 1}, 0.5)


# ---------------------------------------------------------------- what Azure rejects


BANDIT = {"type": "bandit", "slack_factor": 0.1}


@pytest.mark.parametrize(
    ("search_space", "sampling", "early_termination", "command", "message"),
    [
        (
            {"lr": {"type": "uniform", "min_value": 0.01, "max_value": 0.1}},
            "grid",
            None,
            None,
            "search_space.lr: grid sampling takes only choice expressions, not uniform",
        ),
        (
            {"lr": {"type": "loguniform", "min_value": -6, "max_value": -1}},
            "bayesian",
            None,
            None,
            "search_space.lr: bayesian sampling takes only choice, uniform, quniform expressions, not loguniform",
        ),
        (
            {"m": {"type": "choice", "values": [{"a": {"type": "normal", "mu": 0, "sigma": 1}}]}},
            "bayesian",
            None,
            "python t.py ${{search_space.a}}",
            "search_space.m.values[0].a: bayesian sampling takes only choice, uniform, quniform expressions, "
            "not normal",
        ),
        (
            {"lr": {"type": "uniform", "min_value": 0.01, "max_value": 0.1}},
            "bayesian",
            BANDIT,
            None,
            "early_termination: bayesian sampling does not support an early termination policy",
        ),
        (
            {"lr": {"type": "uniform", "min_value": 0.01, "max_value": 0.1}},
            None,
            None,
            "python t.py --lr ${{search_space.lr}} --bs ${{search_space.batch_size}}",
            "trial.command: ${{search_space.batch_size}} names no search_space parameter (parameters: lr)",
        ),
        (
            {"lr": {"type": "uniform", "min_value": 0.01, "max_value": 0.1}},
            None,
            {"type": "bandit", "slack_factor": 0.1, "slack_amount": 0.05},
            None,
            "early_termination: bandit takes slack_factor or slack_amount, not both",
        ),
        (
            {"lr": {"type": "uniform", "min_value": 0.01, "max_value": 0.1}},
            None,
            {"type": "bandit"},
            None,
            "early_termination: bandit needs slack_factor or slack_amount",
        ),
        (
            {"lr": {"type": "uniform", "min_value": 0.1, "max_value": 0.1}},
            None,
            None,
            None,
            "search_space.lr: expected min_value < max_value, got 0.1 and 0.1",
        ),
        (
            {"lr": {"type": "qloguniform", "min_value": -1, "max_value": -3, "q": 1}},
            None,
            None,
            None,
            "search_space.lr: expected min_value < max_value, got -1 and -3",
        ),
        (
            {"n": {"type": "quniform", "min_value": 0, "max_value": 3, "q": 0}},
            None,
            None,
            None,
            "search_space.n.q: expected a number > 0, got 0",
        ),
        (
            {"n": {"type": "qnormal", "mu": 0, "sigma": 3, "q": -2}},
            None,
            None,
            None,
            "search_space.n.q: expected a number > 0, got -2",
        ),
        (
            {"n": {"type": "lognormal", "mu": 0, "sigma": 0}},
            None,
            None,
            None,
            "search_space.n.sigma: expected a number > 0, got 0",
        ),
        (
            {"n": {"type": "choice", "values": []}},
            None,
            None,
            None,
            "search_space.n.values: expected at least one value",
        ),
        (
            {"n": {"type": "randint", "upper": 0}},
            None,
            None,
            None,
            "search_space.n.upper: expected an integer >= 1 (values are 0..upper-1), got 0",
        ),
        ({}, None, None, "python t.py", "search_space: expected at least one parameter"),
        (
            {"m": {"type": "choice", "values": [{"a": 1}, 2]}},
            None,
            None,
            "python t.py ${{search_space.a}}",
            "search_space.m.values: a nested choice takes only mappings, not a mix with plain values",
        ),
        (
            {"a": {"type": "choice", "values": [1, 2]}, "m": {"type": "choice", "values": [{"a": 3}]}},
            None,
            None,
            "python t.py ${{search_space.a}}",
            "search_space.m: sets a, which another search_space entry sets too",
        ),
        (
            NESTED,
            None,
            None,
            "python t.py --units ${{search_space.units}} ${{search_space.batch_size}}",
            "trial.command: ${{search_space.units}} is set by only some options of a nested choice",
        ),
        (
            {"m": {"type": "choice", "values": [{"a": 1}, {"a": 2}]}},
            None,
            None,
            "python t.py ${{search_space.m}}",
            "trial.command: ${{search_space.m}} names a nested choice, which is not a value itself",
        ),
        (
            {"lr": {"type": "uniform", "min_value": 0.01, "max_value": 0.1}},
            None,
            {"type": "truncation_selection", "truncation_percentage": 0},
            None,
            "early_termination.truncation_percentage: expected an integer from 1 to 99, got 0",
        ),
        (
            {"lr": {"type": "loguniform", "min_value": -3, "max_value": -1}},
            {"type": "random", "logbase": 1},
            None,
            None,
            "sampling_algorithm.logbase: expected a number > 0 other than 1, got 1",
        ),
    ],
)
def test_what_azure_rejects_is_one_line_naming_the_field(
    tmp_path, search_space, sampling, early_termination, command, message
):
    # load_job accepts every one of these: the SDK does not check them offline.
    job = load_sweep(tmp_path, search_space, command, sampling, early_termination)
    with pytest.raises(AmlLocalError) as raised:
        validate(job)
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)
    with pytest.raises(AmlLocalError):
        make_sampler(job)  # make_sampler validates first


def test_a_conditional_parameter_inside_an_optional_part_is_accepted(tmp_path):
    assert validate(load_sweep(tmp_path, NESTED, command=NESTED_COMMAND)) == []


def test_warnings_for_an_unused_parameter_and_a_small_bayesian_budget(tmp_path):
    job = load_sweep(
        tmp_path,
        BAYESIAN_SPACE,
        command="python t.py --x ${{search_space.x}}",
        sampling_algorithm="bayesian",
        max_total_trials=30,
    )
    assert validate(job) == [
        "search_space.activation: activation is not used in trial.command, so every trial runs the same command for it",
        "search_space.depth: depth is not used in trial.command, so every trial runs the same command for it",
        "limits.max_total_trials: 30 is below Azure's advice for bayesian sampling, 20 per parameter (60 for 3)",
    ]
    nested = load_sweep(tmp_path, NESTED, command="python t.py ${{search_space.model}} ${{search_space.batch_size}}")
    assert validate(nested) == [
        "search_space.model.values[0].units: units is not used in trial.command, so every trial runs the same "
        "command for it",
        "search_space.model.values[1].dropout: dropout is not used in trial.command, so every trial runs the same "
        "command for it",
    ]


def test_a_pipeline_sweep_nodes_component_uses_parameters_through_its_inputs(tmp_path):
    component = {
        "$schema": "https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json",
        "name": "trial",
        "version": "1",
        "type": "command",
        "inputs": {name: {"type": "number", "default": 1} for name in ("lr", "momentum", "epochs")},
        "code": ".",
        "environment": "azureml:train-env@latest",
        "command": "python t.py --lr ${{inputs.lr}} --epochs ${{inputs.epochs}}",
    }
    node = {
        "type": "sweep",
        "trial": "./component.yml",
        "inputs": {"epochs": 3},
        "search_space": {
            "lr": {"type": "uniform", "min_value": 0.01, "max_value": 0.1},
            "momentum": {"type": "choice", "values": [0.5, 0.9]},
        },
        "sampling_algorithm": "random",
        "objective": {"goal": "maximize", "primary_metric": "acc"},
        "limits": {"max_total_trials": 2},
    }
    pipeline = {
        "$schema": "https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json",
        "type": "pipeline",
        "settings": {"default_compute": "azureml:cpu-cluster"},
        "jobs": {"sweep_step": node},
    }
    (tmp_path / "component.yml").write_text(yaml.safe_dump(component))
    (tmp_path / "pipeline.yml").write_text(yaml.safe_dump(pipeline))
    sweep_node = load_job(tmp_path / "pipeline.yml").jobs["sweep_step"]
    # The SDK maps ${{inputs.lr}} to the search space (Sweep._to_job): lr is used, momentum is not.
    assert validate(sweep_node) == [
        "search_space.momentum: momentum is not used in trial.command, so every trial runs the same command for it"
    ]
    assert sweep_node.trial.command == component["command"]  # checked, not rewritten


# ---------------------------------------------------------------- substitute


def test_substitute_quotes_values_and_leaves_inputs_and_outputs():
    command = (
        "python train.py --data ${{inputs.mnist}} --lr ${{ search_space.lr }} --name ${{search_space.name}}"
        " --bs ${{search_space.bs}} --out ${{outputs.model}}"
    )
    params = {"lr": 0.001, "name": "two words; rm -rf /", "bs": 32}
    assert substitute(command, params) == (
        "python train.py --data ${{inputs.mnist}} --lr 0.001 --name 'two words; rm -rf /'"
        " --bs 32 --out ${{outputs.model}}"
    )


def test_substitute_drops_optional_parts_whose_parameter_the_trial_lacks():
    params = {"model": "cnn", "batch_size": 16, "dropout": 0.25}
    assert substitute(NESTED_COMMAND, params) == ("python train.py --model cnn --batch-size 16  $[[--dropout 0.25]]")
    # An optional part that also names an input stays bracketed for the driver to decide on the input.
    assert substitute("x $[[--d ${{search_space.dropout}} --c ${{inputs.ckpt}}]]", params) == (
        "x $[[--d 0.25 --c ${{inputs.ckpt}}]]"
    )


def test_substitute_refuses_a_parameter_the_trial_does_not_have():
    with pytest.raises(AmlLocalError, match=r"^trial\.command: \$\{\{search_space\.units\}\} has no value"):
        substitute("python t.py --units ${{search_space.units}}", {"model": "cnn"})
