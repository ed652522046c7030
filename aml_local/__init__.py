"""aml-local: the `az ml` verbs this project needs, run on this machine from the same YAML files.

Laid out by `az ml` noun family, imports running one way only (tests/test_layout.py checks it):
cli -> jobs/ (job verbs, command/sweep/pipeline kinds, runner) and endpoints/ (online endpoints, deployments)
-> assets/ (model, data, environment, compute) -> the shared floor (store, specs, output, progress, processes,
quiet, job_records).
"""

__all__ = ["AmlLocalError"]


class AmlLocalError(Exception):
    """A user-facing error: printed as one line, exit code 2, no traceback."""
