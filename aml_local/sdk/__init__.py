"""azure-ai-ml's MLClient over aml-local: the SDK v2 calls of Azure ML's tutorials (jobs, sweeps, models,
endpoints) run on this machine with only the client's construction changed (`from aml_local.sdk import MLClient`).
The top layer beside cli/ (tests/test_layout.py): it calls the job, endpoint and asset verbs the CLI calls."""

from aml_local.sdk.client import MLClient

__all__ = ["MLClient"]
