"""The job kinds `job create` dispatches on (the YAML's `type`): each kind registers itself here, and the verbs
(jobs/verbs.py) and a pipeline's nodes find it here, so no kind imports the dispatcher or another kind."""

from collections.abc import Callable
from dataclasses import dataclass

from aml_local import AmlLocalError


@dataclass(frozen=True)
class JobKind:
    type: str  # the YAML's `type`: command, sweep, pipeline
    schema: str  # the `$schema` that `az ml job show` prints for it
    driver_module: str  # `python -m <driver_module> JOB_DIR` runs a recorded job of this kind, detached
    create: Callable  # create(sdk_job, file, name=, set_pairs=, stream=, echo=) -> the recorded job's spec
    run: Callable  # run(job_dir, echo=None) -> final status: drives a recorded job in this process
    add_to_show: Callable | None = None  # add_to_show(result, spec, run): the kind's own fields of `job show`
    # prepare_node(node, template, **pipeline_fields) -> spec: record a pipeline's node of this kind, ready to run
    prepare_node: Callable | None = None


_KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    _KINDS[kind.type] = kind
    return kind


def get(job_type: str, file=None) -> JobKind:
    try:
        return _KINDS[job_type]
    except KeyError:
        where = f"{file}: " if file else ""
        raise AmlLocalError(
            f"{where}job type {job_type!r} is not supported by aml-local ({', '.join(sorted(_KINDS))})"
        ) from None
