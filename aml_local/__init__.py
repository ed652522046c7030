"""aml-local: the `az ml` verbs this project needs, run on this machine from the same YAML files.

Laid out by `az ml` noun family, imports running one way only (tests/test_layout.py checks it):
cli/ (the command line, on knack: parsing, -o/--query output, errors) -> jobs/ (job verbs, command/sweep/pipeline
kinds, runner) and endpoints/ (online endpoints, deployments) -> assets/ (model, data, environment, compute) -> the
shared floor (store, specs, progress, processes, quiet, job_records).
"""

__all__ = ["AmlLocalError", "ResourceNotFound"]


class AmlLocalError(Exception):
    """A user-facing error: printed as one `ERROR:` line, exit code 1, no traceback (az's user faults: knack's
    CLIError, which azure-cli's handle_exception reports as UnclassifiedUserFault with exit code 1)."""


class ResourceNotFound(AmlLocalError):
    """The resource a command names (by --name, --endpoint-name, --version) does not exist: where Azure ML answers
    such a GET with 404, azure-cli's handle_exception reports a ResourceNotFoundError with exit code 3
    (Azure/azure-cli src/azure-cli-core/azure/cli/core/util.py). A missing resource that a YAML file or --path
    merely refers to is an AmlLocalError (exit 1): the SDK reports those as a ValidationException."""
