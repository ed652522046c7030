"""The `job` noun: verbs (verbs.py) dispatching on the job's type to the kinds registered in kinds.py: command,
sweep (with its search space and early-termination policies), pipeline, and parallel (a pipeline's parallel node or a
batch endpoint's scoring step, on the mini-batch engine of minibatch.py); runner.py is a job's process.

Importing the package registers every kind."""

from aml_local.jobs import command, parallel, pipeline, sweep  # noqa: F401  (each registers its kind)
