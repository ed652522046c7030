"""Batch endpoints through aml_local.sdk.MLClient, written as azure-ai-ml users write them (the docs' "Deploy models for
scoring in batch endpoints", SDK tab): BatchEndpoint, ModelBatchDeployment with ModelBatchDeploymentSettings,
batch_endpoints.invoke(inputs={...: Input(...)}) returning a BatchJob, jobs.stream and jobs.download of its `score`
output. A tiny scoring script in the tiny environment: the engine itself is tests/test_batch_engine.py's."""

import pytest
from azure.ai.ml import Input
from azure.ai.ml.constants import BatchDeploymentOutputAction
from azure.ai.ml.entities import (
    BatchEndpoint,
    BatchJob,
    BatchRetrySettings,
    CodeConfiguration,
    Model,
    ModelBatchDeployment,
    ModelBatchDeploymentSettings,
)
from azure.core.exceptions import ResourceNotFoundError

from aml_local.sdk import MLClient

pytestmark = pytest.mark.slow

SCORE = """\
import os


def init():
    global weight
    weight = int(open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model", "weight.txt")).read())


def run(mini_batch):
    return [f"{os.path.basename(path)},{weight * len(open(path).read())}" for path in mini_batch]
"""


def test_a_batch_endpoint_scores_a_folder_through_the_sdk(home, tmp_path, project_environments, monkeypatch):
    root = tmp_path / "project"
    for folder in ("code", "model", "inputs"):
        (root / folder).mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'tiny'\n")
    project_environments(root)
    (root / "code" / "score.py").write_text(SCORE)
    (root / "model" / "weight.txt").write_text("10\n")
    for i in range(5):
        (root / "inputs" / f"file{i}.txt").write_text("x" * i)
    monkeypatch.chdir(root)
    ml_client = MLClient.local()

    model = ml_client.models.create_or_update(Model(name="weights", path="model"))
    endpoint = ml_client.batch_endpoints.begin_create_or_update(BatchEndpoint(name="lengths-batch")).result()
    assert (endpoint.name, endpoint.provisioning_state) == ("lengths-batch", "Succeeded")
    deployment = ModelBatchDeployment(
        name="lengths-dpl",
        endpoint_name="lengths-batch",
        model=model,
        code_configuration=CodeConfiguration(code="code", scoring_script="score.py"),
        environment="azureml:tiny-env@latest",
        compute="batch-cluster",
        settings=ModelBatchDeploymentSettings(
            mini_batch_size=2,
            max_concurrency_per_instance=1,
            output_action=BatchDeploymentOutputAction.APPEND_ROW,
            output_file_name="predictions.csv",
            retry_settings=BatchRetrySettings(max_retries=1, timeout=30),
        ),
    )
    created = ml_client.batch_deployments.begin_create_or_update(deployment).result()
    assert (created.name, created.endpoint_name) == ("lengths-dpl", "lengths-batch")
    assert [d.name for d in ml_client.batch_deployments.list("lengths-batch")] == ["lengths-dpl"]

    job = ml_client.batch_endpoints.invoke(
        endpoint_name="lengths-batch",
        deployment_name="lengths-dpl",
        inputs={"heart_dataset": Input(type="uri_folder", path="inputs")},
    )
    assert isinstance(job, BatchJob)
    ml_client.jobs.stream(job.name)
    assert ml_client.jobs.get(job.name).status == "Completed"
    assert [j.name for j in ml_client.batch_endpoints.list_jobs("lengths-batch")] == [job.name]

    ml_client.jobs.download(job.name, download_path=tmp_path / "out", output_name="score")
    (scores,) = (tmp_path / "out").rglob("predictions.csv")
    rows = sorted(line.split(" ")[-1] for line in scores.read_text().splitlines())
    assert rows == [f"file{i}.txt,{10 * i}" for i in range(5)]

    ml_client.batch_endpoints.begin_delete("lengths-batch").result()
    with pytest.raises(ResourceNotFoundError):
        ml_client.batch_endpoints.get("lengths-batch")
