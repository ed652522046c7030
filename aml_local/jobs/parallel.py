"""Parallel jobs (`type: parallel`): a pipeline's parallel node, and the scoring step of a batch endpoint's job
(endpoints/batch/), both run by the mini-batch engine (jobs/minibatch.py) in the job's environment.

Azure runs a parallel job only as a step of a pipeline ("An Azure Machine Learning parallel job can be used only as
a step in a pipeline job", "How to use parallel jobs in pipelines"; azure-ai-ml's load_job refuses a standalone one
with "Unsupported job type: parallel"): so `job create` never reaches this kind with one, and a job of this kind is
always a child, recorded as a command step is (jobs/common.py prepare_command: MLflow run, job folder, code
snapshot, inputs, outputs), with what the engine needs in job.json's `parallel`.

The node's fields, as Azure/azureml-examples cli/jobs/parallel/*/pipeline.yml write them: `input_data`
(${{inputs.<name>}}: a uri_folder's files, or a uri_file, are the items), `mini_batch_size` (files per mini-batch),
`resources.instance_count` and `max_concurrency_per_instance` (worker processes: their product), `retry_settings`
(max_retries, timeout), `error_threshold` (failed items allowed), `mini_batch_error_threshold` (failed
mini-batches allowed), `logging_level`, `environment_variables`, and `task` (type run_function: code, entry_script,
environment, program_arguments with ${{inputs.x}} and ${{outputs.x}}, append_row_to: ${{outputs.<name>}}). Their
defaults are the page's: max_retries 2, timeout 60 s, both thresholds -1, logging_level INFO,
max_concurrency_per_instance the number of cores on a CPU node.

Where the output goes: `append_row_to` names an output; its file is `parallel_run_step.txt` in that output's folder
(the name Azure's ParallelRunStep gives it, "append_row_file_name ... default parallel_run_step.txt", SDK v1 page
"Run batch inference on large amounts of data"), or the file name the output's own path ends with; a batch scoring
job names its file (output_file_name). The entry script gets `--logging_level <level>` after the program arguments,
as Azure passes it (the "Troubleshoot batch endpoints" page's example reads it with parse_known_args).
"""

import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

from aml_local import AmlLocalError, job_records, quiet, store, tracking_server
from aml_local.assets import env_layer, environment
from aml_local.jobs import common, kinds, minibatch, runner

# A parallel job has no schema of its own on Azure (it is always a pipeline's step, shown as a child): the schema of
# the component it is made of.
SCHEMA = "https://azuremlschemas.azureedge.net/latest/parallelComponent.schema.json"
INPUT_REFERENCE = re.compile(r"^\$\{\{\s*inputs\.([A-Za-z0-9_]+)\s*\}\}$")
OUTPUT_REFERENCE = re.compile(r"^\$\{\{\s*outputs\.([A-Za-z0-9_]+)\s*\}\}$")
APPEND_ROW_FILE = "parallel_run_step.txt"
SIZE_SUFFIX = re.compile(r"^\s*\d+(\.\d+)?\s*(kb|mb|gb)\s*$", re.I)
LAYERS = "layers"
OUTCOME_RECORD = "minibatch.json"
FILE_INPUT_TYPES = ("uri_folder", "uri_file")


def settings_from(
    where,
    *,
    mini_batch_size,
    instance_count=None,
    max_concurrency_per_instance=None,
    retry_settings=None,
    error_threshold=None,
    mini_batch_error_threshold=None,
    output_action="append_row",
    logging_level=None,
    default_retries=2,
    default_timeout=60.0,
) -> minibatch.Settings:
    """The engine's settings from a node's or deployment's fields (None: Azure's default), checked."""
    retry = retry_settings or {}
    if not isinstance(retry, dict):
        retry = {k: v for k, v in vars(retry).items() if not k.startswith("_")}
    size_text = str(mini_batch_size if mini_batch_size is not None else 1).strip()
    if SIZE_SUFFIX.match(size_text):
        raise AmlLocalError(
            f"{where}: mini_batch_size {size_text!r}: a size divides tabular (mltable) input, which does not run "
            "locally; give a number of files"
        )
    if not size_text.isdigit():
        raise AmlLocalError(f"{where}: mini_batch_size {size_text!r}: expected a number of files per mini-batch")

    def whole(value, default):
        return int(value) if value is not None else default

    settings = minibatch.Settings(
        mini_batch_size=int(size_text),
        instance_count=whole(instance_count, 1),
        max_concurrency_per_instance=whole(max_concurrency_per_instance, os.cpu_count() or 1),
        max_retries=whole(retry.get("max_retries"), default_retries),
        timeout=float(retry.get("timeout") if retry.get("timeout") is not None else default_timeout),
        error_threshold=whole(error_threshold, -1),
        mini_batch_error_threshold=whole(mini_batch_error_threshold, -1),
        output_action=str(output_action or "append_row").lower(),
        logging_level=str(logging_level or "INFO").upper(),
    )
    return minibatch.check(settings, where)


def prepare(
    name,
    *,
    file,
    yaml_dir,
    code,
    entry_script,
    program_arguments,
    input_data,
    shown_inputs,
    input_values,
    outputs,
    append_row_to,
    settings: minibatch.Settings,
    output_file_name=None,
    environment=None,
    environment_spec=None,
    environment_variables=None,
    experiment_name=None,
    tags=None,
    display_name=None,
    description=None,
    compute=None,
    parent_run_id=None,
    parent_job_name=None,
) -> dict:
    """Record a parallel job ready to run. `input_data` is `${{inputs.<name>}}`; `append_row_to` an output's name
    (None: summary_only, or no file); `outputs` {name: {"type", "mode"}}."""
    where = f"{file}: {display_name or name}" if display_name else str(file)
    match = INPUT_REFERENCE.match(str(input_data or ""))
    if not match:
        raise AmlLocalError(f"{where}: input_data {input_data!r}: expected ${{{{inputs.<name>}}}} of one of its inputs")
    data_input = match[1]
    if data_input not in shown_inputs:
        names = ", ".join(shown_inputs) or "none"
        raise AmlLocalError(f"{where}: input_data: no input {data_input!r} is given (inputs: {names})")
    shown = shown_inputs[data_input]
    if isinstance(shown, dict):
        input_type = shown.get("type")
    else:
        # Bound to another node's output (${{parent.jobs.<node>.outputs.<name>}}): the pipeline passes that output's
        # path, written by then; its type is what it is, a folder or a file.
        input_type = "uri_file" if Path(input_values[f"inputs.{data_input}"]).is_file() else "uri_folder"
    if input_type not in FILE_INPUT_TYPES:
        raise AmlLocalError(
            f"{where}: input_data {data_input}: type {input_type!r} does not run locally (uri_folder and uri_file "
            "do; tabular mltable input does not)"
        )
    if append_row_to is not None and append_row_to not in (outputs or {}):
        raise AmlLocalError(f"{where}: append_row_to: no output {append_row_to!r} (outputs: {', '.join(outputs)})")
    spec = common.prepare_command(
        name,
        file=file,
        command=program_arguments or "",
        code=code,
        yaml_dir=yaml_dir,
        shown_inputs=shown_inputs,
        input_values=input_values,
        outputs=outputs,
        experiment_name=experiment_name,
        environment=environment,
        environment_spec=environment_spec,
        environment_variables=environment_variables,
        resources={"instance_count": settings.instance_count},
        compute=compute,
        tags=tags,
        display_name=display_name,
        description=description,
        parent_run_id=parent_run_id,
        parent_job_name=parent_job_name,
        job_type="parallel",
    )
    code_dir = Path(spec["code_dir"])
    if not (code_dir / entry_script).is_file():
        raise AmlLocalError(f"{where}: task.entry_script {entry_script}: no such file in {spec['code']}")
    output_file = None
    if append_row_to is not None and settings.output_action == "append_row":
        given = (outputs[append_row_to] or {}).get("path") if isinstance(outputs[append_row_to], dict) else None
        file_name = output_file_name or (Path(str(given)).name if given and Path(str(given)).suffix else None)
        output_file = str(Path(spec["outputs"][append_row_to]["path"]) / (file_name or APPEND_ROW_FILE))
    spec["parallel"] = {
        "entry_script": entry_script,
        "input_data": data_input,
        "input_type": input_type,
        "input_path": _delivered(spec, input_values, data_input),
        "append_row_to": append_row_to,
        "output_file": output_file,
        "settings": {k: getattr(settings, k) for k in minibatch.Settings.__dataclass_fields__},
    }
    job_records.write_spec(Path(code_dir).parent, spec)
    return spec


def _delivered(spec, input_values, input_name) -> str:
    """Where the job reads an input: its own copy for ro_mount/download (jobs/common.py delivers those), else the
    path itself."""
    shown = spec["inputs"][input_name]
    original = Path(input_values[f"inputs.{input_name}"])
    if not isinstance(shown, dict) or shown.get("mode") not in common.COPIED_INPUT_MODES:
        return str(original)
    folder = Path(spec["code_dir"]).parent / "inputs" / input_name
    return str(folder if original.is_dir() else folder / original.name)


def _task_field(node, field):
    task = getattr(node, "task", None) or getattr(getattr(node, "component", None), "task", None)
    return getattr(task, field, None) if task is not None else None


def _node_field(node, field):
    value = getattr(node, field, None)
    if value is None:
        value = getattr(getattr(node, "component", None), field, None)
    return value


def prepare_node(node, template, *, name, file, yaml_dir, compute, display_name, **fields) -> dict:
    """A pipeline's parallel node, from the pipeline's template of it (jobs/pipeline.py: inputs resolved, code,
    environment) and the node's own fields."""
    where = f"{file}: jobs.{fields.get('pipeline_node', display_name)}"
    entry_script = _task_field(node, "entry_script")
    if not entry_script:
        raise AmlLocalError(f"{where}: task.entry_script is required (the script with init() and run())")
    if _node_field(node, "partition_keys"):
        raise AmlLocalError(f"{where}: partition_keys: mini-batches by partition of tabular input do not run locally")
    task_type = _task_field(node, "type") or "run_function"
    if task_type != "run_function":
        raise AmlLocalError(f"{where}: task.type {task_type!r}: only run_function runs")
    append_row_to = _task_field(node, "append_row_to")
    output_name = None
    if append_row_to:
        match = OUTPUT_REFERENCE.match(str(append_row_to))
        if not match:
            raise AmlLocalError(f"{where}: task.append_row_to {append_row_to!r}: expected ${{{{outputs.<name>}}}}")
        output_name = match[1]
    resources = getattr(node, "resources", None)
    instance_count = getattr(resources, "instance_count", None) if not isinstance(resources, dict) else None
    if isinstance(resources, dict):
        instance_count = resources.get("instance_count")
    settings = settings_from(
        where,
        mini_batch_size=_node_field(node, "mini_batch_size"),
        instance_count=instance_count,
        max_concurrency_per_instance=_node_field(node, "max_concurrency_per_instance"),
        retry_settings=_node_field(node, "retry_settings"),
        error_threshold=_node_field(node, "error_threshold"),
        mini_batch_error_threshold=_node_field(node, "mini_batch_error_threshold"),
        output_action="append_row" if output_name else "summary_only",
        logging_level=_node_field(node, "logging_level"),
    )
    node_outputs = {}
    for output_name_, output_type in template["outputs"].items():
        declared = getattr((node.outputs or {}).get(output_name_), "_data", None)
        path = getattr(declared, "path", None) if not isinstance(declared, dict) else declared.get("path")
        node_outputs[output_name_] = {"type": output_type} | ({"path": str(path)} if path else {})
    return prepare(
        name,
        file=file,
        yaml_dir=yaml_dir,
        code=template["code"],
        entry_script=entry_script,
        program_arguments=_task_field(node, "program_arguments") or "",
        input_data=_node_field(node, "input_data"),
        shown_inputs=template["inputs"],
        input_values=template["input_values"],
        outputs=node_outputs,
        append_row_to=output_name,
        settings=settings,
        environment=template["environment"],
        environment_spec=template["environment_spec"],
        environment_variables=template["environment_variables"],
        experiment_name=fields["experiment_name"],
        tags=fields["tags"],
        display_name=display_name,
        compute=compute,
        parent_run_id=fields["parent_run_id"],
        parent_job_name=fields["parent_job_name"],
    )


def create(job, file, name=None, set_pairs=(), stream=False, echo=None):
    # Unreachable from `job create` (the SDK refuses a standalone parallel job): said in one line all the same.
    raise AmlLocalError(f"{file}: a parallel job runs only as a step of a pipeline job, as on Azure")


class _Log:
    """The job's event lines: its own log (runner.EventLog: std_log.txt, and the echo when streamed) and, for a
    pipeline's step, the pipeline's log too, so that `job stream` of the pipeline (of a batch scoring job) shows the
    step's progress."""

    def __init__(self, job_dir: Path, spec: dict, echo):
        self.events = runner.EventLog(job_dir, "parallel", echo)
        self.parent = None
        if spec.get("parent_job_name"):
            parent_log = runner.log_paths(job_records.job_dir(spec["parent_job_name"]), 1)[0]
            if parent_log.parent.is_dir():
                self.parent = open(parent_log, "a")  # noqa: SIM115 - closed by close()
        self.prefix = f"[{spec.get('display_name') or spec['name']}] "

    def say(self, text: str):
        self.events.say(text)
        if self.parent is not None:
            self.parent.write(f"{self.prefix}[parallel {time.strftime('%H:%M:%S')}] {text}\n")
            self.parent.flush()

    def close(self):
        self.events.close()
        if self.parent is not None:
            self.parent.close()


def _launcher(spec: dict, job_dir: Path, lower, tracking_uri, settings: minibatch.Settings):
    """launch(index) for the engine: worker `index` in a layer of its own over the environment, with Azure ML's
    variables (as jobs/runner.py gives a command's processes) and the cores split between the workers."""
    threads = str(max(1, (os.cpu_count() or 1) // settings.workers))
    parallel = spec["parallel"]

    def launch(index: int):
        layer = env_layer.make(lower, job_dir / LAYERS / str(index))
        env = layer.process_env(os.environ)
        path = env["PATH"]
        env.update(spec["environment_variables"])
        env.setdefault("OMP_NUM_THREADS", threads)
        env.setdefault("TF_NUM_INTRAOP_THREADS", threads)
        env.update(
            {
                "AZUREML_RUN_ID": spec["name"],
                "MLFLOW_TRACKING_URI": tracking_uri or store.tracking_uri(),
                "MLFLOW_RUN_ID": spec["mlflow_run_id"],
                "MLFLOW_EXPERIMENT_ID": spec["experiment_id"],
                "AML_LOCAL_HOME": str(store.home()),
                "AML_LOCAL_ENTRY_SCRIPT": str(Path(spec["code_dir"]) / parallel["entry_script"]),
                "AML_LOCAL_OUTPUT_ACTION": settings.output_action,
                "PYTHONUNBUFFERED": "1",
                "PATH": path,
            }
        )
        return layer.python, env

    return launch


def _prepare_environment(spec, say):
    """(the venv the workers' layers go over, the tracking URI they log to): as runner.py prepares a command's."""
    if spec.get("environment_spec") is None:
        return env_layer.project_venv(), None
    preparing = []

    def log(line):
        if not preparing and not line.startswith("WARNING"):
            preparing.append(True)
            store.set_status(spec["mlflow_run_id"], "Preparing")
        say(line)

    prepared = environment.prepare(spec["environment_spec"], log)
    store.write_json(Path(spec["code_dir"]).parent / runner.ENVIRONMENT_RECORD, prepared.as_dict())
    tracking_uri = None if prepared.in_project else tracking_server.uri(log)
    return prepared.venv, tracking_uri


def run(job_dir: Path, echo=None) -> str:
    """Run the parallel job in job_dir to its end; returns its final status."""
    job_dir = Path(job_dir)
    spec = json.loads((job_dir / "job.json").read_text())
    parallel = spec["parallel"]
    settings = minibatch.Settings(**parallel["settings"])
    log = _Log(job_dir, spec, echo)
    status, message, outcome = "Failed", None, None
    with runner.driving(job_dir):
        try:
            lower, tracking_uri = _prepare_environment(spec, log.say)
            store.set_status(spec["mlflow_run_id"], "Running")
            input_path, given = Path(parallel["input_path"]), spec["inputs"][parallel["input_data"]]
            given = given["path"] if isinstance(given, dict) else given
            if not input_path.exists():
                raise AmlLocalError(f"input {parallel['input_data']}: {given} does not exist")
            items = minibatch.list_items(input_path, parallel["input_type"])
            if not items:
                raise AmlLocalError(f"input {parallel['input_data']}: the folder {given} has no files to score")
            engine = minibatch.Engine(
                settings,
                launch=_launcher(spec, job_dir, lower, tracking_uri, settings),
                cwd=spec["code_dir"],
                args=[*shlex.split(spec["resolved_command"]), "--logging_level", settings.logging_level],
                logs=Path(spec["code_dir"]) / "logs",
                say=log.say,
            )
            output_file = Path(parallel["output_file"]) if parallel.get("output_file") else None
            outcome = engine.run(items, output_file)
            status, message = outcome.status, outcome.message
        except runner.Canceled as signame:
            status, message = "Canceled", f"canceled by {signame}"
        except AmlLocalError as err:
            status, message = "Failed", str(err)
        except Exception as err:
            status, message = "Failed", f"aml-local could not run the job: {err}"
        finally:
            env_layer.remove(job_dir / LAYERS)
            if outcome is not None:
                store.write_json(job_dir / OUTCOME_RECORD, vars(outcome))
            log.say(f"{status}" + (f": {message}" if message else ""))
            log.close()
            try:
                runner.upload_run_artifacts(spec, job_dir)
            except Exception as err:
                message = (f"{message}; " if message else "") + f"its logs could not be collected: {err}"
                status = "Failed" if status == "Completed" else status
            store.set_status(spec["mlflow_run_id"], status, message)
    return status


def add_to_show(result, spec, run):
    parallel = spec["parallel"]
    result |= {
        "environment": spec["environment"],
        "environment_variables": spec["environment_variables"],
        "resources": spec["resources"],
        "task": {
            "type": "run_function",
            "code": spec["code"],
            "entry_script": parallel["entry_script"],
            "program_arguments": spec["command"] or None,
        },
        "input_data": f"${{{{inputs.{parallel['input_data']}}}}}",
        **{k: v for k, v in parallel["settings"].items() if k not in ("max_retries", "timeout")},
        "retry_settings": {k: parallel["settings"][k] for k in ("max_retries", "timeout")},
    }
    try:
        outcome = json.loads((Path(spec["code_dir"]).parent / OUTCOME_RECORD).read_text())
    except (OSError, ValueError):
        return
    for key in ("items", "mini_batches", "succeeded_items", "failed_items", "failed_mini_batches"):
        result["properties"][f"aml_local.{key}"] = str(outcome[key])


def main(argv=None):
    with quiet.libraries():
        return 0 if run(Path((argv or sys.argv[1:])[0])) == "Completed" else 1


kinds.register(
    kinds.JobKind(
        type="parallel",
        schema=SCHEMA,
        driver_module="aml_local.jobs.parallel",
        create=create,
        run=run,
        add_to_show=add_to_show,
        prepare_node=prepare_node,
    )
)


if __name__ == "__main__":
    sys.exit(main())
