"""azureml-examples' cli/endpoints/online/ncd sample (no-code deployment of an sklearn MLflow model), run as its
deploy-managed-online-endpoint-ncd.sh runs it with `aml-local` in place of `az ml`, from a folder laid out as the
examples' cli/ folder: endpoints/online/ncd/{create-endpoint.yaml, sklearn-deployment.yaml,
sample-request-sklearn.json, sklearn-diabetes/model/}. The YAML and the request are the sample's text; the model,
which the sample ships as files, is made here the same way from scikit-learn's bundled diabetes data (no download):
an MLflow sklearn flavor of a linear regression, its signature the data's ten columns. The answer is what Azure's
"Deploy MLflow models to online endpoints" page shows for the Azure CLI: a JSON list of the two predictions."""

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


def test_the_ncd_samples_sklearn_deployment_answers_its_sample_request(home, cli_folder, capsys, time_limit):
    from mlflow.sklearn import load_model

    aml(capsys, "online-endpoint create --name $ENDPOINT_NAME -f endpoints/online/ncd/create-endpoint.yaml")
    shown = aml(capsys, 'online-endpoint show --name $ENDPOINT_NAME --query "provisioning_state" -o tsv')
    assert shown == "Succeeded\n"
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
    table = pd.DataFrame(SAMPLE_REQUEST["input_data"]["data"], columns=SAMPLE_REQUEST["input_data"]["columns"])
    assert answer == model.predict(table).tolist()
    # The model made here is the sample's in all but scikit-learn's version: Azure's answer within 0.01%.
    assert np.allclose(answer, AZURES_ANSWER, rtol=1e-4)

    deployed = json.loads(aml(capsys, "online-deployment show --name sklearn-deployment --endpoint $ENDPOINT_NAME"))
    assert deployed["model"] == "azureml:/local/models/mir-sample-sklearn-ncd-model/versions/1"
    assert "code_configuration" not in deployed and "environment" not in deployed
    aml(capsys, "online-endpoint delete --name $ENDPOINT_NAME --yes")
