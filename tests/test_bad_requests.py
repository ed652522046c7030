"""Bad input against a real local deployment (a trained model, src/score.py, endpoints/blue-deployment.yml, behind
the key and size gateway): the hand-written malformed requests of bench/soak_requests.py and a bounded number of
requests generated from the service's own /swagger.json (Hypothesis, fixed seed). Each must get a 4xx with a JSON
message, never a 5xx, and a good request must still be answered right afterwards. `make soak` sends 1,000 more."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "bench"))

import soak_requests  # noqa: E402

SAMPLE = REPO_ROOT / "endpoints/sample-request.json"
GENERATED_EXAMPLES = 300
MAX_REQUEST_BYTES = 12 * 1024 * 1024  # above the 10 MB case, so that one reaches the scoring script


def aml(home, *args):
    env = {**os.environ, "AML_LOCAL_HOME": str(home)}
    env.pop("AML_LOCAL_PORT", None)
    result = subprocess.run(
        [sys.executable, "-m", "aml_local", *map(str, args), "-o", "json"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout) if result.stdout.strip() else None


@pytest.fixture(scope="module")
def deployment(trained_model_dir, tmp_path_factory):
    """(port, key) of the project's blue deployment of a trained model, one worker; deleted after the module."""
    home = tmp_path_factory.mktemp("bad-requests") / "home"
    aml(home, "model", "create", "-f", "endpoints/model.yml", "--path", trained_model_dir)
    aml(home, "online-endpoint", "create", "-f", "endpoints/endpoint.yml")
    try:
        shown = aml(
            home,
            "online-deployment",
            "create",
            "-f",
            "endpoints/blue-deployment.yml",
            "--all-traffic",
            "--set",
            "environment_variables.WORKER_COUNT=1",
            "--set",
            f"environment_variables.AML_LOCAL_MAX_REQUEST_BYTES={MAX_REQUEST_BYTES}",
        )
        key = aml(home, "online-endpoint", "get-credentials", "-n", "mnist-endpoint")["primaryKey"]
        yield int(shown["properties"]["aml_local.port"]), key
    finally:
        aml(home, "online-endpoint", "delete", "-n", "mnist-endpoint", "--yes")


def good_request_is_answered(port, key):
    status, _, raw, _ = soak_requests.request(port, key, SAMPLE.read_bytes(), {"Content-Type": "application/json"})
    answer = json.loads(raw)
    return status == 200 and len(answer["predictions"]) == 1 and len(answer["probabilities"][0]) == 10


CASES = soak_requests.malformed_requests(MAX_REQUEST_BYTES)


def test_there_are_at_least_25_hand_written_cases_all_really_invalid():
    assert len(CASES) >= 25
    for label, headers, body in CASES:
        assert not soak_requests.is_valid_scoring_body(body, headers.get("Content-Type", "")), label


@pytest.mark.slow
@pytest.mark.parametrize(("label", "headers", "body"), CASES, ids=[label for label, _, _ in CASES])
def test_a_malformed_request_gets_a_4xx_with_a_json_message(deployment, label, headers, body):
    port, key = deployment
    status, content_type, raw, seconds = soak_requests.request(port, key, body, headers)
    assert soak_requests.problem_with_refusal(status, content_type, raw) is None, (status, raw[:300])
    assert seconds < 5, f"{label}: answered after {seconds:.1f} s"


@pytest.mark.slow
def test_a_body_declared_over_the_limit_is_refused_before_it_is_sent(deployment):
    port, key = deployment
    status, raw = soak_requests.oversized_status(port, key, MAX_REQUEST_BYTES + 1)
    assert status == 413 and f"larger than {MAX_REQUEST_BYTES} bytes" in json.loads(raw)["message"]


@pytest.mark.slow
def test_generated_bad_requests_from_the_swagger_all_get_4xx_and_a_good_one_still_works(deployment):
    port, key = deployment
    status, _, raw, _ = soak_requests.request(port, key, b"", {}, path="/swagger.json", method="GET")
    assert status == 200
    counts = soak_requests.run_generated(port, key, json.loads(raw), GENERATED_EXAMPLES, seed=1)
    assert counts["sent"] == GENERATED_EXAMPLES and not counts["problems"], counts["problems"][:5]
    assert counts["refused_4xx"] >= GENERATED_EXAMPLES * 0.9, counts  # nearly all of them are invalid
    assert good_request_is_answered(port, key)


def test_the_validity_oracle_agrees_with_the_schema_on_edges():
    row = [0.0] * 783 + [1]
    assert soak_requests.is_valid_scoring_body(json.dumps({"data": [row]}).encode(), "application/json")
    assert not soak_requests.is_valid_scoring_body(json.dumps({"data": [row]}).encode(), "text/plain")
    assert not soak_requests.is_valid_scoring_body(
        json.dumps({"data": [[*row[:-1], True]]}).encode(), "application/json"
    )
    assert not soak_requests.is_valid_scoring_body(json.dumps({"data": [row] * 2001}).encode(), "application/json")
    assert not soak_requests.is_valid_scoring_body(b'{"data": [[' + b"NaN," * 783 + b"0]]}", "application/json")
