"""aml-local's job verbs on small jobs that need no TensorFlow: parsing, errors, records, processes."""

import functools
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest

from aml_local import AmlLocalError, cli, processes, store
from aml_local.endpoints.online import servers as online_servers
from aml_local.jobs import common, runner
from aml_local.jobs import verbs as job


@pytest.fixture
def project(tmp_path, project_environments):
    """A tiny project: src/step.py logs a metric to the job's MLflow run and writes its output."""
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'tiny'\n")
    project_environments(root)
    (root / "src" / "step.py").write_text(
        textwrap.dedent(
            """
            import json, os, sys, time, mlflow
            value, out, *rest = sys.argv[1:]
            if value == "fail":
                sys.exit(3)
            with mlflow.start_run():
                mlflow.log_metric("value", float(value))
            tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
            index = tf_config.get("task", {}).get("index") or ""
            with open(os.path.join(out, f"out{index}.json"), "w") as f:
                json.dump({"tf_config": os.environ.get("TF_CONFIG"), "rest": rest, "pid": os.getpid(),
                           "threads": os.environ.get("TF_NUM_INTRAOP_THREADS")}, f)
            if rest and rest[0] == "sleep":
                time.sleep(float(rest[1]))
            print("step done", value)
            """
        )
    )
    return root


def write_job(project, body, name="job.yml"):
    path = project / name
    header = "$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json\n"
    path.write_text(header + body)
    return path


SIMPLE = textwrap.dedent(
    """
    description: tiny
    experiment_name: tiny
    code: src
    command: python step.py ${{inputs.value}} ${{outputs.out}}
    inputs:
      value: 3
    outputs:
      out:
        type: uri_folder
    environment: azureml:tiny-env@latest
    compute: azureml:cpu-cluster
    """
)


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_stream_runs_the_command_and_records_the_job(home, project, capsys):
    spec = write_job(project, SIMPLE)
    code, out, err = run_cli(capsys, "job", "create", "--file", str(spec), "--stream", "--name", "tiny_1")
    assert code == 0, err
    assert "step done 3" in out
    shown = json.loads(out[out.index("{") :])
    assert shown["name"] == "tiny_1" and shown["status"] == "Completed" and shown["type"] == "command"
    assert shown["experiment_name"] == "tiny"
    assert shown["inputs"]["value"] == "3"
    written = json.loads((home / "jobs/tiny_1/outputs/out/out.json").read_text())
    assert written["tf_config"] is None
    # The job's own mlflow.start_run() attached to the job's run, as on Azure ML.
    run = store.client().get_run(shown["properties"]["mlflow.runId"])
    assert run.data.metrics["value"] == 3.0
    assert run.info.status == "FINISHED"
    assert (home / "jobs/tiny_1/logs/user_logs/std_log.txt").read_text().strip().endswith("step done 3")

    code, out, _ = run_cli(capsys, "job", "show", "-n", "tiny_1", "--query", "status", "-o", "tsv")
    assert (code, out.strip()) == (0, "Completed")
    code, out, _ = run_cli(capsys, "job", "list", "--query", "[].name", "-o", "tsv")
    assert out.split() == ["tiny_1"]
    code, out, _ = run_cli(capsys, "job", "list", "-o", "table")
    # az ml's table of jobs (transform_job in azext_mlv2/manual/_format.py), laid out by knack's table output
    header = re.split(r"\s{2,}", out.splitlines()[0].strip())
    assert header == ["Name", "Status", "Experiment", "Compute target", "Job type", "Created on"]
    assert out.splitlines()[2].split()[:3] == ["tiny_1", "Completed", "tiny"]


def test_set_overrides_inputs_and_a_failing_command_fails_the_job(home, project, capsys):
    spec = write_job(project, SIMPLE)
    code, out, err = run_cli(capsys, "job", "create", "-f", str(spec), "--stream", "--set", "inputs.value=fail")
    assert code == 1
    assert "the command exited with code 3" in err and err.count("\n") == 1
    name = json.loads(out[out.index("{") :])["name"]
    assert job.show(name)["status"] == "Failed"
    assert store.client().get_run(job.show(name)["properties"]["mlflow.runId"]).info.status == "FAILED"


@pytest.mark.parametrize(
    ("body_change", "set_args", "expected"),
    [
        (("compute:", "computee:"), [], "computee: Unknown field"),
        (None, ["--set", "inputs.valu=4"], "has no input 'valu'"),
        (None, ["--set", "inputs.value"], "usage error: --set KEY=VALUE [KEY=VALUE ...]"),
        (("${{inputs.value}}", "${{inputs.missing}}"), [], "${{inputs.missing}} names no input"),
        (("code: src", "code: nowhere"), [], "nowhere"),
    ],
)
def test_bad_input_gives_one_line_and_exit_1(home, project, capsys, body_change, set_args, expected):
    body = SIMPLE.replace(*body_change) if body_change else SIMPLE
    spec = write_job(project, body)
    code, out, err = run_cli(capsys, "job", "create", "-f", str(spec), *set_args)
    assert code == 1
    assert expected in err
    assert err.startswith("ERROR: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and out == ""


def test_missing_file_unknown_job_and_missing_argument_exit_as_az_does(home, capsys):
    # az's exit codes: 1 for a user error, 3 for a resource that is not found, 2 for a command line that does not
    # parse (tests/test_cli.py cites the sources).
    code, _, err = run_cli(capsys, "job", "create", "-f", "nope.yml")
    assert code == 1 and "no such file" in err
    code, _, err = run_cli(capsys, "job", "show", "-n", "nope")
    assert code == 3 and "not found" in err
    code, _, err = run_cli(capsys, "job", "create")
    assert code == 2
    assert err.count("\n") == 1


def test_detached_create_then_stream(home, project, capsys):
    spec = write_job(project, SIMPLE)
    code, out, _ = run_cli(capsys, "job", "create", "-f", str(spec), "--query", "name", "-o", "tsv")
    name = out.strip()
    assert code == 0 and name
    code, out, _ = run_cli(capsys, "job", "stream", "-n", name)
    assert code == 0
    assert "step done 3" in out and "Status: Completed" in out
    assert job.show(name)["status"] == "Completed"


def _wait_for(path, timeout=60):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)
    time.sleep(0.2)
    return json.loads(path.read_text())


def test_cancel_stops_the_whole_process_tree(home, project, capsys):
    spec = write_job(project, SIMPLE.replace("${{outputs.out}}", "${{outputs.out}} sleep 120"))
    name = job.create(spec)["name"]
    child = _wait_for(home / "jobs" / name / "outputs/out/out.json")
    assert psutil.pid_exists(child["pid"])
    assert job.cancel(name)["status"] == "Canceled"
    time.sleep(0.5)
    assert not psutil.pid_exists(child["pid"]) or psutil.Process(child["pid"]).status() == psutil.STATUS_ZOMBIE
    assert store.client().get_run(job.show(name)["properties"]["mlflow.runId"]).info.status == "KILLED"


def test_a_runner_that_died_is_reported_failed(home, project):
    spec = write_job(project, SIMPLE.replace("${{outputs.out}}", "${{outputs.out}} sleep 120"))
    name = job.create(spec)["name"]
    child = _wait_for(home / "jobs" / name / "outputs/out/out.json")
    runner_pid = json.loads((home / "jobs" / name / "runner.json").read_text())["pid"]
    os.kill(runner_pid, signal.SIGKILL)
    os.killpg(child["pid"], signal.SIGKILL)
    time.sleep(0.5)
    shown = job.show(name)
    assert shown["status"] == "Failed"
    assert "runner process ended" in shown["properties"]["aml_local.status_message"]
    # The runner's watchdog, not `job show`, records the failure in the store: the one writer of it.
    run_id = shown["properties"]["mlflow.runId"]
    deadline = time.monotonic() + 30
    while store.client().get_run(run_id).data.tags.get(store.TAG_STATUS) != "Failed" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert store.client().get_run(run_id).data.tags[store.TAG_STATUS] == "Failed"
    assert store.client().get_run(run_id).info.status == "FAILED"
    assert not (home / "jobs" / name / "runner.json").exists()


def test_show_of_a_job_whose_driver_died_writes_nothing(home, project, monkeypatch):
    # A job recorded Running whose driver is gone (and had no watchdog to record it): `job show` reports Failed
    # every time it is asked, and leaves the store as it found it.
    spec = write_job(project, SIMPLE)
    monkeypatch.setattr(common, "spawn", lambda job_dir, module: None)  # recorded, never started
    name = job.create(spec)["name"]
    run_id = job.show(name)["properties"]["mlflow.runId"]
    store.set_status(run_id, "Running")
    (home / "jobs" / name / "runner.json").write_text(json.dumps({"pid": 2**22 + 1, "started": 1.0}))
    for _ in range(3):
        assert job.show(name)["status"] == "Failed"
    assert store.client().get_run(run_id).data.tags[store.TAG_STATUS] == "Running"


def test_a_job_that_ends_between_the_store_read_and_the_driver_check_is_shown_as_it_ended(home, project, monkeypatch):
    # The runner records the job's end, then removes runner.json and exits. A `job show` that read the record just
    # before (Running) and looks for the driver just after (gone) must not show the finished job Failed: seen under
    # load, `job stream` of a completed job printed "Status: Failed" once.
    spec = write_job(project, SIMPLE)
    monkeypatch.setattr(common, "spawn", lambda job_dir, module: None)  # recorded, never started: we play the runner
    name = job.create(spec)["name"]
    run_id = job.show(name)["properties"]["mlflow.runId"]
    store.set_status(run_id, "Running")
    runner_json = home / "jobs" / name / "runner.json"
    runner_json.write_text(json.dumps({"pid": os.getpid(), "started": psutil.Process().create_time()}))
    read_the_record = store.find_job_run

    def runner_ends_right_after_the_read(job_name):
        run = read_the_record(job_name)  # the record as it was: Running
        store.set_status(run_id, "Completed")  # then the runner records the end, removes its file, exits
        runner_json.unlink()
        return run

    monkeypatch.setattr(store, "find_job_run", runner_ends_right_after_the_read)
    shown = job.show(name)
    assert shown["status"] == "Completed"
    assert "aml_local.status_message" not in shown["properties"]


def test_the_store_keeps_one_mlflow_client(tmp_path, monkeypatch, seed_store):
    # One client for the current home, not one per AML_LOCAL_HOME ever used by the process.
    clients = []
    for index in range(3):
        monkeypatch.setenv("AML_LOCAL_HOME", str(seed_store(tmp_path / f"home{index}")))
        clients.append(store.client())
        assert store.client() is clients[-1]
    assert len({id(c) for c in clients}) == 3
    assert store._cached_client == (store.tracking_uri(), clients[-1])


def test_main_leaves_the_warning_filters_and_log_levels_as_it_found_them(home, capsys):
    import logging
    import warnings

    filters, level = list(warnings.filters), logging.getLogger("azure").level
    run_cli(capsys, "compute", "show", "-n", "nothing-here")
    assert warnings.filters == filters and logging.getLogger("azure").level == level


def test_tensorflow_distribution_starts_one_process_per_worker(home, project, capsys):
    body = SIMPLE + "distribution:\n  type: tensorflow\n  worker_count: 2\nresources:\n  instance_count: 2\n"
    spec = write_job(project, body)
    code, out, err = run_cli(capsys, "job", "create", "-f", str(spec), "--stream", "-n", "dist")
    assert code == 0, err
    assert "[worker 0] step done 3" in out and "[worker 1] step done 3" in out
    configs = [json.loads((home / f"jobs/dist/outputs/out/out{i or ''}.json").read_text()) for i in range(2)]
    tf_configs = [json.loads(c["tf_config"]) for c in configs]
    workers = tf_configs[0]["cluster"]["worker"]
    assert len(workers) == 2 and all(w.startswith("127.0.0.1:") for w in workers)
    assert [t["task"] for t in tf_configs] == [{"type": "worker", "index": 0}, {"type": "worker", "index": 1}]
    assert all(t["cluster"]["worker"] == workers for t in tf_configs)
    assert configs[0]["threads"] == str(max(1, (os.cpu_count() or 1) // 2))
    assert (home / "jobs/dist/logs/user_logs/std_log_process_1.txt").exists()


def test_other_distributions_are_refused(home, project, capsys):
    # pytorch and mpi run here (tests/test_distribution.py); ray does not.
    spec = write_job(project, SIMPLE + "distribution:\n  type: ray\n  port: 6379\n")
    code, _, err = run_cli(capsys, "job", "create", "-f", str(spec))
    assert code == 1 and "'ray' does not run locally" in err


def test_data_inputs_map_to_local_folders(home, project, tmp_path, capsys):
    local = tmp_path / "digits"
    local.mkdir()
    (local / "labels.txt").write_text("0 1 2\n")
    (project / "data").mkdir()
    (project / "data" / "digits.yml").write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/data.schema.json\n"
        f"name: digits\nversion: '2'\ntype: uri_folder\npath: {local}\n"
    )
    body = SIMPLE.replace("${{outputs.out}}", "${{outputs.out}} ${{inputs.digits}}")
    body = body.replace(
        "  value: 3\n", "  value: 3\n  digits:\n    type: uri_folder\n    path: azureml:digits@latest\n"
    )
    spec = write_job(project, body)
    with open(os.devnull, "w") as quiet:
        shown = job.create(spec, stream=True, echo=quiet)
    assert shown["status"] == "Completed"
    # A ro_mount input (the default) is the job's own copy of the asset's folder, as Azure mounts it read-only.
    copy = home / f"jobs/{shown['name']}/inputs/digits"
    assert json.loads((home / f"jobs/{shown['name']}/outputs/out/out.json").read_text())["rest"] == [str(copy)]
    assert (copy / "labels.txt").read_text() == "0 1 2\n"

    code, _, err = run_cli(capsys, "job", "create", "-f", str(spec), "--set", "inputs.digits.path=azureml:other@latest")
    # What to do is said: register it, or give a data/*.yml.
    assert code == 1 and "data asset 'other'@latest is not registered here" in err
    assert "aml-local data create --file <data YAML>" in err and "has name: other" in err
    code, _, err = run_cli(
        capsys, "job", "create", "-f", str(spec), "--set", "inputs.digits.path=https://example.invalid/x/"
    )
    assert code == 1 and "has no local copy" in err and "--set inputs.digits.path=<folder>" in err
    code, _, err = run_cli(capsys, "job", "create", "-f", str(spec), "--set", f"inputs.digits.path={tmp_path}/none")
    assert code == 1 and "does not exist" in err


def test_optional_command_parts_follow_their_inputs():
    command = "python t.py --a ${{inputs.a}} $[[--resume ${{inputs.r}}]] --o ${{outputs.m}}"
    assert common.resolve_command(command, {"inputs.a": "1", "outputs.m": "/o"}) == "python t.py --a 1  --o /o"
    both = {"inputs.a": "1", "inputs.r": "/c k", "outputs.m": "/o"}
    assert common.resolve_command(command, both) == "python t.py --a 1 --resume '/c k' --o /o"
    with pytest.raises(AmlLocalError, match="names no input"):
        common.resolve_command("${{inputs.zzz}}", {})


def test_code_snapshot_leaves_out_what_the_upload_would(home, project):
    (project / "src" / ".amlignore").write_text("# not uploaded\nscratch/\n*.tmp\n")
    (project / "src" / "scratch").mkdir()
    (project / "src" / "scratch" / "big.bin").write_text("x")
    (project / "src" / "notes.tmp").write_text("x")
    (project / "src" / "__pycache__").mkdir()
    name = job.create(write_job(project, SIMPLE), stream=True, echo=open(os.devnull, "w"))["name"]  # noqa: SIM115
    code = home / "jobs" / name / "code"
    # ./logs and ./outputs are made for the command, as on Azure; the rest is what the upload takes.
    assert sorted(p.name for p in code.iterdir()) == [".amlignore", "logs", "outputs", "step.py"]


def test_a_job_name_is_used_once(home, project, capsys):
    spec = write_job(project, SIMPLE)
    assert run_cli(capsys, "job", "create", "-f", str(spec), "-n", "once", "--stream")[0] == 0
    code, _, err = run_cli(capsys, "job", "create", "-f", str(spec), "-n", "once")
    assert code == 1 and "already exists" in err
    code, _, err = run_cli(capsys, "job", "create", "-f", str(spec), "-n", "bad name!")
    assert code == 1 and "--name 'bad name!'" in err


def test_streaming_a_detached_job_that_fails_exits_1_with_its_reason(home, project, capsys):
    spec = write_job(project, SIMPLE)
    name = job.create(spec, set_pairs=["inputs.value=fail"])["name"]
    code, out, err = run_cli(capsys, "job", "stream", "-n", name)
    assert code == 1 and "Status: Failed" in out
    assert err == f"ERROR: job {name} ended Failed: the command exited with code 3\n"


def test_an_input_can_read_another_jobs_output_by_its_azureml_uri(home, project, capsys):
    # The producer writes its output to a datastore path: read back by the job's output URI and by that path.
    stored = "azureml://datastores/workspaceblobstore/paths/produced/"
    first = job.create(
        write_job(project, SIMPLE),
        name="producer",
        set_pairs=[f"outputs.out.path={stored}"],
        stream=True,
        echo=open(os.devnull, "w"),  # noqa: SIM115
    )
    assert first["status"] == "Completed"
    assert (home / "datastores/workspaceblobstore/produced/out.json").is_file()
    body = SIMPLE.replace("${{outputs.out}}", "${{outputs.out}} ${{inputs.previous}}")
    body = body.replace("  value: 3\n", "  value: 3\n  previous:\n    type: uri_folder\n    path: ./nowhere\n")
    spec = write_job(project, body, name="consumer.yml")
    uri = "azureml://jobs/producer/outputs/out"
    shown = job.create(spec, set_pairs=[f"inputs.previous.path={uri}"], stream=True, echo=open(os.devnull, "w"))  # noqa: SIM115
    assert shown["inputs"]["previous"]["path"] == uri
    written = json.loads((home / f"jobs/{shown['name']}/outputs/out/out.json").read_text())
    copy = home / f"jobs/{shown['name']}/inputs/previous"  # ro_mount: a copy of the producer's output
    assert written["rest"] == [str(copy)] and (copy / "out.json").is_file()
    again = job.create(spec, set_pairs=[f"inputs.previous.path={stored}"], stream=True, echo=open(os.devnull, "w"))  # noqa: SIM115
    copy = home / f"jobs/{again['name']}/inputs/previous"
    assert again["status"] == "Completed" and again["inputs"]["previous"]["path"] == stored
    assert (copy / "out.json").read_bytes() == (home / "datastores/workspaceblobstore/produced/out.json").read_bytes()

    missing = "azureml://datastores/workspaceblobstore/paths/never-written"
    code, _, err = run_cli(capsys, "job", "create", "-f", str(spec), "--set", f"inputs.previous.path={missing}")
    assert code == 1 and f"input previous: {missing}: nothing at {home / 'datastores/workspaceblobstore'}/never" in err

    code, _, err = run_cli(
        capsys, "job", "create", "-f", str(spec), "--set", "inputs.previous.path=azureml://jobs/nobody/outputs/out"
    )
    assert code == 1 and "no local job named 'nobody'" in err
    code, _, err = run_cli(
        capsys, "job", "create", "-f", str(spec), "--set", "inputs.previous.path=azureml://jobs/producer/outputs/model"
    )
    assert code == 1 and "has no output 'model' (outputs: out, artifacts)" in err


@pytest.mark.parametrize("when", ["immediate", "deferred-before-sleep", "deferred-during-sleep"])
def test_a_drivers_cancel_signal_raises_at_once_or_at_its_next_sleep(when):
    # A sweep's driver defers: a signal that lands while it writes to the store must not cut the write short.
    signals = runner.Signals(deferred=when != "immediate")
    previous = signal.signal(signal.SIGUSR1, signals.on_signal)
    started = time.monotonic()
    try:
        with pytest.raises(runner.Canceled, match="SIGUSR1"):
            if when == "immediate":
                os.kill(os.getpid(), signal.SIGUSR1)
                time.sleep(5)
            elif when == "deferred-before-sleep":
                os.kill(os.getpid(), signal.SIGUSR1)
                assert signals.pending == "SIGUSR1"  # noted; nothing raised yet
                signals.sleep(5)
            else:
                threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1)).start()
                signals.sleep(5)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert time.monotonic() - started < 4  # never the whole sleep


# A process whose main thread has exited while another still runs: the main thread shows as a zombie, and the
# process's sockets stay open until its last thread is gone (as for a server SIGKILLed: its threads exit one by one).
HALF_EXITED_SERVER = """
import ctypes, os, socket, sys, threading, time
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
threading.Thread(target=time.sleep, args=(60,)).start()
print(listener.getsockname()[1], flush=True)
ctypes.CDLL(None).syscall({"x86_64": 60, "aarch64": 93}[os.uname().machine], 0)  # exit(2): this thread alone
"""


def accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_a_group_is_gone_only_when_its_processes_hold_nothing_open():
    server = subprocess.Popen(
        [sys.executable, "-c", HALF_EXITED_SERVER], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        port = int(server.stdout.readline())
        deadline = time.monotonic() + 10
        while psutil.Process(server.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.05)
        assert psutil.Process(server.pid).status() == psutil.STATUS_ZOMBIE
        assert not processes.group_gone(server.pid) and accepts(port)  # a zombie main thread, its port still open
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.stdout.close()
    deadline = time.monotonic() + 10
    while not processes.group_gone(server.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes.group_gone(server.pid) and not accepts(port)
    server.wait(timeout=10)  # reaped already by group_gone: Popen learns it


def test_a_starting_server_is_ready_only_when_its_own_process_answers_on_its_port(tmp_path):
    """A deployment's port is free when chosen; another program may be given it before gunicorn binds it. That
    program answering GET / does not make the deployment ready."""
    # The standard library's file server: GET / answers 200 (a listing of tmp_path); this test's process holds the port.
    files = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    stranger = http.server.ThreadingHTTPServer(("127.0.0.1", 0), files)
    threading.Thread(target=stranger.serve_forever, daemon=True).start()
    starting = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    port = stranger.server_address[1]
    try:
        assert online_servers.ready({"port": port, "pid": os.getpid()}, 2)
        assert not online_servers.ready({"port": port, "pid": starting.pid}, 2)
    finally:
        stranger.shutdown()
        stranger.server_close()
        starting.kill()
        starting.wait()
