"""What the job kinds share, below them all: loading the YAML with the SDK (and az's --set), a job's name, its
inputs and outputs, its command with ${{...}} resolved, its code snapshot, its MLflow run and job folder, and
starting its driver (in the foreground for --stream, else detached)."""

import datetime
import getpass
import os
import random
import re
import shlex
import shutil
import string
import subprocess
import sys
from pathlib import Path, PurePosixPath

from aml_local import AmlLocalError, job_records, specs, store
from aml_local.assets import data
from aml_local.assets import environment as environment_module
from aml_local.jobs import kinds, runner

JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")
PLACEHOLDER = re.compile(r"\$\{\{\s*([A-Za-z_]+)\.([A-Za-z0-9_]+)\s*\}\}")
OPTIONAL_PART = re.compile(r"\$\[\[(.*?)\]\]", re.S)
_ADJECTIVES = "brave calm eager gentle happy jolly keen lively loyal merry neat proud quiet sincere tidy witty"
_NOUNS = "lamp hat river stone cloud leaf kettle bridge garden pepper tiger violin window yarn zebra"


def _generated_name():
    # Azure ML names jobs like "sincere_hat_7k2hk6t5y1".
    suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=10))
    return f"{random.choice(_ADJECTIVES.split())}_{random.choice(_NOUNS.split())}_{suffix}"


def load(file, set_pairs=()):
    """Load a job YAML with the SDK, applying --set overrides the way the CLI does (params_override)."""
    path = Path(file)
    overrides = specs.parse_set_pairs(set_pairs, example="inputs.epochs=2")
    job = specs.load("load_job", path)
    for key, _ in overrides:
        parts = key.split(".")
        if parts[0] in ("inputs", "outputs") and len(parts) > 1:
            known = getattr(job, parts[0]) or {}
            if parts[1] not in known:
                names = ", ".join(known) or "none"
                raise AmlLocalError(f"--set {key}: {path} has no {parts[0][:-1]} {parts[1]!r} ({parts[0]}: {names})")
    if overrides:
        job = specs.load("load_job", path, [{k: v} for k, v in overrides])
    return job


def _input_value(name, node_input, base_dir):
    """(value shown by `show`, value substituted into the command), or None for an unset input."""
    value = getattr(node_input, "_data", node_input)
    if hasattr(value, "type") and hasattr(value, "path"):
        if value.path is None:
            return None
        local = data.local_path(name, str(value.path), base_dir, str(value.type))
        shown = {"type": value.type, "path": str(value.path), "mode": value.mode or "ro_mount"}
        return shown, str(local)
    if value is None:
        return None
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return text, text


def resolve_command(command: str, values: dict) -> str:
    """Substitute ${{inputs.x}}/${{outputs.x}}; keep $[[...]] parts only when all their inputs are set."""

    def optional(match):
        refs = PLACEHOLDER.findall(match[1])
        return match[1] if all(f"{kind}.{key}" in values for kind, key in refs) else ""

    command = OPTIONAL_PART.sub(optional, command)

    def substitute(match):
        ref = f"{match[1]}.{match[2]}"
        if ref not in values:
            raise AmlLocalError(f"command: ${{{{{ref}}}}} names no {match[1][:-1]} of this job")
        return shlex.quote(values[ref])

    return PLACEHOLDER.sub(substitute, command)


def _copy_code(source: Path, target: Path):
    """Snapshot the code folder as `az ml job create` uploads it: azure-ai-ml's own walk and ignore file (the root
    .amlignore, else .gitignore, as git wildmatch patterns; azure/ai/ml/_utils/_asset_utils.py get_ignore_file and
    get_upload_files_from_folder, which upload_directory uses), so the job sees exactly the files Azure's would."""
    from azure.ai.ml._utils._asset_utils import get_ignore_file, get_upload_files_from_folder

    target.mkdir(parents=True)
    home = store.home()
    # A registered component's code snapshot lives in the store (assets/component.py): it is the code, whole.
    in_store = Path(source).resolve().is_relative_to(home)
    for path, relative in get_upload_files_from_folder(source, ignore_file=get_ignore_file(source)):
        if not in_store and Path(path).resolve().is_relative_to(home):
            # aml-local's own store is no part of the code (Azure ML has none); inside the code folder (an installed
            # aml-local's default ./.aml-local, next to a job YAML without `code:`) it would be copied into itself.
            continue
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)  # symbolic links are followed, as the upload follows them


def new_name(name):
    """A valid name no job has yet: the given one, or one generated the way Azure ML does."""
    name = name or _generated_name()
    if not JOB_NAME.match(name):
        raise AmlLocalError(f"--name {name!r}: use letters, digits, '_' and '-' (at most 255, first a letter or digit)")
    if job_records.exists(name):
        raise AmlLocalError(f"--name {name}: a job with this name already exists")
    return name


def resolve_inputs(inputs, yaml_dir):
    """(inputs as `show` prints them, {"inputs.x": value substituted into commands}) for a job's inputs."""
    shown, values = {}, {}
    for input_name, node_input in (inputs or {}).items():
        resolved = _input_value(input_name, node_input, yaml_dir)
        if resolved is not None:
            shown[input_name], values[f"inputs.{input_name}"] = resolved
    return shown, values


def output_field(node_output, key):
    """A field (type, mode, path) of an output as the SDK holds it: an Output, a node's or pipeline's output (its
    _data), or a dict; None when it is not given."""
    spec = getattr(node_output, "_data", node_output)
    return spec.get(key) if isinstance(spec, dict) else getattr(spec, key, None)


def output_type(node_output):
    return output_field(node_output, "type") or "uri_folder"


def output_mode(node_output):
    """rw_mount (Azure's default for outputs), upload or direct; `mount` is rw_mount (an output is written)."""
    mode = str(output_field(node_output, "mode") or "rw_mount")
    return "rw_mount" if mode == "mount" else mode


def output_path(node_output) -> str | None:
    """Where the output is to be stored, as the YAML gives it (azureml://datastores/<datastore>/paths/<path>)."""
    path = output_field(node_output, "path")
    return str(path) if path else None


# A command's reserved output: `outputs: artifacts:` with no path of its own is the run's artifacts, what the job
# logged and what Azure uploads from ./outputs and ./logs: azureml-examples' cli/jobs/basics/
# hello-pipeline-default-artifacts(-serverless).yml writes ./outputs/world.txt and the next node reads
# ${{inputs.world_input}}/outputs/world.txt from ${{parent.jobs.hello_job.outputs.artifacts}}; the older version of
# that sample writes ${{outputs.artifacts}}/world.txt and reads ${{inputs.world_input}}/world.txt, so in the command
# ${{outputs.artifacts}} is the artifacts' folder itself. A uri_file named so, or one given a path, is an ordinary
# output (our reading: the reserved meaning is that of a folder at its default place).
ARTIFACTS_OUTPUT = job_records.ARTIFACTS
# An output's `path`: "A path on an Azure Machine Learning datastore: azureml://datastores/<data_store_name>/paths/
# <path>", the one location the pipeline docs list for outputs besides a data asset ("Manage component and pipeline
# inputs and outputs"); locally the datastore's folder of the store (data.DATASTORE_URI), where inputs read it.
# The placeholders such a path may hold: "By default, component output is stored in azureml://datastores/
# ${{default_datastore}}/paths/${{name}}/${{output_name}} ... The job {name} is resolved at job execution time, and
# the {output_name} is the name you defined in the component YAML" (the same page); the default datastore, "if not
# set, ... the workspace blob storage".
PATH_PLACEHOLDER = re.compile(r"\$\{\{\s*([A-Za-z_]+)\s*\}\}")
DEFAULT_DATASTORE = "workspaceblobstore"


def resolve_output_uri(uri: str, field: str, values: dict) -> str:
    """An output path with ${{name}}, ${{output_name}} and ${{default_datastore}} replaced by `values`' own."""

    def substitute(match):
        if match[1] not in values:
            known = ", ".join(f"${{{{{key}}}}}" for key in values)
            raise AmlLocalError(f"{field} {uri}: ${{{{{match[1]}}}}} is not known in an output's path ({known} are)")
        return str(values[match[1]])

    return PATH_PLACEHOLDER.sub(substitute, uri)


def datastore_path(uri: str, field: str, output_type_name: str = "uri_folder") -> Path:
    """The local file or folder of an output path azureml://datastores/<datastore>/paths/<path>."""
    match = data.DATASTORE_URI.match(uri)
    if not match:
        raise AmlLocalError(
            f"{field} {uri}: an output's path is a datastore path here, azureml://datastores/<datastore>/paths/<path> "
            "(written under $AML_LOCAL_HOME/datastores/<datastore>/<path>)"
        )
    local = data.datastore_folder(match, field, uri)
    if output_type_name == "uri_file" and not PurePosixPath(match["path"]).name:
        raise AmlLocalError(f"{field} {uri}: a uri_file output's path names its file, e.g. .../paths/<folder>/<file>")
    return local


def _output_places(name, outputs, job_dir: Path, file) -> dict:
    """Each output of a job: {"type", "mode", "path"}, the path where it is written (a datastore path's local file or
    folder, else outputs/<name> in the job's folder) or None for the reserved artifacts output (the run's artifacts,
    known once its run is recorded)."""
    places = {}
    for output_name, node_output in (outputs or {}).items():
        kind, given = output_type(node_output), output_path(node_output)
        if given:
            field = f"{file}: outputs.{output_name}.path"
            values = {"name": name, "output_name": output_name, "default_datastore": DEFAULT_DATASTORE}
            path = datastore_path(resolve_output_uri(given, field, values), field, kind)
        elif output_name == ARTIFACTS_OUTPUT and kind != "uri_file":
            path = None
        else:
            path = job_dir / "outputs" / output_name
        places[output_name] = {"type": kind, "mode": output_mode(node_output), "path": path}
    return places


def _make_place(path: Path, kind: str):
    """A folder output's folder, or a uri_file output's parent folder (the command writes the file)."""
    (path.parent if kind == "uri_file" else path).mkdir(parents=True, exist_ok=True)


def environment_spec(environment, file) -> dict | None:
    """What a job's (or trial's, or node's) `environment:` asks for, as recorded in its job.json for the runner,
    which prepares it before the command starts (assets/environment.py)."""
    spec = environment_module.resolve(environment, file=file)
    return spec.to_record() if spec is not None else None


# Inputs Azure mounts read-only or downloads (azure.ai.ml.constants InputOutputModes): the job must not be able to
# change what it reads, so it gets its own copy (our choice over a read-only bind mount, which needs root or a user
# namespace that not every machine allows). A ro_mount copy's files are also made read-only, so a job not run as
# root gets the error Azure's read-only mount gives; root can still write, but only into the copy.
COPIED_INPUT_MODES = ("ro_mount", "download", "eval_mount", "eval_download")
READ_ONLY_INPUT_MODES = ("ro_mount", "eval_mount")


def _deliver_inputs(job_dir: Path, shown_inputs: dict, values: dict) -> dict:
    """`values` with every ro_mount/download path input replaced by the job's own copy under job_dir/inputs/<name>
    (rw_mount and direct inputs are the original path, as Azure mounts or passes the data itself)."""
    delivered = dict(values)
    for input_name, shown in shown_inputs.items():
        key = f"inputs.{input_name}"
        if not isinstance(shown, dict) or shown.get("mode") not in COPIED_INPUT_MODES or key not in values:
            continue
        source = Path(values[key])
        folder = job_dir / "inputs" / input_name
        if source.is_dir():
            shutil.copytree(source, folder)
            target = folder
        else:
            folder.mkdir(parents=True)
            target = folder / source.name
            shutil.copy2(source, target)
        if shown["mode"] in READ_ONLY_INPUT_MODES:
            for path in [folder, *folder.rglob("*")]:
                if path.is_file():
                    path.chmod(path.stat().st_mode & ~0o222)
        delivered[key] = str(target)
    return delivered


def prepare_command(
    name,
    *,
    file,
    command,
    code,
    yaml_dir,
    shown_inputs,
    input_values,
    outputs,
    experiment_name=None,
    environment=None,
    environment_spec=None,
    environment_variables=None,
    distribution=None,
    resources=None,
    compute=None,
    tags=None,
    display_name=None,
    description=None,
    parent_run_id=None,
    parent_job_name=None,
    params=None,
    job_type="command",
):
    """Record a command job (MLflow run, job folder with job.json, code snapshot, output folders) ready to run.

    Used for command jobs, sweep trials and pipeline steps alike; `params` are logged on the run (a trial's
    sampled hyperparameters). `environment` is what `show` prints; `environment_spec` (from `environment_spec()`)
    is what the runner prepares.

    The folders, as on Azure: the command runs in a snapshot of the code (`code/`) that also holds `./outputs` and
    `./logs`, made before it starts (what lands there becomes the run's artifacts when it ends, jobs/runner.py);
    named outputs are `outputs/<name>`, or the local folder of their datastore `path`, or for the reserved
    `artifacts` output the run's artifacts (a `uri_file` output is that file: the command writes it); an `upload`
    output is written to `upload/<name>` and moved into place when the command ends: azure.ai.ml.Output's mode
    "upload", "Upload the data from the compute target", against "rw_mount", "Read-write mount the data" (`direct`,
    which passes the storage URI on Azure, is the local path here: our reading, as a command cannot write to an
    azureml:// URI locally); ro_mount/download inputs are copies under `inputs/`."""
    check_distribution(distribution, file)
    job_dir = store.jobs_dir() / name
    places = _output_places(name, outputs, job_dir, file)  # a bad output path fails before anything is recorded
    resolve_command(command, dict(input_values) | {f"outputs.{o}": o for o in places})  # and a bad ${{...}}
    code_source = (yaml_dir / code).resolve() if code else yaml_dir
    if not code_source.is_dir():
        raise AmlLocalError(f"{file}: code {code} is not a folder ({code_source})")
    experiment_name, experiment_id, run_id, tags = record_run(name, job_type, experiment_name, tags, parent_run_id)
    for key, value in (params or {}).items():
        store.client().log_param(run_id, key, value)
    shown_outputs, values, staging = {}, dict(input_values), {}
    for output_name, place in places.items():
        place["path"] = place["path"] or job_records.artifacts_folder(run_id)
        shown_outputs[output_name] = {"type": place["type"], "path": str(place["path"]), "mode": place["mode"]}
        if place["mode"] == "upload":
            staging[output_name] = str(job_dir / "upload" / output_name)
        values[f"outputs.{output_name}"] = staging.get(output_name, str(place["path"]))
    job_dir.mkdir(parents=True)
    _copy_code(code_source, job_dir / "code")
    for folder in ("outputs", "logs"):
        (job_dir / "code" / folder).mkdir(exist_ok=True)
    for output_name, place in places.items():
        _make_place(place["path"], place["type"])
        if output_name in staging:
            _make_place(Path(staging[output_name]), place["type"])
    values = _deliver_inputs(job_dir, shown_inputs, values)
    resolved_command = resolve_command(command, values)
    spec = {
        "name": name,
        "type": job_type,
        "display_name": display_name or name,
        "description": description,
        "experiment_name": experiment_name,
        "experiment_id": experiment_id,
        "mlflow_run_id": run_id,
        "parent_run_id": parent_run_id,
        "parent_job_name": parent_job_name,
        "file": str(Path(file).resolve()),
        "command": command,
        "resolved_command": resolved_command,
        "code": str(code_source),
        "code_dir": str(job_dir / "code"),
        "environment": ref(environment),
        "environment_spec": environment_spec,
        "environment_variables": {str(k): str(v) for k, v in (environment_variables or {}).items()},
        "compute": "local" if compute in (None, "local") else ref(compute),
        "distribution": distribution,
        "resources": resources,
        "inputs": shown_inputs,
        "outputs": shown_outputs,
        "output_staging": staging,
        "tags": tags,
        "created_at": now(),
        "created_by": getpass.getuser(),
    }
    job_records.write_spec(job_dir, spec)
    return spec


def check_distribution(distribution, where):
    """Refuse a distribution type the runner cannot start (jobs/runner.py DISTRIBUTIONS runs tensorflow, pytorch and
    mpi: one process per worker or rank); `where` starts the message (the file, or the file and the node)."""
    kind = (distribution or {}).get("type")
    if kind and kind not in runner.DISTRIBUTIONS:
        runs = ", ".join(runner.DISTRIBUTIONS)
        raise AmlLocalError(f"{where}: distribution type {kind!r} does not run locally ({runs} do)")


def record_run(name, job_type, experiment_name=None, tags=None, parent_run_id=None):
    """The MLflow run that records a job (a child run when parent_run_id is given):
    (experiment name, experiment id, run id, the job's tags as strings)."""
    experiment_name = experiment_name or Path.cwd().name
    experiment_id = store.experiment_id(experiment_name)
    tags = {str(k): str(v) for k, v in (tags or {}).items()}
    run_tags = {**tags, store.TAG_NAME: name, store.TAG_TYPE: job_type, store.TAG_STATUS: "Starting"}
    if parent_run_id:
        run_tags[store.TAG_PARENT] = parent_run_id
    run = store.client().create_run(experiment_id, run_name=name, tags=run_tags)
    return experiment_name, experiment_id, run.info.run_id, tags


def now():
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def launch(spec, stream=False, echo=None):
    """Run a recorded job: in the foreground, streaming its log (--stream), or by a detached driver process."""
    job_dir = store.jobs_dir() / spec["name"]
    kind = kinds.get(spec["type"])
    if stream:
        echo = echo or sys.stdout
        echo.write(
            f"RunId: {spec['name']}\nWeb View: {studio_url(spec)}\n"
            f"Note: compute {spec['compute']} runs as this machine; environment "
            f"{spec.get('environment') or spec.get('trial_template', {}).get('environment')} is prepared before "
            "the command starts (the project venv when it has every requirement, else a venv built from it)."
            f"\n\nStreaming {runner.job_log_paths(job_dir, spec)[0].relative_to(job_dir)}\n"
            f"{'=' * 40}\n\n"
        )
        echo.flush()
        status = kind.run(job_dir, echo=echo)
        echo.write(f"\nExecution Summary\n=================\nRunId: {spec['name']}\nStatus: {status}\n\n")
        echo.flush()
        return None
    return spawn(job_dir, kind.driver_module)


def spawn(job_dir: Path, module: str):
    """Start `python -m <module> JOB_DIR` detached (its own session), as Azure ML runs a job while the CLI returns."""
    with open(job_dir / "runner.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", module, str(job_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            env={**os.environ, "AML_LOCAL_HOME": str(store.home())},
        )


def plain(entity):
    """An SDK settings object (distribution, resources) as the dict `az ml job show` prints."""
    if entity is None:
        return None
    if hasattr(entity, "_to_dict"):
        return entity._to_dict()
    return {k: v for k, v in vars(entity).items() if not k.startswith("_") and v is not None}


def ref(value):
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.startswith("azureml:") else f"azureml:{value}"
    return f"inline {type(value).__name__.lower()}"  # e.g. an environment written into the job YAML


def studio_url(spec):
    """What `services.Studio.endpoint` points at: the job's run in the MLflow UI (`make ui`)."""
    return f"http://127.0.0.1:5000/#/experiments/{spec['experiment_id']}/runs/{spec['mlflow_run_id']}"
