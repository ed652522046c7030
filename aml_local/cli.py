"""The `aml-local` command line: `az ml` nouns and verbs, with az's --query and --output."""

import argparse
import logging
import sys
import warnings

from aml_local import AmlLocalError
from aml_local.output import FORMATS, render


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line naming the problem, exit code 2 (argparse's own code for usage errors).
        self.exit(2, f"ERROR: {self.prog}: {message}\n")


def _quiet_libraries():
    # The SDK announces its experimental classes and MLflow its migrations on every load; a CLI
    # that mirrors az should print what az prints and no more.
    logging.getLogger("azure").setLevel(logging.ERROR)
    logging.getLogger("azure.ai.ml._utils._experimental").disabled = True
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*experimental.*")


def _failure(job_shown):
    """None for a completed job; else the one line `az ml job stream` would end with."""
    if job_shown["status"] == "Completed":
        return None
    message = job_shown["properties"].get("aml_local.status_message")
    return f"job {job_shown['name']} ended {job_shown['status']}" + (f": {message}" if message else "")


def _job_create(args):
    from aml_local import job

    result = job.create(args.file, name=args.name, set_pairs=args.set, stream=args.stream)
    return result, _failure(result) if args.stream else None


def _job_show(args):
    from aml_local import job

    return job.show(args.name), None


def _job_list(args):
    from aml_local import job

    jobs = job.list_jobs(parent_job_name=args.parent_job_name, max_results=args.max_results)
    if args.output == "table" and not args.query:
        # az's table view of jobs: a few columns, not every field.
        columns = ("name", "display_name", "type", "status", "experiment_name", "compute")
        jobs = [{c: j.get(c) for c in columns} | {"created": j["creation_context"]["created_at"]} for j in jobs]
    return jobs, None


def _job_stream(args):
    from aml_local import job

    return None, _failure(job.stream(args.name))


def _job_cancel(args):
    from aml_local import job

    return job.cancel(args.name), None


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
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    try:
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
