"""scripts/batch.sh with AML_BACKEND=azure against tests/fake_az/az, a recording fake of the Azure CLI that checks every
call's arguments against what the real `az ml` accepts (tests/fake_az/az_spec.json, from the ml extension's
_batch_endpoint_params.py, _batch_deployment_params.py and custom/batch_*.py) and answers the batch verbs in the
shapes azure-ai-ml gives them: the calls the script makes, the accuracy it prints from the downloaded `score` output,
and its one-line failures."""

import csv
import hashlib
import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
FAKE_AZ = REPO_ROOT / "tests" / "fake_az" / "az"
VENV_BIN = pathlib.Path(sys.executable).parent
WORKSPACE = ["--resource-group", "rg-mnist", "--workspace-name", "ws-mnist"]
WORKSPACE_FLAGS = [*WORKSPACE, "--subscription", "0000-sub", "--only-show-errors"]
ENDPOINT = "mnist-batch-" + hashlib.sha256(b"0000-sub/rg-mnist/ws-mnist").hexdigest()[:8]


@pytest.fixture
def azure(tmp_path):
    """(run batch.sh, az, the recorded `az ml` calls without the workspace flags each carries, the fake's state)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "az").symlink_to(FAKE_AZ)
    scenario = tmp_path / "scenario.json"
    scenario.write_text("{}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AML_", "AZURE_", "BATCH_"))}
    env.update(
        AML_BACKEND="azure",
        AZURE_DEFAULTS_GROUP="rg-mnist",
        AZURE_DEFAULTS_WORKSPACE="ws-mnist",
        AZURE_SUBSCRIPTION_ID="0000-sub",
        AML_POLL_S="0.2",  # the fake answers at once: each step of a job is one poll, however soon it comes
        FAKE_AZ_LOG=str(tmp_path / "calls.jsonl"),
        FAKE_AZ_STATE=str(tmp_path / "state.json"),
        FAKE_AZ_SCENARIO=str(scenario),
        PATH=f"{bin_dir}{os.pathsep}{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )

    def batch(*argv, setup=None, cwd=REPO_ROOT):
        scenario.write_text(json.dumps(setup or {}))
        command = [str(REPO_ROOT / "scripts/batch.sh"), *map(str, argv)]
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)

    def az(*argv):
        """The fake az itself, with the workspace flags the scripts give every call."""
        command = [str(FAKE_AZ), *map(str, argv), *WORKSPACE_FLAGS]
        return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)

    def calls():
        recorded = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
        for argv in recorded:
            assert argv[-7:] == WORKSPACE_FLAGS, argv
        return [" ".join(argv[:-7]) for argv in recorded]

    def state():
        return json.loads((tmp_path / "state.json").read_text())

    return batch, az, calls, state


@pytest.fixture
def digits(tmp_path):
    """A folder of 5 PNG files (their content does not matter to the fake) and their labels, as `mnist-data png`
    lays them out: (images folder, labels.csv)."""
    folder = tmp_path / "digits" / "images"
    folder.mkdir(parents=True)
    for index in range(5):
        (folder / f"{index:05d}.png").write_bytes(b"\x89PNG")
    labels = tmp_path / "digits" / "labels.csv"
    with open(labels, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["file", "label"])
        writer.writerows([f"{index:05d}.png", label] for index, label in enumerate([7, 2, 1, 0, 4]))
    return folder, labels


def test_batch_on_azure_makes_exactly_the_calls_az_accepts_and_prints_the_accuracy(azure, digits, tmp_path):
    batch, az, calls, state = azure
    folder, labels = digits
    assert az("ml", "model", "create", "--file", "endpoints/model.yml").returncode == 0
    # Four files scored, three right; 00004.png has no line (a failed item): 3 of the 5 labelled files are right.
    predictions = {"00000.png": 7, "00001.png": 2, "00002.png": 1, "00003.png": 6}
    downloads = tmp_path / "downloads"
    result = batch(
        "--input", folder, "--labels", labels, "--set", "model=azureml:mnist-mlp:1", "--download-path", downloads,
        setup={"batch_predictions": predictions},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    job = next(line.split()[-1] for line in result.stdout.splitlines() if line.startswith("job:"))
    assert job.startswith("batchjob-")
    scores = downloads / "named-outputs" / "score" / "predictions.csv"
    assert result.stdout.splitlines() == [
        f"endpoint:    {ENDPOINT}",
        "deployment:  mlp",
        f"job:         {job}",
        f"scores:      {scores} (4 lines: file digit probability)",
        "00000.png 7 0.99",
        "00001.png 2 0.99",
        "00002.png 1 0.99",
        "00003.png 6 0.99",
        "accuracy:    0.6000 (3 of 5 labelled files; 4 scored)",
    ]
    assert calls()[1:] == [
        f"ml batch-endpoint show --name {ENDPOINT} -o none",
        f"ml batch-endpoint create --file endpoints/batch/endpoint.yml --name {ENDPOINT} -o none",
        "ml environment create --file environments/batch.yml --query version -o tsv",
        f"ml batch-deployment create --file endpoints/batch/deployment.yml --endpoint-name {ENDPOINT} --set-default"
        " --set model=azureml:mnist-mlp:1 -o none",
        f"ml batch-deployment show --name mlp --endpoint-name {ENDPOINT} --query output_file_name -o tsv",
        f"ml batch-endpoint invoke --name {ENDPOINT} --deployment-name mlp --input {folder} --query name -o tsv",
        f"ml job stream --name {job}",
        f"ml job show --name {job} --query status -o tsv",
        f"ml job download --name {job} --output-name score --download-path {downloads}",
    ]
    endpoint = state()["batch_endpoints"][ENDPOINT]
    assert endpoint["default"] == "mlp" and endpoint["jobs"] == [job]
    deployment = endpoint["deployments"]["mlp"]
    assert deployment["model"].endswith("/workspaces/ws-mnist/models/mnist-mlp/versions/1")
    assert (deployment["mini_batch_size"], deployment["output_action"]) == (100, "append_row")
    # A second run finds the endpoint and updates the deployment in place (create is create-or-update).
    again = batch("--input", folder, "--set", "model=azureml:mnist-mlp:1", "--download-path", tmp_path / "again")
    assert again.returncode == 0, again.stderr
    assert f"batch endpoint {ENDPOINT} exists (azure)" in again.stderr and "accuracy" not in again.stdout
    assert "00004.png 7 0.99" in again.stdout  # without a scenario, the fake scores every file of the folder


def test_relative_paths_are_the_callers_and_a_data_asset_must_exist(azure, digits, tmp_path):
    batch, az, calls, _ = azure
    folder, _ = digits
    assert az("ml", "model", "create", "--file", "endpoints/model.yml").returncode == 0
    relative = batch(
        "--input", "digits/images", "--labels", "digits/labels.csv", "--download-path", "out", cwd=tmp_path
    )
    assert relative.returncode == 0, relative.stderr
    assert f"--input {folder} --query name" in calls()[-4]
    assert (tmp_path / "out" / "named-outputs" / "score" / "predictions.csv").is_file()
    missing = batch("--input", "azureml:mnist-png:1")
    assert missing.returncode == 1
    assert missing.stderr.splitlines()[-1] == f"ERROR: invoking batch endpoint {ENDPOINT} on azureml:mnist-png:1 failed"
    assert "Value passed to --input is not a supported data" in missing.stderr


def test_a_missing_model_or_folder_and_a_failed_job_stop_the_script_with_one_line(azure, digits):
    batch, az, _, _ = azure
    folder, _ = digits
    no_model = batch("--input", folder, "--set", "model=azureml:mnist-mlp:4")
    assert no_model.returncode == 1
    assert "(ResourceNotFound) Model container mnist-mlp version 4 could not be found" in no_model.stderr
    assert no_model.stderr.splitlines()[-1] == f"ERROR: creating batch deployment mlp on {ENDPOINT} failed"
    no_folder = batch("--input", folder.parent / "nope")
    assert (
        no_folder.returncode == 1
        and no_folder.stderr.strip() == f"ERROR: --input: no such folder: {folder.parent}/nope"
    )
    assert az("ml", "model", "create", "--file", "endpoints/model.yml").returncode == 0
    failed = batch("--input", folder, setup={"batch_statuses": ["Preparing", "Running", "Failed"]})
    assert failed.returncode == 1
    last = failed.stderr.splitlines()[-1]
    assert last.startswith("ERROR: job batchjob-") and " ended Failed; see https://ml.azure.com/runs/batchjob-" in last


def test_the_fake_az_takes_the_batch_verbs_as_az_does(azure):
    _, az, _, _ = azure
    unknown = az("ml", "batch-endpoint", "list-jobs", "--name", "e", "--deployment-name", "d")
    assert unknown.returncode == 2 and "unrecognized arguments: --deployment-name" in unknown.stderr
    required = az("ml", "batch-deployment", "show", "--name", "mlp")
    assert required.returncode == 2 and "the following arguments are required: --endpoint-name" in required.stderr
    wrong_kind = az("ml", "batch-deployment", "create", "--file", "endpoints/blue-deployment.yml")
    assert wrong_kind.returncode == 1 and "batchDeployment.schema.json" in wrong_kind.stderr
    missing = az("ml", "batch-endpoint", "show", "-n", "nope")
    assert missing.returncode == 3 and "Batch endpoint nope could not be found" in missing.stderr
    created = az("ml", "batch-endpoint", "create", "-f", "endpoints/batch/endpoint.yml", "-n", "Mnist-B")
    shown = json.loads(created.stdout)
    assert shown["name"] == "mnist-b" and shown["auth_mode"] == "aad_token"  # the CLI lowers the name
    assert shown["defaults"] == {"deployment_name": None} and shown["scoring_uri"].endswith("/jobs")
    no_default = az("ml", "batch-endpoint", "invoke", "-n", "mnist-b", "--input", "endpoints")
    assert no_default.returncode == 1
    assert "Set a default deployment or provide a deployment name through cli command." in no_default.stderr
    listed = az("ml", "batch-deployment", "list", "-e", "mnist-b", "--query", "length(@)", "-o", "tsv")
    assert listed.stdout.strip() == "0"
