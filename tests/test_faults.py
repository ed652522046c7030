"""Faults, the short versions (bench/soak.py runs the long ones): the gateway's shared concurrency slots and deadline,
a deployment whose server died brought back by `create`, a killed `aml-local job create --stream` (command job and
sweep) leaving no process and no run Running, concurrent commands leaving the store intact, and train.py on a full
disk. Everything here needs no TensorFlow except the disk-full run."""

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from aml_local.endpoints.serving import SharedSlots

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "bench"))

import soak_jobs  # noqa: E402
import soak_requests  # noqa: E402

AML_LOCAL = [sys.executable, "-m", "aml_local"]


def aml(home, *args, check=True, timeout=300):
    env = {**os.environ, "AML_LOCAL_HOME": str(home)}
    env.pop("AML_LOCAL_PORT", None)
    result = subprocess.run(
        [*AML_LOCAL, *map(str, args)], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert result.returncode == 0, result.stderr[-2000:]
    return result


def aml_json(home, *args):
    return json.loads(aml(home, *args, "-o", "json").stdout)


def alive(pid) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout} s")


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
def sleepy(tmp_path, project_environments):
    """(home, port, key) of a running deployment of a scoring script that sleeps; deleted after."""
    home = tmp_path / "home"
    project_environments(tmp_path)
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "sleepy.py").write_text(
        "import json, time\ndef init():\n    pass\ndef run(raw):\n"
        "    time.sleep(float(json.loads(raw)['sleep']))\n    return {'slept': True}\n"
    )
    (tmp_path / "endpoint.yml").write_text("name: sleepy-endpoint\nauth_mode: key\n")
    deployment = textwrap.dedent(
        """
        name: blue
        endpoint_name: sleepy-endpoint
        code_configuration:
          code: ./code
          scoring_script: sleepy.py
        environment: azureml:mnist-inference@latest
        instance_type: Standard_DS3_v2
        instance_count: 1
        request_settings:
          request_timeout_ms: 1500
          max_concurrent_requests_per_instance: 2
        environment_variables:
          WORKER_COUNT: "1"
        readiness_probe:
          initial_delay: 1
          period: 1
          failure_threshold: 60
        """
    )
    (tmp_path / "blue.yml").write_text(deployment)
    aml(home, "online-endpoint", "create", "-f", tmp_path / "endpoint.yml", "-o", "none")
    try:
        shown = aml_json(home, "online-deployment", "create", "-f", tmp_path / "blue.yml", "--all-traffic")
        key = aml_json(home, "online-endpoint", "get-credentials", "-n", "sleepy-endpoint")["primaryKey"]
        yield home, int(shown["properties"]["aml_local.port"]), key, tmp_path / "blue.yml"
    finally:
        aml(home, "online-endpoint", "delete", "-n", "sleepy-endpoint", "--yes", "-o", "none", check=False)


def sleep_request(port, key, seconds):
    return soak_requests.request(
        port, key, json.dumps({"sleep": seconds}).encode(), {"Content-Type": "application/json"}
    )


@pytest.mark.slow
def test_requests_past_the_slots_get_429_and_a_stuck_run_408_never_a_hang(sleepy):
    home, port, key, _ = sleepy
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    from soak import overload

    statuses, slowest = overload(port, key, clients=8, per_client=3, sleep_s=0.4)
    assert set(statuses) <= {200, 408, 429}, statuses
    assert statuses.get(200, 0) >= 2 and statuses.get(429, 0) >= 1, statuses
    assert slowest <= 1.5 + 0.5, f"a request waited {slowest:.2f} s, past request_timeout_ms"

    status, content_type, raw, seconds = sleep_request(port, key, 10)
    assert status == 408 and 1.4 <= seconds < 2.5, (status, seconds)
    assert soak_requests.problem_with_refusal(status, content_type, raw) is None
    assert "request_timeout_ms (1500 ms)" in json.loads(raw)["message"]
    # The stuck run() still holds one slot; the other serves. Once it returns, both do.
    assert sleep_request(port, key, 0)[0] == 200
    assert wait_until(lambda: sleep_request(port, key, 0)[0] == 200, 15, "a request after the stuck one")
    logs = aml(home, "online-deployment", "get-logs", "-n", "blue", "-e", "sleepy-endpoint").stdout
    assert "aml-local gateway: 408 POST /score" in logs and "aml-local gateway: 429 POST /score" in logs


@pytest.mark.slow
def test_a_deployment_whose_server_died_is_shown_failed_and_create_brings_it_back(sleepy):
    home, port, key, spec = sleepy
    shown = aml_json(home, "online-deployment", "show", "-n", "blue", "-e", "sleepy-endpoint")
    master = psutil.Process(int(shown["properties"]["aml_local.pid"]))
    processes = [master, *master.children(recursive=True)]
    os.killpg(master.pid, signal.SIGKILL)
    wait_until(lambda: not any(alive(p.pid) for p in processes), 15, "the server's processes ending")
    with pytest.raises(OSError):
        sleep_request(port, key, 0)
    shown = aml_json(home, "online-deployment", "show", "-n", "blue", "-e", "sleepy-endpoint")
    assert shown["provisioning_state"] == "Failed"
    assert "not running" in shown["properties"]["aml_local.status_message"]

    again = aml_json(home, "online-deployment", "create", "-f", spec)  # no --all-traffic: its share is kept
    assert again["provisioning_state"] == "Succeeded"
    assert aml_json(home, "online-endpoint", "show", "-n", "sleepy-endpoint")["traffic"] == {"blue": 100}
    new_port = int(again["properties"]["aml_local.port"])
    assert sleep_request(new_port, key, 0)[0] == 200
    # A live one is not replaced behind its users' backs.
    result = aml(home, "online-deployment", "create", "-f", spec, check=False)
    assert result.returncode == 2 and "already exists" in result.stderr


# ---------------------------------------------------------------------------------------------------------------
# Jobs: a killed driver, and commands at the same time.


def trial_pid(home, name):
    path = home / "jobs" / name / "outputs" / "out" / "pid.json"
    with contextlib.suppress(OSError, ValueError):
        return json.loads(path.read_text())["pid"]
    return None


def start_streaming(home, spec, name, *extra):
    env = {**os.environ, "AML_LOCAL_HOME": str(home)}
    command = [*AML_LOCAL, "job", "create", "-f", str(spec), "-n", name, "--stream", "-o", "none", *extra]
    return subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["command", "sweep"])
def test_a_killed_streaming_driver_leaves_no_process_and_no_running_record(tmp_path, kind):
    home = tmp_path / "home"
    project = soak_jobs.write_project(tmp_path / "project")
    if kind == "command":
        driver = start_streaming(home, project["command"], "killed", "--set", "inputs.seconds=600")
        children = ["killed"]
    else:
        spec = soak_jobs.sweep_spec(project["folder"], "killed", trials=2, seconds=600)
        driver = start_streaming(home, spec, "killed")
        children = ["killed_0", "killed_1"]
    try:
        pids = wait_until(lambda: all(p := [trial_pid(home, c) for c in children]) and p, 120, "the jobs starting")
    finally:
        driver.kill()  # SIGKILL: the driver records nothing
        driver.wait()
    wait_until(lambda: not any(alive(pid) for pid in pids), 30, "the job processes ending")
    assert aml(home, "job", "show", "-n", "killed", "--query", "status", "-o", "tsv").stdout.strip() == "Failed"
    if kind == "sweep":
        for child in children:
            shown = aml_json(home, "job", "show", "-n", child)
            assert shown["status"] == "Canceled"
            assert "its parent job killed ended without stopping it" in shown["properties"]["aml_local.status_message"]


@pytest.mark.slow
def test_two_jobs_and_two_model_versions_at_once_leave_the_store_intact(tmp_path):
    home = tmp_path / "home"
    project = soak_jobs.write_project(tmp_path / "project")
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.txt").write_text("weights\n")
    env = {**os.environ, "AML_LOCAL_HOME": str(home)}
    commands = [
        ["job", "create", "-f", project["command"], "-n", "one", "--stream", "-o", "none"],
        ["job", "create", "-f", project["command"], "-n", "two", "--stream", "-o", "none"],
        ["model", "create", "-n", "tiny", "--path", str(model), "--type", "custom_model", "-o", "none"],
        ["model", "create", "-n", "tiny", "--path", str(model), "--type", "custom_model", "-o", "none"],
    ]
    processes = [
        subprocess.Popen([*AML_LOCAL, *c], env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for c in commands
    ]
    errors = [p.communicate(timeout=300)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0, 0], errors
    for name in ("one", "two"):
        assert aml(home, "job", "show", "-n", name, "--query", "status", "-o", "tsv").stdout.strip() == "Completed"
    assert sorted(m["version"] for m in aml_json(home, "model", "list", "-n", "tiny")) == ["1", "2"]
    with contextlib.closing(sqlite3.connect(home / "mlflow.db")) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# ---------------------------------------------------------------------------------------------------------------
# train.py on a full disk.


@pytest.mark.slow
def test_a_full_disk_fails_training_with_one_line_and_no_partial_checkpoint(tmp_path, small_mnist_dir):
    tiny_disk = tmp_path / "tiny-disk"
    tiny_disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(tiny_disk)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a 256 KiB tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AZUREML_", "TF_CONFIG"))}
        env |= {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "TF_CPP_MIN_LOG_LEVEL": "2"}
        command = [sys.executable, str(REPO_ROOT / "src/train.py"), "--data-folder", str(small_mnist_dir)]
        command += ["--epochs", "1", "--validation-size", "500", "--checkpoint-dir", str(tiny_disk)]
        command += ["--model-output", str(tmp_path / "model")]
        result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error: cannot write the epoch 1 checkpoint to") and "No space left" in last, last
        assert os.listdir(tiny_disk) == [], "the partial checkpoint was left behind"
    finally:
        subprocess.run(["umount", str(tiny_disk)], check=False)
