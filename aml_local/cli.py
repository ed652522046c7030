"""The `aml-local` command line: `az ml` nouns and verbs, with az's --query and --output."""

import argparse
import sys

from aml_local import AmlLocalError, quiet
from aml_local.assets import compute, data, environment, model
from aml_local.endpoints import deployment, endpoint
from aml_local.jobs import verbs as job_verbs
from aml_local.output import FORMATS, render


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line naming the problem, exit code 2 (argparse's own code for usage errors).
        self.exit(2, f"ERROR: {self.prog}: {message}\n")


def _failure(job_shown):
    """None for a completed job; else the one line `az ml job stream` would end with."""
    if job_shown["status"] == "Completed":
        return None
    message = job_shown["properties"].get("aml_local.status_message")
    return f"job {job_shown['name']} ended {job_shown['status']}" + (f": {message}" if message else "")


def _job_create(args):
    result = job_verbs.create(args.file, name=args.name, set_pairs=args.set, stream=args.stream)
    return result, _failure(result) if args.stream else None


def _job_show(args):
    return job_verbs.show(args.name), None


def _job_list(args):
    jobs = job_verbs.list_jobs(parent_job_name=args.parent_job_name, max_results=args.max_results)
    if args.output == "table" and not args.query:
        # az's table view of jobs: a few columns, not every field.
        columns = ("name", "display_name", "type", "status", "experiment_name", "compute")
        jobs = [{c: j.get(c) for c in columns} | {"created": j["creation_context"]["created_at"]} for j in jobs]
    return jobs, None


def _job_stream(args):
    return None, _failure(job_verbs.stream(args.name))


def _job_cancel(args):
    return job_verbs.cancel(args.name), None


def _job_download(args):
    job_verbs.download(args.name, output_name=args.output_name, download_path=args.download_path)
    return None, None


_ASSET_MODULES = {"compute": compute, "environment": environment, "data": data}


def _asset_create(module_name):
    def handler(args):
        extra = {"version": args.version} if hasattr(args, "version") else {}
        return _ASSET_MODULES[module_name].create(args.file, name=args.name, **extra), None

    return handler


def _asset_show(module_name):
    def handler(args):
        if module_name == "compute":
            return compute.show(args.name), None
        return _ASSET_MODULES[module_name].show(args.name, version=args.version, label=args.label), None

    return handler


def _add_asset_nouns(nouns, common):
    """compute, environment and data: create (validated by the SDK's loaders, recorded locally) and show."""
    for noun_name, text in (
        ("compute", "compute targets, like `az ml compute` (jobs run on this machine)"),
        ("environment", "environments, like `az ml environment` (jobs run in this Python)"),
        ("data", "data assets, like `az ml data`"),
    ):
        noun = nouns.add_parser(noun_name, help=text)
        verbs = noun.add_subparsers(dest="verb", required=True, parser_class=_Parser)
        create = verbs.add_parser("create", parents=[common], help=f"create or update a {noun_name} from YAML")
        create.add_argument("--file", "-f", required=True)
        create.add_argument("--name", "-n", help="name (overrides the YAML's)")
        if noun_name != "compute":
            create.add_argument("--version", "-v", help="version (default: the YAML's, else the next one)")
        create.set_defaults(handler=_asset_create(noun_name))
        show = verbs.add_parser("show", parents=[common], help=f"show a {noun_name}")
        show.add_argument("--name", "-n", required=True)
        if noun_name != "compute":
            which = show.add_mutually_exclusive_group()
            which.add_argument("--version", "-v")
            which.add_argument("--label", "-l", help="latest (the default)")
        show.set_defaults(handler=_asset_show(noun_name))


def _model_create(args):
    shown = model.create(
        args.file,
        name=args.name,
        version=args.version,
        path=args.path,
        model_type=args.type,
        description=args.description,
    )
    return shown, None


def _model_show(args):
    return model.show(args.name, version=args.version, label=args.label), None


def _table_view(items, args, columns):
    """az's table view of a list: a few columns, not every field (unless --query picks its own)."""
    if args.output != "table" or args.query:
        return items
    return [{c: item.get(c) for c in columns} for item in items]


def _model_list(args):
    return _table_view(model.list_models(args.name), args, ("name", "version", "type", "description")), None


def _endpoint_create(args):
    return endpoint.create(args.file, name=args.name, auth_mode=args.auth_mode), None


def _endpoint_show(args):
    return endpoint.show(args.name), None


def _endpoint_list(args):
    columns = ("name", "auth_mode", "provisioning_state", "scoring_uri")
    return _table_view(endpoint.list_endpoints(), args, columns), None


def _endpoint_update(args):
    return endpoint.update(args.name, traffic=args.traffic, mirror_traffic=args.mirror_traffic), None


def _endpoint_delete(args):
    endpoint.delete(args.name)
    return None, None


def _endpoint_get_credentials(args):
    return endpoint.get_credentials(args.name), None


def _endpoint_regenerate_keys(args):
    endpoint.regenerate_keys(args.name, key_type=args.key_type)
    return None, None


def _endpoint_invoke(args):
    return endpoint.invoke(args.name, args.request_file, deployment_name=args.deployment_name), None


def _deployment_create(args):
    shown = deployment.create(
        args.file, name=args.name, endpoint_name=args.endpoint_name, all_traffic=args.all_traffic, set_pairs=args.set
    )
    return shown, None


def _deployment_update(args):
    return deployment.update(args.name, args.endpoint_name, file=args.file, set_pairs=args.set or ()), None


def _deployment_show(args):
    return deployment.show(args.endpoint_name, args.name), None


def _deployment_list(args):
    columns = ("name", "endpoint_name", "provisioning_state", "model", "instance_type")
    return _table_view(deployment.list_deployments(args.endpoint_name), args, columns), None


def _deployment_get_logs(args):
    # az prints the log text itself, not a JSON string.
    print(deployment.get_logs(args.endpoint_name, args.name, lines=args.lines, container=args.container))
    return None, None


def _deployment_delete(args):
    deployment.delete(args.endpoint_name, args.name)
    return None, None


def _add_model_noun(nouns, common):
    noun = nouns.add_parser("model", help="the local model registry, like `az ml model`")
    verbs = noun.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    create = verbs.add_parser("create", parents=[common], help="register a model version (its files are copied)")
    create.add_argument("--file", "-f", help="model YAML, e.g. endpoints/model.yml")
    create.add_argument("--name", "-n", help="model name (overrides the YAML's)")
    create.add_argument("--version", "-v", help="version (default: one past the highest)")
    create.add_argument(
        "--path", "-p", help="a local file or folder, azureml://jobs/<job>/outputs/<output> or runs:/<run_id>/<path>"
    )
    create.add_argument("--type", choices=("custom_model", "mlflow_model", "triton_model"), help="model type")
    create.add_argument("--description", "-d")
    create.set_defaults(handler=_model_create)
    show = verbs.add_parser("show", parents=[common], help="show a model version")
    show.add_argument("--name", "-n", required=True)
    which = show.add_mutually_exclusive_group(required=True)
    which.add_argument("--version", "-v")
    which.add_argument("--label", "-l", help="latest: the most recently created version")
    show.set_defaults(handler=_model_show)
    listing = verbs.add_parser("list", parents=[common], help="list models (latest version each), or one's versions")
    listing.add_argument("--name", "-n", help="list this model's versions")
    listing.set_defaults(handler=_model_list)


def _add_online_endpoint_noun(nouns, common):
    noun = nouns.add_parser("online-endpoint", help="local online endpoints, like `az ml online-endpoint`")
    verbs = noun.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    create = verbs.add_parser("create", parents=[common], help="create an endpoint (and its keys)")
    create.add_argument("--file", "-f", required=True, help="endpoint YAML, e.g. endpoints/endpoint.yml")
    create.add_argument("--name", "-n", help="endpoint name (overrides the YAML's)")
    create.add_argument("--auth-mode", help="key (the only mode that runs locally)")
    create.set_defaults(handler=_endpoint_create)
    for verb, handler, text in (
        ("show", _endpoint_show, "show an endpoint: scoring_uri, traffic, provisioning_state"),
        ("get-credentials", _endpoint_get_credentials, "the endpoint's primary and secondary keys"),
    ):
        parser = verbs.add_parser(verb, parents=[common], help=text)
        parser.add_argument("--name", "-n", required=True)
        parser.set_defaults(handler=handler)
    listing = verbs.add_parser("list", parents=[common], help="list endpoints")
    listing.set_defaults(handler=_endpoint_list)
    update = verbs.add_parser("update", parents=[common], help="set the traffic split")
    update.add_argument("--name", "-n", required=True)
    update.add_argument("--traffic", "-r", help="e.g. 'blue=90 green=10' (must add up to 100, or all 0)")
    update.add_argument(
        "--mirror-traffic", help="e.g. 'green=10': copy that share of live requests to one deployment (at most 50)"
    )
    update.set_defaults(handler=_endpoint_update)
    regenerate = verbs.add_parser("regenerate-keys", parents=[common], help="regenerate the primary or secondary key")
    regenerate.add_argument("--name", "-n", required=True)
    regenerate.add_argument("--key-type", default="primary", help="primary (the default) or secondary")
    regenerate.add_argument("--no-wait", action="store_true", help="accepted for az compatibility; it is quick")
    regenerate.set_defaults(handler=_endpoint_regenerate_keys)
    delete = verbs.add_parser("delete", parents=[common], help="delete an endpoint and stop its deployments")
    delete.add_argument("--name", "-n", required=True)
    delete.add_argument("--yes", "-y", action="store_true", help="do not prompt (aml-local never prompts)")
    delete.add_argument("--no-wait", action="store_true", help="accepted for az compatibility; deletion is quick")
    delete.set_defaults(handler=_endpoint_delete)
    invoke = verbs.add_parser("invoke", parents=[common], help="score a request file with the endpoint's key")
    invoke.add_argument("--name", "-n", required=True)
    invoke.add_argument("--request-file", "-r", required=True, help="a JSON file, e.g. endpoints/sample-request.json")
    invoke.add_argument("--deployment-name", "-d", help="this deployment, not one picked by the traffic split")
    invoke.set_defaults(handler=_endpoint_invoke)


def _add_online_deployment_noun(nouns, common):
    noun = nouns.add_parser("online-deployment", help="local inference servers, like `az ml online-deployment`")
    verbs = noun.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    create = verbs.add_parser("create", parents=[common], help="start a deployment and wait until it is ready")
    create.add_argument("--file", "-f", required=True, help="deployment YAML, e.g. endpoints/blue-deployment.yml")
    create.add_argument("--name", "-n", help="deployment name (overrides the YAML's)")
    create.add_argument("--endpoint-name", "-e", help="endpoint name (overrides the YAML's)")
    create.add_argument("--all-traffic", action="store_true", help="send all of the endpoint's traffic to it")
    create.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a YAML field, e.g. model=azureml:mnist-mlp:2"
    )
    create.set_defaults(handler=_deployment_create)
    update = verbs.add_parser("update", parents=[common], help="change a deployment with no failed request")
    update.add_argument("--name", "-n", required=True)
    update.add_argument("--endpoint-name", "-e", required=True)
    update.add_argument("--file", "-f", help="deployment YAML (default: the one it was created from)")
    update.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="change a field, e.g. instance_count=2 or model=..."
    )
    update.set_defaults(handler=_deployment_update)
    for verb, handler, text in (
        ("show", _deployment_show, "show a deployment (provisioning_state from its server)"),
        ("delete", _deployment_delete, "stop a deployment's server and remove it"),
    ):
        parser = verbs.add_parser(verb, parents=[common], help=text)
        parser.add_argument("--name", "-n", required=True)
        parser.add_argument("--endpoint-name", "-e", required=True)
        if verb == "delete":
            parser.add_argument("--yes", "-y", action="store_true", help="do not prompt (aml-local never prompts)")
        parser.set_defaults(handler=handler)
    listing = verbs.add_parser("list", parents=[common], help="list an endpoint's deployments")
    listing.add_argument("--endpoint-name", "-e", required=True)
    listing.set_defaults(handler=_deployment_list)
    logs = verbs.add_parser("get-logs", parents=[common], help="the inference server's log")
    logs.add_argument("--name", "-n", required=True)
    logs.add_argument("--endpoint-name", "-e", required=True)
    logs.add_argument("--lines", "-l", type=int, default=5000, help="how many of the last lines (default 5000)")
    logs.add_argument("--container", "-c", help="inference-server (the only container locally)")
    logs.set_defaults(handler=_deployment_get_logs)


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--query", help="JMESPath query string, as in az")
    common.add_argument("--output", "-o", choices=FORMATS, default="json", help="output format (default json)")

    parser = _Parser(prog="aml-local", description="Run this project's `az ml` YAML on this machine.")
    nouns = parser.add_subparsers(dest="noun", required=True, parser_class=_Parser)

    job = nouns.add_parser("job", help="command jobs, like `az ml job`")
    verbs = job.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    create = verbs.add_parser("create", parents=[common], help="create (and run) a job from a YAML file")
    create.add_argument("--file", "-f", required=True, help="job YAML, e.g. jobs/train.yml")
    create.add_argument("--name", "-n", help="job name (default: generated, as Azure ML does)")
    create.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a YAML field, e.g. inputs.epochs=2"
    )
    create.add_argument("--stream", "-s", action="store_true", help="run in the foreground, streaming logs")
    create.set_defaults(handler=_job_create)
    show = verbs.add_parser("show", parents=[common], help="show a job")
    show.add_argument("--name", "-n", required=True)
    show.set_defaults(handler=_job_show)
    listing = verbs.add_parser("list", parents=[common], help="list jobs, newest first")
    listing.add_argument("--parent-job-name", "-p", help="list the child jobs of this job")
    listing.add_argument("--max-results", "-r", type=int, default=50)
    listing.set_defaults(handler=_job_list)
    stream = verbs.add_parser("stream", parents=[common], help="follow a job's logs until it ends")
    stream.add_argument("--name", "-n", required=True)
    stream.set_defaults(handler=_job_stream)
    cancel = verbs.add_parser("cancel", parents=[common], help="cancel a running job")
    cancel.add_argument("--name", "-n", required=True)
    cancel.set_defaults(handler=_job_cancel)
    download = verbs.add_parser("download", parents=[common], help="copy a finished job's output to a folder")
    download.add_argument("--name", "-n", required=True)
    download.add_argument("--output-name", required=True, help="the output, e.g. model")
    download.add_argument("--download-path", "-p", help="where named-outputs/<output> goes (default: here)")
    download.set_defaults(handler=_job_download)
    _add_model_noun(nouns, common)
    _add_asset_nouns(nouns, common)
    _add_online_endpoint_noun(nouns, common)
    _add_online_deployment_noun(nouns, common)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with quiet.libraries():
            result, failure = args.handler(args)
        if result is not None:
            text = render(result, args.query, args.output)
            if text:
                print(text)
    except AmlLocalError as err:
        print(f"ERROR: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ERROR: interrupted", file=sys.stderr)
        return 130
    if failure:
        print(f"ERROR: {failure}", file=sys.stderr)
        return 1
    return 0
