"""aml-local's compute, environment and data nouns (create/show, validated by the SDK's loaders), `job download`,
and online endpoints' mirrored traffic: Azure's rules for --mirror-traffic and the copy a mirrored deployment gets."""

import http.server
import json
import pathlib
import shutil
import threading

import pytest

from aml_local import cli
from aml_local.endpoints.online import endpoint as online_endpoint
from aml_local.endpoints.online import records, routing

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def ok(capsys, *argv):
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    return json.loads(out) if out.strip() else None


def test_compute_create_records_the_cluster_and_says_jobs_run_here(home, capsys):
    created = ok(capsys, "compute", "create", "--file", REPO_ROOT / "compute/cpu-cluster.yml")
    assert created["name"] == "cpu-cluster" and created["type"] == "amlcompute"
    assert (created["size"], created["min_instances"], created["max_instances"]) == ("Standard_DS3_v2", 0, 4)
    assert created["provisioning_state"] == "Succeeded"
    assert created["properties"]["aml_local.runs_on"].startswith("this machine (")
    again = ok(capsys, "compute", "create", "--file", REPO_ROOT / "compute/cpu-cluster.yml", "--name", "cpu-2")
    assert again["name"] == "cpu-2"
    assert (
        ok(capsys, "compute", "show", "-n", "cpu-cluster")["properties"]["createdAt"]
        == created["properties"]["createdAt"]
    )
    code, _, err = run_cli(capsys, "compute", "show", "-n", "nope")
    assert code == 3 and err.startswith("ERROR: compute 'nope' not found") and "cpu-2, cpu-cluster" in err


def test_compute_create_refuses_what_azure_refuses(home, capsys, tmp_path):
    code, _, err = run_cli(capsys, "compute", "create", "--file", REPO_ROOT / "data/mnist.yml")
    assert code == 1 and err.count("\n") == 1 and "data/mnist.yml" in err
    code, _, err = run_cli(capsys, "compute", "create", "--file", REPO_ROOT / "compute/cpu-cluster.yml", "-n", "9bad")
    assert code == 1 and "name '9bad': 2 to 16 letters, digits and '-', starting with a letter" in err
    code, _, err = run_cli(capsys, "compute", "create", "--file", tmp_path / "missing.yml")
    assert code == 1 and "no such file (expected a compute YAML)" in err


def test_environment_versions_count_up_and_a_fixed_version_cannot_change(home, capsys, tmp_path):
    first = ok(capsys, "environment", "create", "--file", REPO_ROOT / "environments/train.yml")
    second = ok(capsys, "environment", "create", "--file", REPO_ROOT / "environments/train.yml")
    assert (first["name"], first["version"], second["version"]) == ("mnist-train", "1", "2")
    assert first["image"].startswith("mcr.microsoft.com/azureml/") and "dependencies" in first["conda_file"]
    assert ok(capsys, "environment", "show", "-n", "mnist-train", "--label", "latest")["version"] == "2"
    assert ok(capsys, "environment", "show", "-n", "mnist-train", "--version", "1")["version"] == "1"
    pinned = tmp_path / "env.yml"
    pinned.write_text("name: pinned\nversion: '3'\nimage: python:3.11-slim\n")
    assert ok(capsys, "environment", "create", "--file", pinned)["version"] == "3"
    assert ok(capsys, "environment", "create", "--file", pinned)["version"] == "3"  # the same content again
    pinned.write_text("name: pinned\nversion: '3'\nimage: python:3.12-slim\n")
    code, _, err = run_cli(capsys, "environment", "create", "--file", pinned)
    assert code == 1 and "environment pinned:3 already exists with other content" in err


def test_data_versions_of_any_kind_sort_and_latest_is_the_newest(home, capsys, tmp_path):
    # `data create --version v2` after version 1: show (latest) and show --version work; a mix of whole-number
    # and other versions used to crash the sort with a TypeError.
    ok(capsys, "data", "create", "--file", REPO_ROOT / "data/mnist.yml")
    ok(capsys, "data", "create", "--file", REPO_ROOT / "data/mnist.yml", "--version", "v2")
    assert ok(capsys, "data", "show", "-n", "mnist")["version"] == "v2"
    assert ok(capsys, "data", "show", "-n", "mnist", "--version", "1")["version"] == "1"
    unversioned = tmp_path / "mnist.yml"  # no version: the next whole number, "v2" not counted
    unversioned.write_text((REPO_ROOT / "data/mnist.yml").read_text().replace('version: "1"\n', ""))
    assert ok(capsys, "data", "create", "--file", unversioned)["version"] == "2"
    assert ok(capsys, "data", "show", "-n", "mnist", "--label", "latest")["version"] == "2"


def test_data_create_and_show(home, capsys, tmp_path):
    created = ok(capsys, "data", "create", "--file", REPO_ROOT / "data/mnist.yml")
    assert (created["name"], created["version"], created["type"]) == ("mnist", "1", "uri_folder")
    assert created["path"] == "https://azureopendatastorage.blob.core.windows.net/mnist/"
    assert ok(capsys, "data", "show", "-n", "mnist", "--version", "1")["path"] == created["path"]
    code, _, err = run_cli(capsys, "data", "show", "-n", "mnist", "--version", "2")
    assert code == 3 and "data asset mnist:2 not found (versions: 1)" in err
    local = tmp_path / "local.yml"
    local.write_text("name: digits\ntype: uri_folder\npath: ./nowhere\n")
    code, _, err = run_cli(capsys, "data", "create", "--file", local)
    assert code == 1 and err.startswith(f"ERROR: {local}: path ") and err.endswith("nowhere does not exist\n")


def test_job_download_copies_an_output_as_the_sdk_lays_it_out(home, capsys, tmp_path, project_environments):
    spec = tmp_path / "project" / "job.yml"
    spec.parent.mkdir()
    project_environments(spec.parent)
    spec.write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json\n"
        "code: .\ncommand: echo 0.5 > ${{outputs.model}}/score.txt\noutputs:\n  model:\n    type: uri_folder\n"
        "environment: azureml:mnist-train@latest\ncompute: azureml:cpu-cluster\n"
    )
    assert run_cli(capsys, "job", "create", "--file", spec, "--name", "dl_job", "--stream")[0] == 0
    target = tmp_path / "download"
    ok(capsys, "job", "download", "--name", "dl_job", "--output-name", "model", "--download-path", target)
    assert (target / "named-outputs" / "model" / "score.txt").read_text().strip() == "0.5"
    code, _, err = run_cli(capsys, "job", "download", "--name", "dl_job", "--output-name", "weights")
    assert code == 1 and "job dl_job has no such output (outputs: model)" in err


class _Healthy(http.server.BaseHTTPRequestHandler):
    """A stand-in for a deployment's server: it answers the router's liveness probe (GET /) and nothing else."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint_with_two_deployments(home):
    """An endpoint whose router routes to blue (all traffic) and green, each a stand-in server: the traffic rules
    are the endpoint's and the router's, and need no inference server."""
    online_endpoint.create(REPO_ROOT / "endpoints/endpoint.yml", name="mirror-test")
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthy) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    probe = {"initial_delay": 0, "period": 1, "timeout": 1, "failure_threshold": 3}

    def edit(table):
        for name, server in zip(("blue", "green"), servers, strict=True):
            table["deployments"][name] = {
                "instance_count": 1,
                "max_concurrent_requests_per_instance": 1,
                "request_timeout_ms": 2000,
                "liveness_probe": probe,
                "servers": [{"host": "127.0.0.1", "port": server.server_port}],
            }
        table["traffic"] = {"blue": 100, "green": 0}

    routing.wait_for("mirror-test", routing.change("mirror-test", edit))
    yield "mirror-test"
    online_endpoint.delete("mirror-test")
    for server in servers:
        server.shutdown()
        server.server_close()


def test_mirror_traffic_follows_azures_rules(endpoint_with_two_deployments, capsys):
    name = endpoint_with_two_deployments
    shown = ok(capsys, "online-endpoint", "update", "-n", name, "--mirror-traffic", "green=10")
    # (show lists the traffic of recorded deployments; these stand-ins are in the router's table only)
    assert shown["mirror_traffic"] == {"green": 10} and routing.read(name)["traffic"] == {"blue": 100, "green": 0}
    code, _, err = run_cli(capsys, "online-endpoint", "update", "-n", name, "--traffic", "blue=90 green=10")
    assert code == 1 and "deployment green would take live traffic (10%) and mirrored traffic" in err
    code, _, err = run_cli(capsys, "online-endpoint", "update", "-n", name, "--mirror-traffic", "green=60")
    assert code == 1 and "at most 50% of traffic can be mirrored" in err
    code, _, err = run_cli(capsys, "online-endpoint", "update", "-n", name, "--mirror-traffic", "blue=5 green=5")
    assert code == 1 and "mirrored traffic can go to one deployment only" in err
    code, _, err = run_cli(capsys, "online-endpoint", "update", "-n", name, "--mirror-traffic", "red=5")
    assert code == 1 and "--mirror-traffic: endpoint mirror-test has no deployment 'red'" in err
    stopped = ok(capsys, "online-endpoint", "update", "-n", name, "--mirror-traffic", "green=0")
    assert stopped["mirror_traffic"] == {}
    ok(capsys, "online-endpoint", "update", "-n", name, "--traffic", "blue=90 green=10")
    assert routing.read(name)["traffic"] == {"blue": 90, "green": 10}
    code, _, err = run_cli(capsys, "online-endpoint", "update", "-n", name)
    assert code == 1 and "give --traffic" in err


def test_a_delete_that_cannot_remove_the_folder_says_so(home, capsys, monkeypatch):
    # The folder removal is made to fail (as a busy mount point or a read-only file system would): delete must not
    # report success, and the error names the folder.
    online_endpoint.create(REPO_ROOT / "endpoints/endpoint.yml", name="stuck-endpoint")
    folder = records.endpoint_dir("stuck-endpoint")

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(shutil, "rmtree", refuse)
    code, _, err = run_cli(capsys, "online-endpoint", "delete", "-n", "stuck-endpoint", "--yes")
    assert code != 0
    assert f"its folder {folder} could not be removed (Permission denied)" in err
    assert folder.is_dir()
