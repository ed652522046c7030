"""Sweep jobs (`type: sweep`) run here as Azure ML runs them: trials sampled from the search space, each a
child command job, stopped early by the policy from the primary metric they log to MLflow.

The trial code knows nothing about the sweep, as on Azure: it gets its hyperparameters on the command line
(`${{search_space.x}}`) and as AZUREML_SWEEP_<x> variables, and logs the primary metric. The driver (this
module, in the foreground with --stream or as a detached `python -m aml_local.jobs.sweep JOB_DIR`) polls each
running trial's metric history; every value logged counts as one interval, and the policy
(jobs/early_termination.py) decides at its evaluation intervals. A stopped trial's whole process tree is
ended and it is recorded Canceled with the reason and interval; one that logs NaN is recorded Failed.

The best trial is the Completed trial with the best value of the primary metric it logged (Azure ranks
trials by their best logged value; only completed trials have outputs to register). The sweep's outputs are
the best trial's outputs, and `properties.best_child_run_id` names it.
"""

import contextlib
import getpass
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from knack.log import get_logger

from aml_local import AmlLocalError, job_records, progress, quiet, store
from aml_local.jobs import common, early_termination, kinds, runner, search_space

# knack's logger (named cli.<module>): under aml-local it prints `WARNING: ...` on stderr, and --only-show-errors
# hides it, as az's warnings.
logger = get_logger(__name__)

# The clock the limits are measured on (trial_timeout, the sweep's timeout, a trial's elapsed time): one name, so
# that a test can run a 60 s trial_timeout (the SDK's floor) on a faster clock instead of waiting a minute. Grace
# periods for a stopping process stay on real time.
clock = time.monotonic
POLL_SECONDS = 0.5  # as `job stream` polls: a trial's end is seen, and the next one started, half a second sooner
PROGRESS_SECONDS = 30.0  # how often the running trials' latest metrics are printed, when they changed
STOP_GRACE_SECONDS = 30.0


def _sdk_dict(job) -> dict:
    return json.loads(json.dumps(job._to_dict(), default=str))


def create(job, file, name=None, set_pairs=(), stream=False, echo=None):
    """`job create` of a sweep job: record it (parent run, job folder) and start its driver."""
    yaml_dir = Path(file).resolve().parent
    name = common.new_name(name or job.name)
    shown_inputs, input_values = common.resolve_inputs(job.inputs, yaml_dir)
    trial = job.trial
    template = {
        "command": trial.command,
        "code": str((yaml_dir / trial.code).resolve() if trial.code else yaml_dir),
        "environment": common.ref(trial.environment),
        "environment_spec": common.environment_spec(trial.environment, file),
        "environment_variables": {str(k): str(v) for k, v in (trial.environment_variables or {}).items()},
        "distribution": common.plain(trial.distribution),
        "resources": common.plain(trial.resources),
        "input_values": input_values,
        "inputs": shown_inputs,
        "outputs": {o: common.output_type(v) for o, v in (job.outputs or {}).items()},
        "params_as_inputs": False,
    }
    spec = prepare(
        job,
        template,
        name=name,
        file=file,
        set_pairs=set_pairs,
        experiment_name=job.experiment_name,
        tags=job.tags,
        display_name=job.display_name,
        description=job.description,
        compute=job.compute,
    )
    common.launch(spec, stream=stream, echo=echo)
    return spec


def prepare(
    sdk_sweep,
    template,
    *,
    name,
    file,
    set_pairs=(),
    pipeline_node=None,
    experiment_name=None,
    tags=None,
    display_name=None,
    description=None,
    compute=None,
    parent_run_id=None,
    parent_job_name=None,
):
    """Check a sweep (a sweep job, or a pipeline's sweep node) and record it, ready for its driver.

    `template` is the trial as a command: its command line, code folder, environment, the inputs every trial
    gets, the outputs each trial writes, and whether sampled values also fill inputs of the same name (a
    pipeline's sweep node, whose trial is a component) or only `${{search_space.x}}` (a sweep job)."""
    for warning in search_space.validate(sdk_sweep):
        logger.warning("%s", warning)
    if not sdk_sweep.objective or not sdk_sweep.objective.primary_metric:
        raise AmlLocalError(f"{file}: objective.primary_metric is required")
    if not Path(template["code"]).is_dir():
        raise AmlLocalError(f"{file}: trial code {template['code']} is not a folder")
    # Resolve the trial command once with a sample, so a bad ${{...}} fails now rather than in every trial.
    probe = search_space.make_sampler(sdk_sweep).suggest() or {}
    _trial_command(template, probe, {o: "OUT" for o in template["outputs"]})
    described = _sdk_dict(sdk_sweep)
    experiment_name, experiment_id, run_id, tags = common.record_run(
        name, "sweep", experiment_name, tags, parent_run_id
    )
    job_dir = store.jobs_dir() / name
    (job_dir / "outputs").mkdir(parents=True)
    spec = {
        "name": name,
        "type": "sweep",
        "display_name": display_name or name,
        "description": description,
        "experiment_name": experiment_name,
        "experiment_id": experiment_id,
        "mlflow_run_id": run_id,
        "parent_run_id": parent_run_id,
        "parent_job_name": parent_job_name,
        "file": str(Path(file).resolve()),
        "set_pairs": list(set_pairs or ()),
        "pipeline_node": pipeline_node,
        "compute": common.ref(compute) or "local",
        "trial": described.get("trial", {}) | {"code": template["code"]},
        "trial_template": template,
        "search_space": described.get("search_space"),
        "sampling_algorithm": described.get("sampling_algorithm"),
        "objective": described.get("objective"),
        "limits": described.get("limits"),
        "early_termination": described.get("early_termination"),
        "inputs": template["inputs"],
        # Each becomes a link to the best trial's folder when the sweep ends.
        "outputs": {o: {"type": kind, "path": str(job_dir / "outputs" / o)} for o, kind in template["outputs"].items()},
        "tags": tags,
        "created_at": common.now(),
        "created_by": getpass.getuser(),
    }
    job_records.write_spec(job_dir, spec)
    return spec


def _trial_command(template, params, outputs):
    """A trial's command line: sampled values for ${{search_space.x}} (and for ${{inputs.x}} in a pipeline's
    sweep node), the sweep's inputs, and this trial's output folders."""
    values = dict(template["input_values"])
    if template["params_as_inputs"]:
        values |= {f"inputs.{k}": _param_text(v) for k, v in params.items()}
    values |= {f"outputs.{o}": str(path) for o, path in outputs.items()}
    return common.resolve_command(search_space.substitute(template["command"], params), values)


def load_sdk_sweep(spec):
    """The SDK's sweep object again (the sampler and policy are built from it): the job, or the pipeline's node."""
    loaded = common.load(spec["file"], spec["set_pairs"])
    return loaded.jobs[spec["pipeline_node"]] if spec.get("pipeline_node") else loaded


def add_to_show(result, spec, run):
    """The sweep-specific fields of `job show`: its settings, trial counts by state, and the best trial."""
    for key in ("trial", "search_space", "sampling_algorithm", "objective", "limits", "early_termination"):
        result[key] = spec.get(key)
    counts = {}
    for child in store.job_runs(run.info.run_id, max_results=10000):
        state = child.data.tags.get(store.TAG_STATUS, "NotStarted")
        counts[state] = counts.get(state, 0) + 1
    properties = result["properties"]
    properties["aml_local.trial_counts"] = dict(sorted(counts.items()))
    best = run.data.tags.get("best_child_run_id")
    if best:
        properties["best_child_run_id"] = best
        properties["score"] = run.data.tags.get("score")
    for output in result["outputs"].values():
        output.setdefault("mode", "rw_mount")


@dataclass
class Trial:
    index: int
    name: str
    params: dict
    spec: dict
    process: object
    started: float
    history: list = field(default_factory=list)
    stopping: str | None = None  # the status a stop was asked for
    stop_sent: float = 0.0
    status: str = "Running"
    message: str | None = None
    elapsed: float = 0.0


class Sweep:
    """The driver: sample, start, watch, stop, record."""

    def __init__(self, job_dir: Path, echo=None):
        self.job_dir = Path(job_dir)
        self.spec = json.loads((self.job_dir / "job.json").read_text())
        self.sdk_job = load_sdk_sweep(self.spec)
        self.template = self.spec["trial_template"]
        self.echo = echo
        self.events = None  # a runner.EventLog while run() drives the job
        self.sleep = time.sleep  # the driver's Signals.sleep while run() drives the job (a Ctrl-C raises there)
        self.status_line = progress.StatusLine(echo)  # trials by state and the best so far, live on a terminal
        objective = self.sdk_job.objective
        self.metric = objective.primary_metric
        self.maximize = str(objective.goal).lower() == "maximize"
        self.policy = early_termination.from_sdk(self.sdk_job.early_termination, objective.goal, self.metric)
        self.sampler = search_space.make_sampler(self.sdk_job)
        limits = self.sdk_job.limits
        self.max_total = getattr(limits, "max_total_trials", None) or 1000
        self.max_concurrent = min(getattr(limits, "max_concurrent_trials", None) or self.max_total, self.max_total)
        self.timeout = getattr(limits, "timeout", None)
        self.trial_timeout = getattr(limits, "trial_timeout", None)
        self.trials: list[Trial] = []
        self.best: Trial | None = None
        self.exhausted = False

    # ---- output -------------------------------------------------------------------------------------------
    def say(self, text):
        self.status_line.clear()
        self.events.say(text)

    def summary(self):
        counts = {}
        for trial in self.trials:
            counts[trial.status] = counts.get(trial.status, 0) + 1
        to_start = 0 if self.exhausted else self.max_total - len(self.trials)
        parts = [f"{n} {state.lower()}" for state, n in sorted(counts.items())] + [f"{to_start} to start"]
        best = f"; best {self.metric} {self._score(self.best):.4f} ({self.best.name})" if self.best else ""
        return ", ".join(parts) + best

    # ---- trials -------------------------------------------------------------------------------------------
    def _threads_per_trial(self):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, cores // self.max_concurrent)

    def start_trial(self, params):
        index = len(self.trials)
        name = f"{self.spec['name']}_{index}"  # Azure ML names trials <sweep name>_<n>
        template = self.template
        env = dict(template["environment_variables"])
        env |= {f"AZUREML_SWEEP_{key}": _param_text(value) for key, value in params.items()}
        # Concurrent trials share the cores: each gets its share of threads (unless the YAML says otherwise).
        threads = str(self._threads_per_trial())
        for variable in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
            env.setdefault(variable, threads)
        env.setdefault("TF_NUM_INTEROP_THREADS", "1")
        shown_inputs = dict(template["inputs"])
        input_values = dict(template["input_values"])
        if template["params_as_inputs"]:
            shown_inputs |= {k: _param_text(v) for k, v in params.items()}
            input_values |= {f"inputs.{k}": _param_text(v) for k, v in params.items()}
        spec = common.prepare_command(
            name,
            file=self.spec["file"],
            command=search_space.substitute(template["command"], params),
            code=template["code"],
            yaml_dir=Path(self.spec["file"]).parent,
            shown_inputs=shown_inputs,
            input_values=input_values,
            outputs={o: {"type": kind} for o, kind in template["outputs"].items()},
            experiment_name=self.spec["experiment_name"],
            environment=template["environment"],
            environment_spec=template.get("environment_spec"),
            environment_variables=env,
            distribution=template["distribution"],
            resources=template["resources"],
            compute=self.spec["compute"],
            tags=self.spec["tags"],
            display_name=name,
            parent_run_id=self.spec["mlflow_run_id"],
            parent_job_name=self.spec["name"],
            params={k: _param_text(v) for k, v in params.items()},
        )
        process = common.spawn(store.jobs_dir() / name, "aml_local.jobs.runner")
        self.trials.append(Trial(index, name, params, spec, process, clock()))
        shown = " ".join(f"{k}={_param_text(v)}" for k, v in params.items())
        self.say(f"trial {name} started: {shown}")

    def stop_trial(self, trial, status, message):
        trial.stopping, trial.message = status, message
        trial.stop_sent = time.monotonic()
        job_dir = store.jobs_dir() / trial.name
        (job_dir / "cancel.json").write_text(json.dumps({"status": status, "message": message}))
        with contextlib.suppress(ProcessLookupError):
            trial.process.send_signal(signal.SIGTERM)  # its runner stops the whole process tree and records it

    def _force_stop(self, trial):
        """The runner did not end in time: kill it and everything it started."""
        import psutil

        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(trial.process.pid)
            for proc in [*parent.children(recursive=True), parent]:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
        trial.process.wait()
        store.set_status(trial.spec["mlflow_run_id"], trial.stopping or "Failed", trial.message)

    def read_history(self, trial):
        history = store.client().get_metric_history(trial.spec["mlflow_run_id"], self.metric)
        trial.history = [m.value for m in sorted(history, key=lambda m: (m.step, m.timestamp))]

    def _score(self, trial):
        values = [v for v in trial.history if not math.isnan(v)]
        return (max if self.maximize else min)(values) if values else None

    def check(self, trial):
        """Watch one running trial: NaN, trial_timeout, the policy; then its end."""
        self.read_history(trial)
        if trial.stopping is None:
            elapsed = clock() - trial.started
            if any(math.isnan(v) for v in trial.history):
                interval = next(i for i, v in enumerate(trial.history, 1) if math.isnan(v))
                self.stop_trial(trial, "Failed", f"logged {self.metric}=NaN at interval {interval}")
            elif self.trial_timeout and elapsed > self.trial_timeout:
                self.stop_trial(trial, "Canceled", f"trial_timeout: still running after {self.trial_timeout} s")
            else:
                histories = {t.name: t.history for t in self.trials}
                finished = {t.name for t in self.trials if t.status != "Running"}
                decision = self.policy.decide(trial.name, histories, finished=finished)
                if decision is not None:
                    self.stop_trial(
                        trial, "Canceled", f"early termination at interval {decision.interval}: {decision.reason}"
                    )
            if trial.stopping:
                self.say(f"trial {trial.name} stopping ({trial.stopping}): {trial.message}")
        code = trial.process.poll()
        if code is None:
            if trial.stopping and time.monotonic() - trial.stop_sent > STOP_GRACE_SECONDS:
                self._force_stop(trial)
            else:
                return
        self.finish(trial)

    def finish(self, trial):
        trial.elapsed = clock() - trial.started
        self.read_history(trial)  # the values logged after the last poll
        run = store.client().get_run(trial.spec["mlflow_run_id"])
        trial.status = run.data.tags.get(store.TAG_STATUS, "Failed")
        if trial.status in job_records.ACTIVE_STATES:  # the runner died without recording its end
            trial.status, trial.message = "Failed", "its runner ended without recording a result"
            store.set_status(trial.spec["mlflow_run_id"], trial.status, trial.message)
        trial.message = run.data.tags.get(store.TAG_STATUS_MESSAGE, trial.message)
        score = self._score(trial)
        if trial.status == "Completed" and score is None:
            trial.status, trial.message = "Failed", f"completed without logging {self.metric}"
            store.set_status(trial.spec["mlflow_run_id"], trial.status, trial.message)
        self.sampler.report(trial.params, score if trial.status == "Completed" else None)
        result = f"{self.metric}={score:.4f} (best of {len(trial.history)} intervals)" if score is not None else ""
        detail = f": {trial.message}" if trial.status != "Completed" and trial.message else ""
        self.say(f"trial {trial.name} {trial.status} after {trial.elapsed:.0f} s {result}{detail}".rstrip())
        if trial.status == "Completed" and (self.best is None or self._better(score, self._score(self.best))):
            self.best = trial
            client = store.client()
            client.set_tag(self.spec["mlflow_run_id"], "best_child_run_id", trial.name)
            client.set_tag(self.spec["mlflow_run_id"], "score", repr(score))
            self.say(f"new best: {trial.name} with {self.metric}={score:.4f}")
        self.say(self.summary())

    def progress(self) -> str:
        """The running trials' latest primary-metric values: the live view between start and end events."""
        parts = []
        for t in self.running():
            latest = f"{self.metric}={t.history[-1]:.4f} at interval {len(t.history)}" if t.history else "no metric yet"
            parts.append(f"{t.name}: {latest}")
        return ("running: " + "; ".join(parts)) if parts else ""

    def _better(self, a, b):
        return a > b if self.maximize else a < b

    def running(self):
        return [t for t in self.trials if t.status == "Running"]

    # ---- the loop -----------------------------------------------------------------------------------------
    def run(self) -> tuple[str, str | None]:
        started = clock()
        self.say(
            f"{self.max_total} trials at most, {self.max_concurrent} at a time "
            f"({self._threads_per_trial()} threads each); objective: {'maximize' if self.maximize else 'minimize'} "
            f"{self.metric}; early termination: {_describe(self.spec.get('early_termination'))}"
        )
        timed_out = False
        last_progress, shown_progress = time.monotonic(), None
        while True:
            for trial in self.running():
                self.check(trial)
            if time.monotonic() - last_progress > PROGRESS_SECONDS:
                progress = self.progress()
                if progress and progress != shown_progress:
                    self.say(progress)
                last_progress, shown_progress = time.monotonic(), progress
            if self.timeout and clock() - started > self.timeout and not timed_out:
                timed_out = True
                self.say(f"timeout: the sweep reached its limit of {self.timeout} s; stopping its trials")
                for trial in self.running():
                    if trial.stopping is None:
                        self.stop_trial(trial, "Canceled", f"the sweep reached its timeout ({self.timeout} s)")
            while not timed_out and not self.exhausted and len(self.running()) < self.max_concurrent:
                if len(self.trials) >= self.max_total:
                    self.exhausted = True
                    break
                params = self.sampler.suggest()
                if params is None:
                    self.exhausted = True  # a grid has no more points
                    break
                self.start_trial(params)
            if not self.running() and (self.exhausted or timed_out):
                break
            self.status_line.show(f"[sweep {clock() - started:5.0f} s] {self.summary()}")
            self.sleep(POLL_SECONDS)
        self.status_line.clear()
        return self.conclude(timed_out)

    def cancel_all(self, reason):
        for trial in self.running():
            if trial.stopping is None:
                self.stop_trial(trial, "Canceled", reason)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while self.running():
            for trial in self.running():
                if trial.process.poll() is not None:
                    self.finish(trial)
                elif time.monotonic() > deadline:
                    self._force_stop(trial)
                    self.finish(trial)
            time.sleep(0.2)

    def conclude(self, timed_out=False) -> tuple[str, str | None]:
        if self.best is not None:
            for output_name in self.spec["outputs"]:
                link = self.job_dir / "outputs" / output_name
                if link.is_symlink():
                    link.unlink()
                link.symlink_to(store.jobs_dir() / self.best.name / "outputs" / output_name)
            self.spec["best_child_run_id"] = self.best.name
            job_records.write_spec(self.job_dir, self.spec)
        self.record_artifacts()
        if timed_out:
            return "Canceled", f"the sweep reached its timeout ({self.timeout} s)"
        if self.best is None:
            return "Failed", f"no trial completed with a {self.metric} value ({len(self.trials)} started)"
        score = self._score(self.best)
        self.say(f"best trial: {self.best.name} {self.metric}={score:.4f} params: {self.best.params}")
        return "Completed", None

    def record_artifacts(self):
        """A table of the trials and a chart of the primary metric by interval, on the sweep's run."""
        rows = []
        for t in self.trials:
            score = self._score(t)
            rows.append(
                {
                    "trial": t.name,
                    "status": t.status,
                    **{k: _param_text(v) for k, v in t.params.items()},
                    f"best {self.metric}": "" if score is None else f"{score:.4f}",
                    "intervals": len(t.history),
                    "seconds": round(t.elapsed),
                    "message": t.message or "",
                }
            )
        if not rows:
            return
        header = list(rows[0])
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(str(r.get(h, "")).replace("|", "/") for h in header) + " |" for r in rows]
        table = "\n".join(lines) + "\n"
        (self.job_dir / "trials.md").write_text(table)
        (self.job_dir / "trials.json").write_text(json.dumps(rows, indent=2))
        chart = self.job_dir / "sweep_chart.png"
        _chart(self.trials, self.metric, self.best, chart)
        client = store.client()
        for path in (self.job_dir / "trials.md", self.job_dir / "trials.json", chart):
            client.log_artifact(self.spec["mlflow_run_id"], str(path))
        if self.echo is not None:
            self.echo.write("\n" + table + f"\nchart: {chart}\n")


def _chart(trials, metric, best, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for t in trials:
        if not t.history:
            continue
        x = list(range(1, len(t.history) + 1))
        stopped = t.status != "Completed"
        label = f"{t.name} ({t.status.lower()})" + (" best" if t is best else "")
        (line,) = ax.plot(
            x, t.history, linestyle="--" if stopped else "-", linewidth=2.5 if t is best else 1.2, label=label
        )
        if stopped:
            ax.plot(x[-1], t.history[-1], marker="x", markersize=10, color=line.get_color())
    ax.set_xlabel("interval (each logged value)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by interval; dashed and x: stopped early")
    ax.grid(alpha=0.3)
    if ax.get_lines():  # no trial logged a value (all timed out, say): nothing to name in a legend
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _describe(policy: dict | None) -> str:
    if not policy:
        return "none"
    settings = ", ".join(f"{k} {v}" for k, v in policy.items() if k != "type" and v not in (None, 0, 0.0))
    return f"{policy.get('type')} ({settings})"


def _param_text(value):
    # repr for floats: the trial command and the logged param then read back to the same float.
    return repr(value) if isinstance(value, float) else str(value)


def run(job_dir: Path, echo=None) -> str:
    """Drive the sweep in job_dir to its end; returns its final status (used by --stream and by main)."""
    job_dir = Path(job_dir)
    sweep = Sweep(job_dir, echo=echo)
    sweep.events = runner.EventLog(job_dir, "sweep", echo)

    run_id = sweep.spec["mlflow_run_id"]
    status, message = "Failed", None
    # Deferred signals: the loop writes to the store between its sleeps; a Ctrl-C is acted on at the next sleep.
    with runner.driving(job_dir, deferred=True) as signals:
        sweep.sleep = signals.sleep
        try:
            store.set_status(run_id, "Running")
            status, message = sweep.run()
        except runner.Canceled as signame:
            signals.hold()  # a second Ctrl-C must not leave trials behind
            status, message = "Canceled", f"canceled by {signame}"
            sweep.say(f"canceled by {signame}: stopping {len(sweep.running())} running trials")
            try:
                sweep.cancel_all(f"the sweep was canceled ({signame})")
                sweep.conclude()
            except Exception as err:  # still canceled; say what was not done
                message += f"; stopping its trials did not finish: {err}"
        except Exception as err:
            signals.hold()
            sweep.cancel_all(f"the sweep failed: {err}")
            status, message = "Failed", f"aml-local could not run the sweep: {err}"
        finally:
            signals.hold()
            store.set_status(run_id, status, message)
            if message:
                sweep.say(f"{status}: {message}")
            sweep.events.close()
    return status


def main(argv=None):
    job_dir = Path((argv or sys.argv[1:])[0])
    with quiet.libraries():
        return 0 if run(job_dir) == "Completed" else 1


def _prepare_node(node, template, *, yaml_dir, description=None, **fields):
    return prepare(node, template, description=description, **fields)


SCHEMA = "https://azuremlschemas.azureedge.net/latest/sweepJob.schema.json"
kinds.register(
    kinds.JobKind(
        type="sweep",
        schema=SCHEMA,
        driver_module="aml_local.jobs.sweep",
        create=create,
        run=run,
        add_to_show=add_to_show,
        prepare_node=_prepare_node,
    )
)


if __name__ == "__main__":
    sys.exit(main())
