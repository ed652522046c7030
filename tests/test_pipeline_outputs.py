"""Pipeline outputs as Azure/azureml-examples' cli/jobs/basics samples use them: a node's reserved `artifacts` output
(its run's artifacts), a `type: uri_file` output that is a file, an output's `path` on a datastore
(azureml://datastores/<datastore>/paths/..., with ${{name}}) and its `mode` (rw_mount, upload), and what
`job download --output-name` / `--all` bring back of them. The samples' YAML is kept as it is but for `environment:`
(their curated Azure images become the test project's tiny-env, which the project venv satisfies)."""

import json
from pathlib import Path

import pytest

from aml_local import cli
from aml_local.jobs import verbs as job

pytestmark = pytest.mark.slow

ENVIRONMENT = "azureml:tiny-env@latest"

# azureml-examples cli/jobs/basics/hello-pipeline-default-artifacts-serverless.yml: the first node writes
# ./outputs/world.txt, the second reads it from the first's reserved `artifacts` output.
DEFAULT_ARTIFACTS = f"""\
$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
display_name: hello_pipeline_default_artifacts
jobs:
  hello_job:
    command: echo "hello" && echo "world" > ./outputs/world.txt
    environment: {ENVIRONMENT}
    compute: azureml:cpu-cluster
    outputs:
      artifacts:
  world_job:
    command: cat ${{{{inputs.world_input}}}}/outputs/world.txt
    environment: {ENVIRONMENT}
    compute: azureml:cpu-cluster
    inputs:
      world_input: ${{{{parent.jobs.hello_job.outputs.artifacts}}}}
"""

# The older hello-pipeline-default-artifacts.yml writes into ${{outputs.artifacts}} itself and reads world.txt at the
# top of the artifacts (its `${{jobs.hello_job...}}` binding is spelled with `parent.` here, as the SDK binds only
# that form: azure/ai/ml/_utils/utils.py, "the binding target starts with parent.jobs").
ARTIFACTS_WRITTEN_BY_THE_COMMAND = DEFAULT_ARTIFACTS.replace(
    "./outputs/world.txt", "${{outputs.artifacts}}/world.txt"
).replace("${{inputs.world_input}}/outputs/world.txt", "${{inputs.world_input}}/world.txt")

# azureml-examples cli/jobs/basics/hello-pipeline-customize-output-file-serverless.yml: a pipeline output of type
# uri_file at a path of the workspace blob store, rw_mount, the node writing the file itself.
CUSTOMIZE_OUTPUT_FILE = f"""\
$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
display_name: hello_pipeline_customize_output_file
settings:
    default_compute: azureml:serverless

outputs:
  output:
    type: uri_file
    path: azureml://datastores/workspaceblobstore/paths/${{{{name}}}}/hello_world.txt
    mode: rw_mount
jobs:
  hello_world:
    command: echo "hello" && echo "world" > ${{{{outputs.output}}}}
    environment: {ENVIRONMENT}
    compute: azureml:cpu-cluster
    outputs:
      output: ${{{{parent.outputs.output}}}}
"""

# azureml-examples cli/jobs/basics/hello-pipeline-customize-output-folder-serverless.yml: a node's own uri_folder
# output at a datastore path.
CUSTOMIZE_OUTPUT_FOLDER = f"""\
$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
display_name: hello_pipeline_customize_output_folder
settings:
    default_compute: azureml:serverless
jobs:
  hello_world:
    command: echo "hello" && echo "world" > ${{{{outputs.output}}}}/hello_world-folder.txt
    environment: {ENVIRONMENT}
    outputs:
      output:
        type: uri_folder
        path: azureml://datastores/workspaceblobstore/paths/${{{{name}}}}/
"""

# A uri_file output with no path, passed from one node to the next (written anew: the samples' basics pass folders)
# and promoted to a pipeline output uploaded when the node ends.
FILE_BETWEEN_NODES = f"""\
$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
outputs:
  greeting:
    type: uri_file
    mode: upload
jobs:
  hello_job:
    command: echo "hello world" > ${{{{outputs.greeting}}}} && test ! -e WRITTEN
    environment: {ENVIRONMENT}
    outputs:
      greeting: ${{{{parent.outputs.greeting}}}}
  world_job:
    command: test -f ${{{{inputs.greeting}}}} && cat ${{{{inputs.greeting}}}}
    environment: {ENVIRONMENT}
    inputs:
      greeting: ${{{{parent.jobs.hello_job.outputs.greeting}}}}
"""


@pytest.fixture
def project(tmp_path, project_environments):
    root = tmp_path / "project"
    root.mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'tiny'\n")
    project_environments(root)
    return root


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write(project: Path, text: str, name: str) -> Path:
    path = project / name
    path.write_text(text)
    return path


def run_pipeline(capsys, project, text, name) -> str:
    code, out, err = run_cli(capsys, "job", "create", "-f", write(project, text, f"{name}.yml"), "--stream", "-n", name)
    assert code == 0, err[-2000:]
    assert job.show(name)["status"] == "Completed"
    return out


def download(capsys, target: Path, *argv) -> Path:
    code, _, err = run_cli(capsys, "job", "download", *argv, "--download-path", target)
    assert code == 0, err
    return target


def test_a_nodes_artifacts_output_is_what_its_run_uploaded(home, project, tmp_path, capsys):
    out = run_pipeline(capsys, project, DEFAULT_ARTIFACTS, "arts")
    assert "[world_job] world\n" in out  # cat of ${{inputs.world_input}}/outputs/world.txt

    # Downloading the node's `artifacts` output gives its run's artifacts, as its default download does.
    named = download(capsys, tmp_path / "named", "-n", "arts_hello_job", "--output-name", "artifacts")
    assert (named / "named-outputs" / "artifacts" / "outputs" / "world.txt").read_text() == "world\n"
    default = download(capsys, tmp_path / "default", "-n", "arts_hello_job")
    assert (default / "artifacts" / "outputs" / "world.txt").read_text() == "world\n"
    assert sorted(p.name for p in (default / "artifacts").iterdir()) == ["outputs", "user_logs"]
    everything = download(capsys, tmp_path / "all", "-n", "arts_hello_job", "--all")
    assert (everything / "named-outputs" / "artifacts" / "outputs" / "world.txt").is_file()


def test_a_command_that_writes_into_its_artifacts_output_writes_the_runs_artifacts(home, project, tmp_path, capsys):
    out = run_pipeline(capsys, project, ARTIFACTS_WRITTEN_BY_THE_COMMAND, "written")
    assert "[world_job] world\n" in out
    default = download(capsys, tmp_path / "default", "-n", "written_hello_job")
    assert (default / "artifacts" / "world.txt").read_text() == "world\n"


def test_a_uri_file_output_at_a_datastore_path_is_that_file(home, project, tmp_path, capsys):
    run_pipeline(capsys, project, CUSTOMIZE_OUTPUT_FILE, "filed")
    # ${{name}} is the pipeline job's name; the datastore is a folder of the local store.
    written = home / "datastores" / "workspaceblobstore" / "filed" / "hello_world.txt"
    assert written.read_text() == "world\n"
    shown = job.show("filed")["outputs"]["output"]
    assert shown == {"type": "uri_file", "mode": "rw_mount", "path": str(written)}
    named = download(capsys, tmp_path / "named", "-n", "filed", "--output-name", "output")
    assert (named / "named-outputs" / "output" / "hello_world.txt").read_text() == "world\n"


def test_a_folder_output_at_a_datastore_path_in_upload_mode(home, project, tmp_path, capsys):
    # The sample as it is (rw_mount), and with --set mode=upload: written elsewhere, moved there when the node ends.
    spec = write(project, CUSTOMIZE_OUTPUT_FOLDER, "folder.yml")
    for name, extra in (("mounted", ()), ("uploaded", ("--set", "jobs.hello_world.outputs.output.mode=upload"))):
        code, _, err = run_cli(capsys, "job", "create", "-f", spec, *extra, "--stream", "-n", name)
        assert code == 0, err[-2000:]
        written = home / "datastores" / "workspaceblobstore" / name / "hello_world-folder.txt"
        assert written.read_text() == "world\n"
        recorded = json.loads((home / "jobs" / f"{name}_hello_world" / "job.json").read_text())
        assert recorded["outputs"]["output"]["path"] == str(written.parent)
        assert recorded["outputs"]["output"]["mode"] == ("upload" if extra else "rw_mount")
        written_by_the_command = Path(recorded["resolved_command"].split(" > ")[-1])
        assert written_by_the_command.is_relative_to(home / "jobs" / f"{name}_hello_world" / "upload") == bool(extra)
    named = download(capsys, tmp_path / "named", "-n", "uploaded_hello_world", "--output-name", "output")
    assert (named / "named-outputs" / "output" / "hello_world-folder.txt").read_text() == "world\n"


def test_a_uri_file_output_passes_a_file_to_the_next_node(home, project, tmp_path, capsys):
    # Uploaded: the file is not at its place while the command runs, only once it has ended.
    place = home / "jobs" / "passed_hello_job" / "outputs" / "greeting"
    out = run_pipeline(capsys, project, FILE_BETWEEN_NODES.replace("WRITTEN", str(place)), "passed")
    assert "[world_job] hello world\n" in out
    assert place.read_text() == "hello world\n"
    shown = job.show("passed")["outputs"]["greeting"]
    assert shown["type"] == "uri_file" and shown["mode"] == "upload"
    assert Path(shown["path"]).resolve() == place  # the pipeline's output is the node's file
    named = download(capsys, tmp_path / "named", "-n", "passed", "--output-name", "greeting")
    assert (named / "named-outputs" / "greeting" / "greeting").read_text() == "hello world\n"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "./here/hello_world.txt",
            "outputs.output.path ./here/hello_world.txt: an output's path is a datastore path here, "
            "azureml://datastores/<datastore>/paths/<path>",
        ),
        (
            "azureml://datastores/workspaceblobstore/paths/${{job_id}}/x.txt",
            "${{job_id}} is not known in an output's path (${{name}}, ${{output_name}}, ${{default_datastore}} are)",
        ),
        ("azureml://datastores/workspaceblobstore/paths/../x.txt", "the path on the datastore must stay inside it"),
        ("azureml://datastores/workspaceblobstore/paths/", "a uri_file output's path names its file"),
    ],
)
def test_an_output_path_that_cannot_be_written_is_refused_at_create(home, project, capsys, path, expected):
    sample_path = "azureml://datastores/workspaceblobstore/paths/${{name}}/hello_world.txt"
    text = CUSTOMIZE_OUTPUT_FILE.replace(sample_path, path)
    code, out, err = run_cli(capsys, "job", "create", "-f", write(project, text, "bad.yml"))
    assert code == 1 and out == ""
    assert err.startswith("ERROR: ") and expected in err and err.count("\n") == 1, err
    assert job.list_jobs() == []  # nothing recorded


def test_an_output_mode_azure_refuses_is_refused_with_the_sdks_message(home, project, capsys):
    text = CUSTOMIZE_OUTPUT_FILE.replace("mode: rw_mount", "mode: ro_mount")
    code, _, err = run_cli(capsys, "job", "create", "-f", write(project, text, "bad.yml"))
    assert code == 1
    # azure-ai-ml's OutputSchema (azure/ai/ml/_schema/job/input_output_entry.py): mount, upload, rw_mount, direct.
    assert "Value 'ro_mount' passed is not in set ['mount', 'upload', 'rw_mount', 'direct']" in err, err
    assert job.list_jobs() == []
