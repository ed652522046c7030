"""MLflow models deployed with no scoring script and no environment, as Azure's no-code deployment serves them: the
inference server runs aml_local/endpoints/online/mlflow_score.py in the model's own environment. This repository's model
(endpoints/mlflow-deployment.yml, the tensor form of endpoints/sample-request-mlflow.json) and an sklearn model shaped
like azureml-examples' cli/endpoints/online/ncd sample (a table in split orientation), each answered through the
endpoint; bad requests are refused with the reason, never a 500."""

import ast
import http.client
import json
import pathlib
import sys
import textwrap

import numpy as np
import pytest

from aml_local import cli
from aml_local.endpoints.online import deployment as online_deployment

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
ENDPOINTS = REPO_ROOT / "endpoints"
SAMPLE_REQUEST = ENDPOINTS / "sample-request-mlflow.json"
# The ncd sample's model: a regression on the diabetes dataset's ten columns (its MLmodel's signature).
DIABETES_COLUMNS = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


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


def expected_label(small_mnist_dir):
    """The label of the image in the sample request, when it is one of the test fixture's images (as
    tests/test_online_endpoint.py finds it; with MNIST_DATA set it is MNIST test image 0, a 7)."""
    sys.path.insert(0, str(REPO_ROOT / "src"))
    import mnist_data

    sample = np.asarray(json.loads(SAMPLE_REQUEST.read_text())["input_data"], dtype=np.float64)
    data = mnist_data.load_mnist(small_mnist_dir)
    images = data.test_images.reshape(len(data.test_images), -1) / 255.0
    matches = np.flatnonzero(np.abs(images - sample[0]).max(axis=1) < 1e-3)
    return int(data.test_labels[matches[0]]) if len(matches) else None


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
    mlflow.sklearn.save_model(fitted, str(tmp_path / "model"), serialization_format="cloudpickle")
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
    home, trained_model_dir, small_mnist_dir, capsys, time_limit
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
    label = expected_label(small_mnist_dir)
    if label is not None:
        assert int(np.argmax(answer[0])) == label
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


def save_diabetes_model(folder: pathlib.Path):
    """An sklearn regression saved as the ncd sample's model is (cloudpickle, a column signature, conda.yaml pinning
    scikit-learn, cloudpickle and numpy, mlflow unpinned); returns the fitted model."""
    import cloudpickle
    import mlflow.sklearn
    import pandas as pd
    import sklearn
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.normal(size=(40, 10)), columns=DIABETES_COLUMNS)
    fitted = LinearRegression().fit(table, table.to_numpy() @ np.arange(1, 11) + 100)
    requirements = ["mlflow", f"scikit-learn=={sklearn.__version__}", f"cloudpickle=={cloudpickle.__version__}"]
    mlflow.sklearn.save_model(
        fitted,
        str(folder),
        serialization_format="cloudpickle",
        signature=mlflow.models.infer_signature(table, fitted.predict(table)),
        pip_requirements=[*requirements, f"numpy=={np.__version__}"],
    )
    return fitted


def test_an_sklearn_model_shaped_like_azures_ncd_sample(home, tmp_path, capsys, time_limit):
    import pandas as pd

    model_folder = tmp_path / "sklearn-diabetes" / "model"
    fitted = save_diabetes_model(model_folder)
    ok(capsys, "model", "create", "--name", "sklearn-diabetes", "--type", "mlflow_model", "--path", model_folder)
    endpoint_yml = write(
        tmp_path / "create-endpoint.yaml",
        """
        $schema: https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json
        name: ncd-endpoint
        auth_mode: key
        """,
    )
    ok(capsys, "online-endpoint", "create", "-f", endpoint_yml)
    deployment_yml = write(
        tmp_path / "sklearn-deployment.yaml",
        """
        $schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json
        name: sklearn-deployment
        endpoint_name: ncd-endpoint
        model: azureml:sklearn-diabetes:1
        instance_type: Standard_DS3_v2
        instance_count: 1
        """,
    )

    # Refused at create, before anything starts: what Azure does not deploy without a scoring script.
    with_environment = write(
        tmp_path / "with-environment.yaml",
        deployment_yml.read_text() + "environment:\n  image: mcr.microsoft.com/azureml/openmpi5.0-ubuntu24.04\n",
    )
    code, _, err = run_cli(capsys, "online-deployment", "create", "-f", with_environment)
    assert code == 1 and "environment without code_configuration" in err
    write(tmp_path / "keras-only" / "MLmodel", "flavors:\n  keras:\n    data: data\n")
    ok(capsys, "model", "create", "--name", "keras-only", "--type", "mlflow_model", "--path", tmp_path / "keras-only")
    code, _, err = run_cli(
        capsys, "online-deployment", "create", "-f", deployment_yml, "--set", "model=azureml:keras-only:1"
    )
    assert code == 1 and "no python_function flavor" in err
    ok(capsys, "model", "create", "--name", "custom", "--path", tmp_path / "keras-only")
    code, _, err = run_cli(
        capsys, "online-deployment", "create", "-f", deployment_yml, "--set", "model=azureml:custom:1"
    )
    assert code == 1 and "code and scoring_script are required (only a model of type mlflow_model" in err
    assert ok(capsys, "online-deployment", "list", "-e", "ncd-endpoint") == []

    deployed = ok(capsys, "online-deployment", "create", "-f", deployment_yml, "--all-traffic")
    assert deployed["provisioning_state"] == "Succeeded"
    assert deployed["properties"]["aml_local.environment"]["path"] == "project venv"

    # The ncd sample's request (sample-request-sklearn.json): a table in split orientation; the answer a list.
    rows = [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], [10.0, 2.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0]]
    request = tmp_path / "sample-request-sklearn.json"
    request.write_text(json.dumps({"input_data": {"columns": DIABETES_COLUMNS, "data": rows, "index": [0, 1]}}))
    answer = json.loads(ok(capsys, "online-endpoint", "invoke", "-n", "ncd-endpoint", "-r", request))
    expected = fitted.predict(pd.DataFrame(rows, columns=DIABETES_COLUMNS))
    assert np.allclose(answer, expected) and np.allclose(answer, [485, 358])
    # Whole numbers for double columns are cast to the signature's types first, as inference-schema does on Azure.
    endpoint = Endpoint(capsys, "ncd-endpoint")
    integers = {"columns": DIABETES_COLUMNS, "index": [0], "data": [list(range(1, 11))]}
    status, answer, _ = endpoint.post({"input_data": integers})
    assert status == 200 and np.allclose(answer, [485])

    # Refused with the reason: a column missing, rows and columns that disagree, a tensor for a table.
    nine = {"columns": DIABETES_COLUMNS[:9], "index": [0], "data": [rows[0][:9]]}
    endpoint.refused({"input_data": nine}, "Model is missing inputs ['s6']")
    short_rows = {"columns": DIABETES_COLUMNS, "index": [0], "data": [rows[0][:9]]}
    endpoint.refused({"input_data": short_rows}, "10 columns passed, passed data had 9 columns")
    message = endpoint.refused({"input_data": rows}, "expected a JSON object, got a JSON array")
    assert "(columns age, sex, bmi," in message and "a table is sent in split orientation" in message
    endpoint.refused({"inputs": rows}, "A value is not provided for the 'input_data' parameter.")

    # update makes a new revision with the script and environment again, servers replaced as for any deployment.
    updated = ok(
        capsys, "online-deployment", "update", "-n", "sklearn-deployment", "-e", "ncd-endpoint",
        "--set", "environment_variables.WORKER_COUNT=1",
    )  # fmt: skip
    assert "/revisions/2/app/mlflow_resources/" in updated["properties"]["aml_local.scoring_script"]
    again = ok(capsys, "online-endpoint", "invoke", "-n", "ncd-endpoint", "-r", request)
    assert np.allclose(json.loads(again), expected)

    shown = online_deployment.show("ncd-endpoint", "sklearn-deployment")
    assert ok(capsys, "online-endpoint", "delete", "-n", "ncd-endpoint", "--yes") is None
    assert not (pathlib.Path(shown["properties"]["aml_local.deployment_dir"])).exists()
