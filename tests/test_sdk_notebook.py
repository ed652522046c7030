"""notebooks/mnist-sdk.ipynb, executed as a user runs it (nbclient, on an ipykernel): Azure ML's Keras tutorial flow in
azure-ai-ml calls, with aml-local's MLClient in its one backend cell. Data asset, compute, environment, a command job
on the real MNIST folder, the 8-trial random sweep with Bandit, the best trial's model registered by the tutorial's
azureml://jobs/<trial>/outputs/artifacts/paths/outputs/model/ path, a managed online endpoint and deployment of
src/score.py, invoked through the SDK and with requests, then deleted. Only the training is shortened (parameters
injected after the notebook's `parameters` cell, as papermill does): 2 epochs of 1,000 images per trial."""

import json
import logging
import re
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

import mnist_data
from aml_local import store
from aml_local.sdk import MLClient

pytestmark = pytest.mark.slow

sys.path.insert(0, str(store.REPO_ROOT / "src"))  # mnist_model: the deployment's own forward pass, from the code folder
import mnist_model  # noqa: E402

NOTEBOOK = store.REPO_ROOT / "notebooks" / "mnist-sdk.ipynb"
SHORT = 'backend = "local"\nepochs = 2\ntrain_subset = 1000\nrequest_file = {request_file!r}\n'


def stream_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def test_the_tutorial_notebook_runs_end_to_end_locally(home, real_mnist_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_DATA", str(real_mnist_dir))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    at = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
    request_file = tmp_path / "sample-request.json"
    notebook.cells.insert(at + 1, nbformat.v4.new_code_cell(SHORT.format(request_file=str(request_file))))

    # The kernel inherits this process's environment: the test's store (AML_LOCAL_HOME) and MNIST folder.
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # a cell that raises fails the test with its traceback (nbclient's CellExecutionError)

    text = "\n".join(stream_text(cell) for cell in notebook.cells if cell.cell_type == "code")
    # The endpoint took its traffic from begin_create_or_update of the endpoint entity, and requests went by it.
    assert "Traffic: {'keras-blue-deployment': 100}" in text
    labels = json.loads(re.search(r"labels: +(\[.*\])", text)[1])
    predictions = [json.loads(p) for p in re.findall(r"predictions: (\[.*\])", text)]
    images = np.array(json.loads(request_file.read_text())["data"], dtype=np.float32)
    assert images.shape == (3, 784)
    assert labels == mnist_data.load_mnist(real_mnist_dir).test_labels[:3].tolist()
    ml_client = MLClient.local()
    model = ml_client.models.get("run-model-example", version="1")
    # The registered model's own answer for the three test images (its saved weights, without the deployment), given
    # by the SDK's invoke and by requests alike: the endpoint served that model (2 short epochs may misread one).
    expected = mnist_model.load_forward(model.path, logging.getLogger("test"), keras_check=False).function(images)
    assert predictions == [expected.argmax(axis=1).tolist()] * 2

    (sweep,) = [j for j in ml_client.jobs.list() if j.type == "sweep"]
    assert sweep.status == "Completed"
    trials = ml_client.jobs.list(parent_job_name=sweep.name)
    assert len(trials) == 8
    assert {t.status for t in trials} <= {"Completed", "Canceled"}
    best = sweep.properties["best_child_run_id"]
    assert best in {t.name for t in trials if t.status == "Completed"}

    assert model.type == "custom_model"
    assert model.properties["aml_local.source"] == f"azureml://jobs/{best}/outputs/artifacts/paths/outputs/model/"
    assert (Path(model.path) / "MLmodel").is_file()  # train.py's MLflow model, copied into the store

    (command_job,) = [j for j in ml_client.jobs.list() if j.type == "command" and j.display_name.startswith("tensor")]
    assert command_job.status == "Completed"
    assert command_job.experiment_name == "tf-dnn-image-classify"
    assert ml_client.online_endpoints.list() == []  # the last cell deleted the endpoint and its deployment
