"""aml-local: the `az ml` verbs this project needs, run on this machine from the same YAML files.

One module per `az ml` noun (job, ...); `cli` wires them to a command line shaped like `az ml`.
"""

__all__ = ["AmlLocalError"]


class AmlLocalError(Exception):
    """A user-facing error: printed as one line, exit code 2, no traceback."""
