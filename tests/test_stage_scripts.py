"""The stage scripts, run for real with AML_BACKEND=local: register a finished local job's model, deploy it, roll
out the other colour (and roll back a failing one), invoke it, tear it down; the whole chain from a training job;
and the clear failures around them. Then the same scripts with AML_BACKEND=azure against tests/fake_az/az, a recording
fake of the Azure CLI that checks every call's arguments against what the real `az ml` accepts."""

import contextlib
import hashlib
import io
import json
import os
import pathlib
import subprocess
import sys
import textwrap
from unittest import mock

import psutil
import pytest
import yaml

from aml_local import cli

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = REPO_ROOT / "scripts"
VENV_BIN = pathlib.Path(sys.executable).parent


@pytest.fixture
def env(tmp_path, seed_store):
    """The environment a user of the scripts has: the venv on PATH, the local backend, a private store."""
    seed_store(tmp_path / "home")
    variables = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AML_", "ENDPOINT_NAME"))}
    variables.update(
        AML_BACKEND="local",
        AML_LOCAL_HOME=str(tmp_path / "home"),
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    return variables


@pytest.fixture
def warm_env(env, warm_aml_local):
    """env, with tests/warm_aml_local/aml-local first on PATH, for the tests that train, deploy and roll out: their
    scripts call aml-local dozens of times, each call a process forked from a warm parent (conftest's
    warm_aml_local), with the script's argv, environment, folder, stdin, stdout and stderr and its own exit code."""
    folder = pathlib.Path(warm_aml_local["command"]).parent
    return env | warm_aml_local["env"] | {"PATH": f"{folder}{os.pathsep}{env['PATH']}"}


def run(env, *argv, timeout=300):
    return subprocess.run(
        [str(a) for a in argv], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def aml_local(env, *argv, exit_code=0):
    """aml-local in this process, with env as its environment and the repository as its folder: these calls set up
    and check what the scripts did (the scripts themselves run aml-local as processes, as a user's shell does)."""
    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.dict(os.environ, env, clear=True),
        contextlib.chdir(REPO_ROOT),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        code = cli.main([str(a) for a in argv])
    assert code == exit_code, err.getvalue()
    return out.getvalue()


def known_request(small_mnist_dir, folder):
    """A scoring request for the test data's first test image, and that image's label: (request file, label)."""
    sys.path.insert(0, str(REPO_ROOT / "src"))
    import mnist_data

    data = mnist_data.load_mnist(small_mnist_dir)
    request = pathlib.Path(folder) / "request.json"
    request.write_text(json.dumps({"data": [(data.test_images[0].reshape(-1) / 255.0).round(4).tolist()]}))
    return request, int(data.test_labels[0])


def test_the_scripts_are_shellcheck_clean():
    scripts = sorted(SCRIPTS.glob("*.sh"))
    result = subprocess.run(
        [str(VENV_BIN / "shellcheck"), *map(str, scripts)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.slow
def test_register_takes_a_sweeps_model_from_its_best_trial(warm_env, tmp_path, trained_model_dir, project_environments):
    env = warm_env
    code = tmp_path / "project" / "code"
    code.mkdir(parents=True)
    project_environments(code.parent)
    (code / "trial.py").write_text(
        "import shutil, sys, mlflow\n"
        "score, source, out = float(sys.argv[1]), sys.argv[2], sys.argv[3]\n"
        "with mlflow.start_run():\n"
        "    mlflow.log_metric('score', score)\n"
        "shutil.copytree(source, out, dirs_exist_ok=True)\n"
    )
    spec = code.parent / "sweep.yml"
    spec.write_text(
        textwrap.dedent(
            f"""
            $schema: https://azuremlschemas.azureedge.net/latest/sweepJob.schema.json
            type: sweep
            experiment_name: stage-scripts
            compute: azureml:cpu-cluster
            trial:
              code: ./code
              command: python trial.py ${{{{search_space.score}}}} ${{{{inputs.trained}}}} ${{{{outputs.model}}}}
              environment: azureml:mnist-train@latest
            inputs:
              trained:
                type: uri_folder
                path: {trained_model_dir}
            outputs:
              model:
                type: mlflow_model
            search_space:
              score:
                type: choice
                values: [1, 3]
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
    aml_local(env, "job", "create", "--file", spec, "--name", "sweep_job", "--stream")
    best = aml_local(env, "job", "show", "-n", "sweep_job", "--query", "properties.best_child_run_id", "-o", "tsv")
    registered = run(env, SCRIPTS / "register.sh", "sweep_job")
    assert registered.returncode == 0, registered.stderr
    assert registered.stdout.splitlines() == ["model:   mnist-mlp", "version: 1"]
    assert f"sweep sweep_job: the model of its best trial, {best.strip()}" in registered.stderr
    shown = json.loads(aml_local(env, "model", "show", "-n", "mnist-mlp", "--label", "latest"))
    assert shown["job_name"] == best.strip() and shown["job_name"].startswith("sweep_job")


@pytest.mark.slow
def test_wait_and_register_take_a_pipelines_model_from_its_sweep_node_locally(
    warm_env, tmp_path, trained_model_dir, project_environments
):
    """The pipeline path with aml-local: the sweep node is found by the node types in the pipeline's record and by
    its child job's display name (the node's name), as on Azure (see the fake-az pipeline test)."""
    env = warm_env
    project = tmp_path / "project"
    (project / "code").mkdir(parents=True)
    project_environments(project)
    (project / "code" / "trial.py").write_text(
        "import shutil, sys, mlflow\n"
        "score, source, out = float(sys.argv[1]), sys.argv[2], sys.argv[3]\n"
        "with mlflow.start_run():\n"
        "    mlflow.log_metric('score', score)\n"
        "shutil.copytree(source, out, dirs_exist_ok=True)\n"
    )
    (project / "trial.yml").write_text(
        textwrap.dedent(
            """
            $schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json
            name: trial
            version: "1"
            type: command
            inputs:
              score:
                type: integer
                default: 1
              trained:
                type: uri_folder
            outputs:
              model:
                type: mlflow_model
            code: ./code
            command: python trial.py ${{inputs.score}} ${{inputs.trained}} ${{outputs.model}}
            environment: azureml:mnist-train@latest
            """
        )
    )
    (project / "pipeline.yml").write_text(
        textwrap.dedent(
            f"""
            $schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
            type: pipeline
            experiment_name: stage-scripts
            settings:
              default_compute: azureml:cpu-cluster
            inputs:
              trained:
                type: uri_folder
                path: {trained_model_dir}
            jobs:
              pick:
                type: sweep
                trial: ./trial.yml
                inputs:
                  trained: ${{{{parent.inputs.trained}}}}
                outputs:
                  model:
                    type: mlflow_model
                search_space:
                  score:
                    type: choice
                    values: [1, 3]
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
    aml_local(env, "job", "create", "--file", project / "pipeline.yml", "--name", "pipe_job", "--stream")
    waited = run(env | {"AML_POLL_S": "1"}, SCRIPTS / "wait.sh", "pipe_job")
    assert waited.returncode == 0, waited.stderr
    registered = run(env, SCRIPTS / "register.sh", "pipe_job")
    assert registered.returncode == 0, registered.stderr
    node_job = next(
        child["name"]
        for child in json.loads(aml_local(env, "job", "list", "--parent-job-name", "pipe_job"))
        if child["display_name"] == "pick"
    )
    assert f"pipeline pipe_job: its sweep node pick is job {node_job}" in registered.stderr
    best = aml_local(env, "job", "show", "-n", node_job, "--query", "properties.best_child_run_id", "-o", "tsv").strip()
    assert best.startswith(node_job)
    assert waited.stdout.splitlines()[-1] == f"model:         azureml://jobs/{best}/outputs/model"
    shown = json.loads(aml_local(env, "model", "show", "-n", "mnist-mlp", "--label", "latest"))
    assert shown["job_name"] == best


def test_register_names_a_missing_job_and_needs_one(env):
    missing = run(env, SCRIPTS / "register.sh", "no_such_job", timeout=120)
    assert missing.returncode != 0
    assert "no job named no_such_job (local)" in missing.stderr and "Traceback" not in missing.stderr
    assert missing.stdout == ""
    usage = run(env, SCRIPTS / "register.sh", timeout=60)
    assert usage.returncode != 0 and "usage: scripts/register.sh JOB_NAME" in usage.stderr


@pytest.mark.slow
def test_register_refuses_a_job_that_did_not_complete(warm_env, tmp_path, project_environments):
    env = warm_env
    spec = tmp_path / "project" / "failing.yml"  # the job's code folder: not the one holding the store
    spec.parent.mkdir()
    project_environments(spec.parent)
    spec.write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json\n"
        "code: .\ncommand: exit 3\noutputs:\n  model:\n    type: mlflow_model\n"
        "environment: azureml:mnist-train@latest\ncompute: azureml:cpu-cluster\n"
    )
    aml_local(env, "job", "create", "-f", spec, "-n", "failed_job", "--stream", exit_code=1)
    refused = run(env, SCRIPTS / "register.sh", "failed_job", timeout=120)
    assert refused.returncode != 0 and "job failed_job is Failed" in refused.stderr


def test_the_backend_must_be_local_or_azure(env):
    env["AML_BACKEND"] = "gcp"
    result = run(env, SCRIPTS / "teardown.sh", timeout=60)
    assert result.returncode != 0 and "AML_BACKEND must be 'local' or 'azure' (got 'gcp')" in result.stderr


@pytest.mark.slow
def test_the_whole_chain_locally_then_a_green_rollout(warm_env, tmp_path, small_mnist_dir):
    """scripts/run-all.sh for real: set-up records, a short training job on the small MNIST, registration, blue
    with all traffic, a scored sample. Then the stages one by one on what it left: register.sh again (a second
    version); a rollout whose smoke test fails rolls back; an update rolls green out (mirror, canary, all traffic)
    and blue goes; invoke.sh scores the sample; teardown.sh stops every process, once and then as a no-op.
    (One chain, so that the stages after the first deployment do not train and deploy again.)"""
    # As `make demo` runs it: the job's log streamed while it runs (one process following it, not a show a second).
    env = warm_env | {"AML_STREAM_LOGS": "1", "AML_POLL_S": "1", "ROLLOUT_OBSERVE_S": "0"}
    chain = run(
        env,
        SCRIPTS / "run-all.sh",
        "--job",
        "jobs/train.yml",
        "--deploy-set",
        "environment_variables.WORKER_COUNT=1",
        "--",
        "--set",
        f"inputs.mnist.path={small_mnist_dir}",
        "--set",
        "inputs.epochs=1",
        "--set",
        "inputs.validation_size=500",
        timeout=400,
    )
    assert chain.returncode == 0, chain.stderr[-3000:]
    lines = dict(line.split(":", 1) for line in chain.stdout.splitlines() if ":" in line)
    assert lines["status"].strip() == "Completed" and 0.5 < float(lines["test accuracy"]) <= 1
    assert lines["registered"].strip() == "mnist-mlp:1"
    assert lines["deployment"].strip() == "blue (100% of traffic)"
    assert lines["prediction"].strip() in set("0123456789")
    assert lines["endpoint"].strip() == "mnist-endpoint"
    assert lines["scoring URI"].strip().startswith("http://127.0.0.1:")
    job = lines["job"].strip()
    # What setup.sh recorded, each line printed after its `create` answered (aml-local's show verbs are unit-tested).
    for line in (
        "compute cpu-cluster from compute/cpu-cluster.yml (local)",
        "environment mnist-train:1 from",
        "environment mnist-inference:1 from",
        "component mnist_evaluate:1 created from components/evaluate.yml",
        "component mnist_train:1 created from components/train.yml",
        "data asset mnist:1 created from data/mnist.yml",
    ):
        assert f"==> {line}" in chain.stderr

    # register.sh on its own: the model of a command job, as a new version.
    registered = run(env, SCRIPTS / "register.sh", job)
    assert registered.returncode == 0, registered.stderr
    assert registered.stdout.splitlines() == ["model:   mnist-mlp", "version: 2"]
    shown = json.loads(aml_local(env, "model", "show", "-n", "mnist-mlp", "--version", "2"))
    assert shown["job_name"] == job

    # A rollout of green whose smoke test expects another digit than the image's label fails, and the rollback
    # leaves blue with all traffic and green gone (its server stopped), for real.
    request, label = known_request(small_mnist_dir, tmp_path)
    wrong = str((label + 1) % 10)
    failed = run(
        env | {"SMOKE_REQUEST": str(request), "SMOKE_EXPECTED": wrong},
        SCRIPTS / "deploy.sh",
        "--set",
        "model=azureml:mnist-mlp:1",
        "--set",
        "environment_variables.WORKER_COUNT=1",
    )
    assert failed.returncode != 0
    # Before anything changes, real traffic through the scoring URI: all of it answered by blue.
    assert "==> live traffic: 200 requests through http://127.0.0.1:" in failed.stderr
    assert "(expected blue 100%)" in failed.stderr
    assert "rollout of green failed (smoke test: green predicted" in failed.stderr
    assert f"expected {wrong}); rolled back: blue takes 100% of traffic" in failed.stderr
    shown = json.loads(aml_local(env, "online-endpoint", "show", "-n", "mnist-endpoint"))
    assert shown["traffic"] == {"blue": 100} and shown["mirror_traffic"] == {}

    rollout = run(
        env | {"SMOKE_REQUEST": str(request), "SMOKE_EXPECTED": str(label)},
        SCRIPTS / "deploy.sh",
        "--set",
        "model=azureml:mnist-mlp:1",
        "--set",
        "environment_variables.WORKER_COUNT=1",
    )
    assert rollout.returncode == 0, rollout.stderr[-3000:]
    assert "deployment:  green (100% of traffic; blue deleted)" in rollout.stdout
    steps = [line for line in rollout.stderr.splitlines() if line.startswith("==> ") and "/5 " in line]
    assert [step.split()[1] for step in steps] == ["1/5", "2/5", "3/5", "4/5", "5/5"], rollout.stderr
    # Real requests through the endpoint's one scoring URI at each step, answered as the traffic split says.
    checked = [line for line in rollout.stderr.splitlines() if line.startswith("==> live traffic: 200 requests")]
    assert [line.partition("(expected ")[2] for line in checked] == [
        "blue 100%)",
        "blue 100%)",
        "blue 90%, green 10%)",
        "green 100%)",
    ], rollout.stderr
    assert len({line.split()[6] for line in checked}) == 1, "the scoring URI changed during the rollout"
    shown = json.loads(aml_local(env, "online-endpoint", "show", "-n", "mnist-endpoint"))
    assert shown["traffic"] == {"green": 100} and shown["mirror_traffic"] == {}
    assert shown["scoring_uri"] == checked[0].split()[6]
    record = json.loads(aml_local(env, "online-deployment", "show", "-n", "green", "-e", "mnist-endpoint"))
    master = psutil.Process(int(record["properties"]["aml_local.pids"]))
    router = json.loads((pathlib.Path(env["AML_LOCAL_HOME"]) / "endpoints/mnist-endpoint/router.json").read_text())
    processes = [master, *master.children(recursive=True), psutil.Process(router["pid"])]

    invoked = run(env, SCRIPTS / "invoke.sh", request)
    assert invoked.returncode == 0, invoked.stderr
    assert invoked.stdout.splitlines()[-1] == f"prediction: {label}"
    missing = run(env, SCRIPTS / "invoke.sh", "no-such-request.json")
    assert missing.returncode != 0 and "no such request file: no-such-request.json" in missing.stderr

    keys = json.loads(aml_local(env, "online-endpoint", "get-credentials", "-n", "mnist-endpoint")).values()
    for result in (chain, registered, failed, rollout, invoked, missing):
        assert not any(key in result.stdout + result.stderr for key in keys), "a script printed a key"

    torn_down = run(env, SCRIPTS / "teardown.sh")
    assert torn_down.returncode == 0, torn_down.stderr
    assert torn_down.stdout.strip() == "deleted endpoint mnist-endpoint"
    assert all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in processes)
    again = run(env, SCRIPTS / "teardown.sh")
    assert again.returncode == 0 and "does not exist (local): nothing to delete" in again.stderr
    after = run(env, SCRIPTS / "invoke.sh")
    assert after.returncode != 0 and "online endpoint 'mnist-endpoint' not found" in after.stderr


# --- AML_BACKEND=azure, against the recording fake az -----------------------------------------------------------

FAKE_AZ = REPO_ROOT / "tests" / "fake_az" / "az"
WORKSPACE = ["--resource-group", "rg-mnist", "--workspace-name", "ws-mnist"]


@pytest.fixture
def azure(tmp_path):
    """Run a stage script with AML_BACKEND=azure and the fake az first on PATH, its endpoints' scoring URIs answered
    by the fake front end (tests/fake_az/front_end.py): (run_script, calls, state)."""
    front_end = subprocess.Popen(
        [sys.executable, str(FAKE_AZ.parent / "front_end.py")],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ
        | {"FAKE_AZ_STATE": str(tmp_path / "state.json"), "FAKE_AZ_SCENARIO": str(tmp_path / "scenario.json")},
    )
    port = front_end.stdout.readline().split()[-1]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "az").symlink_to(FAKE_AZ)
    paths = {name: tmp_path / name for name in ("calls.jsonl", "state.json", "scenario.json")}
    paths["scenario.json"].write_text("{}")
    variables = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AML_", "AZURE_", "ENDPOINT_"))}
    variables.update(
        AML_BACKEND="azure",
        AZURE_DEFAULTS_GROUP="rg-mnist",
        AZURE_DEFAULTS_WORKSPACE="ws-mnist",
        AZURE_SUBSCRIPTION_ID="0000-sub",
        AML_POLL_S="0.2",  # the fake answers at once: each step of a job is one poll, however soon it comes
        ROLLOUT_OBSERVE_S="0",
        FAKE_AZ_LOG=str(paths["calls.jsonl"]),
        FAKE_AZ_STATE=str(paths["state.json"]),
        FAKE_AZ_SCENARIO=str(paths["scenario.json"]),
        FAKE_AZ_FRONT_END=f"http://127.0.0.1:{port}",
        PATH=f"{bin_dir}{os.pathsep}{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )

    def run_script(script, *argv, scenario=None, extra=None, timeout=120):
        if scenario is not None:
            paths["scenario.json"].write_text(json.dumps(scenario))
        return run(variables | (extra or {}), SCRIPTS / script, *argv, timeout=timeout)

    run_script.env = variables  # for calling the fake az itself

    def calls():
        """Each recorded call as its command words and flags, without the workspace flags every `az ml` call carries
        (scripts/azure-login.sh's `az login` and `az account get-access-token` take none)."""
        recorded = [json.loads(line) for line in paths["calls.jsonl"].read_text().splitlines()]
        for argv in recorded:
            if argv[0] == "ml":
                assert argv[-7:] == [*WORKSPACE, "--subscription", "0000-sub", "--only-show-errors"], argv
        return [argv[:-7] if argv[0] == "ml" else argv for argv in recorded]

    def state():
        """The fake workspace as the calls left it (endpoints, their deployments and traffic)."""
        return json.loads(paths["state.json"].read_text())

    yield run_script, calls, state
    front_end.kill()
    front_end.wait(timeout=10)


def endpoint_for(subscription="0000-sub", group="rg-mnist", workspace="ws-mnist"):
    digest = hashlib.sha256(f"{subscription}/{group}/{workspace}".encode()).hexdigest()[:8]
    return f"mnist-endpoint-{digest}"


def test_the_fake_az_rejects_what_the_real_cli_rejects(tmp_path):
    env = dict(os.environ) | {
        "FAKE_AZ_LOG": str(tmp_path / "log"),
        "FAKE_AZ_STATE": str(tmp_path / "state"),
        "FAKE_AZ_SCENARIO": str(tmp_path / "none.json"),
    }

    def az(*argv):
        return subprocess.run([str(FAKE_AZ), *argv], cwd=REPO_ROOT, env=env, capture_output=True, text=True)

    unknown = az("ml", "job", "create", "--file", "jobs/train.yml", *WORKSPACE, "--wait")
    assert unknown.returncode == 2 and "unrecognized arguments: --wait" in unknown.stderr
    missing = az("ml", "online-deployment", "delete", "--name", "blue", *WORKSPACE, "--yes")
    assert missing.returncode == 2 and "the following arguments are required: --endpoint-name" in missing.stderr
    no_workspace = az("ml", "job", "show", "--name", "x")
    assert no_workspace.returncode == 2 and "--resource-group, --workspace-name" in no_workspace.stderr
    wrong_kind = az("ml", "online-deployment", "create", "--file", "endpoints/endpoint.yml", *WORKSPACE)
    assert wrong_kind.returncode == 1 and "managedOnlineDeployment.schema.json" in wrong_kind.stderr
    bad_output = az("ml", "job", "show", "--name", "x", *WORKSPACE, "-o", "text")
    assert bad_output.returncode == 2 and "invalid choice: 'text'" in bad_output.stderr
    no_verb = az("ml", "online-endpoint", "rollout", "--name", "x", *WORKSPACE)
    assert no_verb.returncode == 2 and "'ml online-endpoint rollout' is misspelled" in no_verb.stderr


def test_run_all_on_azure_makes_exactly_the_calls_az_accepts(azure):
    run_script, calls, _ = azure
    keys = {"primaryKey": "PRIMARY-key-must-not-show", "secondaryKey": "SECONDARY-key-must-not-show"}
    result = run_script("run-all.sh", "--job", "jobs/sweep.yml", scenario={"keys": keys})
    assert result.returncode == 0, result.stderr
    endpoint = endpoint_for()
    assert f"endpoint:    {endpoint}" in result.stdout and "prediction: 7" in result.stdout
    assert not any(key in result.stdout + result.stderr for key in keys.values())
    made = calls()
    job = made[10][made[10].index("--name") + 1]
    trial = f"{job}_3"
    shown = "[type, status, properties.best_child_run_id]"
    assert [" ".join(argv) for argv in made] == [
        "ml compute create --file compute/cpu-cluster.yml -o none",
        "ml environment create --file environments/train.yml --query version -o tsv",
        "ml environment create --file environments/inference.yml --query version -o tsv",
        "ml component show --name mnist_evaluate --version 1 -o none",
        "ml component create --file components/evaluate.yml -o none",
        "ml component show --name mnist_train --version 1 -o none",
        "ml component create --file components/train.yml -o none",
        "ml data show --name mnist --version 1 -o none",
        "ml data create --file data/mnist.yml -o none",
        f"ml job create --file jobs/sweep.yml --name {job} --query name -o tsv",
        f"ml job show --name {job} --query status -o tsv",
        f"ml job show --name {job} --query status -o tsv",
        f"ml job show --name {job} --query status -o tsv",
        f"ml job show --name {job} --query {shown} -o tsv",  # the sweep: its type and best trial
        f"ml job show --name {trial} --query {shown} -o tsv",  # the best trial: its status
        f"ml job download --name {trial} --output-name model --download-path {made[15][-1]}",
        f"ml job show --name {job} --query {shown} -o tsv",
        f"ml job show --name {trial} --query {shown} -o tsv",
        f"ml model create --file endpoints/model.yml --path azureml://jobs/{trial}/outputs/model"
        " --query [name, version] -o tsv",
        f"ml online-endpoint show --name {endpoint} -o none",
        f"ml online-endpoint create --file endpoints/endpoint.yml --name {endpoint} -o none",
        f"ml online-deployment show --name blue --endpoint-name {endpoint} -o none",
        f"ml online-deployment create --file endpoints/blue-deployment.yml --endpoint-name {endpoint} --all-traffic"
        " --set model=azureml:mnist-mlp:1 --query provisioning_state -o tsv",
        f"ml online-endpoint show --name {endpoint} --query scoring_uri -o tsv",
        f"ml online-endpoint invoke --name {endpoint} --request-file endpoints/sample-request.json -o tsv",
    ]


def test_setup_registers_the_components_once_and_the_fake_answers_them_as_azure_does(azure):
    """setup.sh registers components/*.yml (whose versions are fixed) only when that version is missing, so a second
    run leaves them as they are; the fake answers `component show/list` in az ml's shapes."""
    run_script, calls, state = azure
    first = run_script("setup.sh")
    assert first.returncode == 0, first.stderr
    assert "ready: 1 compute, 2 environments, 2 components, data mnist:1 (azure)" in first.stdout
    again = run_script("setup.sh")
    assert again.returncode == 0, again.stderr
    assert "==> component mnist_train:1 exists" in again.stderr
    made = [" ".join(argv) for argv in calls() if argv[1] == "component"]
    assert made == [
        "ml component show --name mnist_evaluate --version 1 -o none",
        "ml component create --file components/evaluate.yml -o none",
        "ml component show --name mnist_train --version 1 -o none",
        "ml component create --file components/train.yml -o none",
        "ml component show --name mnist_evaluate --version 1 -o none",
        "ml component show --name mnist_train --version 1 -o none",
    ]
    assert sorted(state()["components"]) == ["mnist_evaluate", "mnist_train"]

    def az(*argv):
        return subprocess.run(
            [str(FAKE_AZ), "ml", "component", *argv, *WORKSPACE],
            cwd=REPO_ROOT,
            env=run_script.env,
            capture_output=True,
            text=True,
            check=False,
        )

    shown = json.loads(az("show", "-n", "mnist_train", "-l", "latest").stdout)
    assert (shown["name"], shown["version"], shown["type"]) == ("mnist_train", "1", "command")
    assert shown["id"].endswith("/components/mnist_train/versions/1") and "/codes/" in shown["code"]
    listed = json.loads(az("list").stdout)
    assert [(c["name"], c["latest_version"]) for c in listed] == [("mnist_evaluate", "1"), ("mnist_train", "1")]
    assert json.loads(az("list", "-n", "mnist_train", "-r", "1").stdout) == [shown]
    no_version = az("show", "-n", "mnist_train")
    assert no_version.returncode == 1 and "Must provide either version or label." in no_version.stderr
    missing = az("show", "-n", "mnist_train", "-v", "9")
    assert missing.returncode == 3 and "mnist_train:9" in missing.stderr
    bad_flag = az("list", "--version", "1")
    assert bad_flag.returncode == 2 and "unrecognized arguments: --version" in bad_flag.stderr


def test_waiting_polls_until_the_job_completes_through_transient_errors(azure):
    run_script, calls, _ = azure
    statuses = ["NotStarted", "Queued", "Preparing", "Running", "Running", "Finalizing", "Completed"]
    scenario = {"jobs": {"jobs/train.yml": {"statuses": statuses, "test_acc": 0.9812}}, "fail_job_show": 2}
    result = run_script("train.sh", "jobs/train.yml", "--name", "train_1", scenario=scenario)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "job:           train_1",
        "status:        Completed",
        "test accuracy: 0.9812",
        "model:         azureml://jobs/train_1/outputs/model",
    ]
    polls = [argv for argv in calls() if argv[:3] == ["ml", "job", "show"] and "status" in argv]
    assert len(polls) == 2 + len(statuses)  # two failed calls, then one call per step of the job
    seen = [line.split(": ")[-1] for line in result.stderr.splitlines() if line.startswith("==> job train_1:")]
    assert seen == ["NotStarted", "Queued", "Preparing", "Running", "Finalizing", "Completed"]


# Every status azure-ai-ml 1.35 counts as terminal other than Completed (operations/_run_history_constants.py,
# RunHistoryConstants.TERMINAL_STATUSES) ends the wait.
@pytest.mark.parametrize("ending", ["Failed", "Canceled", "NotResponding", "Paused"])
def test_a_job_that_does_not_complete_stops_the_script_with_its_studio_url(azure, ending):
    run_script, calls, _ = azure
    scenario = {"jobs": {"jobs/train.yml": {"statuses": ["Queued", "Running", ending]}}}
    result = run_script("train.sh", "jobs/train.yml", "--name", "train_2", scenario=scenario)
    assert result.returncode == 1 and result.stdout == ""
    url = "https://ml.azure.com/runs/train_2?wsid=/subscriptions/sub/resourcegroups/rg/workspaces/ws"
    assert result.stderr.splitlines()[-1] == f"ERROR: job train_2 ended {ending}; see {url}"
    assert not any(argv[:3] == ["ml", "job", "download"] for argv in calls())


def test_waiting_gives_up_after_the_timeout_and_says_the_job_still_runs(azure):
    run_script, _, _ = azure
    scenario = {"jobs": {"jobs/train.yml": {"statuses": ["Queued", "Running"]}}}
    result = run_script(
        "train.sh",
        "jobs/train.yml",
        "--name",
        "train_3",
        scenario=scenario,
        extra={"AML_WAIT_TIMEOUT_S": "2", "AML_POLL_S": "1"},  # the wait lasts 2 s either way: fewer `az` processes
    )
    assert result.returncode == 1
    assert "ERROR: job train_3 is still Running after 2s (AML_WAIT_TIMEOUT_S); it was not canceled" in result.stderr
    assert "wait again with scripts/wait.sh train_3" in result.stderr


def test_a_sweep_without_a_best_trial_is_not_registered(azure):
    run_script, calls, _ = azure
    scenario = {"jobs": {"jobs/sweep.yml": {"best_child_run_id": None}}}
    trained = run_script("train.sh", "jobs/sweep.yml", "--name", "sweep_1", scenario=scenario)
    assert trained.returncode == 1
    assert "sweep job sweep_1 names no best trial (properties.best_child_run_id is empty)" in trained.stderr
    registered = run_script("register.sh", "sweep_1")
    assert registered.returncode == 1 and "names no best trial" in registered.stderr
    assert not any(argv[:3] == ["ml", "model", "create"] for argv in calls())


def test_a_pipelines_model_comes_from_its_sweep_nodes_best_trial(azure):
    """The pipeline path against children answered as Azure answers them: generic jobs without a type, named by
    the service, each with its node's name as display_name. register.sh reads the node types from the pipeline's
    own record and finds the sweep node's child by that name."""
    run_script, calls, state = azure
    nodes = yaml.safe_load((REPO_ROOT / "jobs" / "pipeline.yml").read_text())["jobs"]
    assert not any("display_name" in node for node in nodes.values()), "register.sh finds a node's job by its name"
    trained = run_script("train.sh", "jobs/pipeline.yml", "--name", "pipe_1")
    assert trained.returncode == 0, trained.stderr
    registered = run_script("register.sh", "pipe_1")
    assert registered.returncode == 0, registered.stderr
    children = {c["display_name"]: c["name"] for c in state()["children"].values() if c["parent"] == "pipe_1"}
    assert set(children) == {"sweep_train", "evaluate"} and not children["sweep_train"].startswith("pipe_1")
    sweep = children["sweep_train"]
    assert f"pipeline pipe_1: its sweep node sweep_train is job {sweep}" in registered.stderr
    made = [" ".join(argv) for argv in calls()]
    assert "ml job show --name pipe_1 --query jobs -o json" in made
    assert "ml job list --parent-job-name pipe_1 --query [?display_name=='sweep_train'].name -o tsv" in made
    assert not any("type==" in call for call in made), "a pipeline's children carry no type on Azure"
    created = [argv for argv in calls() if argv[:3] == ["ml", "model", "create"]]
    assert created[-1][created[-1].index("--path") + 1] == f"azureml://jobs/{sweep}_3/outputs/model"
    assert trained.stdout.splitlines()[-1] == f"model:         azureml://jobs/{sweep}_3/outputs/model"


def test_a_pipeline_without_a_sweep_node_is_not_registered(azure, tmp_path):
    run_script, calls, _ = azure
    spec = tmp_path / "pipeline.yml"
    spec.write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json\ntype: pipeline\n"
        "jobs:\n  evaluate:\n    type: command\n    component: ../components/evaluate.yml\n"
    )
    assert run_script("submit.sh", spec, "--name", "pipe_2").returncode == 0
    refused = run_script("register.sh", "pipe_2")
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1] == (
        "ERROR: pipeline job pipe_2 has no sweep node (its nodes: az ml job show --name pipe_2 --query jobs)"
    )
    two = tmp_path / "two-sweeps.yml"
    two.write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json\ntype: pipeline\n"
        "jobs:\n  first:\n    type: sweep\n  second:\n    type: sweep\n"
    )
    assert run_script("submit.sh", two, "--name", "pipe_4").returncode == 0
    ambiguous = run_script("register.sh", "pipe_4")
    assert ambiguous.returncode == 1
    assert "ERROR: pipeline job pipe_4 has more than one sweep node (first second): register the one" in (
        ambiguous.stderr
    )
    assert not any(argv[:3] == ["ml", "model", "create"] for argv in calls())


def test_the_fake_answers_a_pipelines_children_in_the_shape_azure_ai_ml_gives_them(azure):
    """The fake's child jobs have only fields azure-ai-ml's _BaseJob dump has (built here with the SDK itself from a
    run-history Run, as _run_operations.get_run_children does), and, like it, no `type`."""
    from azure.ai.ml._restclient.runhistory.models import Run
    from azure.ai.ml.entities._job.job import Job

    run_script, _, _ = azure
    assert run_script("submit.sh", "jobs/pipeline.yml", "--name", "pipe_3").returncode == 0
    listed = subprocess.run(
        [str(FAKE_AZ), "ml", "job", "list", "--parent-job-name", "pipe_3", *WORKSPACE],
        env=run_script.env,
        capture_output=True,
        text=True,
        check=True,
    )
    children = json.loads(listed.stdout)
    run = Run(
        {
            "runId": "child",
            "parentRunId": "pipe_3",
            "displayName": "sweep_train",
            "experimentId": "guid",
            "status": "Completed",
            "properties": {"best_child_run_id": "child_3"},
            "tags": {"k": "v"},
            "createdUtc": "2024-01-01T00:00:00Z",
            "description": "d",
            "compute": {"target": "cpu-cluster"},
            "services": {"Studio": {"endpoint": "https://ml.azure.com/runs/child", "type": "Studio"}},
        }
    )
    sdk_child = Job._from_rest_object(run)._to_dict()
    assert "type" not in sdk_child
    assert {c["display_name"] for c in children} == {"sweep_train", "evaluate"}
    for child in children:
        assert "type" not in child and set(child) <= set(sdk_child) | {"id"}, child
    sweep = next(c for c in children if c["display_name"] == "sweep_train")
    assert sweep["properties"]["best_child_run_id"] == f"{sweep['name']}_3"


def test_a_jobs_type_comes_from_its_yaml_not_its_file_name(azure, tmp_path):
    run_script, _, _ = azure
    quick = run_script("train.sh", "jobs/sweep-quick.yml", "--name", "quick_1")
    assert quick.returncode == 0, quick.stderr
    assert "sweep quick_1: the model of its best trial, quick_1_3" in quick.stderr
    assert quick.stdout.splitlines()[-1] == "model:         azureml://jobs/quick_1_3/outputs/model"
    # A sweep file without `type` is a command job to azure-ai-ml (Job._resolve_cls_and_type), which its sweep
    # fields then fail: the fake refuses it as the SDK's validation would.
    untyped = tmp_path / "sweep.yml"
    untyped.write_text((REPO_ROOT / "jobs" / "sweep.yml").read_text().replace("type: sweep\n", "", 1))
    refused = run_script("submit.sh", untyped)
    assert refused.returncode == 1 and "a command job (type: command) with $schema" in refused.stderr
    assert "sweepJob.schema.json" in refused.stderr


def test_the_fake_az_takes_each_verbs_own_short_aliases(tmp_path):
    """-r is --request-file for invoke, --traffic for update, --max-results for job list; -p is --parent-job-name
    for job list and --download-path for job download (az_spec.json records where each is declared)."""
    env = dict(os.environ) | {
        "FAKE_AZ_LOG": str(tmp_path / "log"),
        "FAKE_AZ_STATE": str(tmp_path / "state"),
        "FAKE_AZ_SCENARIO": str(tmp_path / "scenario.json"),
    }
    (tmp_path / "scenario.json").write_text(json.dumps(LIVE_BLUE))

    def az(*argv):
        return subprocess.run([str(FAKE_AZ), *argv], cwd=REPO_ROOT, env=env, capture_output=True, text=True)

    endpoint = endpoint_for()
    invoked = az("ml", "online-endpoint", "invoke", "-n", endpoint, "-r", "endpoints/sample-request.json", *WORKSPACE)
    assert invoked.returncode == 0, invoked.stderr
    updated = az("ml", "online-endpoint", "update", "-n", endpoint, "-r", "blue=100", *WORKSPACE, "-o", "json")
    assert updated.returncode == 0 and json.loads(updated.stdout)["traffic"] == {"blue": 100}, updated.stderr
    assert az("ml", "job", "create", "-f", "jobs/train.yml", "-n", "j1", *WORKSPACE).returncode == 0
    listed = az("ml", "job", "list", "-p", "j1", "-r", "5", *WORKSPACE)
    assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed.stderr
    download = az("ml", "job", "download", "-n", "j1", "--output-name", "model", "-p", str(tmp_path / "d"), *WORKSPACE)
    assert download.returncode == 0 and (tmp_path / "d" / "named-outputs" / "model" / "test_metrics.json").is_file()
    wrong = az("ml", "job", "show", "-n", "j1", "-r", "5", *WORKSPACE)
    assert wrong.returncode == 2 and "unrecognized arguments: -r" in wrong.stderr
    no_set = az("ml", "online-endpoint", "invoke", "-n", endpoint, "--set", "a=1", *WORKSPACE)
    assert no_set.returncode == 2 and "unrecognized arguments: --set" in no_set.stderr
    local = az("ml", "online-endpoint", "show", "-n", endpoint, "--local", *WORKSPACE, "-o", "none")
    assert local.returncode == 0, local.stderr
    bad_local = az("ml", "online-endpoint", "show", "-n", endpoint, "--local", "maybe", *WORKSPACE)
    assert bad_local.returncode == 2 and "invalid choice: 'maybe'" in bad_local.stderr
    many = az("ml", "job", "create", "-f", "jobs/train.yml", "--set", "inputs.epochs=2", "display_name=x", *WORKSPACE)
    assert many.returncode == 0, many.stderr
    spec = json.loads((FAKE_AZ.parent / "az_spec.json").read_text())
    for command in spec["commands"].values():
        for flag, info in command["flags"].items():
            assert info["source"] in spec["sources"], flag


@pytest.fixture
def oidc_server():
    """GitHub's OIDC token endpoint as a job sees it (ACTIONS_ID_TOKEN_REQUEST_URL, bearer
    ACTIONS_ID_TOKEN_REQUEST_TOKEN), on 127.0.0.1: it answers {"value": <token>} and records each request."""
    import http.server
    import threading
    import urllib.parse

    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
            requests.append({"audience": query.get("audience"), "authorization": self.headers["Authorization"]})
            body = json.dumps({"value": "fake-oidc-jwt"}).encode()
            ok = self.headers["Authorization"] == "bearer request-token"
            self.send_response(200 if ok else 401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body if ok else b"{}")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield (
        {
            "ACTIONS_ID_TOKEN_REQUEST_URL": f"http://127.0.0.1:{server.server_address[1]}/token?api-version=2.0",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "request-token",
            "AZURE_CLIENT_ID": "client-id",
            "AZURE_TENANT_ID": "tenant-id",
        },
        requests,
    )
    server.shutdown()
    server.server_close()


def test_a_long_wait_signs_in_again_before_the_cached_tokens_run_out(azure, oidc_server):
    """The cached tokens last 4 `az ml` calls here (token_lifetime_calls); signing in every 1 s while polling every
    0.5 s keeps them fresh with a new GitHub OIDC token each time. Without it the same wait fails."""
    run_script, calls, state = azure
    github, requests = oidc_server
    statuses = ["Queued", "Preparing", "Running", "Running", "Running", "Finalizing", "Completed"]
    scenario = {
        "jobs": {"jobs/train.yml": {"statuses": statuses}},
        "token_lifetime_calls": 4,
        "oidc_token": "fake-oidc-jwt",
    }
    waited = run_script(
        "train.sh",
        "jobs/train.yml",
        "--name",
        "long_1",
        scenario=scenario,
        extra=github | {"AML_RELOGIN_S": "1", "AML_POLL_S": "0.5"},
    )
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.splitlines()[-1] == "model:         azureml://jobs/long_1/outputs/model"
    logins = [argv for argv in calls() if argv[0] == "login"]
    assert logins and state()["logins"] == len(logins) == len(requests)
    for argv in logins:
        assert argv == [
            "login",
            "--service-principal",
            "--username",
            "client-id",
            "--tenant",
            "tenant-id",
            "--federated-token",
            "fake-oidc-jwt",
            "--output",
            "none",
        ]
    assert all(
        r == {"audience": ["api://AzureADTokenExchange"], "authorization": "bearer request-token"} for r in requests
    )
    scopes = [argv[3] for argv in calls() if argv[:2] == ["account", "get-access-token"]]
    assert scopes == [
        "https://management.azure.com/.default",
        "https://ml.azure.com/.default",
        "https://storage.azure.com/.default",
    ] * len(logins)
    assert "fake-oidc-jwt" not in waited.stdout + waited.stderr and "request-token" not in waited.stderr

    pathlib.Path(run_script.env["FAKE_AZ_STATE"]).unlink()  # a fresh workspace, signed in just now
    expired = run_script("train.sh", "jobs/train.yml", "--name", "long_2", scenario=scenario, extra=github)
    assert expired.returncode == 1
    assert "ERROR: job long_2: 'job show' failed 3 times in a row (azure)" in expired.stderr
    assert "AADSTS700024" in expired.stderr


def test_signing_in_again_needs_githubs_oidc_request_variables(azure):
    run_script, _, _ = azure
    result = run_script("azure-login.sh", extra={"AZURE_CLIENT_ID": "c", "AZURE_TENANT_ID": "t"})
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("ERROR: ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN are not set")
    assert not pathlib.Path(run_script.env["FAKE_AZ_LOG"]).exists(), "az ran"


LIVE_BLUE = {"endpoints": {endpoint_for(): {"traffic": {"blue": 100}, "deployments": ["blue"]}}}


def rollout_calls(made):
    """The state-changing calls of a rollout, in order, as short strings."""
    wanted = {
        ("online-deployment", "create"),
        ("online-deployment", "delete"),
        ("online-endpoint", "update"),
        ("online-endpoint", "invoke"),
    }
    shown = []
    for argv in made:
        if tuple(argv[1:3]) in wanted:
            detail = [
                argv[i + 1]
                for i, word in enumerate(argv)
                if word in ("--name", "--traffic", "--mirror-traffic", "--deployment-name", "--file")
            ]
            shown.append(" ".join([argv[1], argv[2], *detail]))
    return shown


@pytest.mark.slow  # real traffic through the fake front end at every rollout step
def test_an_update_rolls_green_out_step_by_step_and_deletes_blue(azure):
    run_script, calls, _ = azure
    result = run_script("deploy.sh", "--set", "model=azureml:mnist-mlp:4", scenario=LIVE_BLUE)
    assert result.returncode == 0, result.stderr
    endpoint = endpoint_for()
    assert "deployment:  green (100% of traffic; blue deleted)" in result.stdout
    assert rollout_calls(calls()) == [
        "online-deployment create endpoints/green-deployment.yml",
        f"online-endpoint invoke {endpoint} green",
        f"online-endpoint update {endpoint} green=10",
        f"online-endpoint update {endpoint} green=0",
        f"online-endpoint update {endpoint} blue=90 green=10",
        f"online-endpoint invoke {endpoint} green",
        f"online-endpoint update {endpoint} blue=0 green=100",
        "online-deployment delete blue",
    ]
    # Real requests through the scoring URI at each step (the fake front end answers them by the fake's traffic).
    checked = [line for line in result.stderr.splitlines() if line.startswith("==> live traffic: 200 requests")]
    assert [line.partition("(expected ")[2] for line in checked] == [
        "blue 100%)",
        "blue 100%)",
        "blue 90%, green 10%)",
        "green 100%)",
    ], result.stderr
    assert f"/{endpoint}/score" in checked[0]
    canary = checked[2].partition(": ")[2].partition("(expected")[0]
    green_answers = int(canary.partition("green ")[2].split()[0])
    assert 1 <= green_answers <= 39, canary  # 10% of 200 within 4.5 standard deviations
    # The next update goes the other way: green is live, so blue is the candidate.
    again = run_script("deploy.sh", "--set", "model=azureml:mnist-mlp:5")
    assert again.returncode == 0, again.stderr
    assert "deployment:  blue (100% of traffic; green deleted)" in again.stdout


@pytest.mark.slow  # real traffic through the fake front end at every rollout step
def test_the_traffic_check_fails_on_a_wrong_split_a_refused_key_or_a_failing_deployment(azure):
    run_script, _, _ = azure
    endpoint = endpoint_for()
    live = LIVE_BLUE | {
        "endpoints": {endpoint: {"traffic": {"blue": 70, "green": 30}, "deployments": ["blue", "green"]}}
    }
    pathlib.Path(run_script.env["FAKE_AZ_STATE"]).write_text(json.dumps(live | {"jobs": {}, "models": {}}))
    uri = f"{run_script.env['FAKE_AZ_FRONT_END']}/{endpoint}/score"

    def check(*expect, key="fake-primary-key", scenario=None):
        pathlib.Path(run_script.env["FAKE_AZ_SCENARIO"]).write_text(json.dumps(scenario or {}))
        return subprocess.run(
            [sys.executable, str(SCRIPTS / "traffic.py"), uri, "--requests", "300", "--expect", *expect],
            input=key,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    right = check("blue=70", "green=30")
    assert right.returncode == 0, right.stdout + right.stderr
    wrong = check("blue=100")
    assert wrong.returncode == 1 and "green answered" in wrong.stdout and "expected none" in wrong.stdout
    skewed = check("blue=10", "green=90")
    assert skewed.returncode == 1 and "expected 10% (" in skewed.stdout
    refused = check("blue=70", "green=30", key="not-the-key")
    assert refused.returncode == 1 and "HTTP 401" in refused.stdout
    failing = check("blue=70", "green=30", scenario={"invoke": {"green": {"error": "model crashed"}}})
    assert failing.returncode == 1 and "HTTP 424 from green" in failing.stdout


def test_a_failing_smoke_test_rolls_back_before_any_traffic_moves(azure):
    run_script, calls, state = azure
    scenario = LIVE_BLUE | {"invoke": {"green": {"error": "(BadRequest) upstream request timeout"}}}
    result = run_script("rollout.sh", "--set", "model=azureml:mnist-mlp:4", scenario=scenario)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        "ERROR: rollout of green failed (smoke test: invoking green failed: ERROR: (BadRequest) upstream request"
        " timeout); rolled back: blue takes 100% of traffic"
    )
    endpoint = endpoint_for()
    assert rollout_calls(calls()) == [
        "online-deployment create endpoints/green-deployment.yml",
        f"online-endpoint invoke {endpoint} green",
        "online-deployment delete green",
    ]
    assert state()["endpoints"][endpoint]["traffic"] == {"blue": 100}
    assert state()["endpoints"][endpoint]["deployments"] == ["blue"]


@pytest.mark.slow  # real traffic through the fake front end at every rollout step
def test_a_wrong_prediction_and_a_failed_create_roll_back_too(azure):
    run_script, calls, _ = azure
    wrong = run_script("rollout.sh", scenario=LIVE_BLUE | {"invoke": {"green": {"predictions": [1]}}})
    assert wrong.returncode == 1
    assert "smoke test: green predicted 1 for endpoints/sample-request.json, expected 7" in wrong.stderr
    failed = run_script("rollout.sh", scenario=LIVE_BLUE | {"deployment_create": {"green": "Failed"}})
    assert failed.returncode == 1
    assert "rollout of green failed (creating green failed); rolled back: blue takes 100%" in failed.stderr
    endpoint = endpoint_for()
    assert rollout_calls(calls())[-2:] == [
        "online-deployment create endpoints/green-deployment.yml",
        "online-deployment delete green",
    ]
    shown = run_script("rollout.sh", "--live-colour")
    assert shown.stdout.strip() == "blue", f"traffic of {endpoint} moved"


def test_bad_settings_fail_with_one_clear_line(azure):
    run_script, calls, _ = azure
    bad_name = run_script("teardown.sh", extra={"ENDPOINT_NAME": "1-mnist"})
    assert bad_name.returncode == 1
    assert bad_name.stderr.splitlines()[-1].startswith("ERROR: ENDPOINT_NAME '1-mnist': expected 3 to 32 letters")
    no_group = run_script("teardown.sh", extra={"AZURE_DEFAULTS_GROUP": ""})
    assert no_group.returncode == 1 and "ERROR: AZURE_DEFAULTS_GROUP is not set" in no_group.stderr
    for poll in ("soon", "0", "0.0", "-1", "1e3"):
        bad_poll = run_script("train.sh", extra={"AML_POLL_S": poll})
        assert bad_poll.returncode == 1
        assert (
            bad_poll.stderr.splitlines()[-1] == f"ERROR: AML_POLL_S must be a positive number of seconds (got '{poll}')"
        )
        assert "Traceback" not in bad_poll.stderr
    bad_mirror = run_script("rollout.sh", scenario=LIVE_BLUE, extra={"ROLLOUT_MIRROR_PERCENT": "60"})
    assert bad_mirror.returncode == 1 and "ROLLOUT_MIRROR_PERCENT must be 0 to 50 (got '60')" in bad_mirror.stderr
    for result in (bad_name, no_group, bad_poll, bad_mirror):
        assert "Traceback" not in result.stderr
    assert not any(argv[1:3] == ["online-deployment", "create"] for argv in calls())
