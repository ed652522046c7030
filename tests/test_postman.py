"""The Postman collection (endpoints/mnist.postman_collection.json) run by newman, pinned from npm in tools/newman,
against the session's local endpoint (a trained model behind its router, tests/conftest.py's mnist_deployment), as a
user runs it against Azure: the environment template filled with the scoring URI, a key and the deployment's name.
Every request's tests must pass: a digit, a batch, bad input (424 with the model's 400), no key (401), the deployment
header."""

import json
import os
import pathlib
import subprocess

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
NEWMAN = REPO_ROOT / "tools/newman/node_modules/.bin/newman"
COLLECTION = REPO_ROOT / "endpoints/mnist.postman_collection.json"
ENVIRONMENT = REPO_ROOT / "endpoints/mnist.postman_environment.json"


def test_the_environment_template_names_every_variable_the_collection_uses_and_holds_no_key():
    used = set()
    text = COLLECTION.read_text()
    start = text.find("{{")
    while start != -1:
        end = text.index("}}", start)
        used.add(text[start + 2 : end])
        start = text.find("{{", end)
    template = {value["key"]: value["value"] for value in json.loads(ENVIRONMENT.read_text())["values"]}
    assert used == set(template) == {"scoring_uri", "key", "deployment"}
    assert template["key"] == "" and template["scoring_uri"] == ""


@pytest.mark.slow
def test_newman_runs_the_collection_green_against_the_local_endpoint(mnist_deployment, tmp_path):
    if not NEWMAN.exists():
        pytest.skip("newman is not installed: make test installs it (cd tools/newman && npm ci)")
    _, deployed = mnist_deployment
    target = deployed.target
    environment = json.loads(ENVIRONMENT.read_text())
    filled = {"scoring_uri": target.scoring_uri, "key": target.key, "deployment": target.deployment}
    for value in environment["values"]:
        value["value"] = filled[value["key"]]
    environment_file = tmp_path / "environment.json"  # the key goes in a file only this user reads, not in argv
    environment_file.touch(mode=0o600)
    environment_file.write_text(json.dumps(environment))
    report = tmp_path / "report.json"
    result = subprocess.run(
        [
            str(NEWMAN),
            "run",
            str(COLLECTION),
            "-e",
            str(environment_file),
            "--reporters",
            "cli,json",
            "--reporter-json-export",
            str(report),
            "--timeout-request",
            "30000",
            "--disable-unicode",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | {"NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    stats = json.loads(report.read_text())["run"]["stats"]
    assert stats["requests"] == {"total": 5, "pending": 0, "failed": 0}
    assert stats["assertions"]["failed"] == 0 and stats["assertions"]["total"] == 8
