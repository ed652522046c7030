"""Command jobs (`type: command`): the command runs here, in the job's folder, with its inputs mapped to local
folders and its outputs written under the job's folder (jobs/runner.py runs it)."""

from pathlib import Path

from aml_local.jobs import common, kinds, runner

SCHEMA = "https://azuremlschemas.azureedge.net/latest/commandJob.schema.json"


def create(job, file, name=None, set_pairs=(), stream=False, echo=None) -> dict:
    """`job create` of a command job: record it and start it; returns its spec."""
    name = common.new_name(name or job.name)
    yaml_dir = Path(file).resolve().parent
    shown_inputs, input_values = common.resolve_inputs(job.inputs, yaml_dir)
    spec = common.prepare_command(
        name,
        file=file,
        command=job.command,
        code=job.code,
        yaml_dir=yaml_dir,
        shown_inputs=shown_inputs,
        input_values=input_values,
        outputs=job.outputs,
        experiment_name=job.experiment_name,
        environment=job.environment,
        environment_spec=common.environment_spec(job.environment, file),
        environment_variables=job.environment_variables,
        distribution=common.plain(job.distribution),
        resources=common.plain(job.resources),
        compute=job.compute,
        tags=job.tags,
        display_name=job.display_name,
        description=job.description,
    )
    common.launch(spec, stream=stream, echo=echo)
    return spec


def add_to_show(result, spec, run):
    result |= {
        "code": spec["code"],
        "command": spec["command"],
        "distribution": spec["distribution"],
        "environment": spec["environment"],
        "environment_variables": spec["environment_variables"],
        "resources": spec["resources"] or {"instance_count": 1},
    }
    result["properties"]["aml_local.resolved_command"] = spec["resolved_command"]
    prepared = runner.prepared_environment(Path(spec["code_dir"]).parent)
    if prepared is not None:
        result["properties"]["aml_local.environment"] = prepared


def prepare_node(node, template, *, name, file, yaml_dir, compute, display_name, **fields) -> dict:
    """A pipeline's command node, from its component (`template`, see jobs/pipeline.py) and the pipeline's fields."""
    return common.prepare_command(
        name,
        file=file,
        command=template["command"],
        code=template["code"],
        yaml_dir=yaml_dir,
        shown_inputs=template["inputs"],
        input_values=template["input_values"],
        outputs=template["output_settings"],  # each output's type, mode and path (jobs/pipeline.py node_outputs)
        experiment_name=fields["experiment_name"],
        environment=template["environment"],
        environment_spec=template["environment_spec"],
        environment_variables=template["environment_variables"],
        distribution=template["distribution"],
        resources=template["resources"],
        compute=compute,
        tags=fields["tags"],
        display_name=display_name,
        parent_run_id=fields["parent_run_id"],
        parent_job_name=fields["parent_job_name"],
    )


kinds.register(
    kinds.JobKind(
        type="command",
        schema=SCHEMA,
        driver_module="aml_local.jobs.runner",
        create=create,
        run=runner.run,
        add_to_show=add_to_show,
        prepare_node=prepare_node,
    )
)
