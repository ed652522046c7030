"""The command table: `az ml` nouns and verbs (knack CommandGroups over custom.py) and the flags each one takes
(knack ArgumentsContexts: options, help, types, choices), as az's command modules register theirs."""

from knack.arguments import ArgumentsContext, CaseInsensitiveList
from knack.commands import CLICommandsLoader, CommandGroup

from aml_local.cli import batch, custom, custom_assets, generic_update, helps, transforms
from aml_local.cli.command import AzMlCommand
from aml_local.cli.parser import GenericUpdate, SetPairs, TagPairs, three_state

# knack finds a command's function from "module#function" (and reads its signature for the arguments).
OPERATIONS = f"{custom.__name__}#{{}}"
ASSETS = f"{custom_assets.__name__}#{{}}"
BATCH = f"{batch.__name__}#{{}}"  # the batch-endpoint and batch-deployment nouns (cli/batch.py)
# The verbs az ml registers with supports_no_wait=True (azext_mlv2/manual/commands.py): each has --no-wait.
NO_WAIT = {"supports_no_wait": True}


class CommandsLoader(CLICommandsLoader):
    def __init__(self, cli_ctx=None):
        # AzMlCommand adds -g/-w and --no-wait where az has them (cli/command.py).
        super().__init__(cli_ctx=cli_ctx, command_cls=AzMlCommand)

    def load_command_table(self, args):
        helps.register()
        with CommandGroup(self, "job", OPERATIONS) as g:
            g.command("create", "job_create")
            g.command("show", "job_show")
            g.command("list", "job_list", table_transformer=transforms.job_table)
            g.command("stream", "job_stream")
            g.command("cancel", "job_cancel")
            g.command("download", "job_download")
            g.command("archive", "job_archive")
            g.command("restore", "job_restore")
        # The asset nouns (custom_assets.py), each list with az's table (table_transformer in az's commands.py).
        with CommandGroup(self, "model", ASSETS) as g:
            g.command("create", "model_create", **NO_WAIT)
            g.command("show", "model_show")
            g.command("list", "model_list", table_transformer=transforms.model_table)
            for verb in ("archive", "restore", "update"):
                g.command(verb, f"model_{verb}")
        with CommandGroup(self, "component", ASSETS) as g:
            g.command("list", "component_list", table_transformer=transforms.component_table)
            for verb in ("create", "show", "archive", "restore"):
                g.command(verb, f"component_{verb}")
        with CommandGroup(self, "data", ASSETS) as g:
            g.command("create", "data_create", **NO_WAIT)
            g.command("list", "data_list", table_transformer=transforms.data_table)
            for verb in ("show", "archive", "restore", "update"):
                g.command(verb, f"data_{verb}")
        with CommandGroup(self, "environment", ASSETS) as g:
            g.command("create", "environment_create", **NO_WAIT)
            g.command("list", "environment_list", table_transformer=transforms.environment_table)
            for verb in ("show", "archive", "restore", "update"):
                g.command(verb, f"environment_{verb}")
        with CommandGroup(self, "compute", ASSETS) as g:
            g.command("show", "compute_show")
            g.command("list", "compute_list", table_transformer=transforms.compute_table)
            for verb in ("create", "delete", "update"):
                g.command(verb, f"compute_{verb}", **NO_WAIT)
        with CommandGroup(self, "online-endpoint", OPERATIONS) as g:
            for verb in ("show", "get-credentials", "list", "invoke"):
                g.command(verb, "online_endpoint_" + verb.replace("-", "_"))
            for verb in ("create", "regenerate-keys", "update", "delete"):
                g.command(verb, "online_endpoint_" + verb.replace("-", "_"), **NO_WAIT)
        with CommandGroup(self, "online-deployment", OPERATIONS) as g:
            for verb in ("show", "list", "get-logs"):
                g.command(verb, "online_deployment_" + verb.replace("-", "_"))
            for verb in ("create", "update", "delete"):
                g.command(verb, "online_deployment_" + verb.replace("-", "_"), **NO_WAIT)
        # The batch nouns, as azext_mlv2/manual/commands.py registers them (create, update and delete with --no-wait).
        for noun, verbs, waiting in (
            ("batch-endpoint", ("show", "list", "list-jobs", "invoke"), ("create", "update", "delete")),
            ("batch-deployment", ("show", "list", "list-jobs"), ("create", "update", "delete")),
        ):
            with CommandGroup(self, noun, BATCH) as g:
                for verb in verbs:
                    g.command(verb, f"{noun}_{verb}".replace("-", "_"))
                for verb in waiting:
                    g.command(verb, f"{noun}_{verb}".replace("-", "_"), **NO_WAIT)
        # Local only (az ml has no such noun): the store's MLflow tracking server (aml_local/tracking_server.py).
        with CommandGroup(self, "tracking-server", OPERATIONS, workspace=False) as g:
            g.command("show", "tracking_server_show")
            g.command("stop", "tracking_server_stop")
        return super().load_command_table(args)

    def load_arguments(self, command):
        with ArgumentsContext(self, "") as c:
            c.argument("file", options_list=["--file", "-f"], help="The YAML file, e.g. jobs/train.yml.")
            c.argument("name", options_list=["--name", "-n"], help="Name.")
            c.argument("version", options_list=["--version", "-v"], help="Version.")
            c.argument("label", options_list=["--label", "-l"], help="Label: latest, the most recently created.")
            c.argument("endpoint_name", options_list=["--endpoint-name", "-e"], help="Endpoint name.")
            c.argument(
                "params_override",
                options_list=["--set"],
                action=SetPairs,
                nargs="+",
                metavar="KEY=VALUE",
                help="Override YAML fields: one or more KEY=VALUE pairs (split at the first '='); repeatable.",
            )
            c.argument("yes", options_list=["--yes", "-y"], help="Do not prompt (aml-local never prompts).")
            # az ml's add_common_params (azext_mlv2/manual/_params/_common_params.py), on every command of an az
            # noun (cli/command.py): there is one workspace here, the store in AML_LOCAL_HOME, so both are accepted
            # and ignored.
            c.argument(
                "resource_group_name",
                options_list=["--resource-group", "-g"],
                help="Accepted and ignored: everything is in this machine's store (AML_LOCAL_HOME).",
            )
            c.argument(
                "workspace_name",
                options_list=["--workspace-name", "-w"],
                help="Accepted and ignored: everything is in this machine's store (AML_LOCAL_HOME).",
            )
            c.argument("local", options_list=["--local"], **three_state("Accepted: everything here is local."))
            c.argument("web", options_list=["--web"], help="Ignored: there is no Azure ML studio locally.")
            c.argument("no_wait", options_list=["--no-wait"], help="Accepted: the command returns when it is done.")
            # _common_params.py's add_registry_param, add_max_results_params, add_include_archived_param,
            # add_archived_only_param and add_tags_param, wherever a verb takes them.
            c.argument("registry_name", options_list=["--registry-name"], help="Refused: this machine's store only.")
            c.argument("max_results", options_list=["--max-results", "-r"], type=int, help="Most to list.")
            c.argument("include_archived", options_list=["--include-archived"], help="List archived and active ones.")
            c.argument("archived_only", options_list=["--archived-only"], help="List archived ones only.")
            c.argument("tags", options_list=["--tags"], nargs="+", action=TagPairs, help="Space-separated key=value.")
        with ArgumentsContext(self, "job") as c:
            c.argument("file", help="Job YAML, e.g. jobs/train.yml.")
            c.argument("name", help="Job name (create: default generated, as Azure ML does).")
            c.argument("params_override", help="Override YAML fields, e.g. --set inputs.epochs=2.")
            c.argument("stream", options_list=["--stream", "-s"], help="Run in the foreground, streaming logs.")
            c.argument("parent_job_name", options_list=["--parent-job-name", "-p"], help="List this job's children.")
            c.argument("max_results", help="Most jobs to list. Default: 50.")
            # ml_job_list's all_results is a three-state flag (_job_params.py: get_three_state_flag()).
            c.argument("all_results", options_list=["--all-results"], **three_state("List every job."))
            c.argument("skip_validation", options_list=["--skip-validation"], help="Accepted: load_job still checks.")
            c.argument("save_as", options_list=["--save-as", "-a"], help="Also write the created job as YAML there.")
            c.argument("web", options_list=["--web", "-e"], help="Ignored: there is no Azure ML studio locally.")
            c.argument("no_wait", help="Accepted: cancel returns once the job's processes have stopped (seconds).")
            c.argument(
                "output_name",
                options_list=["--output-name"],
                help="Only this named output, e.g. model (default: artifacts).",
            )
            c.argument("all_outputs", options_list=["--all"], help="The artifacts and every named output.")
            c.argument(
                "download_path",
                options_list=["--download-path", "-p"],
                help="Where artifacts/ and named-outputs/<output> go (default: here).",
            )
        with ArgumentsContext(self, "model") as c:
            c.argument("file", help="Model YAML, e.g. endpoints/model.yml.")
            c.argument("name", help="Model name (create: overrides the YAML's).")
            c.argument("version", help="Version (create: default one past the highest).")
            c.argument(
                "path",
                options_list=["--path", "-p"],
                help="A local file or folder, azureml://jobs/<job>/outputs/<output> or runs:/<run_id>/<path>.",
            )
            c.argument(
                "model_type",
                options_list=["--type", "-t"],
                choices=["custom_model", "mlflow_model", "triton_model"],
                help="Model type.",
            )
            c.argument("description", options_list=["--description"], help="Description.")
            c.argument("stage", options_list=["--stage", "-s"], help="Stage, e.g. Production (default: Development).")
        # The rest of az's `ml model create` flags (azext_mlv2/manual/_params/_model_params.py).
        with ArgumentsContext(self, "model create") as c:
            c.argument("params_override", help="Override YAML fields, e.g. --set version=3 (flags win over --set).")
            c.argument("datastore", options_list=["--datastore"], help="Ignored: the files are copied into the store.")
            c.argument(
                "default_deployment_template",
                options_list=["--default-deployment-template", "-d"],
                help="Refused: deployment templates live in Azure ML registries.",
            )
            c.argument("no_wait", help="Accepted: registering is quick here.")
        with ArgumentsContext(self, "model list") as c:
            c.argument("name", help="List this model's versions.")
            c.argument("stage", help="Only the versions in this stage.")
        for noun in ("compute", "environment", "data"):
            with ArgumentsContext(self, f"{noun} create") as c:
                c.argument("name", help="Name (overrides the YAML's).")
                c.argument("version", help="Version (default: the YAML's, else the next one).")
        # az's `ml compute create` flags (azext_mlv2/manual/_params/_compute_params.py, custom/compute.py).
        with ArgumentsContext(self, "compute create") as c:
            c.argument("file", help="Compute YAML (or none: --name and --type make it).")
            c.argument("name", help="Compute name: required if --file/-f is not given.")
            c.argument(
                "compute_type",
                options_list=["--type", "-t"],
                help="amlcompute (AmlCompute; the only type recorded here): required if --file/-f is not given.",
            )
            c.argument("size", options_list=["--size"], help="VM size, recorded (jobs run on this machine).")
            c.argument("min_instances", options_list=["--min-instances"], help="Minimum nodes, recorded. Default: 0.")
            c.argument("max_instances", options_list=["--max-instances"], help="Maximum nodes, recorded. Default: 4.")
            c.argument(
                "idle_time_before_scale_down",
                options_list=["--idle-time-before-scale-down", "-d"],
                help="Seconds, recorded. Default: 120.",
            )
            c.argument("tier", options_list=["--tier"], help="dedicated or low_priority, recorded.")
            c.argument("description", options_list=["--description"], help="Description of the compute target.")
            c.argument("location", options_list=["--location", "-l"], help="Refused: computes here are local.")
            c.argument("params_override", help="Override YAML fields, e.g. --set max_instances=2.")
            c.argument("no_wait", help="Accepted: recording is quick here.")
            refused = "Refused: an Azure resource setting."
            for dest in ("vnet_name", "subnet", "admin_username", "admin_password", "ssh_key_value"):
                c.argument(dest, options_list=["--" + dest.replace("_", "-")], help=refused)
            for dest in ("identity_type", "enable_node_public_ip", "user_tenant_id", "user_object_id"):
                c.argument(dest, options_list=["--" + dest.replace("_", "-")], help=refused)
            c.argument("ssh_public_access_enabled", options_list=["--ssh-public-access-enabled", "-p"], help=refused)
            c.argument("user_assigned_identities", options_list=["--user-assigned-identities", "-i"], help=refused)
        with ArgumentsContext(self, "environment") as c:
            c.argument(
                "registry_name",
                help="The registry; only azureml, whose curated environments are the catalog from azureml-assets.",
            )
        with ArgumentsContext(self, "environment list") as c:
            c.argument("name", help="List this environment's versions.")
        # az ml component's flags: azext_mlv2/manual/_params/_component_params.py (load_component_params), with the
        # shared ones of _common_params.py (--set, --max-results/-r, --include-archived, --archived-only,
        # --registry-name, --skip-validation); only the arguments its functions take exist (custom/component.py).
        with ArgumentsContext(self, "component") as c:
            c.argument("file", help="Component YAML, e.g. components/train.yml.")
            c.argument("name", help="Name of the component (create: overrides the YAML's).")
            c.argument("version", help="Version of the component (create: default the YAML's, else the next one).")
            c.argument("label", help="Label of the component: latest, the newest version not archived.")
            c.argument("params_override", help="Override YAML fields, e.g. --set display_name=Train.")
            c.argument(
                "registry_name",
                help="A registry: refused here (components are registered in this machine's store only).",
            )
            c.argument(
                "skip_validation",
                options_list=["--skip-validation"],
                help="Accepted as az accepts it; the YAML is still loaded (and checked) by load_component, as az does.",
            )
        with ArgumentsContext(self, "component list") as c:
            c.argument("name", help="List this component's versions (newest first).")
        with ArgumentsContext(self, "online-endpoint") as c:
            c.argument("file", help="Endpoint YAML, e.g. endpoints/endpoint.yml.")
            c.argument("name", help="Endpoint name (create: overrides the YAML's).")
            c.argument("auth_mode", options_list=["--auth-mode"], help="key (the only mode that runs locally).")
            c.argument(
                "traffic", options_list=["--traffic", "-r"], help="e.g. 'blue=90 green=10' (adds up to 100, or all 0)."
            )
            c.argument(
                "mirror_traffic",
                options_list=["--mirror-traffic"],
                help="e.g. 'green=10': copy that share of live requests to one deployment (at most 50).",
            )
            c.argument("no_wait", help="Accepted for az compatibility; it is quick here.")
            c.argument("web", options_list=["--web", "-e"], help="Ignored: there is no Azure ML studio locally.")
            c.argument(
                "request_file",
                options_list=["--request-file", "-r"],
                help="A JSON file, e.g. endpoints/sample-request.json.",
            )
            c.argument(
                "deployment_name",
                options_list=["--deployment-name", "-d"],
                help="This deployment, not one picked by the traffic split.",
            )
        with ArgumentsContext(self, "online-deployment") as c:
            c.argument("name", help="Deployment name (create: overrides the YAML's).")
            c.argument("endpoint_name", help="Endpoint name (create: overrides the YAML's).")
            c.argument("all_traffic", options_list=["--all-traffic"], help="Send all of the endpoint's traffic to it.")
            c.argument(
                "file",
                help="Deployment YAML, e.g. endpoints/blue-deployment.yml (update: default, the one it was made from).",
            )
            c.argument("params_override", help="Override YAML fields, e.g. --set model=azureml:mnist-mlp:2.")
            c.argument("lines", options_list=["--lines", "-l"], type=int, help="How many of the last lines.")
            c.argument("container", options_list=["--container", "-c"], help="inference-server (the only one locally).")
            c.argument("no_wait", help="Accepted: the command returns when it is ready.")
            c.argument(
                "local_enable_gpu", options_list=["--local-enable-gpu"], **three_state("Ignored: servers see GPUs.")
            )
            c.argument(
                "vscode_debug", options_list=["--vscode-debug"], **three_state("Refused: az's Docker --local only.")
            )
            c.argument(
                "skip_script_validation",
                options_list=["--skip-script-validation"],
                help="Accepted: the scoring script is checked by starting it.",
            )
            c.argument("package_model", options_list=["--package-model"], help="Refused: packages are built by Azure.")
        with ArgumentsContext(self, "online-endpoint create") as c:
            c.argument("file", help="Endpoint YAML (or none: --name makes one, key auth).")
            c.argument("params_override", help="Override YAML fields, e.g. --set description=mine.")
        # az's update is a generic update (azext_mlv2/manual/commands.py, generic_update_command), with azure-cli's
        # --set/--add/--remove/--force-string: only --traffic/--mirror-traffic change a local endpoint.
        with ArgumentsContext(self, "online-endpoint update") as c:
            c.argument("file", help="Endpoint YAML: its name (unless --name) and its traffic (unless --traffic).")
            c.argument("params_override", help="Refused: use --traffic or --mirror-traffic.")
            c.argument("add", options_list=["--add"], nargs="+", help="Refused: use --traffic or --mirror-traffic.")
            c.argument("remove", options_list=["--remove"], nargs="+", help="Refused: use --traffic/--mirror-traffic.")
            c.argument("force_string", options_list=["--force-string"], help="Refused with --set/--add/--remove.")
        with ArgumentsContext(self, "online-endpoint regenerate-keys") as c:
            c.argument("key_type", options_list=["--key-type"], help="primary (the default) or secondary.")
            c.argument("no_wait", help="Accepted as az accepts it; it is quick here.")
        self._load_asset_arguments()
        batch.load_arguments(self)
        super().load_arguments(command)

    def _load_asset_arguments(self):
        """The flags of the data, environment and compute verbs and of the generic updates, as az ml's
        _params/_data_params.py, _environment_params.py and _compute_params.py register them."""
        with ArgumentsContext(self, "data create") as c:
            c.argument("file", help="Data asset YAML, e.g. data/mnist.yml (or none: --name, --path and --type).")
            c.argument("description", options_list=["--description", "-d"], help="Description of the data asset.")
            c.argument("path", options_list=["--path", "-p"], help="A local file or folder, or a remote URL.")
            c.argument(
                "data_type",
                options_list=["--type", "-t"],
                choices=CaseInsensitiveList(["uri_file", "uri_folder", "mltable"]),
                help="Type of the data asset.",
            )
            c.argument("datastore", options_list=["--datastore"], help="Ignored: local assets point at local paths.")
            c.argument("skip_validation", options_list=["--skip-validation"], help="Accepted: the path is checked.")
            c.argument("no_wait", help="Accepted: registering is quick here.")
        with ArgumentsContext(self, "data list") as c:
            c.argument("name", help="List this data asset's versions (newest first).")
        with ArgumentsContext(self, "environment create") as c:
            c.argument("file", help="Environment YAML (or none: --name with --image or --build-context).")
            c.argument("description", options_list=["--description"], help="Description of the environment.")
            c.argument("image", options_list=["--image", "-i"], help="Docker image (its conda file runs in a venv).")
            c.argument("conda_file", options_list=["--conda-file", "-c"], help="A conda specification file.")
            c.argument("build_context", options_list=["--build-context", "-b"], help="A Docker build context folder.")
            c.argument(
                "dockerfile_path",
                options_list=["--dockerfile-path", "-d"],
                help="The Dockerfile inside --build-context (az's default: /Dockerfile).",
            )
            c.argument("os_type", options_list=["--os-type"], help="linux (the only one that runs here).")
            c.argument("datastore", options_list=["--datastore"], help="Ignored: recorded in this machine's store.")
            c.argument("path", options_list=["--path", "-p"], help="Ignored: az's is for copying into a registry.")
            c.argument("no_wait", help="Accepted: registering is quick here.")
        for verb in ("create", "archive", "restore", "update"):
            with ArgumentsContext(self, f"environment {verb}") as c:
                c.argument("registry_name", help="Refused: environments are registered in this machine's store only.")
        with ArgumentsContext(self, "compute list") as c:
            c.argument("compute_type", options_list=["--type"], help="Only this type, e.g. AmlCompute (any case).")
        with ArgumentsContext(self, "compute delete") as c:
            c.argument("no_wait", help="Accepted: deleting a record is quick here.")
        with ArgumentsContext(self, "compute update") as c:
            c.argument("min_instances", options_list=["--min-instances"], type=int, help="Minimum nodes, recorded.")
            c.argument("max_instances", options_list=["--max-instances"], type=int, help="Maximum nodes, recorded.")
            c.argument(
                "idle_time_before_scale_down",
                options_list=["--idle-time-before-scale-down", "-d"],
                type=int,
                help="Seconds, recorded.",
            )
            c.argument("identity_type", options_list=["--identity-type"], help="Refused: an Azure resource setting.")
            c.argument(
                "user_assigned_identities",
                options_list=["--user-assigned-identities", "-i"],
                help="Refused: an Azure resource setting.",
            )
            c.argument("no_wait", help="Accepted: updating a record is quick here.")
        for scope in ("model update", "data update", "environment update", "compute update"):
            self.generic_update_arguments(scope)
        with ArgumentsContext(self, "online-deployment update") as c:
            c.argument("add", options_list=["--add"], nargs="+", help="Refused: use --set KEY=VALUE or the YAML.")
            c.argument("remove", options_list=["--remove"], nargs="+", help="Refused: use --set KEY=VALUE or the YAML.")
            c.argument("force_string", options_list=["--force-string"], help="Accepted: --set values are read as YAML.")

    def generic_update_arguments(self, scope: str, set_example: str | None = None, **helps):
        """azure-cli's generic update arguments (arm.py _cli_generic_update_command) on one of az ml's update verbs
        (generic_update_command in azext_mlv2/manual/commands.py), applied by cli/generic_update.py: --set, --add,
        --remove and --force-string. `set_example` is the verb's own --set example; `helps` replaces a flag's help,
        by its dest (params_override, add, remove, force_string)."""
        examples = generic_update.EXAMPLES | ({"--set": set_example} if set_example else {})
        with ArgumentsContext(self, scope) as c:
            for dest, option, usage in (
                ("params_override", "--set", "KEY=VALUE"),
                ("add", "--add", "LIST KEY=VALUE"),
                ("remove", "--remove", "LIST INDEX"),
            ):
                c.argument(
                    dest,
                    options_list=[option],
                    action=GenericUpdate,
                    nargs="+",
                    metavar=usage,
                    help=helps.get(dest, f"Generic update, e.g. {option} {examples[option]}"),
                )
            c.argument(
                "force_string",
                options_list=["--force-string"],
                help=helps.get("force_string", "Keep --set/--add values as text."),
            )
