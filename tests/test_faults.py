"""Faults, the short versions (`make soak` runs the long ones; both are the scenarios of faults/): the gateway's
shared concurrency slots and deadline, a deployment whose server died brought back by `create`, a killed
`aml-local job create --stream` (command job and sweep) leaving no process and no run Running, concurrent commands
leaving the store intact, and train.py on a full disk. Everything here needs no TensorFlow except the disk-full run."""

import subprocess
import sys
import time

import pytest

from aml_local.endpoints.serving import SharedSlots
from faults import endpoint, jobs, training
from faults.aml import Aml, wait_until
from faults.settings import SHORT


def report(checks) -> str:
    return "\n".join(map(str, checks))


# ---------------------------------------------------------------------------------------------------------------
# The gateway's shared slots (no server needed).


def test_slots_are_shared_between_holders_and_freed_when_a_holder_dies(tmp_path):
    first, second = SharedSlots(tmp_path, 2), SharedSlots(tmp_path, 2)  # two opens: as two worker processes
    held = [first.try_acquire(), first.try_acquire()]
    assert sorted(held) == [0, 1] and first.try_acquire() is None
    assert second.try_acquire() is None, "a slot held by another holder must not be handed out again"
    started = time.monotonic()
    assert second.acquire(time.monotonic() + 0.2) is None and time.monotonic() - started >= 0.2
    first.release(held[0])
    assert second.try_acquire() == held[0]

    # A worker process that dies (SIGKILL, no cleanup) gives its slot back with its file descriptors.
    first.release(held[1])
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from aml_local.endpoints.serving import SharedSlots; s = SharedSlots(__import__('pathlib')"
            f".Path({str(tmp_path)!r}), 2); print(s.try_acquire(), flush=True); __import__('time').sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == str(held[1])
        assert second.try_acquire() is None, "the other process holds the second slot now"
        holder.kill()
        holder.wait()
        assert wait_until(second.try_acquire, 5, "the dead holder's slot being free") is not None
    finally:
        holder.kill()
        holder.wait()


# ---------------------------------------------------------------------------------------------------------------
# A deployment whose run() sleeps as long as asked: 2 slots, request_timeout_ms 1500.


@pytest.fixture
def sleepy(tmp_path):
    """(Aml, faults.endpoint.Deployment) of the sleepy deployment, in an endpoint of its own; deleted after."""
    aml = Aml.at(tmp_path / "home")
    with endpoint.sleepy_deployment(aml, tmp_path) as deployed:
        yield aml, deployed


@pytest.mark.slow
def test_requests_past_the_slots_get_429_and_a_stuck_run_408_never_a_hang(sleepy):
    aml, deployed = sleepy
    checks = endpoint.overload_and_stuck(aml, deployed.target, SHORT)
    assert [c.verdict for c in checks] == ["PASS", "PASS"], report(checks)


@pytest.mark.slow
def test_a_deployment_whose_server_died_is_shown_failed_and_create_brings_it_back(sleepy):
    aml, deployed = sleepy
    checks = endpoint.recovery(aml, deployed)
    assert [c.verdict for c in checks] == ["PASS", "PASS"], report(checks)


# ---------------------------------------------------------------------------------------------------------------
# Jobs: a killed driver, and commands at the same time.


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["command job", "sweep"])
def test_a_killed_streaming_driver_leaves_no_process_and_no_running_record(tmp_path, kind):
    check = jobs.killed_driver(Aml.at(tmp_path / "home"), jobs.write_project(tmp_path / "project"), kind)
    assert check.passed, check


@pytest.mark.slow
def test_two_jobs_and_two_model_versions_at_once_leave_the_store_intact(tmp_path):
    check = jobs.concurrent_commands(Aml.at(tmp_path / "home"), jobs.write_project(tmp_path / "project"))
    assert check.passed, check


# ---------------------------------------------------------------------------------------------------------------
# train.py on a full disk.


@pytest.mark.slow
def test_a_full_disk_fails_training_with_one_line_and_no_partial_checkpoint(tmp_path, small_mnist_dir):
    check = training.disk_full(training.Trainer(small_mnist_dir), tmp_path, SHORT)
    if check.passed is None:
        pytest.skip(check.figure)
    assert check.passed, check
