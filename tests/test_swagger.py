"""A deployment's OpenAPI document at the endpoint's openapi_uri (/swagger.json, ?version=2|3), as azureml-examples'
cli/endpoints/online/managed/openapi sample uses it (written anew here; its README is the reference): first the
document the inference server generates from an inference-schema-decorated run() (code-decorated), then, after
`online-deployment update --set code_configuration.code=code-custom`, the deployment's own swagger2.json and
swagger3.json at the root of its code folder, served "at /swagger.json even though the file is named swagger2.json",
the version chosen by the request's `version` parameter. The server reads them from AML_APP_ROOT, the scoring
script's folder (azureml_inference_server_http/server/swagger.py; aml_local/endpoints/online/servers.py)."""

import http.client
import json
import textwrap
from pathlib import Path

import pytest

from aml_local import cli

pytestmark = pytest.mark.slow

# The sample's deployment.yml, less its environment (the project venv has the server and inference-schema) and with
# a model of its own (any file: the scripts here load none) and a readiness probe that polls a local server often.
DEPLOYMENT = """\
$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json
name: openapi
endpoint_name: <my-endpoint-name>
model:
  path: model
code_configuration:
  code: <CODE_DIR>
  scoring_script: score.py
instance_type: Standard_DS3_v2
instance_count: 1
readiness_probe:
  initial_delay: 1
  period: 1
  failure_threshold: 60
"""

DECORATED_SCORE = """\
import numpy as np
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
from inference_schema.schema_decorators import input_schema, output_schema


def init():
    pass


@input_schema("data", NumpyParameterType(np.array([[1, 2, 3]])))
@output_schema(StandardPythonParameterType({"output": [6.0]}))
def run(data):
    return {"output": data.sum(axis=1).astype(float).tolist()}
"""

CUSTOM_SCORE = """\
import json


def init():
    pass


def run(raw_data):
    return {"output": [float(sum(row)) for row in json.loads(raw_data)["data"]]}
"""


def custom_swagger(version: str) -> dict:
    """A user's own document: what the server generates never says "A custom API description"."""
    document = {"info": {"title": "ML service", "description": "A custom API description", "version": "1.0"}}
    document |= {"swagger": "2.0"} if version == "2" else {"openapi": "3.0.1"}
    return document | {"paths": {"/score": {"post": {"operationId": "RunMLService"}}}}


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out) if captured.out.strip() else None


def get(port: int, path: str, key: str | None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {key}"} if key else {})
        response = connection.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


@pytest.fixture
def sample(tmp_path) -> Path:
    root = tmp_path / "openapi"
    (root / "model").mkdir(parents=True)
    (root / "model" / "weights.txt").write_text("none\n")
    (root / "deployment.yml").write_text(DEPLOYMENT)
    (root / "code-decorated").mkdir()
    (root / "code-decorated" / "score.py").write_text(DECORATED_SCORE)
    (root / "code-custom").mkdir()
    (root / "code-custom" / "score.py").write_text(CUSTOM_SCORE)
    for version in ("2", "3"):
        (root / "code-custom" / f"swagger{version}.json").write_text(json.dumps(custom_swagger(version)))
    (root / "endpoint.yml").write_text(
        textwrap.dedent(
            """\
            $schema: https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json
            name: endpt-moe-openapi
            auth_mode: key
            """
        )
    )
    return root


def test_a_deployments_own_swagger_is_served_at_the_endpoints_openapi_uri(home, sample, capsys, time_limit):
    run_cli(capsys, "online-endpoint", "create", "-f", sample / "endpoint.yml")
    deployment = sample / "deployment.yml"
    name = ("--set", "endpoint_name=endpt-moe-openapi")
    code = ("--set", "code_configuration.code=code-decorated")
    run_cli(capsys, "online-deployment", "create", "-f", deployment, *name, *code, "--all-traffic")
    key = run_cli(capsys, "online-endpoint", "get-credentials", "-n", "endpt-moe-openapi", "--query", "primaryKey")
    openapi_uri = run_cli(capsys, "online-endpoint", "show", "-n", "endpt-moe-openapi", "--query", "openapi_uri")
    port, path = int(openapi_uri.split(":")[2].split("/")[0]), "/" + openapi_uri.split("/", 3)[3]
    assert path == "/swagger.json"

    # Generated from the decorated run(): version 2 by default, 3 when asked.
    status, body, _ = get(port, path, key)
    generated = json.loads(body)
    assert status == 200 and generated["swagger"] == "2.0"
    assert generated["definitions"]["ServiceInput"]["example"] == {"data": [[1, 2, 3]]}
    status, body, _ = get(port, f"{path}?version=3", key)
    assert status == 200 and json.loads(body)["components"]["schemas"]["ServiceOutput"]["example"] == {"output": [6.0]}

    # The custom code folder's own files, at the same URL.
    code = ("--set", "code_configuration.code=code-custom")
    run_cli(capsys, "online-deployment", "update", "-f", deployment, *name, *code)
    for query, version in (("", "2"), ("?version=2", "2"), ("?version=3", "3")):
        status, body, headers = get(port, path + query, key)
        assert status == 200 and json.loads(body) == custom_swagger(version), (query, body)
        assert headers["azureml-model-deployment"] == "openapi"
    # The key is needed, as for /score (the router's rule).
    assert get(port, path, None)[0] == 401
    answered = cli.main(["online-endpoint", "invoke", "-n", "endpt-moe-openapi", "-r", str(write_request(sample))])
    assert answered == 0 and json.loads(json.loads(capsys.readouterr().out)) == {"output": [6.0, 15.0]}


def write_request(sample: Path) -> Path:
    request = sample / "sample-request.json"
    request.write_text(json.dumps({"data": [[1, 2, 3], [4, 5, 6]]}))
    return request
