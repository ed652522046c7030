"""`aml-local component create/show/list/archive/restore`, as `az ml component` has them, and pipelines whose
nodes name registered components (`azureml:<name>:<version>`, `azureml:<name>@latest`, a sweep node's trial too):
versions and labels, archived versions left out of @latest, the code snapshot a registered version keeps, az's
output shapes and exit codes (3 for a missing one named by --name/--version, 1 for other errors)."""

import json
from pathlib import Path

import pytest

from aml_local import cli
from aml_local.jobs import verbs as job

TRIAL_SCRIPT = """
import json, os, sys
import mlflow
quality, out = float(sys.argv[1]), sys.argv[2]
with mlflow.start_run():
    mlflow.log_metric("acc", quality, step=1)
with open(os.path.join(out, "result.json"), "w") as f:
    json.dump({"quality": quality}, f)
"""

TRIAL = """\
$schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json
name: tiny_trial
display_name: Tiny trial
version: "1"
type: command
inputs:
  quality:
    type: number
    default: 0.1
outputs:
  model:
    type: uri_folder
code: src
environment: azureml:tiny-env@latest
command: python trial.py ${{inputs.quality}} ${{outputs.model}}
"""

# No version: each create with other code is the next version.
REPORT = """\
$schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json
name: tiny_report
type: command
inputs:
  model:
    type: uri_folder
outputs:
  report:
    type: uri_folder
code: src
environment: azureml:tiny-env@latest
command: python report.py ${{inputs.model}} ${{outputs.report}}
"""

REPORT_SCRIPT = """
import shutil, sys
shutil.copy(sys.argv[1] + "/result.json", sys.argv[2] + "/best.json")
open(sys.argv[2] + "/who.txt", "w").write({who!r})
"""

PIPELINE = """\
$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
experiment_name: registered-components
outputs:
  report:
    type: uri_folder
jobs:
  sweep_step:
    type: sweep
    trial: azureml:tiny_trial:1
    search_space:
      quality:
        type: choice
        values: [0.7]
    sampling_algorithm: grid
    objective:
      goal: maximize
      primary_metric: acc
    limits:
      max_total_trials: 1
      max_concurrent_trials: 1
  report_step:
    type: command
    component: azureml:tiny_report@latest
    inputs:
      model: ${{parent.jobs.sweep_step.outputs.model}}
    outputs:
      report: ${{parent.outputs.report}}
"""


@pytest.fixture
def project(tmp_path, project_environments):
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'tiny'\n")
    project_environments(root)
    (root / "src" / "trial.py").write_text(TRIAL_SCRIPT)
    (root / "src" / "report.py").write_text(REPORT_SCRIPT.format(who="first"))
    (root / "trial.yml").write_text(TRIAL)
    (root / "report.yml").write_text(REPORT)
    return root


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def shown(capsys, *argv):
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    return json.loads(out) if out.strip() else None


def test_create_show_and_list_as_az_ml_component_prints_them(home, project, capsys):
    created = shown(capsys, "component", "create", "-f", project / "trial.yml")
    assert created["name"] == "tiny_trial" and created["version"] == "1" and created["type"] == "command"
    assert created["id"] == "azureml:/local/components/tiny_trial/versions/1"
    assert created["display_name"] == "Tiny trial" and created["inputs"]["quality"]["default"] == "0.1"
    assert created["command"] == "python trial.py ${{inputs.quality}} ${{outputs.model}}"
    assert created["environment"] == "azureml:tiny-env@latest"  # found in the project only: kept as written
    assert set(created["creation_context"]) == {"created_at"}
    # The code as Azure uploads it: a copy that later edits of src/ do not change.
    assert (Path(created["code"]) / "trial.py").read_text() == TRIAL_SCRIPT
    # The same YAML again under its version is answered as it is; other content under it is refused.
    assert shown(capsys, "component", "create", "-f", project / "trial.yml") == created
    code, out, err = run_cli(capsys, "component", "create", "-f", project / "trial.yml", "--set", "display_name=x")
    assert code == 1 and out == "" and err.count("\n") == 1 and "tiny_trial:1 already exists" in err
    # --version and --name as az applies them (after --set); a registered environment's label is pinned.
    shown(capsys, "environment", "create", "-f", project / "environments" / "tiny-env.yml")
    other = shown(capsys, "component", "create", "-f", project / "trial.yml", "-n", "tiny_other", "-v", "7")
    assert (other["name"], other["version"]) == ("tiny_other", "7")
    assert other["environment"] == "azureml:/local/environments/tiny-env/versions/1"

    # A YAML without a version: the next one each time (azure-ai-ml's auto-increment).
    assert shown(capsys, "component", "create", "-f", project / "report.yml", "--query", "version") == "1"
    assert shown(capsys, "component", "create", "-f", project / "report.yml", "--query", "version") == "2"

    assert shown(capsys, "component", "show", "-n", "tiny_report", "-l", "latest", "--query", "version") == "2"
    assert shown(capsys, "component", "show", "-n", "tiny_report", "-v", "1", "--query", "version") == "1"
    listed = shown(capsys, "component", "list")
    assert [(c["name"], c["latest_version"]) for c in listed] == [
        ("tiny_other", "7"),
        ("tiny_report", "2"),
        ("tiny_trial", "1"),
    ]
    assert listed[1]["id"] == "azureml:/local/components/tiny_report"
    assert shown(capsys, "component", "list", "-n", "tiny_report", "--query", "[].version") == ["2", "1"]
    assert shown(capsys, "component", "list", "-r", "1", "--query", "[].name") == ["tiny_other"]
    # -o table: az's transform_component (azext_mlv2/manual/_format.py), the version columns for versions only.
    code, out, _ = run_cli(capsys, "component", "list", "-r", "1", "-o", "table")
    assert [line.split() for line in out.splitlines()][::2] == [["Name", "Latest", "version"], ["tiny_other", "7"]]
    code, out, _ = run_cli(capsys, "component", "list", "-n", "tiny_report", "-o", "table")
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["Name", "Version", "Component", "type"]
    assert rows[2:] == [["tiny_report", "2", "command"], ["tiny_report", "1", "command"]]


def test_archive_restore_and_latest(home, project, capsys):
    for _ in range(2):
        shown(capsys, "component", "create", "-f", project / "report.yml", "-o", "none")
    assert shown(capsys, "component", "archive", "-n", "tiny_report", "-v", "2") is None
    assert shown(capsys, "component", "show", "-n", "tiny_report", "-l", "latest", "--query", "version") == "1"
    # An archived version is still found by its number.
    assert shown(capsys, "component", "show", "-n", "tiny_report", "-v", "2", "--query", "version") == "2"
    versions = "[].version"
    assert shown(capsys, "component", "list", "-n", "tiny_report", "--query", versions) == ["1"]
    assert shown(capsys, "component", "list", "-n", "tiny_report", "--archived-only", "--query", versions) == ["2"]
    assert shown(capsys, "component", "list", "-n", "tiny_report", "--include-archived", "--query", versions) == [
        "2",
        "1",
    ]
    # Without --version or --label, the component itself (its container) is archived: gone from the plain list.
    shown(capsys, "component", "archive", "-n", "tiny_report")
    assert shown(capsys, "component", "list") == []
    assert shown(capsys, "component", "list", "--archived-only", "--query", "[].latest_version") == ["1"]
    shown(capsys, "component", "restore", "-n", "tiny_report")
    shown(capsys, "component", "restore", "-n", "tiny_report", "-v", "2")
    assert shown(capsys, "component", "show", "-n", "tiny_report", "-l", "latest", "--query", "version") == "2"


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["show", "-n", "nope", "-v", "1"], 3, "component 'nope' not found"),
        (["show", "-n", "tiny_trial", "-v", "9"], 3, "component tiny_trial:9 not found"),
        (["archive", "-n", "nope"], 3, "component 'nope' not found"),
        (["restore", "-n", "tiny_trial", "-v", "9"], 3, "component tiny_trial:9 not found"),
        (["show", "-n", "tiny_trial"], 1, "Must provide either version or label."),
        (["show", "-n", "tiny_trial", "-v", "1", "-l", "latest"], 1, "Cannot specify both version and label."),
        (["list", "--archived-only", "--include-archived"], 1, "Cannot provide both archived-only and include"),
        (["show", "-n", "tiny_trial", "-v", "1", "--registry-name", "azureml"], 1, "--registry-name azureml"),
        (["create", "-f", "no-such.yml"], 1, "no such file"),
        (["show", "-n", "tiny_trial", "-v", "1", "--stage", "x"], 2, "unrecognized arguments: --stage"),
    ],
)
def test_errors_are_one_line_with_az_exit_codes(home, project, capsys, argv, code, message):
    shown(capsys, "component", "create", "-f", project / "trial.yml", "-o", "none")
    got, out, err = run_cli(capsys, "component", *argv)
    assert got == code and out == "", err
    assert err.startswith("ERROR: ") and message in err and err.count("\n") == 1, err


def test_a_pipeline_of_registered_components_runs_the_versions_it_names(home, project, capsys):
    shown(capsys, "component", "create", "-f", project / "trial.yml", "-o", "none")
    shown(capsys, "component", "create", "-f", project / "report.yml", "-o", "none")  # 1: writes "first"
    (project / "src" / "report.py").write_text(REPORT_SCRIPT.format(who="second"))
    shown(capsys, "component", "create", "-f", project / "report.yml", "-o", "none")  # 2: writes "second"
    shown(capsys, "component", "archive", "-n", "tiny_report", "-v", "2")  # so @latest is 1 again
    # The registered snapshots run, whatever src/ says now.
    (project / "src" / "report.py").write_text("raise SystemExit('the source, not the registered snapshot')\n")
    (project / "src" / "trial.py").write_text("raise SystemExit('the source, not the registered snapshot')\n")
    spec = project / "pipeline.yml"
    spec.write_text(PIPELINE)
    code, _, err = run_cli(capsys, "job", "create", "-f", spec, "--stream", "-n", "pl")
    assert code == 0, err
    result = job.show("pl")
    assert result["status"] == "Completed"
    assert {n: (j["status"], j["component"]) for n, j in result["jobs"].items()} == {
        "sweep_step": ("Completed", "azureml:tiny_trial:1"),
        "report_step": ("Completed", "azureml:tiny_report:1"),
    }
    report = Path(result["outputs"]["report"]["path"])
    assert (report / "who.txt").read_text() == "first"
    assert json.loads((report / "best.json").read_text()) == {"quality": 0.7}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("azureml:tiny_report@latest", "azureml:nope@latest"), "jobs.report_step.component azureml:nope@latest"),
        (("azureml:tiny_trial:1", "azureml:tiny_trial:9"), "name: tiny_trial and version: 9"),
    ],
)
def test_a_missing_component_is_refused_at_create_in_one_line(home, project, capsys, change, expected):
    shown(capsys, "component", "create", "-f", project / "trial.yml", "-o", "none")
    shown(capsys, "component", "create", "-f", project / "report.yml", "-o", "none")
    spec = project / "pipeline.yml"
    spec.write_text(PIPELINE.replace(*change))
    code, out, err = run_cli(capsys, "job", "create", "-f", spec, "-n", "pl")
    assert code == 1 and out == ""
    assert err.startswith("ERROR: ") and err.count("\n") == 1, err
    assert expected in err and "component create" in err
    assert not (home / "jobs" / "pl").exists()


def test_the_repositorys_pipeline_of_registered_components_loads_and_names_them():
    from azure.ai.ml import load_job

    repo = Path(__file__).resolve().parents[1]
    pipeline = load_job(repo / "jobs" / "pipeline-registered.yml")
    names = {n: (node.trial if node.type == "sweep" else node.component) for n, node in pipeline.jobs.items()}
    components = {}
    for path in sorted((repo / "components").glob("*.yml")):
        text = path.read_text()
        components[path.stem] = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line[:5] == "name:")
    assert names == {
        "sweep_train": f"{components['train']}@latest",
        "evaluate": f"{components['evaluate']}@latest",
    }
    plain = (repo / "jobs" / "pipeline.yml").read_text()
    registered = (repo / "jobs" / "pipeline-registered.yml").read_text()
    # The same pipeline but for the components it names (and its description and display name).
    same = plain.split("settings:", 1)[1].replace("trial: ../components/train.yml", "trial: azureml:mnist_train@latest")
    same = same.replace("component: ../components/evaluate.yml", "component: azureml:mnist_evaluate@latest")
    assert registered.split("settings:", 1)[1] == same
