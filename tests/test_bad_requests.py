"""Bad input against a real local deployment (a trained model, src/score.py, endpoints/blue-deployment.yml, behind
its endpoint's router): the hand-written malformed requests of faults/bad_requests.py and a bounded number of
requests generated from the service's own /swagger.json (Hypothesis, fixed seed). Each must get a 4xx with a JSON
message, never a 5xx, and a good request must still be answered right afterwards. `make soak` sends 1,000 more."""

import json

import pytest

from faults import bad_requests
from faults.settings import SHORT

CASES = bad_requests.malformed_requests(bad_requests.LIMIT_ABOVE_EVERY_CASE)


def test_there_are_at_least_25_hand_written_cases_all_really_invalid():
    assert len(CASES) >= 25
    for label, headers, body in CASES:
        assert not bad_requests.is_valid_scoring_body(body, headers.get("Content-Type", "")), label


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[label for label, _, _ in CASES])
def test_a_malformed_request_gets_a_4xx_with_a_json_message(mnist_deployment, case):
    _, deployed = mnist_deployment
    problem, seconds = bad_requests.case_problem(deployed.target, case)
    assert problem is None, f"{problem} ({seconds:.2f} s)"


@pytest.mark.slow
def test_a_body_declared_over_the_limit_is_refused_before_it_is_sent(mnist_deployment):
    _, deployed = mnist_deployment
    assert deployed.target.max_request_bytes == bad_requests.LIMIT_ABOVE_EVERY_CASE
    assert bad_requests.oversized_problem(deployed.target) is None


@pytest.mark.slow
def test_generated_bad_requests_from_the_swagger_all_get_4xx_and_a_good_one_still_works(mnist_deployment):
    _, deployed = mnist_deployment
    checks = bad_requests.generated(deployed.target, SHORT)
    assert [c.verdict for c in checks] == ["PASS", "PASS"], "\n".join(map(str, checks))
    assert checks[0].figure.startswith(f"{SHORT.generated_examples} from /swagger.json")


def test_the_validity_oracle_agrees_with_the_schema_on_edges():
    row = [0.0] * 783 + [1]
    assert bad_requests.is_valid_scoring_body(json.dumps({"data": [row]}).encode(), "application/json")
    assert not bad_requests.is_valid_scoring_body(json.dumps({"data": [row]}).encode(), "text/plain")
    assert not bad_requests.is_valid_scoring_body(
        json.dumps({"data": [[*row[:-1], True]]}).encode(), "application/json"
    )
    assert not bad_requests.is_valid_scoring_body(json.dumps({"data": [row] * 2001}).encode(), "application/json")
    assert not bad_requests.is_valid_scoring_body(b'{"data": [[' + b"NaN," * 783 + b"0]]}", "application/json")
