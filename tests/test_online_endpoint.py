"""aml-local's online endpoints and deployments: records and keys, the endpoint's router (one scoring URI for the
endpoint's life, tests/test_router.py has its rules against stub servers), local servers started, updated and
stopped (a trivial scoring script), and a full deploy of a trained model with src/score.py and the endpoints/*.yml
specs, then a blue -> green rollout of it under load."""

import http.client
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import stat
import subprocess
import textwrap
import threading
import time

import numpy as np
import psutil
import pytest

from aml_local import AmlLocalError, cli
from aml_local.endpoints.online import deployment as online_deployment
from aml_local.endpoints.online import endpoint as online_endpoint
from aml_local.endpoints.online import records, routing
from faults.client import SAMPLE_LABEL

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
ENDPOINTS = REPO_ROOT / "endpoints"
SAMPLE_REQUEST = ENDPOINTS / "sample-request.json"


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def ok(capsys, *argv):
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    return json.loads(out) if out.strip() else None


def write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


@pytest.fixture
def endpoint_yml(tmp_path):
    return write(
        tmp_path / "endpoint.yml",
        """
        $schema: https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json
        name: tiny-endpoint
        auth_mode: key
        """,
    )


@pytest.fixture
def tiny_deployment(tmp_path, project_environments):
    """A deployment of a scoring script that needs no model: run() echoes the request's "data" back."""
    project_environments(tmp_path)
    write(
        tmp_path / "code" / "echo.py",
        """
        import json, os
        def init():
            print("echo ready, model dir:", os.environ.get("AZUREML_MODEL_DIR"))
        def run(raw_data):
            return {"echo": json.loads(raw_data)["data"], "pid": os.getpid()}
        """,
    )
    write(
        tmp_path / "code" / "broken.py",
        "def init():\n    raise RuntimeError('no weights here')\ndef run(d):\n    return d\n",
    )
    return write(
        tmp_path / "tiny.yml",
        """
        $schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json
        name: blue
        endpoint_name: tiny-endpoint
        code_configuration:
          code: ./code
          scoring_script: echo.py
        environment: azureml:mnist-inference@latest
        instance_type: Standard_DS3_v2
        instance_count: 1
        readiness_probe:
          initial_delay: 1
          period: 1
          failure_threshold: 60
        """,
    )


def call(port, body: bytes, key=None, path="/score", headers=None):
    """(status, body, headers with lower-case names) of a POST to 127.0.0.1:port."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if key is not None:
        all_headers["Authorization"] = f"Bearer {key}"
    try:
        connection.request("POST", path, body=body, headers=all_headers)
        response = connection.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


def post(port, body: bytes, key=None, path="/score", headers=None):
    return call(port, body, key, path, headers)[:2]


def port_of(uri: str) -> int:
    return int(uri.split(":")[2].split("/")[0])


def server_processes(endpoint, deployment) -> list[psutil.Process]:
    """Every process of the deployment's servers (gunicorn masters and their workers)."""
    found = []
    for pid in online_deployment.show(endpoint, deployment)["properties"]["aml_local.pids"].split(","):
        master = psutil.Process(int(pid))
        found += [master, *master.children(recursive=True)]
    return found


def router_process(endpoint) -> psutil.Process:
    return psutil.Process(routing.state(endpoint)["pid"])


def all_gone(processes, timeout=15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in processes):
            return True
        time.sleep(0.2)
    return False


# ---------------------------------------------------------------------------------------------------------------
# Endpoint records and keys.


def test_an_endpoint_has_two_private_keys_and_az_shaped_records(home, endpoint_yml, capsys):
    shown = ok(capsys, "online-endpoint", "create", "--file", endpoint_yml)
    assert shown["name"] == "tiny-endpoint" and shown["auth_mode"] == "key"
    assert shown["provisioning_state"] == "Succeeded" and shown["traffic"] == {}
    # The router's address from the start: no deployment yet, so it answers 404 to a keyed request, 401 without.
    uri = shown["scoring_uri"]
    assert uri.startswith("http://127.0.0.1:") and uri.endswith("/score")
    assert shown["openapi_uri"] == uri.replace("/score", "/swagger.json")
    port = port_of(uri)
    keys = ok(capsys, "online-endpoint", "get-credentials", "--name", "tiny-endpoint")
    assert set(keys) == {"primaryKey", "secondaryKey"}
    assert keys["primaryKey"] != keys["secondaryKey"] and min(map(len, keys.values())) >= 40
    assert post(port, b"{}")[0] == 401
    status, reply = post(port, b"{}", key=keys["secondaryKey"])
    assert status == 404 and "has no deployment with traffic" in json.loads(reply)["message"]
    keys_file = home / "endpoints/tiny-endpoint/routing.json"
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    assert keys["primaryKey"] not in (home / "endpoints/tiny-endpoint/endpoint.json").read_text()
    # regenerate-keys: the chosen key changes (the old one is refused at once), the other keeps working.
    assert ok(capsys, "online-endpoint", "regenerate-keys", "-n", "tiny-endpoint", "--key-type", "secondary") is None
    again = ok(capsys, "online-endpoint", "get-credentials", "--name", "tiny-endpoint")
    assert again["primaryKey"] == keys["primaryKey"] and again["secondaryKey"] != keys["secondaryKey"]
    assert post(port, b"{}", key=keys["secondaryKey"])[0] == 401
    assert post(port, b"{}", key=again["secondaryKey"])[0] == 404
    code, _, err = run_cli(capsys, "online-endpoint", "regenerate-keys", "-n", "tiny-endpoint", "--key-type", "both")
    assert code == 1 and "--key-type both: expected primary or secondary" in err
    assert ok(capsys, "online-endpoint", "list", "--query", "[].name") == ["tiny-endpoint"]
    # --name overrides the YAML's, lower-cased as the CLI does.
    assert (
        ok(capsys, "online-endpoint", "create", "-f", endpoint_yml, "-n", "Other-Endpoint")["name"] == "other-endpoint"
    )


@pytest.mark.parametrize(
    ("change", "argv", "expected"),
    [
        (("auth_mode:", "auth_mod:"), [], "auth_mod: Unknown field"),
        (("auth_mode: key", "auth_mode: aml_token"), [], "auth_mode 'aml_token' does not run locally (key only)"),
        (None, ["--name", "a b"], "name: String does not match expected pattern"),
        (None, ["--name", "x"], "name 'x': 3 to 32 letters, digits and '-'"),
    ],
)
def test_bad_endpoint_specs_give_one_line(home, endpoint_yml, capsys, change, argv, expected):
    if change:
        endpoint_yml.write_text(endpoint_yml.read_text().replace(*change))
    code, out, err = run_cli(capsys, "online-endpoint", "create", "-f", endpoint_yml, *argv)
    assert code == 1 and expected in err and err.count("\n") == 1 and out == ""


def test_unknown_endpoints_and_deployments_are_named(home, endpoint_yml, tiny_deployment, capsys):
    # az's exit codes (tests/test_cli.py cites them): 3 for an endpoint that is not there, and for a deployment
    # created on one (the SDK GETs the endpoint first); az ml's deployment show turns the 404 into a ValueError: 1.
    code, _, err = run_cli(capsys, "online-endpoint", "show", "-n", "nowhere")
    assert code == 3 and "online endpoint 'nowhere' not found" in err
    code, _, err = run_cli(capsys, "online-deployment", "create", "-f", tiny_deployment)
    assert code == 3 and "endpoint_name tiny-endpoint: no such local online endpoint; create it first" in err
    ok(capsys, "online-endpoint", "create", "-f", endpoint_yml)
    code, _, err = run_cli(capsys, "online-endpoint", "create", "-f", endpoint_yml)
    assert code == 1 and "already exists" in err
    code, _, err = run_cli(capsys, "online-deployment", "show", "-n", "green", "-e", "tiny-endpoint")
    assert code == 1 and "online deployment 'green' not found on endpoint tiny-endpoint (deployments: none)" in err
    code, _, err = run_cli(capsys, "online-endpoint", "invoke", "-n", "tiny-endpoint", "-r", SAMPLE_REQUEST)
    assert code == 1 and "no deployment takes traffic" in err
    code, _, err = run_cli(capsys, "online-endpoint", "update", "-n", "tiny-endpoint", "--traffic", "blue=100")
    assert code == 1 and "has no deployment 'blue'" in err
    for bad in ("blue", "blue=101", "blue=-1", ""):
        with pytest.raises(AmlLocalError, match="DEPLOYMENT=PERCENT"):
            online_endpoint.parse_traffic(bad)
    assert online_endpoint.parse_traffic("blue=90 green=10") == {"blue": 90, "green": 10}


@pytest.mark.parametrize(
    ("set_pair", "expected"),
    [
        ("modle=azureml:x:1", "modle: Unknown field"),
        ("model=azureml:no-such-model:1", "model 'no-such-model' not found in the local registry"),
        ("code_configuration.scoring_script=nope.py", "scoring_script nope.py: no such file"),
        ("code_configuration.code=./nowhere", "is not a folder"),
        ("environment_variables.WORKER_COUNT=many", "WORKER_COUNT 'many': expected a whole number"),
        ("request_settings.request_timeout_ms=soon", "request_settings.request_timeout_ms: Not a valid integer"),
    ],
)
def test_bad_deployment_specs_fail_before_anything_starts(
    home, endpoint_yml, tiny_deployment, capsys, set_pair, expected
):
    ok(capsys, "online-endpoint", "create", "-f", endpoint_yml)
    code, out, err = run_cli(capsys, "online-deployment", "create", "-f", tiny_deployment, "--set", set_pair)
    assert code == 1, err
    assert expected in err and err.startswith("ERROR: ") and err.count("\n") == 1 and out == ""
    assert not (home / "endpoints/tiny-endpoint/deployments/blue").exists(), "nothing is left of a refused create"


# ---------------------------------------------------------------------------------------------------------------
# Local servers, with the trivial scoring script: start, route, fail, stop.


@pytest.mark.slow
def test_one_scoring_uri_routes_by_traffic_through_create_update_and_delete(
    home, endpoint_yml, tiny_deployment, capsys, time_limit
):
    uri = ok(capsys, "online-endpoint", "create", "-f", endpoint_yml)["scoring_uri"]
    port = port_of(uri)
    key = ok(capsys, "online-endpoint", "get-credentials", "-n", "tiny-endpoint")["primaryKey"]
    blue = ok(capsys, "online-deployment", "create", "-f", tiny_deployment, "--all-traffic")
    assert blue["provisioning_state"] == "Succeeded" and blue["type"] == "Managed"
    green = ok(capsys, "online-deployment", "create", "-f", tiny_deployment, "--name", "green")
    assert green["properties"]["aml_local.ports"] != blue["properties"]["aml_local.ports"]
    endpoint = ok(capsys, "online-endpoint", "show", "-n", "tiny-endpoint")
    assert endpoint["traffic"] == {"blue": 100, "green": 0} and endpoint["scoring_uri"] == uri

    request = write(home.parent / "request.json", '{"data": [1, 2]}')
    answer = json.loads(ok(capsys, "online-endpoint", "invoke", "-n", "tiny-endpoint", "-r", request))
    assert answer["echo"] == [1, 2]
    blue_pids = {p.pid for p in server_processes("tiny-endpoint", "blue")}
    green_pids = {p.pid for p in server_processes("tiny-endpoint", "green")}
    assert answer["pid"] in blue_pids
    by_name = json.loads(ok(capsys, "online-endpoint", "invoke", "-n", "tiny-endpoint", "-r", request, "-d", "green"))
    assert by_name["pid"] in green_pids

    # Traffic moves behind the same URI: straight HTTP clients see the split, the header says who answered.
    ok(capsys, "online-endpoint", "update", "-n", "tiny-endpoint", "--traffic", "blue=0 green=100")
    assert ok(capsys, "online-endpoint", "show", "-n", "tiny-endpoint")["scoring_uri"] == uri
    for _ in range(5):
        status, reply, headers = call(port, b'{"data": [3]}', key=key)
        assert status == 200 and headers["azureml-model-deployment"] == "green"
        assert json.loads(reply)["pid"] in green_pids
    status, reply, headers = call(port, b'{"data": [3]}', key=key, headers={"azureml-model-deployment": "blue"})
    assert (status, headers["azureml-model-deployment"]) == (200, "blue") and json.loads(reply)["pid"] in blue_pids
    code, _, err = run_cli(capsys, "online-endpoint", "update", "-n", "tiny-endpoint", "--traffic", "blue=50 green=10")
    assert code == 1 and "add up to 60, not 100" in err
    code, _, err = run_cli(capsys, "online-endpoint", "update", "-n", "tiny-endpoint", "--mirror-traffic", "green=10")
    assert code == 1 and "deployment green would take live traffic (100%) and mirrored traffic" in err
    # A request the model refuses comes back as Azure's front end sends it: 424, the model's status in a header.
    bad = write(home.parent / "bad.json", '{"nodata": 1}')
    code, _, err = run_cli(capsys, "online-endpoint", "invoke", "-n", "tiny-endpoint", "-r", bad)
    assert code == 1 and "(deployment green) answered HTTP 424, the model answered 500" in err

    # update: two servers in place of one, no request failed meanwhile, the old processes gone after.
    results = []
    stop = threading.Event()

    def load():
        while not stop.is_set():
            try:
                results.append(call(port, b'{"data": [4]}', key=key)[0])
            except OSError as err:
                results.append(repr(err))

    loader = threading.Thread(target=load)
    loader.start()
    try:
        updated = ok(
            capsys, "online-deployment", "update", "-n", "green", "-e", "tiny-endpoint", "--set", "instance_count=2"
        )
    finally:
        stop.set()
        loader.join(timeout=30)
    assert updated["provisioning_state"] == "Succeeded" and updated["instance_count"] == 2
    assert len(updated["properties"]["aml_local.ports"].split(",")) == 2
    assert results and set(results) == {200}, sorted(set(map(str, results)))
    assert not any(
        psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in green_pids
    )
    answered = {json.loads(call(port, b'{"data": [5]}', key=key)[1])["pid"] for _ in range(20)}
    assert answered <= {p.pid for p in server_processes("tiny-endpoint", "green")} and len(answered) >= 2

    # A deployment that takes traffic is not deleted; one that takes none is, with its whole process group.
    code, _, err = run_cli(capsys, "online-deployment", "delete", "-n", "green", "-e", "tiny-endpoint", "--yes")
    assert code == 1 and "takes 100% of endpoint tiny-endpoint's traffic" in err
    blue_processes = server_processes("tiny-endpoint", "blue")
    assert ok(capsys, "online-deployment", "delete", "-n", "blue", "-e", "tiny-endpoint", "--yes") is None
    assert all_gone(blue_processes)
    assert ok(capsys, "online-deployment", "list", "-e", "tiny-endpoint", "--query", "[].name") == ["green"]
    shown = ok(capsys, "online-endpoint", "show", "-n", "tiny-endpoint")
    assert shown["traffic"] == {"green": 100} and shown["scoring_uri"] == uri
    status, _, headers = call(port, b'{"data": [6]}', key=key, headers={"azureml-model-deployment": "blue"})
    assert status == 404

    # The router killed: the next command that needs it starts it again, on the same port.
    router = router_process("tiny-endpoint")
    router.kill()
    router.wait(timeout=10)
    assert ok(capsys, "online-endpoint", "show", "-n", "tiny-endpoint")["scoring_uri"] == uri
    assert router_process("tiny-endpoint").pid != router.pid
    assert call(port, b'{"data": [7]}', key=key)[0] == 200

    green_processes = server_processes("tiny-endpoint", "green")
    router = router_process("tiny-endpoint")
    ok(capsys, "online-endpoint", "delete", "-n", "tiny-endpoint", "--yes")
    assert all_gone([*green_processes, router])
    assert not (home / "endpoints/tiny-endpoint").exists()
    with pytest.raises(OSError):
        call(port, b"{}", key=key)


@pytest.mark.slow
def test_a_scoring_script_that_fails_to_start_leaves_a_failed_deployment_with_its_reason(
    home, endpoint_yml, tiny_deployment, capsys, time_limit
):
    ok(capsys, "online-endpoint", "create", "-f", endpoint_yml)
    argv = [
        "online-deployment",
        "create",
        "-f",
        tiny_deployment,
        "--set",
        "code_configuration.scoring_script=broken.py",
    ]
    code, _, err = run_cli(capsys, *argv)
    assert code == 1 and err.count("\n") == 1
    assert "exited with code 3 before it was ready" in err and "RuntimeError: no weights here" in err
    shown = ok(capsys, "online-deployment", "show", "-n", "blue", "-e", "tiny-endpoint")
    assert shown["provisioning_state"] == "Failed"
    assert ok(capsys, "online-endpoint", "show", "-n", "tiny-endpoint")["traffic"] == {"blue": 0}
    assert "blue" not in routing.read("tiny-endpoint")["deployments"], "a failed deployment is never routed to"
    code, logs, _ = run_cli(
        capsys, "online-deployment", "get-logs", "-n", "blue", "-e", "tiny-endpoint", "--lines", "40"
    )
    assert code == 0 and "RuntimeError: no weights here" in logs and len(logs.splitlines()) <= 40
    (master,) = records.load_deployment("tiny-endpoint", "blue")["pending_servers"]
    assert not psutil.pid_exists(master["pid"]), "the failed server's master was waited for, not left a zombie"
    ok(capsys, "online-deployment", "delete", "-n", "blue", "-e", "tiny-endpoint")

    # An update that fails to start changes nothing: the deployment that serves keeps serving.
    ok(capsys, "online-deployment", "create", "-f", tiny_deployment, "--all-traffic")
    before = ok(capsys, "online-deployment", "show", "-n", "blue", "-e", "tiny-endpoint")
    code, _, err = run_cli(
        capsys,
        "online-deployment",
        "update",
        "-n",
        "blue",
        "-e",
        "tiny-endpoint",
        "--set",
        "code_configuration.scoring_script=broken.py",
    )
    assert code == 1 and "RuntimeError: no weights here" in err
    after = ok(capsys, "online-deployment", "show", "-n", "blue", "-e", "tiny-endpoint")
    assert after["provisioning_state"] == "Succeeded"
    assert after["properties"]["aml_local.pids"] == before["properties"]["aml_local.pids"]
    request = write(home.parent / "request.json", '{"data": [1]}')
    assert json.loads(ok(capsys, "online-endpoint", "invoke", "-n", "tiny-endpoint", "-r", request))["echo"] == [1]


@pytest.mark.slow
def test_a_busy_port_is_named_and_a_dead_server_shows_failed_and_answers_424(
    home, endpoint_yml, tiny_deployment, capsys, monkeypatch, time_limit
):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("AML_LOCAL_PORT", str(port))
        code, _, err = run_cli(capsys, "online-endpoint", "create", "-f", endpoint_yml)
    assert code == 1 and f"AML_LOCAL_PORT={port}: port {port} on 127.0.0.1 is in use" in err
    assert not (home / "endpoints/tiny-endpoint").exists()

    monkeypatch.setenv("AML_LOCAL_PORT", str(port))  # free now: the port asked for is the endpoint's
    shown = ok(capsys, "online-endpoint", "create", "-f", endpoint_yml)
    assert shown["scoring_uri"] == f"http://127.0.0.1:{port}/score"
    code, _, err = run_cli(capsys, "online-endpoint", "create", "-f", endpoint_yml, "-n", "other-endpoint")
    assert code == 1 and "(by the router of endpoint tiny-endpoint)" in err
    monkeypatch.delenv("AML_LOCAL_PORT")
    ok(capsys, "online-deployment", "create", "-f", tiny_deployment, "--all-traffic")

    processes = server_processes("tiny-endpoint", "blue")
    os.killpg(processes[0].pid, signal.SIGKILL)
    assert all_gone(processes)
    shown = ok(capsys, "online-deployment", "show", "-n", "blue", "-e", "tiny-endpoint")
    assert shown["provisioning_state"] == "Failed"
    assert "not running" in shown["properties"]["aml_local.status_message"]
    # The router answers for it at once, as Azure's front end answers a deployment whose probes fail.
    started = time.monotonic()
    code, _, err = run_cli(
        capsys, "online-endpoint", "invoke", "-n", "tiny-endpoint", "-r", SAMPLE_REQUEST, "-d", "blue"
    )
    assert code == 1 and "answered HTTP 424: deployment blue has no inference server up" in err
    assert time.monotonic() - started < 5
    # create again brings it back in place, behind the same URI, with its traffic.
    again = ok(capsys, "online-deployment", "create", "-f", tiny_deployment)
    assert again["provisioning_state"] == "Succeeded"
    assert ok(capsys, "online-endpoint", "show", "-n", "tiny-endpoint")["traffic"] == {"blue": 100}
    request = write(home.parent / "request.json", '{"data": [1]}')
    assert json.loads(ok(capsys, "online-endpoint", "invoke", "-n", "tiny-endpoint", "-r", request))["echo"] == [1]


# ---------------------------------------------------------------------------------------------------------------
# The real thing: a trained model registered, src/score.py served by the endpoints/*.yml specs.


HEY_LIMIT_S = 300
STEP_S = 0.5  # traffic at each step of the rollout before the next one (hundreds of requests at hey's 500/s here)


def hey_summary(text: str) -> tuple[dict[int, int], list[str], int]:
    """({status: responses}, the error lines, requests) from hey's report."""
    statuses = {int(code): int(count) for code, count in re.findall(r"\[(\d{3})\]\s+(\d+) responses", text)}
    errors = text.partition("Error distribution:")[2].strip().splitlines()
    return statuses, [line.strip() for line in errors if line.strip()], sum(statuses.values())


@pytest.mark.slow
def test_a_trained_model_deployed_with_the_project_specs_then_rolled_out_under_load(
    home, trained_model_dir, capsys, time_limit, tmp_path
):
    """One deployment of the trained model, checked as a client sees it; then a whole blue -> green rollout of it
    under load, as a user would rehearse Azure's safe rollout here: `hey` keeps 8 connections busy on the endpoint's
    scoring URI (within blue's capacity: 2 x max_concurrent_requests_per_instance 4 x instance_count 1, Azure's limit
    on requests in progress) while green is created, mirrored 20%, given 10%, 50% and 100% of the traffic, moved
    back, and deleted. Not one request may fail and no connection may be reset: the router switches tables between
    requests, and a deployment's servers are stopped only after they are out of the table and drained. (One test, so
    that the model is deployed once: hey stops when the rollout is done, at the latest after HEY_LIMIT_S.)"""
    hey = shutil.which("hey")
    if hey is None:
        pytest.skip("hey is not installed (Debian: apt-get install hey; make test installs it when it may)")
    one_worker = ["--set", "environment_variables.WORKER_COUNT=1"]  # the specs ask for 4; this machine has 2 cores
    small_body_limit = ["--set", "environment_variables.AML_LOCAL_MAX_REQUEST_BYTES=100000"]
    registered = ok(capsys, "model", "create", "-f", ENDPOINTS / "model.yml", "--path", trained_model_dir)
    assert registered["version"] == "1"  # blue-deployment.yml pins azureml:mnist-mlp:1
    ok(capsys, "online-endpoint", "create", "-f", ENDPOINTS / "endpoint.yml")
    blue = ok(
        capsys,
        "online-deployment",
        "create",
        "-f",
        ENDPOINTS / "blue-deployment.yml",
        "--all-traffic",
        *one_worker,
        *small_body_limit,
    )
    assert blue["provisioning_state"] == "Succeeded"
    assert blue["model"] == "azureml:/local/models/mnist-mlp/versions/1"
    assert blue["properties"]["aml_local.model_dir"] == str(home / "models/mnist-mlp/1")
    endpoint = ok(capsys, "online-endpoint", "show", "-n", "mnist-endpoint")
    assert endpoint["traffic"] == {"blue": 100} and endpoint["auth_mode"] == "key"
    assert endpoint["scoring_uri"].startswith("http://127.0.0.1:") and endpoint["scoring_uri"].endswith("/score")
    assert endpoint["openapi_uri"] == endpoint["scoring_uri"].replace("/score", "/swagger.json")

    # invoke prints the body as az does: a JSON string holding the server's JSON.
    answer = json.loads(ok(capsys, "online-endpoint", "invoke", "-n", "mnist-endpoint", "-r", SAMPLE_REQUEST))
    assert len(answer["predictions"]) == 1 and len(answer["probabilities"][0]) == 10
    # MNIST test image 0, a 7 (tests/test_explore.py checks the file is that image): the model reads it right.
    assert answer["predictions"] == [SAMPLE_LABEL]
    assert answer["predictions"][0] == int(np.argmax(answer["probabilities"][0]))

    # Straight HTTP, as a client of the endpoint would call it.
    keys = ok(capsys, "online-endpoint", "get-credentials", "-n", "mnist-endpoint")
    port = port_of(endpoint["scoring_uri"])
    body = SAMPLE_REQUEST.read_bytes()
    status, reply = post(port, body)
    assert status == 401 and "missing or invalid key" in json.loads(reply)["message"]
    assert post(port, body, key="not-" + keys["primaryKey"])[0] == 401
    assert post(port, body, key=keys["primaryKey"])[0] == 200
    status, reply = post(port, body, key=keys["secondaryKey"])
    assert status == 200 and json.loads(reply)["predictions"] == answer["predictions"]
    status, reply = post(port, b" " * 100001, key=keys["primaryKey"])
    assert status == 413 and "larger than 100000 bytes" in json.loads(reply)["message"]
    # The model's 400 reaches the client as Azure's front end sends it: 424, the model's status and message kept.
    status, reply, headers = call(port, b'{"data": [[0.5]]}', key=keys["primaryKey"])
    assert status == 424 and "expected 784" in json.loads(reply)["message"]
    assert headers["ms-azureml-model-error-statuscode"] == "400" and headers["azureml-model-deployment"] == "blue"
    bad_request = write(home.parent / "bad.json", '{"data": [[0.5]]}')
    code, _, err = run_cli(capsys, "online-endpoint", "invoke", "-n", "mnist-endpoint", "-r", bad_request)
    assert code == 1 and err.count("\n") == 1
    assert "answered HTTP 424, the model answered 400: data[0] has 1 values, expected 784" in err

    # The key is nowhere but routing.json: not in logs, records, argv or environments of the router or servers.
    logs = online_deployment.get_logs("mnist-endpoint", "blue")
    assert "Worker with pid" in logs
    processes = [router_process("mnist-endpoint"), *server_processes("mnist-endpoint", "blue")]
    for secret in keys.values():
        assert secret not in logs
        for path in (home / "endpoints").rglob("*"):
            if path.is_file() and path.name != "routing.json":
                assert secret not in path.read_text(errors="replace"), path
        for process in processes:
            assert secret not in " ".join(process.cmdline())
            assert secret not in json.dumps(process.environ())
    assert all(c.laddr.ip == "127.0.0.1" for p in processes for c in p.net_connections() if c.status == "LISTEN")

    # A second deployment, under load from here on: green takes the latest version, gets no traffic until it is
    # given some, and takes it step by step.
    registered = ok(capsys, "model", "create", "-f", ENDPOINTS / "model.yml", "--path", trained_model_dir)
    report = tmp_path / "hey.txt"
    with open(report, "w") as out:
        load_for = ("-c", "8", "-z", f"{HEY_LIMIT_S}s")
        request = ("-m", "POST", "-T", "application/json", "-D", str(SAMPLE_REQUEST))
        load = subprocess.Popen(
            [hey, *load_for, *request, "-H", f"Authorization: Bearer {keys['primaryKey']}", endpoint["scoring_uri"]],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    steps = []
    try:
        time.sleep(STEP_S)
        green = ok(capsys, "online-deployment", "create", "-f", ENDPOINTS / "green-deployment.yml", *one_worker)
        steps.append("green created")
        assert green["model"] == f"azureml:/local/models/mnist-mlp/versions/{registered['version']}"
        assert ok(capsys, "online-endpoint", "show", "-n", "mnist-endpoint")["traffic"] == {"blue": 100, "green": 0}
        by_name = ok(capsys, "online-endpoint", "invoke", "-n", "mnist-endpoint", "-r", SAMPLE_REQUEST, "-d", "green")
        assert json.loads(by_name)["predictions"] == answer["predictions"]
        shown = ok(
            capsys, "online-deployment", "list", "-e", "mnist-endpoint", "--query", "[].[name, provisioning_state]"
        )
        assert shown == [["blue", "Succeeded"], ["green", "Succeeded"]]
        processes += server_processes("mnist-endpoint", "green")
        time.sleep(STEP_S)

        def step(what, *argv):
            ok(capsys, *argv)
            steps.append(what)
            time.sleep(STEP_S)

        step("mirror 20%", "online-endpoint", "update", "-n", "mnist-endpoint", "--mirror-traffic", "green=20")
        step(
            "canary 10%",
            *("online-endpoint", "update", "-n", "mnist-endpoint"),
            *("--mirror-traffic", "green=0", "--traffic", "blue=90 green=10"),
        )
        step("50%", "online-endpoint", "update", "-n", "mnist-endpoint", "--traffic", "blue=50 green=50")
        step("100%", "online-endpoint", "update", "-n", "mnist-endpoint", "--traffic", "blue=0 green=100")
        step("back", "online-endpoint", "update", "-n", "mnist-endpoint", "--traffic", "blue=100 green=0")
        step("green deleted", "online-deployment", "delete", "-n", "green", "-e", "mnist-endpoint", "--yes")
    finally:
        load.send_signal(signal.SIGINT)  # hey stops and prints its report
        load.wait(timeout=60)
    text = report.read_text()
    statuses, errors, requests = hey_summary(text)
    assert steps[-1] == "green deleted" and load.returncode == 0, text[-2000:]
    assert requests > 500, text[-2000:]
    assert statuses == {200: requests}, text[-2000:]
    assert errors == [], errors[:10]
    assert ok(capsys, "online-endpoint", "show", "-n", "mnist-endpoint")["scoring_uri"] == endpoint["scoring_uri"]

    assert ok(capsys, "online-endpoint", "delete", "-n", "mnist-endpoint", "--yes") is None
    assert all_gone(processes), [p for p in processes if p.is_running()]
    with pytest.raises(OSError):
        post(port, body, key=keys["primaryKey"])
    code, _, err = run_cli(capsys, "online-endpoint", "show", "-n", "mnist-endpoint")
    assert code == 3 and "not found" in err
