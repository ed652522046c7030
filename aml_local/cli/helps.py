"""`aml-local ... -h`: each group's and command's summary and examples, in the YAML form az's command modules
write into knack's `helps` table (knack/help_files.py); knack's help lays them out as az's help does."""

import yaml
from knack.help_files import helps

_HELP = {
    "job": ("group", "Command, sweep and pipeline jobs, like `az ml job`: they run on this machine."),
    "job create": (
        "command",
        "Create a job from a YAML file and run it.",
        [
            (
                "Run a job in the foreground, with 2 epochs",
                "aml-local job create -f jobs/train.yml --stream --set inputs.epochs=2",
            ),
            ("Start a job and print only its name", "aml-local job create -f jobs/train.yml --query name -o tsv"),
        ],
    ),
    "job show": ("command", "Show a job."),
    "job list": (
        "command",
        "List jobs, newest first (archived ones with --include-archived or --archived-only).",
        [("List every job, archived ones too", "aml-local job list --all-results --include-archived -o table")],
    ),
    "job stream": ("command", "Follow a job's logs until it ends."),
    "job cancel": ("command", "Cancel a running job."),
    "job download": ("command", "Copy a finished job's artifacts or outputs to a folder, laid out as the SDK does."),
    "job archive": ("command", "Archive a job: it is left out of `job list` unless --include-archived is given."),
    "job restore": ("command", "Restore an archived job."),
    "model": ("group", "The local model registry, like `az ml model`."),
    "model create": (
        "command",
        "Register a model version (its files are copied).",
        [
            (
                "Register a job's model output",
                "aml-local model create -f endpoints/model.yml --path azureml://jobs/<job>/outputs/model",
            )
        ],
    ),
    "model show": ("command", "Show a model version."),
    "model list": ("command", "List models (the latest version of each), or one model's versions."),
    "model archive": (
        "command",
        "Archive a model version (it is no longer @latest), or without --version/--label every version.",
        [("Archive version 1", "aml-local model archive -n mnist-mlp -v 1")],
    ),
    "model restore": ("command", "Restore an archived model version, or without --version/--label the model."),
    "model update": (
        "command",
        "Change a model version's description, tags or stage (--set/--add/--remove, as az's generic update).",
        [("Tag a version", "aml-local model update -n mnist-mlp -v 1 --set tags.approved=yes")],
    ),
    "component": ("group", "Components, like `az ml component`: registered here, run by the pipelines that name them."),
    "component create": (
        "command",
        "Register a component version from YAML; its code folder is copied, as Azure uploads it.",
        [("Register the training component", "aml-local component create -f components/train.yml")],
    ),
    "component show": (
        "command",
        "Show a component version: give --version, or --label latest (the newest not archived).",
        [("Show the latest training component", "aml-local component show -n mnist_train -l latest")],
    ),
    "component list": (
        "command",
        "List components (the latest version of each), or with --name one component's versions.",
    ),
    "component archive": (
        "command",
        "Archive a component version (it is no longer @latest), or without --version/--label the component.",
    ),
    "component restore": (
        "command",
        "Restore an archived component version, or without --version/--label the component.",
    ),
    "compute": ("group", "Compute targets, like `az ml compute` (jobs run on this machine)."),
    "compute create": ("command", "Create or update a compute target from YAML."),
    "compute show": ("command", "Show a compute target."),
    "compute list": ("command", "List the compute targets recorded here."),
    "compute delete": ("command", "Delete a compute target's record."),
    "compute update": (
        "command",
        "Change a compute target's scale settings or tags.",
        [("Allow 2 nodes", "aml-local compute update -n cpu-cluster --max-instances 2")],
    ),
    "environment": ("group", "Environments, like `az ml environment` (a job runs in the one its YAML names)."),
    "environment create": (
        "command",
        "Create an environment version from YAML, or from --name with --image (and --conda-file) or --build-context.",
    ),
    "environment show": (
        "command",
        "Show an environment version (the latest unless --version is given); with --registry-name azureml, a curated"
        " one from the catalog (any version: the catalog holds one definition per name).",
        [("Show a curated environment", "aml-local environment show --registry-name azureml -n sklearn-1.5")],
    ),
    "environment list": (
        "command",
        "List the environments registered here, or with --registry-name azureml the azureml registry's curated ones"
        " (the catalog tools/curated_catalog.py writes from azureml-assets).",
        [
            (
                "List the curated environments' names",
                "aml-local environment list --registry-name azureml -o tsv --query [].name",
            )
        ],
    ),
    "environment archive": ("command", "Archive an environment version, or without --version/--label every version."),
    "environment restore": ("command", "Restore an archived environment version, or without --version/--label all."),
    "environment update": ("command", "Change an environment version's description or tags (--set/--add/--remove)."),
    "data": ("group", "Data assets, like `az ml data`."),
    "data create": ("command", "Create a data asset version from YAML, or from --name, --path and --type."),
    "data show": ("command", "Show a data asset version (the latest unless --version is given)."),
    "data list": ("command", "List data assets (the latest version of each), or with --name one asset's versions."),
    "data archive": ("command", "Archive a data asset version, or without --version/--label every version."),
    "data restore": ("command", "Restore an archived data asset version, or without --version/--label the asset."),
    "data update": ("command", "Change a data asset version's description or tags (--set/--add/--remove)."),
    "online-endpoint": ("group", "Local online endpoints, like `az ml online-endpoint`."),
    "online-endpoint create": ("command", "Create an endpoint (and its keys)."),
    "online-endpoint show": ("command", "Show an endpoint: scoring_uri, traffic, provisioning_state."),
    "online-endpoint get-credentials": ("command", "Show the endpoint's primary and secondary keys."),
    "online-endpoint regenerate-keys": ("command", "Regenerate the primary or secondary key (--key-type)."),
    "online-endpoint list": ("command", "List endpoints."),
    "online-endpoint update": (
        "command",
        "Set the traffic split.",
        [
            (
                "Move 10% of the traffic to green",
                "aml-local online-endpoint update -n mnist-endpoint --traffic 'blue=90 green=10'",
            )
        ],
    ),
    "online-endpoint delete": ("command", "Delete an endpoint and stop its deployments."),
    "online-endpoint invoke": ("command", "Score a request file with the endpoint's key."),
    "online-deployment": ("group", "Local inference servers, like `az ml online-deployment`."),
    "online-deployment create": ("command", "Start a deployment and wait until it is ready."),
    "online-deployment update": (
        "command",
        "Change a deployment (instance count, request settings, environment variables, model, code) with no failed"
        " request: new servers start beside the old, the router switches, the old ones drain and stop.",
    ),
    "online-deployment show": ("command", "Show a deployment (provisioning_state from its servers)."),
    "online-deployment list": ("command", "List an endpoint's deployments."),
    "online-deployment get-logs": ("command", "Show the inference server's log."),
    "online-deployment delete": ("command", "Stop a deployment's server and remove it."),
    "tracking-server": (
        "group",
        "Local only (not in az ml): the store's MLflow server for jobs in built environments; it stops when idle.",
    ),
    "tracking-server show": (
        "command",
        "Show the tracking server: pid, port, uri, started, running jobs, idle seconds and idle limit.",
    ),
    "tracking-server stop": (
        "command",
        "Stop the tracking server now. Else it stops after AML_LOCAL_TRACKING_IDLE_S seconds (default 300) with no"
        " job of the store running and no request; the next job that needs it starts it again.",
        [("Stop the server of a temporary store", "AML_LOCAL_HOME=/tmp/store aml-local tracking-server stop")],
    ),
}


def _yaml(kind: str, summary: str, examples=()) -> str:
    entry = {"type": kind, "short-summary": summary}
    if examples:
        entry["examples"] = [{"name": name, "text": text} for name, text in examples]
    return yaml.safe_dump(entry, sort_keys=False, width=1000)


def register():
    """Put the entries in knack's help table (what az's command modules do when their _help.py is imported)."""
    helps.update({name: _yaml(*entry) for name, entry in _HELP.items()})
