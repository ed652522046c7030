"""What the YAML says is what runs (issue 15), with real jobs and a real deployment, no mocks:

- each job, sweep trial, pipeline node and deployment runs in the environment its YAML names: the project venv when
  that has every requirement, else a venv built from the environment (a package the project venv lacks is there
  at the version pinned; a package the environment lacks is missing, as on Azure); a requirement that cannot be
  installed fails the job before its command runs; a job in a built venv logs to MLflow through the tracking server;
- Azure's job folders: ./outputs and ./logs exist when the command starts and become the run's artifacts, which
  `job download --all` lays out as azure-ai-ml does;
- registered data is what `azureml:name@latest` means, and a ro_mount/download input cannot change it;
- the code snapshot is what azure-ai-ml uploads.

One store and one environment cache for the module (the builds and the tracking server are made once, as on a
user's machine); the cache starts empty, so the first build of each environment is a real one.
"""

import http.client
import json
import os
import sys
import textwrap
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from aml_local import cli, store, tracking_server
from aml_local.assets import env_layer, environment
from aml_local.endpoints.online import records
from aml_local.jobs import common

REPO = Path(__file__).resolve().parents[1]
# A small pure-Python package the project venv does not have at this version (toolz 0.11.2 is from 2021), and an
# MLflow client of another version than the project's: its sqlite schema would refuse the store.
OLD_PACKAGE, OLD_VERSION = "toolz", "0.11.2"
OTHER_MLFLOW = "mlflow-skinny==2.22.1"
SKLEARN_VERSION = "1.7.0"
SERVER_VERSION = "1.4.0"  # not the project's 1.4.1: the x-ms-server-version header must be the environment's
IMAGE = "mcr.microsoft.com/azureml/openmpi5.0-ubuntu24.04:latest"


def project_version(name):
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def write_environment(root: Path, name: str, pip: list[str]) -> Path:
    """environments/<name>.yml and its conda file, as a user writes them for Azure."""
    folder = root / "environments"
    folder.mkdir(exist_ok=True)
    lines = "".join(f"      - {line}\n" for line in pip)
    (folder / f"{name}.conda.yaml").write_text(
        f"name: {name}\nchannels:\n  - conda-forge\ndependencies:\n  - python=3.11\n  - pip\n  - pip:\n{lines}"
    )
    path = folder / f"{name}.yml"
    path.write_text(f"name: {name}\nimage: {IMAGE}\nconda_file: {name}.conda.yaml\n")
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory, seed_store):
    """A project as a user has it: environments/ (one the project venv satisfies, two it does not), src/, and one
    store and environment cache for the module."""
    root = tmp_path_factory.mktemp("project")
    seed_store(root / ".aml-local")
    (root / "pyproject.toml").write_text("[project]\nname = 'issue15'\n")
    (root / "src").mkdir()
    write_environment(root, "fast", ["mlflow"])  # the project venv has it: no build
    write_environment(root, "unpinned", [OTHER_MLFLOW])  # built, without toolz
    # The project's own YAML for `pinned` has no toolz; the registered version (created below) has it.
    write_environment(root, "pinned", ["mlflow"])
    registered = tmp_path_factory.mktemp("registered")
    write_environment(registered, "pinned", [f"{OLD_PACKAGE}=={OLD_VERSION}", OTHER_MLFLOW])
    write_environment(
        root, "sklearn", [f"scikit-learn=={SKLEARN_VERSION}", f"azureml-inference-server-http=={SERVER_VERSION}"]
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AML_LOCAL_HOME", str(root / ".aml-local"))
        patch.setenv(environment.CACHE_VARIABLE, str(tmp_path_factory.mktemp("env-cache")))
        patch.delenv("AML_LOCAL_PORT", raising=False)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        environment.create(registered / "environments" / "pinned.yml")
        yield root
        tracking_server.stop()
        for endpoint in records.endpoints_dir().glob("*/endpoint.json"):
            cli.main(["online-endpoint", "delete", "-n", endpoint.parent.name, "--yes"])


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def job_yaml(project: Path, name: str, command: str, environment_text: str, extra: str = "") -> Path:
    path = project / f"{name}.yml"
    path.write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json\n"
        f"experiment_name: issue15\ncode: src\ncommand: {command}\n{extra}environment: {environment_text}\n"
    )
    return path


def create(capsys, path: Path, name: str) -> dict:
    code, out, err = run_cli(capsys, "job", "create", "--file", path, "--name", name, "--stream")
    shown = json.loads(run_cli(capsys, "job", "show", "--name", name)[1])
    shown["_exit"], shown["_out"], shown["_err"] = code, out, err
    return shown


def log_of(name: str) -> str:
    return (store.jobs_dir() / name / "logs" / "user_logs" / "std_log.txt").read_text()


# ---------------------------------------------------------------------------------------------------------------
# Azure's job folders: ./outputs and ./logs, artifacts, job download


def test_outputs_and_logs_exist_at_start_become_artifacts_and_download_all_returns_them(project, capsys, tmp_path):
    command = (
        "test -d outputs && test -d logs && echo made > outputs/x.txt && echo noted > logs/notes.txt "
        "&& echo named > ${{outputs.model}}/weights.txt && echo URI=$MLFLOW_TRACKING_URI"
    )
    extra = "outputs:\n  model:\n    type: uri_folder\n"
    shown = create(capsys, job_yaml(project, "folders", command, "azureml:fast@latest", extra), "folders")
    assert shown["status"] == "Completed", shown["_err"]
    # The project venv had everything: no build, and the job's MLflow is the store itself, as before.
    ran_in = shown["properties"]["aml_local.environment"]
    assert ran_in["path"] == "project venv" and ran_in["python"] == sys.executable and ran_in["built"] is False
    assert f"URI={store.tracking_uri()}" in shown["_out"]

    everything = tmp_path / "all"
    assert run_cli(capsys, "job", "download", "-n", "folders", "--all", "--download-path", everything)[0] == 0
    assert (everything / "artifacts" / "outputs" / "x.txt").read_text() == "made\n"
    assert (everything / "artifacts" / "logs" / "notes.txt").read_text() == "noted\n"
    assert "URI=" in (everything / "artifacts" / "user_logs" / "std_log.txt").read_text()
    assert (everything / "named-outputs" / "model" / "weights.txt").read_text() == "named\n"
    # Without --all: the artifacts only; with --output-name: that output only (azure-ai-ml's JobOperations.download).
    artifacts_only, one_output = tmp_path / "default", tmp_path / "one"
    assert run_cli(capsys, "job", "download", "-n", "folders", "--download-path", artifacts_only)[0] == 0
    assert sorted(p.name for p in artifacts_only.iterdir()) == ["artifacts"]
    run_cli(capsys, "job", "download", "-n", "folders", "--output-name", "model", "--download-path", one_output)
    assert sorted(str(p.relative_to(one_output)) for p in one_output.rglob("*")) == [
        "named-outputs", "named-outputs/model", "named-outputs/model/weights.txt"
    ]  # fmt: skip


def test_an_upload_output_appears_when_the_command_ends_and_rw_mount_is_written_in_place(project, capsys):
    command = (
        "echo ${{outputs.uploaded}} > ${{outputs.uploaded}}/where.txt && "
        "echo ${{outputs.mounted}} > ${{outputs.mounted}}/where.txt"
    )
    extra = "outputs:\n  uploaded:\n    type: uri_folder\n    mode: upload\n  mounted:\n    type: uri_folder\n"
    shown = create(capsys, job_yaml(project, "modes", command, "azureml:fast@latest", extra), "modes")
    assert shown["status"] == "Completed", shown["_err"]
    uploaded, mounted = (Path(shown["outputs"][o]["path"]) for o in ("uploaded", "mounted"))
    assert shown["outputs"]["uploaded"]["mode"] == "upload" and shown["outputs"]["mounted"]["mode"] == "rw_mount"
    # The command wrote the upload output on "the compute" (a folder of its own); it was moved into place at the end.
    assert (uploaded / "where.txt").read_text().strip() != str(uploaded)
    assert (mounted / "where.txt").read_text().strip() == str(mounted)


# ---------------------------------------------------------------------------------------------------------------
# Environments honoured


def test_a_package_the_project_venv_lacks_is_imported_at_the_version_pinned_and_mlflow_logs_over_rest(project, capsys):
    assert project_version(OLD_PACKAGE) != OLD_VERSION
    command = (
        "python -c \"import sys, toolz, mlflow; print('VERSION', toolz.__version__, toolz.__file__, sys.prefix);"
        " mlflow.start_run(); mlflow.log_metric('probe', 7.5); mlflow.end_run()\""
    )
    # azureml:pinned@latest is the registered version (with toolz), not the project's environments/pinned.yml.
    shown = create(capsys, job_yaml(project, "pinned", command, "azureml:pinned@latest"), "pinned")
    assert shown["status"] == "Completed", shown["_err"] + log_of("pinned")
    ran_in = shown["properties"]["aml_local.environment"]
    venv = Path(ran_in["path"]) / "venv"
    assert Path(ran_in["path"]).parent == environment.cache_root() and ran_in["built"] is True
    # The package is the built venv's; the job's own prefix is its layer over it (gone when the job ended).
    layer = store.jobs_dir() / "pinned" / "layer"
    assert f"VERSION {OLD_VERSION} {venv}/lib/python3.11/site-packages/toolz/__init__.py {layer}" in shown["_out"]
    assert not layer.exists()
    log = log_of("pinned")
    assert f"Environment {ran_in['environment_hash']}: building a venv" in log  # the first build, in the job's log
    # The job's mlflow-skinny 2.22 logged through the tracking server into the job's own run.
    assert "Starting the MLflow tracking server" in log
    assert store.find_job_run("pinned").data.metrics == {"probe": 7.5}


def test_the_same_job_in_an_environment_without_the_package_fails_with_no_module_named(project, capsys):
    command = 'python -c "import toolz"'
    shown = create(capsys, job_yaml(project, "unpinned", command, "azureml:unpinned@latest"), "unpinned")
    assert shown["status"] == "Failed"
    assert "ModuleNotFoundError: No module named 'toolz'" in shown["properties"]["aml_local.status_message"]
    assert shown["properties"]["aml_local.environment"]["path"] != "project venv"


def test_a_requirement_that_cannot_be_installed_fails_the_job_before_its_command_runs(project, capsys):
    environment_text = (
        f"\n  image: {IMAGE}\n  conda_file:\n    dependencies:\n      - python=3.11\n"
        "      - pip:\n          - toolz==0.0.999\n"
    )
    path = job_yaml(project, "broken", "touch ran.txt", environment_text)
    shown = create(capsys, path, "broken")
    assert shown["_exit"] == 1 and shown["status"] == "Failed"
    message = shown["properties"]["aml_local.status_message"]
    assert message.startswith(f"{path}: cannot install toolz==0.0.999: ") and "\n" not in message
    assert not (store.jobs_dir() / "broken" / "code" / "ran.txt").exists()
    assert f"ERROR: {message}" in log_of("broken")


def test_an_environment_that_is_neither_registered_nor_in_the_project_is_refused(project, capsys):
    code, _, err = run_cli(capsys, "job", "create", "-f", job_yaml(project, "nowhere", "echo hi", "azureml:nowhere:3"))
    assert code == 1  # a user error, as az exits (aml_local/cli/app.py)
    assert "environment azureml:nowhere:3: not registered here" in err and "has name: nowhere and version: 3" in err
    assert "curated" not in err
    # A workspace name that is also a curated environment's (azureml-examples' hello-sweep.yml names
    # azureml:sklearn-1.0@latest): the message gives the reference to the curated one.
    code, _, err = run_cli(
        capsys, "job", "create", "-f", job_yaml(project, "ws", "echo hi", "azureml:sklearn-1.0@latest")
    )
    assert code == 1 and err.rstrip().endswith(
        "; the azureml registry's curated sklearn-1.0 is azureml://registries/azureml/environments/sklearn-1.0/labels/latest"
    )


def test_a_curated_name_not_in_the_catalog_is_refused_at_create_naming_the_catalog(project, capsys):
    # The SDK hands the job's environment over as "AzureML-...@latest", without the azureml: that az requires.
    path = job_yaml(project, "curated", "echo curated", "azureml:AzureML-not-in-the-table@latest")
    code, out, err = run_cli(capsys, "job", "create", "-f", path, "--name", "curated")
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert "azureml:AzureML-not-in-the-table@latest" in err and "environment list --registry-name azureml" in err
    assert not (store.jobs_dir() / "curated").exists()


def test_sweep_trials_and_pipeline_nodes_run_in_their_environment(project, capsys):
    (project / "src" / "trial.py").write_text(
        "import sys, toolz, mlflow\n"
        "with mlflow.start_run():\n"
        "    mlflow.log_metric('score', float(sys.argv[1]))\n"
        "open(sys.argv[2] + '/version.txt', 'w').write(toolz.__version__)\n"
    )
    sweep = project / "sweep.yml"
    sweep.write_text(
        textwrap.dedent(
            """\
            $schema: https://azuremlschemas.azureedge.net/latest/sweepJob.schema.json
            type: sweep
            experiment_name: issue15
            trial:
              code: src
              command: python trial.py ${{search_space.score}} ${{outputs.model}}
              environment: azureml:pinned@latest
            outputs:
              model:
                type: uri_folder
            search_space:
              score:
                type: choice
                values: [1, 2]
            sampling_algorithm: grid
            objective:
              goal: maximize
              primary_metric: score
            limits:
              max_total_trials: 2
              max_concurrent_trials: 2
            """
        )
    )
    shown = create(capsys, sweep, "env_sweep")
    assert shown["status"] == "Completed", shown["_out"][-2000:]
    hashes = set()
    for trial in ("env_sweep_0", "env_sweep_1"):
        trial_shown = json.loads(run_cli(capsys, "job", "show", "-n", trial)[1])
        assert (Path(trial_shown["outputs"]["model"]["path"]) / "version.txt").read_text() == OLD_VERSION
        hashes.add(trial_shown["properties"]["aml_local.environment"]["environment_hash"])
    assert len(hashes) == 1

    pipeline = project / "pipeline.yml"
    pipeline.write_text(
        textwrap.dedent(
            """\
            $schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
            type: pipeline
            experiment_name: issue15
            jobs:
              probe:
                type: command
                code: src
                command: python -c "import toolz; print('NODE', toolz.__version__)"
                environment: azureml:pinned@latest
            """
        )
    )
    shown = create(capsys, pipeline, "env_pipeline")
    assert shown["status"] == "Completed", shown["_out"][-2000:]
    assert f"NODE {OLD_VERSION}" in log_of("env_pipeline_probe")
    node = json.loads(run_cli(capsys, "job", "show", "-n", "env_pipeline_probe")[1])
    assert node["properties"]["aml_local.environment"]["environment_hash"] in hashes


def test_the_tracking_server_is_reused_then_started_again_when_it_died(project):
    record = json.loads((store.home() / tracking_server.RECORD_NAME).read_text())  # started by the jobs above
    assert tracking_server.uri() == f"http://127.0.0.1:{record['port']}"
    os.killpg(record["pid"], 9)
    restarted = tracking_server.uri()
    assert json.loads((store.home() / tracking_server.RECORD_NAME).read_text())["pid"] != record["pid"]
    with urllib.request.urlopen(f"{restarted}/health", timeout=5) as answer:
        assert answer.read() == b"OK"


# ---------------------------------------------------------------------------------------------------------------
# A deployment in its environment


SCORE = """\
import glob, json, os, sys
import joblib, sklearn

def init():
    global model
    model_dir = os.environ["AZUREML_MODEL_DIR"]
    model = joblib.load(glob.glob(os.path.join(model_dir, "**", "model.joblib"), recursive=True)[0])

def run(raw):
    rows = json.loads(raw)["data"]
    return {
        "sklearn": sklearn.__version__,
        "sklearn_file": sklearn.__file__,
        "prefix": sys.prefix,
        "predictions": model.predict(rows).tolist(),
    }
"""

TRAIN = """\
import sys, joblib, numpy, sklearn
from sklearn.linear_model import LogisticRegression
x = numpy.array([[0.0], [1.0], [2.0], [3.0], [10.0], [11.0], [12.0], [13.0]])
y = numpy.array([0, 0, 0, 0, 1, 1, 1, 1])
joblib.dump(LogisticRegression().fit(x, y), sys.argv[1] + "/model.joblib")
print("trained with scikit-learn", sklearn.__version__)
"""


def test_a_deployment_serves_a_scikit_learn_model_with_the_version_its_conda_file_pins(project, capsys, tmp_path):
    assert project_version("scikit-learn") != SKLEARN_VERSION
    assert project_version("azureml-inference-server-http") != SERVER_VERSION
    (project / "src" / "train_sklearn.py").write_text(TRAIN)
    (project / "src" / "score_sklearn.py").write_text(SCORE)
    extra = "outputs:\n  model:\n    type: custom_model\n"
    job = job_yaml(project, "sk", "python train_sklearn.py ${{outputs.model}}", "azureml:sklearn@latest", extra)
    shown = create(capsys, job, "sk_train")
    assert shown["status"] == "Completed", shown["_err"] + log_of("sk_train")
    assert f"trained with scikit-learn {SKLEARN_VERSION}" in shown["_out"]
    uri = "azureml://jobs/sk_train/outputs/model"
    assert run_cli(capsys, "model", "create", "-n", "sk", "-v", "1", "--type", "custom_model", "--path", uri)[0] == 0

    (tmp_path / "endpoint.yml").write_text("name: sk-endpoint\nauth_mode: key\n")
    assert run_cli(capsys, "online-endpoint", "create", "-f", tmp_path / "endpoint.yml")[0] == 0
    deployment = project / "sk-deployment.yml"
    deployment.write_text(
        textwrap.dedent(
            """\
            $schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json
            name: blue
            endpoint_name: sk-endpoint
            model: azureml:sk:1
            code_configuration:
              code: src
              scoring_script: score_sklearn.py
            environment: azureml:sklearn@latest
            instance_type: Standard_DS3_v2
            instance_count: 1
            environment_variables:
              WORKER_COUNT: "1"
            readiness_probe:
              initial_delay: 1
              period: 1
              failure_threshold: 120
            """
        )
    )
    code, out, err = run_cli(capsys, "online-deployment", "create", "-f", deployment, "--all-traffic")
    assert code == 0, err
    ran_in = json.loads(out)["properties"]["aml_local.environment"]
    assert (
        ran_in
        == json.loads(run_cli(capsys, "online-deployment", "show", "-n", "blue", "-e", "sk-endpoint")[1])["properties"][
            "aml_local.environment"
        ]
    )
    venv = Path(ran_in["path"]) / "venv"
    assert ran_in["python"] == str(venv / "bin" / "python")

    shown = json.loads(run_cli(capsys, "online-endpoint", "show", "-n", "sk-endpoint")[1])
    key = json.loads(run_cli(capsys, "online-endpoint", "get-credentials", "-n", "sk-endpoint")[1])["primaryKey"]
    address = urllib.parse.urlparse(shown["scoring_uri"])
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    body = json.dumps({"data": [[1.0], [12.0]]})
    connection.request(
        "POST", address.path, body, {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    )
    answer = connection.getresponse()
    payload = json.loads(answer.read())
    assert answer.status == 200, payload
    # scikit-learn from the environment's venv; the server's prefix, its own layer over it (one per instance).
    layers = records.deployment_dir("sk-endpoint", "blue") / "layers"
    assert payload["sklearn_file"].startswith(f"{venv}/") and Path(payload["prefix"]).parent == layers
    assert {k: payload[k] for k in ("sklearn", "predictions")} == {"sklearn": SKLEARN_VERSION, "predictions": [0, 1]}
    assert answer.getheader("x-ms-server-version") == f"azmlinfsrv/{SERVER_VERSION}"
    assert Path(payload["prefix"]).is_dir()
    assert run_cli(capsys, "online-endpoint", "delete", "-n", "sk-endpoint", "--yes")[0] == 0
    assert not Path(payload["prefix"]).exists()  # the server's layer went with it


def test_a_deployments_server_is_the_environments_own_inference_server_with_nothing_of_ours():
    # It runs in the deployment environment's python, which has the inference server and nothing of aml_local: the
    # server is that package's own Flask app (the router in front owns keys and admission).
    from aml_local.endpoints.online import servers

    record = {
        "name": "blue",
        "endpoint_name": "e",
        "runtime": {"python": "/envs/abc/bin/python", "venv": "/envs/abc"},
        "server_version": "1.4.1",
        "request_settings": {"request_timeout_ms": 5000, "max_concurrent_requests_per_instance": 2},
        "environment_variables": {},
        "worker_count": 2,
        "app_root": "/app",
        "code_folder": "code",
        "scoring_script": "score.py",
        "model_dir": None,
    }
    layer = env_layer.Layer(python="/layers/5001/bin/python", venv="/layers/5001", lower="/envs/abc")
    argv = servers.server_command(record, 5001, layer.python)
    assert argv[:3] == ["/layers/5001/bin/python", "-m", "gunicorn"]
    assert argv[-1] == "azureml_inference_server_http.server.entry:app"
    env = servers.server_environment(record, 5001, layer)
    assert env["PATH"].split(":")[0] == "/layers/5001/bin" and env["VIRTUAL_ENV"] == "/layers/5001"
    assert env["HTTP_X_MS_SERVER_VERSION"] == "azmlinfsrv/1.4.1"
    assert "aml_local" not in env.get("PYTHONPATH", "")


# ---------------------------------------------------------------------------------------------------------------
# Registered data, and what a job can do to it


def test_registered_data_comes_first_and_a_ro_mount_or_download_input_cannot_change_it(project, capsys, tmp_path):
    registered, unregistered = tmp_path / "registered", tmp_path / "in-project"
    for folder, text in ((registered, "REGISTERED-ROWS"), (unregistered, "PROJECT-ROWS")):
        folder.mkdir()
        (folder / "rows.txt").write_text(text + "\n")
    (tmp_path / "folder.yml").write_text(f"name: rows\ntype: uri_folder\npath: {registered}\n")
    (tmp_path / "file.yml").write_text(
        f"name: rowfile\nversion: '4'\ntype: uri_file\npath: {registered / 'rows.txt'}\n"
    )
    (project / "data").mkdir(exist_ok=True)
    (project / "data" / "rows.yml").write_text(f"name: rows\ntype: uri_folder\npath: {unregistered}\n")
    assert run_cli(capsys, "data", "create", "-f", tmp_path / "folder.yml")[0] == 0
    assert run_cli(capsys, "data", "create", "-f", tmp_path / "file.yml")[0] == 0

    command = (
        "cat ${{inputs.ro}}/rows.txt ${{inputs.dl}}/rows.txt ${{inputs.one}}; "
        "echo changed >> ${{inputs.ro}}/rows.txt; echo changed >> ${{inputs.dl}}/rows.txt; "
        "echo changed >> ${{inputs.one}}; rm -f ${{inputs.dl}}/rows.txt; true"
    )
    extra = (
        "inputs:\n"
        "  ro:\n    type: uri_folder\n    path: azureml:rows@latest\n"
        "  dl:\n    type: uri_folder\n    path: azureml:rows@latest\n    mode: download\n"
        "  one:\n    type: uri_file\n    path: azureml:rowfile:4\n"
    )
    shown = create(capsys, job_yaml(project, "data_job", command, "azureml:fast@latest", extra), "data_job")
    assert shown["status"] == "Completed", shown["_err"]
    assert shown["_out"].count("REGISTERED-ROWS") == 3 and "PROJECT-ROWS" not in shown["_out"]
    assert [shown["inputs"][i]["mode"] for i in ("ro", "dl", "one")] == ["ro_mount", "download", "ro_mount"]
    # Whatever the job did (as root it may write into its copy; as another user the ro_mount copy refuses it),
    # the registered data is as it was.
    assert (registered / "rows.txt").read_text() == "REGISTERED-ROWS\n"
    resolved = shown["properties"]["aml_local.resolved_command"]
    assert str(registered) not in resolved and str(store.jobs_dir() / "data_job" / "inputs") in resolved


# ---------------------------------------------------------------------------------------------------------------
# The code snapshot


def test_the_code_snapshot_is_what_azure_ml_would_upload(project, tmp_path):
    from azure.ai.ml._utils._asset_utils import get_ignore_file, get_upload_files_from_folder

    code = tmp_path / "code"
    for name in ("train.py", "keep.log", "debug.log", "data/big.csv", "sub/data/small.csv", "notes/todo.md",
                 "__pycache__/train.cpython-311.pyc", "sub/scratch.tmp"):  # fmt: skip
        (code / name).parent.mkdir(parents=True, exist_ok=True)
        (code / name).write_text(name)
    # Git wildmatch, as azure-ai-ml reads it: a negation, a root-anchored folder, a pattern at any depth.
    (code / ".amlignore").write_text("*.log\n!keep.log\n/data/\n*.tmp\n")
    (code / ".gitignore").write_text("notes/\n")  # not read: .amlignore comes first

    def snapshot(source, target):
        common._copy_code(source, target)
        return sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())

    expected = [
        ".amlignore", ".gitignore", "__pycache__/train.cpython-311.pyc", "keep.log", "notes/todo.md",
        "sub/data/small.csv", "train.py",
    ]  # fmt: skip
    assert snapshot(code, tmp_path / "one") == expected
    assert expected == sorted(r for _, r in get_upload_files_from_folder(code, ignore_file=get_ignore_file(code)))
    (code / ".amlignore").unlink()  # then .gitignore is the one
    assert "notes/todo.md" not in snapshot(code, tmp_path / "two")


def test_a_job_records_the_environment_it_names_without_building_when_the_project_venv_has_it(project):
    # The fast path is the project's own jobs: their environment resolves from environments/train.yml.
    spec = common.environment_spec("azureml:mnist-train@latest", REPO / "jobs" / "train.yml")
    assert spec["source"] == str(REPO / "environments" / "train.yml")
    logged = []
    prepared = environment.prepare(spec, logged.append)
    assert prepared.location == "project venv" and prepared.built is False and prepared.python == sys.executable
    assert logged == []
