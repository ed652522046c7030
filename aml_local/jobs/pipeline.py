"""Pipeline jobs (`type: pipeline`) run here node by node, as Azure ML schedules them.

Each node (a command component or a sweep over one) becomes a child job of the pipeline's run, named
`<pipeline>_<node>`; nodes run in dependency order, one at a time (this machine has few cores to share).
Inputs bound as `${{parent.inputs.x}}` take the pipeline's input, `${{parent.jobs.n.outputs.o}}` the folder
node n wrote, and outputs bound as `${{parent.outputs.x}}` become the pipeline's outputs. When a node fails
its dependants do not start (unless `settings.continue_on_step_failure`, which still skips the nodes that
need the failed one's outputs) and the pipeline fails naming it.

A node's component (a sweep node's `trial:`) is a YAML file, or a registered component: `azureml:<name>:<version>`
or `azureml:<name>@latest`, resolved when the pipeline is created to the version `component create` registered
(assets/component.py; `@latest` is the newest not archived) and recorded, so the nodes run that version even if
another is registered meanwhile (Azure resolves a node's component when the pipeline is submitted).
"""

import contextlib
import getpass
import json
import re
import shutil
import sys
from pathlib import Path

from aml_local import AmlLocalError, job_records, quiet, store
from aml_local.assets import component as component_module
from aml_local.jobs import common, kinds, runner

PARENT_INPUT = re.compile(r"^\$\{\{\s*parent\.inputs\.([A-Za-z0-9_]+)\s*\}\}$")
NODE_OUTPUT = re.compile(r"^\$\{\{\s*parent\.jobs\.([A-Za-z0-9_]+)\.outputs\.([A-Za-z0-9_]+)\s*\}\}$")
PARENT_OUTPUT = re.compile(r"^\$\{\{\s*parent\.outputs\.([A-Za-z0-9_]+)\s*\}\}$")


def _binding(value):
    """A node input's or output's value as the SDK holds it: a binding string, a literal, an Input, or None. An input
    written out in full whose path is a binding ({type, path: ${{parent...}}, mode}, as azureml-examples' cli/jobs/
    parallel/3a_mnist_batch_identification/pipeline.yml gives a parallel node's input_data) binds as its path does."""
    value = getattr(value, "_data", value)
    path = getattr(value, "path", None)
    if isinstance(path, str) and path.strip().startswith("${{parent."):
        return path.strip()
    return value


def _component(node):
    return node.trial if node.type == "sweep" else node.component


def registered_components(pipeline, file, pinned=None) -> dict[str, str]:
    """Put the registered component in place of each node's `azureml:...` component (or sweep trial), which the SDK
    leaves as text offline; returns {node: "azureml:<name>:<version>"} for those nodes. `pinned` (a recorded
    pipeline's) names the versions to use rather than resolving the references again."""
    resolved = {}
    for node_name, node in (pipeline.jobs or {}).items():
        reference = _component(node) if node.type in ("command", "sweep") else None
        if not isinstance(reference, str):
            continue
        field = f"jobs.{node_name}.{'trial' if node.type == 'sweep' else 'component'}"
        entity, resolved[node_name] = component_module.resolve(
            (pinned or {}).get(node_name, reference), file=file, field=field
        )
        node._component = entity  # what both node.component and a sweep's node.trial read (azure-ai-ml BaseNode)
    return resolved


def dependencies(pipeline, file) -> dict[str, list[str]]:
    """node -> the nodes whose outputs it reads; checks every binding names something that exists."""
    nodes = pipeline.jobs or {}
    if not nodes:
        raise AmlLocalError(f"{file}: jobs: a pipeline needs at least one node")
    needs = {}
    for node_name, node in nodes.items():
        if node.type not in ("command", "sweep", "parallel"):
            raise AmlLocalError(
                f"{file}: jobs.{node_name}: node type {node.type!r} does not run locally (command, sweep and parallel "
                "nodes do)"
            )
        component = _component(node)
        # A parallel node's component has a task (entry script) in place of a command (jobs/parallel.py).
        if node.type != "parallel" and not isinstance(getattr(component, "command", None), str):
            raise AmlLocalError(f"{file}: jobs.{node_name}: expected a command component")
        common.check_distribution(node_distribution(node), f"{file}: jobs.{node_name}")
        needs[node_name] = []
        for input_name, value in (node.inputs or {}).items():
            value = _binding(value)
            if not isinstance(value, str):
                continue
            if m := PARENT_INPUT.match(value):
                if m[1] not in (pipeline.inputs or {}):
                    raise AmlLocalError(
                        f"{file}: jobs.{node_name}.inputs.{input_name}: the pipeline has no input {m[1]!r}"
                    )
            elif m := NODE_OUTPUT.match(value):
                if m[1] not in nodes:
                    raise AmlLocalError(f"{file}: jobs.{node_name}.inputs.{input_name}: no node named {m[1]!r}")
                if m[2] not in (_component(nodes[m[1]]).outputs or {}):
                    raise AmlLocalError(
                        f"{file}: jobs.{node_name}.inputs.{input_name}: node {m[1]} has no output {m[2]!r}"
                    )
                needs[node_name].append(m[1])
        for output_name, value in (node.outputs or {}).items():
            value = _binding(value)
            if isinstance(value, str) and (m := PARENT_OUTPUT.match(value)) and m[1] not in (pipeline.outputs or {}):
                raise AmlLocalError(
                    f"{file}: jobs.{node_name}.outputs.{output_name}: the pipeline has no output {m[1]!r}"
                )
    return needs


def node_distribution(node) -> dict | None:
    """A node's distribution: a command node's own, which azure-ai-ml fills from its component's when the node sets
    none (entities/_builders/command.py: `self.distribution = self.distribution or self.component.distribution`); a
    sweep node's trial component's."""
    return common.plain(getattr(node, "distribution", None) or getattr(_component(node), "distribution", None))


def order(needs, file) -> list[str]:
    """The nodes in an order that runs each after the ones it needs (YAML order among equals)."""
    done, result = set(), []
    while len(result) < len(needs):
        ready = [n for n in needs if n not in done and all(d in done for d in needs[n])]
        if not ready:
            cycle = ", ".join(n for n in needs if n not in done)
            raise AmlLocalError(f"{file}: jobs: the nodes {cycle} depend on each other in a cycle")
        result.append(ready[0])
        done.add(ready[0])
    return result


def create(job, file, name=None, set_pairs=(), stream=False, echo=None):
    """`job create` of a pipeline job: check and record it, then run its nodes."""
    name = common.new_name(name or job.name)
    yaml_dir = Path(file).resolve().parent
    registered = registered_components(job, file)
    needs = dependencies(job, file)
    node_order = order(needs, file)
    for node_name in node_order:  # every input that does not wait for another node must resolve now, and every
        node_inputs(job, node_name, yaml_dir, lambda node, output: None)  # environment and output path
        node_environment_spec(job.jobs[node_name], node_name, file)
        node_outputs(job, node_name, name, file)
    shown_inputs, _ = common.resolve_inputs({k: _binding(v) for k, v in (job.inputs or {}).items()}, yaml_dir)
    settings = job.settings
    job_dir = store.jobs_dir() / name
    outputs = pipeline_outputs(job, name, file, job_dir)
    experiment_name, experiment_id, run_id, tags = common.record_run(name, "pipeline", job.experiment_name, job.tags)
    (job_dir / "outputs").mkdir(parents=True)
    spec = {
        "name": name,
        "type": "pipeline",
        "display_name": job.display_name or name,
        "description": job.description,
        "experiment_name": experiment_name,
        "experiment_id": experiment_id,
        "mlflow_run_id": run_id,
        "file": str(Path(file).resolve()),
        "set_pairs": list(set_pairs or ()),
        "compute": common.ref(getattr(settings, "default_compute", None)) or "local",
        "settings": {
            k: v
            for k, v in {
                "default_compute": common.ref(getattr(settings, "default_compute", None)),
                "continue_on_step_failure": getattr(settings, "continue_on_step_failure", None),
            }.items()
            if v is not None
        },
        "nodes": {
            n: {"type": job.jobs[n].type, "job_name": f"{name}_{n}", "needs": needs[n]}
            | ({"component": registered[n]} if n in registered else {})
            for n in node_order
        },
        "inputs": shown_inputs,
        "outputs": outputs,
        "tags": tags,
        "created_at": common.now(),
        "created_by": getpass.getuser(),
    }
    job_records.write_spec(job_dir, spec)
    common.launch(spec, stream=stream, echo=echo)
    return spec


def pipeline_outputs(pipeline, pipeline_name, file, job_dir: Path) -> dict:
    """The pipeline's outputs as its record keeps them, {"type", "mode", "path"}: the local file or folder of a
    datastore path, else outputs/<name> in the pipeline's folder (a link to the node's output once it has run)."""
    outputs = {}
    for output_name, value in (pipeline.outputs or {}).items():
        value, path = _binding(value), job_dir / "outputs" / output_name
        if common.output_path(value):
            field = f"{file}: outputs.{output_name}.path"
            uri = output_uri(common.output_path(value), field, pipeline_name, output_name, default_datastore(pipeline))
            path = common.datastore_path(uri, field, common.output_type(value))
        outputs[output_name] = {"type": common.output_type(value), "mode": common.output_mode(value), "path": str(path)}
    return outputs


def add_to_show(result, spec, run):
    result["settings"] = spec["settings"]
    nodes = {}
    for node_name, node in spec["nodes"].items():
        try:
            status, _ = job_records.current_status(node["job_name"])
        except AmlLocalError:
            status = "NotStarted"
        nodes[node_name] = {"type": node["type"], "name": node["job_name"], "status": status}
        if "component" in node:  # a registered component, as the pipeline resolved it
            nodes[node_name]["component"] = node["component"]
    result["jobs"] = nodes
    for output in result["outputs"].values():
        output.setdefault("mode", "rw_mount")  # a pipeline recorded before its outputs' modes were


def default_datastore(pipeline) -> str:
    """settings.default_datastore (`azureml:<name>` or `<name>`), else the workspace blob store, Azure's default."""
    given = getattr(pipeline.settings, "default_datastore", None) if pipeline.settings else None
    return str(given).removeprefix("azureml:") if given else common.DEFAULT_DATASTORE


def output_uri(path, field, pipeline_name, output_name, datastore) -> str:
    """An output path of the pipeline's YAML with its placeholders filled: ${{name}} is the pipeline job's name (our
    reading: the YAML is the pipeline job's, and azureml-examples' cli/jobs/pipelines-with-components/basics/
    4b_datastore_datapath_uri reads in one node, by ${{name}}, the path another node wrote by ${{name}})."""
    values = {"name": pipeline_name, "output_name": output_name, "default_datastore": datastore}
    return common.resolve_output_uri(path, field, values)


def node_outputs(pipeline, node_name, pipeline_name, file) -> dict[str, dict]:
    """Each output of a node as its job is to write it, {"type", "mode", "path"}: the component's declaration, with
    what the node gives over it: a type, mode or path of its own, or those of the pipeline output it is bound to
    (${{parent.outputs.x}}). A path has its placeholders filled (output_uri) and is checked (common.datastore_path)."""
    node = pipeline.jobs[node_name]
    merged, sources = {}, {}
    for output_name, declared in (_component(node).outputs or {}).items():
        merged[output_name] = {key: common.output_field(declared, key) for key in ("type", "mode", "path")}
    for output_name, value in (node.outputs or {}).items():
        value, sources[output_name] = _binding(value), (f"jobs.{node_name}.outputs.{output_name}", output_name)
        if isinstance(value, str) and (m := PARENT_OUTPUT.match(value)):
            value, sources[output_name] = _binding(pipeline.outputs[m[1]]), (f"outputs.{m[1]}", m[1])
        given = {key: common.output_field(value, key) for key in ("type", "mode", "path")}
        merged[output_name] = merged.get(output_name, {}) | {key: v for key, v in given.items() if v}
    outputs = {}
    for output_name, output in merged.items():
        path = common.output_path(output)
        if path:
            source, path_name = sources.get(output_name, (f"jobs.{node_name}.outputs.{output_name}", output_name))
            field = f"{file}: {source}.path"
            path = output_uri(path, field, pipeline_name, path_name, default_datastore(pipeline))
            common.datastore_path(path, field, common.output_type(output))
        outputs[output_name] = {"type": common.output_type(output), "mode": common.output_mode(output), "path": path}
    return outputs


def node_environment_spec(node, node_name, file) -> dict | None:
    """The environment a node runs in (its own, else its component's), resolved as a job's is."""
    environment = getattr(node, "environment", None) or _component(node).environment
    try:
        return common.environment_spec(environment, file)
    except AmlLocalError as err:
        raise AmlLocalError(f"jobs.{node_name}: {err}") from None


def node_inputs(pipeline, node_name, yaml_dir, output_path):
    """(shown inputs, {"inputs.x": value}) of a node: component defaults, then the node's own bindings.

    `output_path(node, output)` gives the folder another node's output is in; None skips such inputs (the
    check at create time, before any node ran)."""
    node = pipeline.jobs[node_name]
    component = _component(node)
    base = Path(getattr(component, "base_path", None) or yaml_dir)
    raw = {}
    for input_name, spec in (component.inputs or {}).items():
        if getattr(spec, "default", None) is not None:
            raw[input_name] = (spec.default, base)
    for input_name, value in (node.inputs or {}).items():
        value = _binding(value)
        if value is None:
            continue
        if isinstance(value, str) and (m := PARENT_INPUT.match(value)):
            parent_value = _binding(pipeline.inputs[m[1]])
            if parent_value is not None:
                raw[input_name] = (parent_value, yaml_dir)
        elif isinstance(value, str) and (m := NODE_OUTPUT.match(value)):
            source = output_path(m[1], m[2])
            if source is None:
                raw.pop(input_name, None)
            else:
                raw[input_name] = (str(Path(source).resolve()), yaml_dir)
        else:
            raw[input_name] = (value, yaml_dir)
    shown, values = {}, {}
    for input_name, (value, folder) in raw.items():
        try:
            one_shown, one_values = common.resolve_inputs({input_name: value}, folder)
        except AmlLocalError as err:
            message = f"jobs.{node_name}: {err}".replace("--set inputs.", f"--set jobs.{node_name}.inputs.")
            raise AmlLocalError(message) from None
        shown |= one_shown
        values |= one_values
    return shown, values


class Pipeline:
    def __init__(self, job_dir: Path, echo=None):
        self.job_dir = Path(job_dir)
        self.spec = json.loads((self.job_dir / "job.json").read_text())
        self.sdk_job = common.load(self.spec["file"], self.spec["set_pairs"])
        pinned = {n: node["component"] for n, node in self.spec["nodes"].items() if "component" in node}
        registered_components(self.sdk_job, self.spec["file"], pinned)
        self.yaml_dir = Path(self.spec["file"]).parent
        self.echo = echo
        self.events = None  # a runner.EventLog while run() drives the job
        self.status = {}  # node -> final status

    def say(self, text):
        self.events.say(text)

    def node_inputs(self, node_name):
        def output_path(node, output):
            # Where the node's job wrote it, as its record says (a datastore path's folder or file, the run's
            # artifacts for the reserved `artifacts` output, else the job's outputs/<output>).
            field = f"jobs.{node_name}: ${{{{parent.jobs.{node}.outputs.{output}}}}}"
            return job_records.output_folder(self.spec["nodes"][node]["job_name"], output, field)

        return node_inputs(self.sdk_job, node_name, self.yaml_dir, output_path)

    def template(self, node_name):
        node = self.sdk_job.jobs[node_name]
        component = _component(node)
        base = Path(getattr(component, "base_path", None) or self.yaml_dir)
        shown, values = self.node_inputs(node_name)
        env = {str(k): str(v) for k, v in (getattr(component, "environment_variables", None) or {}).items()}
        env |= {str(k): str(v) for k, v in (getattr(node, "environment_variables", None) or {}).items()}
        return {
            "command": getattr(component, "command", None),  # None for a parallel node's component
            "code": str((base / component.code).resolve() if component.code else base),
            "environment": common.ref(getattr(node, "environment", None) or component.environment),
            "environment_spec": node_environment_spec(node, node_name, self.spec["file"]),
            "environment_variables": env,
            "distribution": node_distribution(node),
            "resources": common.plain(getattr(node, "resources", None)),
            "input_values": values,
            "inputs": shown,
            "outputs": {o: common.output_type(v) for o, v in (component.outputs or {}).items()},
            # What a command node's job writes: each output's type, mode and path (node_outputs).
            "output_settings": node_outputs(self.sdk_job, node_name, self.spec["name"], self.spec["file"]),
            "params_as_inputs": True,  # a sweep node's search space fills the component's inputs of those names
        }

    def run_node(self, node_name) -> str:
        node = self.sdk_job.jobs[node_name]
        child = self.spec["nodes"][node_name]["job_name"]
        template = self.template(node_name)
        compute = getattr(node, "compute", None) or self.spec["settings"].get("default_compute")
        fields = {
            "name": child,
            "file": self.spec["file"],
            "yaml_dir": self.yaml_dir,
            "set_pairs": self.spec["set_pairs"],
            "pipeline_node": node_name,
            "experiment_name": self.spec["experiment_name"],
            "tags": self.spec["tags"],
            "display_name": node_name,
            "compute": compute,
            "parent_run_id": self.spec["mlflow_run_id"],
            "parent_job_name": self.spec["name"],
        }
        kind = kinds.get(node.type)
        spec = kind.prepare_node(node, template, **fields)
        self.say(f"node {node_name}: {node.type if node.type == 'sweep' else 'job'} {child} started")
        # A command node's lines are prefixed with the node's name; a sweep's driver prefixes its own.
        echo = self.echo if node.type == "sweep" else _Prefixed(self.echo, f"[{node_name}] ")
        return kind.run(store.jobs_dir() / spec["name"], echo=echo)

    def bind_outputs(self, node_name):
        """Outputs bound to ${{parent.outputs.x}} become the pipeline's. One with a datastore path of its own was
        written there by the node (a sweep node's best trial's output is copied there); else the pipeline's
        outputs/x is a link to the file or folder the node wrote."""
        child = self.spec["nodes"][node_name]["job_name"]
        for output_name, value in (self.sdk_job.jobs[node_name].outputs or {}).items():
            value = _binding(value)
            if not (isinstance(value, str) and (m := PARENT_OUTPUT.match(value))):
                continue
            written = job_records.output_folder(child, output_name, f"jobs.{node_name}.outputs.{output_name}")
            place = Path(self.spec["outputs"][m[1]]["path"])
            if place == self.job_dir / "outputs" / m[1]:
                if place.is_symlink():
                    place.unlink()
                place.symlink_to(written)
            elif written.exists() and written.resolve() != place.resolve():
                if written.is_dir():
                    shutil.copytree(written, place, dirs_exist_ok=True)
                else:
                    place.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(written, place)

    def run(self) -> tuple[str, str | None]:
        keep_going = bool(self.spec["settings"].get("continue_on_step_failure"))
        failed = []
        for node_name, node in self.spec["nodes"].items():
            blocked = [d for d in node["needs"] if self.status.get(d) != "Completed"]
            if blocked or (failed and not keep_going):
                why = f"needs {', '.join(blocked)}" if blocked else f"{failed[0]} failed"
                self.status[node_name] = "NotStarted"
                self.say(f"node {node_name}: not started ({why})")
                continue
            try:
                status = self.run_node(node_name)
            except AmlLocalError as err:
                status = "Failed"
                self.say(f"node {node_name}: could not start: {err}")
            self.status[node_name] = status
            self.say(f"node {node_name}: {status}")
            if status == "Completed":
                self.bind_outputs(node_name)
            elif status == "Canceled":
                return "Canceled", f"node {node_name} was canceled"
            else:
                failed.append(node_name)
        if failed:
            message = f"node {failed[0]} failed"
            child = self.spec["nodes"][failed[0]]["job_name"]
            with contextlib.suppress(AmlLocalError):
                detail = job_records.current_status(child)[1]
                message += f" ({child}: {detail})" if detail else f" (see job {child})"
            return "Failed", message
        return "Completed", None


class _Prefixed:
    """An echo stream that prefixes each line with the node's name."""

    def __init__(self, stream, prefix):
        self.stream, self.prefix, self.at_line_start = stream, prefix, True

    def write(self, text):
        if self.stream is None:
            return
        for piece in text.splitlines(keepends=True):
            self.stream.write((self.prefix if self.at_line_start else "") + piece)
            self.at_line_start = piece.endswith("\n")

    def flush(self):
        if self.stream is not None:
            self.stream.flush()


def run(job_dir: Path, echo=None) -> str:
    job_dir = Path(job_dir)
    pipeline = Pipeline(job_dir, echo=echo)
    pipeline.events = runner.EventLog(job_dir, "pipeline", echo)
    run_id = pipeline.spec["mlflow_run_id"]
    status, message = "Failed", None
    with runner.driving(job_dir) as signals:
        try:
            store.set_status(run_id, "Running")
            pipeline.say(f"nodes in order: {', '.join(pipeline.spec['nodes'])}")
            status, message = pipeline.run()
        except runner.Canceled as signame:  # between nodes; a running node handles the signal itself
            status, message = "Canceled", f"canceled by {signame}"
        except Exception as err:
            status, message = "Failed", f"aml-local could not run the pipeline: {err}"
        finally:
            signals.hold()
            store.set_status(run_id, status, message)
            pipeline.say(f"pipeline {status}" + (f": {message}" if message else ""))
            pipeline.events.close()
    return status


def main(argv=None):
    with quiet.libraries():
        return 0 if run(Path((argv or sys.argv[1:])[0])) == "Completed" else 1


SCHEMA = "https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json"
kinds.register(
    kinds.JobKind(
        type="pipeline",
        schema=SCHEMA,
        driver_module="aml_local.jobs.pipeline",
        create=create,
        run=run,
        add_to_show=add_to_show,
    )
)


if __name__ == "__main__":
    sys.exit(main())
