"""azureml-examples' cli/endpoints/online/ncd sample (no-code deployment of an sklearn MLflow model), run as its
deploy-managed-online-endpoint-ncd.sh runs it with `aml-local` in place of `az ml`, from a folder laid out as the
examples' cli/ folder: endpoints/online/ncd/{create-endpoint.yaml, sklearn-deployment.yaml,
sample-request-sklearn.json, sklearn-diabetes/model/}. The YAML and the request are the sample's text; the model,
which the sample ships as files, is made here the same way from scikit-learn's bundled diabetes data (no download):
an MLflow sklearn flavor of a linear regression, its signature the data's ten columns. The answer is what Azure's
"Deploy MLflow models to online endpoints" page shows for the Azure CLI: a JSON list of the two predictions. Around the
script's lines, on the same deployment, what the sample does not show of a no-code deployment of a table model (the
MLflow model of this repository, a tensor, is tests/test_mlflow_deployment.py's): what is refused at create, requests
refused with the reason, an update."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aml_local import cli

pytestmark = pytest.mark.slow

ENDPOINT = "endpt-ncd-4242"  # the script's endpt-ncd-`echo $RANDOM`

# cli/endpoints/online/ncd/sklearn-deployment.yaml (Azure/azureml-examples), unchanged: the model is inline, its
# folder next to the YAML.
SKLEARN_DEPLOYMENT = """\
$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json
name: sklearn-deployment
endpoint_name: my-endpoint
model:
  name: mir-sample-sklearn-ncd-model
  version: 1
  path: sklearn-diabetes/model
  type: mlflow_model
instance_type: Standard_DS3_v2
instance_count: 1"""

# create-endpoint.yaml as the "Deploy MLflow models to online endpoints" page (MicrosoftDocs/azure-docs
# articles/machine-learning/how-to-deploy-mlflow-models-online-endpoints.md) shows the examples' mlflow sample's; the
# ncd folder's own copy is not in the stored examples (our reading: the same endpoint, key auth).
CREATE_ENDPOINT = """\
$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json
name: my-endpoint
auth_mode: key
"""

# sample-request-sklearn.json, as that page shows it.
SAMPLE_REQUEST = {
    "input_data": {
        "columns": ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"],
        "data": [
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0],
            [10.0, 2.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0],
        ],
        "index": [0, 1],
    }
}
# The page's answer to it ("The response should be similar to the following text", Azure CLI tab).
AZURES_ANSWER = [11633.100167144921, 8522.117402884991]


def save_diabetes_model(folder: Path):
    """A linear regression on scikit-learn's diabetes data (80% of it, split with seed 42), saved as an MLflow
    sklearn model with cloudpickle as the sample's is, its requirements pinned to what is installed here (the
    sample's pin versions this machine does not have, and the deployment's environment is the model's own)."""
    import cloudpickle
    import mlflow.sklearn
    import sklearn
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import train_test_split

    features, target = load_diabetes(return_X_y=True, as_frame=True)
    train_features, _, train_target, _ = train_test_split(features, target, test_size=0.2, random_state=42)
    model = LinearRegression().fit(train_features, train_target)
    mlflow.sklearn.save_model(
        model,
        str(folder),
        serialization_format="cloudpickle",
        signature=mlflow.models.infer_signature(train_features, model.predict(train_features)),
        pip_requirements=[
            "mlflow",
            f"scikit-learn=={sklearn.__version__}",
            f"cloudpickle=={cloudpickle.__version__}",
            f"numpy=={np.__version__}",
        ],
    )
    return model


@pytest.fixture
def cli_folder(tmp_path, monkeypatch) -> Path:
    """The examples' cli/ folder with the ncd sample in it, as the working directory (the script's paths are
    relative to it)."""
    ncd = tmp_path / "cli" / "endpoints" / "online" / "ncd"
    ncd.mkdir(parents=True)
    (ncd / "sklearn-deployment.yaml").write_text(SKLEARN_DEPLOYMENT)
    (ncd / "create-endpoint.yaml").write_text(CREATE_ENDPOINT)
    (ncd / "sample-request-sklearn.json").write_text(json.dumps(SAMPLE_REQUEST, indent=2))
    save_diabetes_model(ncd / "sklearn-diabetes" / "model")
    monkeypatch.chdir(tmp_path / "cli")
    return tmp_path / "cli"


def aml(capsys, command: str) -> str:
    """One line of deploy-managed-online-endpoint-ncd.sh, `az ml` replaced by `aml-local`: its stdout."""
    code = cli.main(command.replace("$ENDPOINT_NAME", ENDPOINT).split())
    captured = capsys.readouterr()
    assert code == 0, (command, captured.err)
    return captured.out


def refused(capsys, command: str) -> str:
    """A command (not of the script) that must fail with one line: that line."""
    code = cli.main(command.replace("$ENDPOINT_NAME", ENDPOINT).split())
    captured = capsys.readouterr()
    assert code == 1 and captured.err.count("\n") == 1, (command, code, captured.err)
    return captured.err


def refused_request(capsys, folder: Path, body, reason: str) -> str:
    """The model's 400 for `body` as the endpoint passes it on to invoke (424, the model's status and its message)."""
    request = folder / "bad-request.json"
    request.write_text(json.dumps(body))
    err = refused(capsys, f"online-endpoint invoke --name $ENDPOINT_NAME --request-file {request}")
    assert "(deployment sklearn-deployment) answered HTTP 424, the model answered 400: " in err, err
    assert reason in err, err
    return err


def test_the_ncd_samples_sklearn_deployment_answers_its_sample_request(home, cli_folder, tmp_path, capsys, time_limit):
    """The script's lines, and around them what the sample does not show (one deployment for all of it): what Azure
    does not deploy without a scoring script, refused at create before anything starts; requests the model refuses,
    with the reason (never a 500); an update."""
    from mlflow.sklearn import load_model

    aml(capsys, "online-endpoint create --name $ENDPOINT_NAME -f endpoints/online/ncd/create-endpoint.yaml")
    shown = aml(capsys, 'online-endpoint show --name $ENDPOINT_NAME --query "provisioning_state" -o tsv')
    assert shown == "Succeeded\n"

    # Refused at create, before anything starts: an environment with no scoring script, a model with no pyfunc
    # flavor, a model that is not an MLflow model.
    create = "online-deployment create --name sklearn-deployment --endpoint $ENDPOINT_NAME -f "
    with_environment = cli_folder / "endpoints/online/ncd/with-environment.yaml"
    image = "mcr.microsoft.com/azureml/openmpi5.0-ubuntu24.04"
    with_environment.write_text(f"{SKLEARN_DEPLOYMENT}\nenvironment:\n  image: {image}\n")
    assert "environment without code_configuration" in refused(capsys, create + str(with_environment))
    (tmp_path / "keras-only").mkdir()
    (tmp_path / "keras-only" / "MLmodel").write_text("flavors:\n  keras:\n    data: data\n")
    aml(capsys, f"model create --name keras-only --type mlflow_model --path {tmp_path / 'keras-only'}")
    sample_yaml = "endpoints/online/ncd/sklearn-deployment.yaml"
    err = refused(capsys, f"{create}{sample_yaml} --set model=azureml:keras-only:1")
    assert "no python_function flavor" in err
    aml(capsys, f"model create --name custom --path {tmp_path / 'keras-only'}")
    err = refused(capsys, f"{create}{sample_yaml} --set model=azureml:custom:1")
    assert "code and scoring_script are required (only a model of type mlflow_model" in err
    assert json.loads(aml(capsys, "online-deployment list --endpoint $ENDPOINT_NAME")) == []

    aml(
        capsys,
        "online-deployment create --name sklearn-deployment --endpoint $ENDPOINT_NAME "
        "-f endpoints/online/ncd/sklearn-deployment.yaml --all-traffic",
    )
    shown = aml(
        capsys,
        "online-deployment show --name sklearn-deployment --endpoint $ENDPOINT_NAME --query provisioning_state -o tsv",
    )
    assert shown == "Succeeded\n"
    out = aml(
        capsys,
        "online-endpoint invoke --name $ENDPOINT_NAME --request-file endpoints/online/ncd/sample-request-sklearn.json",
    )

    # az prints the body as a JSON string; the body is a list of the two predictions, as on Azure.
    answer = json.loads(json.loads(out))
    assert isinstance(answer, list) and len(answer) == 2 and all(isinstance(x, float) for x in answer)
    model = load_model(str(cli_folder / "endpoints/online/ncd/sklearn-diabetes/model"))
    columns = SAMPLE_REQUEST["input_data"]["columns"]
    table = pd.DataFrame(SAMPLE_REQUEST["input_data"]["data"], columns=columns)
    assert answer == model.predict(table).tolist()
    # The model made here is the sample's in all but scikit-learn's version: Azure's answer within 0.01%.
    assert np.allclose(answer, AZURES_ANSWER, rtol=1e-4)

    deployed = json.loads(aml(capsys, "online-deployment show --name sklearn-deployment --endpoint $ENDPOINT_NAME"))
    assert deployed["model"] == "azureml:/local/models/mir-sample-sklearn-ncd-model/versions/1"
    assert "code_configuration" not in deployed and "environment" not in deployed
    # The model's requirements (mlflow, scikit-learn, cloudpickle, numpy, as installed here): the project venv's.
    assert deployed["properties"]["aml_local.environment"]["path"] == "project venv"

    # Whole numbers for double columns are cast to the signature's types first, as inference-schema does on Azure.
    integers = tmp_path / "integers.json"
    integers.write_text(json.dumps({"input_data": {"columns": columns, "index": [0], "data": [list(range(1, 11))]}}))
    out = aml(capsys, f"online-endpoint invoke --name $ENDPOINT_NAME --request-file {integers}")
    assert np.allclose(json.loads(json.loads(out)), model.predict(table.iloc[[0]]))  # row 0 is 1.0 ... 10.0

    # Refused with the reason: a column missing, rows and columns that disagree, a tensor for a table, no input_data.
    rows = SAMPLE_REQUEST["input_data"]["data"]
    nine = {"columns": columns[:9], "index": [0], "data": [rows[0][:9]]}
    refused_request(capsys, tmp_path, {"input_data": nine}, "Model is missing inputs ['s6']")
    short_rows = {"columns": columns, "index": [0], "data": [rows[0][:9]]}
    refused_request(capsys, tmp_path, {"input_data": short_rows}, "10 columns passed, passed data had 9 columns")
    err = refused_request(capsys, tmp_path, {"input_data": rows}, "expected a JSON object, got a JSON array")
    assert "(columns age, sex, bmi," in err and "a table is sent in split orientation" in err
    refused_request(capsys, tmp_path, {"inputs": rows}, "A value is not provided for the 'input_data' parameter.")

    # update makes a new revision with the script and environment again, servers replaced as for any deployment.
    updated = aml(
        capsys,
        "online-deployment update --name sklearn-deployment --endpoint $ENDPOINT_NAME "
        "--set environment_variables.WORKER_COUNT=1",
    )
    scoring_script = json.loads(updated)["properties"]["aml_local.scoring_script"]
    assert "/revisions/2/app/mlflow_resources/" in scoring_script
    out = aml(
        capsys,
        "online-endpoint invoke --name $ENDPOINT_NAME --request-file endpoints/online/ncd/sample-request-sklearn.json",
    )
    assert json.loads(json.loads(out)) == answer

    aml(capsys, "online-endpoint delete --name $ENDPOINT_NAME --yes")
    assert not Path(deployed["properties"]["aml_local.deployment_dir"]).exists()
