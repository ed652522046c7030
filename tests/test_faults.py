"""Faults, the short versions (`make soak` runs the long ones; both are the scenarios of faults/): the endpoint router's
capacity (429) and deadline (408) before a deployment, a deployment whose server died brought back by `create`, a killed
`aml-local job create --stream` (command job and sweep) leaving no process and no run Running, concurrent commands
leaving the store intact, and train.py on a full disk. Everything here needs no TensorFlow except the disk-full run."""

import pytest

from faults import endpoint, jobs, training
from faults.aml import Aml
from faults.settings import SHORT


def report(checks) -> str:
    return "\n".join(map(str, checks))


# ---------------------------------------------------------------------------------------------------------------
# A deployment whose run() sleeps as long as asked: 2 slots, request_timeout_ms 1500.


@pytest.fixture
def sleepy(tmp_path, warm_aml_local, seed_store):
    """(Aml, faults.endpoint.Deployment) of the sleepy deployment, in an endpoint of its own; deleted after. Its
    aml-local commands are processes forked from conftest's warm_aml_local (the scenario kills servers, not them)."""
    aml = Aml.at(seed_store(tmp_path / "home"), (warm_aml_local["command"],), **warm_aml_local["env"])
    with endpoint.sleepy_deployment(aml, tmp_path) as deployed:
        yield aml, deployed


@pytest.mark.slow
def test_requests_past_the_slots_get_429_a_stuck_run_408_and_a_dead_server_is_shown_failed_then_brought_back(sleepy):
    """Two scenarios on one sleepy deployment (starting one is most of either's cost): overload and a stuck run(),
    never a hang; then its server killed: shown Failed, answered 424 by the router, and `create` brings it back."""
    aml, deployed = sleepy
    checks = endpoint.overload_and_stuck(aml, deployed.target, SHORT)
    assert [c.verdict for c in checks] == ["PASS", "PASS"], report(checks)
    checks = endpoint.recovery(aml, deployed)
    assert [c.verdict for c in checks] == ["PASS", "PASS"], report(checks)


# ---------------------------------------------------------------------------------------------------------------
# Jobs: a killed driver, and commands at the same time.


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["command job", "sweep"])
def test_a_killed_streaming_driver_leaves_no_process_and_no_running_record(tmp_path, kind, seed_store):
    aml = Aml.at(seed_store(tmp_path / "home"))
    check = jobs.killed_driver(aml, jobs.write_project(tmp_path / "project"), kind)
    assert check.passed, check


@pytest.mark.slow
def test_two_jobs_and_two_model_versions_at_once_leave_the_store_intact(tmp_path, warm_aml_local):
    # The four commands are processes at once either way; forked from conftest's warm_aml_local, they start faster.
    aml = Aml.at(tmp_path / "home", (warm_aml_local["command"],), **warm_aml_local["env"])
    check = jobs.concurrent_commands(aml, jobs.write_project(tmp_path / "project"))
    assert check.passed, check


# ---------------------------------------------------------------------------------------------------------------
# train.py on a full disk.


@pytest.mark.slow
def test_a_full_disk_fails_training_with_one_line_and_no_partial_checkpoint(tmp_path, small_mnist_dir, seed_store):
    check = training.disk_full(training.Trainer(small_mnist_dir), seed_store(tmp_path), SHORT)
    if check.passed is None:
        pytest.skip(check.figure)
    assert check.passed, check
