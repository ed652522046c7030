"""MLflow models deployed with no scoring script and no environment, as Azure's no-code deployment serves them: the
inference server runs aml_local/endpoints/online/mlflow_score.py in the model's own environment. This repository's model
(endpoints/mlflow-deployment.yml, the tensor form of endpoints/sample-request-mlflow.json) answered through the
endpoint; bad requests are refused with the reason, never a 500. An sklearn model (a table in split orientation, what
is refused at create, an update) is tests/test_ncd_sample.py's: azureml-examples' cli/endpoints/online/ncd sample."""

import ast
import http.client
import json
import pathlib

import numpy as np
import pytest

from aml_local import cli
from aml_local.endpoints.online import deployment as online_deployment
from faults.client import SAMPLE_LABEL

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
ENDPOINTS = REPO_ROOT / "endpoints"
SAMPLE_REQUEST = ENDPOINTS / "sample-request-mlflow.json"


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def ok(capsys, *argv):
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    return json.loads(out) if out.strip() else None


class Endpoint:
    """The endpoint's scoring URI as a client calls it: (status, JSON body, headers with lower-case names)."""

    def __init__(self, capsys, name: str):
        uri = ok(capsys, "online-endpoint", "show", "-n", name, "--query", "scoring_uri")
        self.port = int(uri.split(":")[2].split("/")[0])
        self.key = ok(capsys, "online-endpoint", "get-credentials", "-n", name, "--query", "primaryKey")

    def post(self, body, port=None, headers=None):
        connection = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=60)
        try:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            sent = {"Content-Type": "application/json", "Authorization": f"Bearer {self.key}", **(headers or {})}
            connection.request("POST", "/score", body=raw, headers=sent)
            response = connection.getresponse()
            answer = response.read()
            return response.status, json.loads(answer), {k.lower(): v for k, v in response.getheaders()}
        finally:
            connection.close()

    def refused(self, body, reason: str, headers=None) -> str:
        """The model's 400 as the endpoint passes it on (424, the model's status in a header, its message kept)."""
        status, answer, sent = self.post(body, headers=headers)
        assert status == 424 and sent["ms-azureml-model-error-statuscode"] == "400", (status, answer, sent)
        assert reason in answer["message"], answer
        return answer["message"]


def test_the_sample_request_is_the_blue_sample_in_azures_input_data_format():
    blue = json.loads((ENDPOINTS / "sample-request.json").read_text())
    assert json.loads(SAMPLE_REQUEST.read_text()) == {"input_data": blue["data"]}


def test_the_scoring_script_imports_nothing_of_aml_local():
    """It runs in the deployment's environment (the model's requirements and the inference server), not aml-local's."""
    tree = ast.parse(online_deployment.MLFLOW_SCORING_SCRIPT.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not {name for name in imported if name.split(".")[0] == "aml_local"}


@pytest.mark.filterwarnings("ignore:X has feature names:UserWarning")  # the table's columns: sklearn saw none
def test_a_model_with_no_signature_takes_each_form_azure_documents(tmp_path, monkeypatch):
    """Without a signature or input example nothing is converted first, and input_data is read as Azure's script reads
    it: a split table, a list (a tensor), and the older forms (a JSON string, an input_data inside input_data)."""
    import importlib.util

    import mlflow.sklearn
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    table = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    fitted = LinearRegression().fit(table.to_numpy(), 2 * table["a"] + 10 * table["b"])
    # Requirements given (served in this process): their inference imports the model in a subprocess, seconds.
    mlflow.sklearn.save_model(
        fitted, str(tmp_path / "model"), serialization_format="cloudpickle", pip_requirements=["scikit-learn"]
    )
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("MLFLOW_MODEL_FOLDER", "model")
    spec = importlib.util.spec_from_file_location("mlflow_score_under_test", online_deployment.MLFLOW_SCORING_SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.init()
    assert script.SIGNATURE is None and script.INPUT_TYPE.real is None

    rows = [[1.0, 1.0], [2.0, 0.0]]
    for input_data in (
        {"columns": ["a", "b"], "index": [0, 1], "data": rows},
        rows,
        json.dumps(rows),
        {"input_data": rows},
        json.dumps({"input_data": rows}),
    ):
        assert np.allclose(script.run(input_data=input_data), [12.0, 4.0]), input_data
    refused = script.run(input_data=5)
    assert refused.status_code == 400
    assert json.loads(refused.get_data())["message"] == (
        "input_data: expected a list (a tensor) or an object (a table, named tensors), got a JSON number"
    )
    ragged = script.run(input_data=[[1.0, 1.0], [2.0]])
    assert ragged.status_code == 400 and "inhomogeneous" in json.loads(ragged.get_data())["message"]


def test_the_mnist_model_deploys_with_no_scoring_script_and_answers_input_data(
    home, trained_model_dir, capsys, time_limit
):
    ok(capsys, "model", "create", "-f", ENDPOINTS / "model.yml", "--path", trained_model_dir)
    ok(capsys, "online-endpoint", "create", "-f", ENDPOINTS / "endpoint.yml")
    deployed = ok(capsys, "online-deployment", "create", "-f", ENDPOINTS / "mlflow-deployment.yml", "--all-traffic")
    assert deployed["provisioning_state"] == "Succeeded"
    assert "code_configuration" not in deployed and "environment" not in deployed  # as the YAML has neither
    properties = deployed["properties"]
    assert properties["aml_local.scoring_script"].endswith("/app/mlflow_resources/mlflow_score.py")
    # The model's own requirements (mlflow, tensorflow-cpu, keras) and the server: all in the project venv.
    assert properties["aml_local.environment"]["path"] == "project venv"

    # The sample request (the tensor form, one image): a list with one row of 10 probabilities, as the model predicts.
    answer = json.loads(ok(capsys, "online-endpoint", "invoke", "-n", "mnist-endpoint", "-r", SAMPLE_REQUEST))
    assert len(answer) == 1 and len(answer[0]) == 10 and abs(sum(answer[0]) - 1) < 1e-4
    # MNIST test image 0, a 7 (tests/test_explore.py checks the file is that image): the model reads it right.
    assert int(np.argmax(answer[0])) == SAMPLE_LABEL
    endpoint = Endpoint(capsys, "mnist-endpoint")
    image = json.loads(SAMPLE_REQUEST.read_text())["input_data"][0]
    status, batch, headers = endpoint.post({"input_data": [image, image]})
    assert status == 200 and headers["azureml-model-deployment"] == "mlflow"
    assert np.allclose(batch, answer * 2, atol=1e-6)

    # Refused with the reason (400 from the server, 424 through the endpoint), never a 500.
    endpoint.refused({"data": [image]}, "A value is not provided for the 'input_data' parameter.")
    endpoint.refused({"input_data": [image[:783]]}, "Shape of input (1, 783) does not match expected shape (-1, 784)")
    endpoint.refused({"input_data": [["0.5"] * 783 + ["x"]]}, "could not convert string to float")
    # The model's signature is a tensor: Azure's script refuses a table for it too (a 500 there), so it is said here.
    table = {"columns": list(range(784)), "index": [0], "data": [image]}
    message = endpoint.refused({"input_data": table}, "a tensor is sent as a list")
    assert message.startswith("input_data does not fit the model's input [Tensor('float32', (-1, 784))]")
    port = int(properties["aml_local.ports"])  # the server itself answers 400
    assert endpoint.post({"input_data": [image[:10]]}, port=port)[0] == 400

    assert ok(capsys, "online-endpoint", "delete", "-n", "mnist-endpoint", "--yes") is None
