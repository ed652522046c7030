"""The mini-batch engine of `parallel` jobs (a pipeline's parallel node, a batch endpoint's scoring job): the input's
items cut into mini-batches, scored by instance_count x max_concurrency_per_instance worker processes (each one
jobs/minibatch_worker.py in the job's environment: init() once, run() per mini-batch), with Azure's retry and error
rules, and the append_row output written aside and renamed when the job ends well.

What it follows (Azure ML pages "How to use parallel jobs in pipelines", "Deploy models for scoring in batch
endpoints", "Troubleshoot batch endpoints", "Author scoring scripts for batch deployments"):
- work is distributed at the file level: a folder of 100 files in mini-batches of 10 is 10 mini-batches, whatever the
  files' sizes; a worker gets the mini-batch's paths (never their bytes), so its memory is bounded by the mini-batch;
- a mini-batch fails when run() raises, returns fewer elements than it was given items, or runs past
  retry_settings.timeout (the worker is then stopped and a fresh one started, init() again); a failed mini-batch is
  tried again up to retry_settings.max_retries more times; a worker that dies (killed) fails the mini-batch it had,
  which is tried again like any other;
- error_threshold counts failed items over the whole input ("Failed items are counted by the number gap between
  inputs and returns from each mini-batch"; a mini-batch that raised on its last try fails all its items);
  mini_batch_error_threshold counts failed mini-batches; -1 ignores failures; above either, the job fails at once;
- `append_row`: everything run() returned, one line per element, in one file; row order is not guaranteed on
  Azure; here each mini-batch's lines are appended as it settles, so every input is written once whatever was
  retried (a mini-batch's lines are taken from its last try only). `summary_only`: no file, only the counting.

Our choices where Azure documents nothing this machine can follow: items are every file under the input folder
(its sub-folders too), in path order; a worker whose init() raises fails the job at once with its error (every worker
runs the same init()); the output is written to `<name>.partial` beside its final name and renamed once the job has
completed, so no reader ever sees half a file, and a failed job leaves none.
"""

import collections
import contextlib
import dataclasses
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from aml_local import AmlLocalError, processes

WORKER_SCRIPT = Path(__file__).resolve().with_name("minibatch_worker.py")
PROGRESS_EVERY_S = 2.0  # at most this often, when something moved
QUIET_PROGRESS_S = 15.0  # and this often when nothing did (workers still in init(), a long mini-batch)
# The longest init() may take (Azure's first_task_creation_timeout default, 600 s, "How to use parallel jobs").
INIT_TIMEOUT_S = 600.0
STOP_GRACE_S = 5.0


@dataclasses.dataclass(frozen=True)
class Settings:
    mini_batch_size: int
    instance_count: int = 1
    max_concurrency_per_instance: int = 1
    max_retries: int = 3
    timeout: float = 30.0
    error_threshold: int = -1  # failed items allowed (-1: any number)
    mini_batch_error_threshold: int = -1  # failed mini-batches allowed (-1: any number)
    output_action: str = "append_row"  # or summary_only
    logging_level: str = "INFO"

    @property
    def workers(self) -> int:
        return max(1, self.instance_count) * max(1, self.max_concurrency_per_instance)


@dataclasses.dataclass
class Outcome:
    status: str  # Completed or Failed
    message: str | None
    items: int
    mini_batches: int
    succeeded_items: int = 0
    failed_items: int = 0
    failed_mini_batches: int = 0
    seconds: float = 0.0


def list_items(path: Path, input_type: str = "uri_folder") -> list[str]:
    """The input's items: the file itself for uri_file, else every file under the folder, in path order. Hidden
    files and folders (a name starting with '.') are left out, as a folder copied or mounted from a datastore has none
    of ours (our reading)."""
    path = Path(path)
    if input_type == "uri_file" or path.is_file():
        return [str(path)]
    items = []
    for folder, subfolders, files in os.walk(path, followlinks=True):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        items.extend(os.path.join(folder, f) for f in sorted(files) if not f.startswith("."))
    return items


def cut(items: list, size: int) -> list[list]:
    return [items[start : start + size] for start in range(0, len(items), size)]


@dataclasses.dataclass
class _MiniBatch:
    id: int
    items: list
    attempts: int = 0
    done: bool = False


class _Worker:
    """One worker process: its stdin (mini-batches in), the pipe its replies come back on (read by a thread into the
    engine's queue), its log file, and what it is doing."""

    def __init__(self, index: int, slot: int, python: str, env: dict, cwd: str, args: list[str], log_path: Path, inbox):
        self.index, self.slot = index, slot
        read_end, write_end = os.pipe()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed by close()
        try:
            self.process = subprocess.Popen(
                [python, str(WORKER_SCRIPT), str(write_end), *args],
                cwd=cwd,
                env=env,
                stdin=subprocess.PIPE,
                stdout=self.log,
                stderr=subprocess.STDOUT,
                pass_fds=(write_end,),
                start_new_session=True,  # its own process group: a timed-out worker is stopped with its children
            )
        finally:
            os.close(write_end)
        # Should the driver be killed, its watchdog stops this worker's process group (as jobs/runner.py guards a
        # command's): a worker runs in a session of its own, so nothing else would.
        self.guard = processes.guard(self.process.pid, grace=2.0)
        self.ready = False
        self.busy: _MiniBatch | None = None
        self.since = time.monotonic()
        self.gone = False
        reader = threading.Thread(target=self._read, args=(read_end, inbox), daemon=True)
        reader.start()

    def _read(self, read_end: int, inbox):
        with open(read_end, encoding="utf-8", errors="replace") as replies:
            for line in replies:
                with contextlib.suppress(ValueError):
                    inbox.put((self, json.loads(line)))
        inbox.put((self, {"eof": True}))

    def send(self, message: dict):
        self.process.stdin.write((json.dumps(message) + "\n").encode())
        self.process.stdin.flush()

    def stop(self, grace: float = STOP_GRACE_S):
        """Ask it to finish (shutdown() runs), then stop its process group if it does not."""
        if self.process.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self.send({"stop": True})
                self.process.stdin.close()
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.kill()
        self.close()

    def kill(self):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def close(self):
        if self.gone:
            return
        self.gone = True
        with contextlib.suppress(OSError, ValueError):
            self.process.stdin.close()
        self.log.close()
        processes.release([self.guard])


class Engine:
    """Runs one job's mini-batches to the end (see the module's docstring). `launch(index)` gives the (python, env)
    of worker process number `index` (its own environment layer); `say(line)` writes an event line to the job's log;
    `logs` is the job's logs folder (Azure's layout: user/stdout/<node>/process<N>.stdout.txt, user/error.txt,
    user/error/<node>/process<N>.txt, job_progress_overview.txt)."""

    def __init__(
        self,
        settings: Settings,
        *,
        launch: Callable[[int], tuple[str, dict]],
        cwd: str,
        args: list[str],
        logs: Path,
        say: Callable[[str], None],
    ):
        self.settings, self.launch, self.cwd, self.args = settings, launch, cwd, args
        self.logs, self.say = Path(logs), say
        self.inbox: queue.Queue = queue.Queue()
        self.workers: list[_Worker] = []
        self.started_workers = 0
        self.pending: collections.deque[_MiniBatch] = collections.deque()
        self.settled = 0
        self.succeeded_items = self.failed_items = self.failed_mini_batches = 0
        self.first_ready: float | None = None
        self.output = None

    # ---- logs

    def _node(self, slot: int) -> str:
        # Azure groups a parallel job's process logs by node (its address); each instance of this machine is one
        # loopback address of its own (our choice), instance i being 127.0.0.(i+1).
        return f"127.0.0.{slot // max(1, self.settings.max_concurrency_per_instance) + 1}"

    def _process_log(self, slot: int) -> Path:
        return self.logs / "user" / "stdout" / self._node(slot) / f"process{slot}.stdout.txt"

    def _error(self, worker: _Worker, summary: str, detail: str | None):
        """An error, in one line in user/error.txt (and the job's log) and in full in user/error/<node>/process<N>."""
        (self.logs / "user").mkdir(parents=True, exist_ok=True)
        with open(self.logs / "user" / "error.txt", "a") as errors:
            errors.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} process{worker.slot}: {summary}\n")
        if detail:
            path = self.logs / "user" / "error" / self._node(worker.slot) / f"process{worker.slot}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as full:
                full.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {summary}\n{detail}\n")
        self.say(f"ERROR: {summary}")

    def _progress(self, total_batches: int, total_items: int, final: bool = False) -> str:
        running = sum(1 for w in self.workers if w.busy is not None and not w.gone)
        elapsed = time.monotonic() - (self.first_ready or time.monotonic())
        done_items = self.succeeded_items + self.failed_items
        rate = done_items / elapsed if elapsed > 0 else 0.0
        ready = sum(1 for w in self.workers if w.ready and not w.gone)
        line = (
            f"workers ready: {ready} of {len(self.workers)}; "
            f"mini-batches: {self.settled - self.failed_mini_batches} done, {self.failed_mini_batches} failed, "
            f"{running} running, {total_batches - self.settled - running} waiting, of {total_batches}; items: "
            f"{self.succeeded_items} scored, {self.failed_items} failed, of {total_items}; {rate:.1f} items/s"
        )
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / "job_progress_overview.txt", "a") as overview:
            overview.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {'final: ' if final else ''}{line}\n")
        return line

    # ---- workers

    def _start_worker(self, slot: int) -> _Worker:
        python, env = self.launch(self.started_workers)
        worker = _Worker(
            self.started_workers, slot, python, env, self.cwd, self.args, self._process_log(slot), self.inbox
        )
        self.started_workers += 1
        self.workers[slot] = worker
        return worker

    def _dispatch(self, worker: _Worker):
        if not worker.ready or worker.busy is not None or worker.gone or not self.pending:
            return
        batch = self.pending.popleft()
        batch.attempts += 1
        worker.busy, worker.since = batch, time.monotonic()
        # A worker that died meanwhile: its end of file comes through the inbox and the mini-batch is tried again.
        with contextlib.suppress(BrokenPipeError, OSError, ValueError):
            worker.send({"id": batch.id, "items": batch.items})

    # ---- mini-batches

    def _write_rows(self, rows: list[str]):
        if self.output is not None and rows:
            self.output.write("".join(f"{row}\n" for row in rows))

    def _settle_failure(self, batch: _MiniBatch, reason: str, rows: list[str], failed_items: int):
        """A try of `batch` failed: try it again while retries are left, else count it failed."""
        if batch.attempts <= self.settings.max_retries:
            left = self.settings.max_retries - batch.attempts + 1
            self.say(f"mini-batch {batch.id} ({len(batch.items)} items): {reason}; trying it again ({left} left)")
            self.pending.append(batch)
            return
        batch.done = True
        self.settled += 1
        self.failed_mini_batches += 1
        self.failed_items += failed_items
        self.succeeded_items += len(batch.items) - failed_items
        self._write_rows(rows)
        tries = f"{batch.attempts} tr{'y' if batch.attempts == 1 else 'ies'}"
        self.say(f"mini-batch {batch.id} failed after {tries}: {reason} ({failed_items} failed items)")

    def _on_reply(self, worker: _Worker, reply: dict, total_items: int):
        if "init_error" in reply:
            self._error(worker, f"init() failed: {reply['init_error']}", reply.get("traceback"))
            raise _JobFailed(f"the entry script's init() failed: {reply['init_error']}")
        if "ready" in reply:
            worker.ready = True
            self.first_ready = self.first_ready or time.monotonic()
            self.say(f"process{worker.slot} ({self._node(worker.slot)}): init() took {reply['ready']} s")
            return
        batch = worker.busy
        if batch is None or reply.get("id") != batch.id:
            return  # a late reply of a try already given up (timed out): never counted twice
        worker.busy = None
        items = len(batch.items)
        if "error" in reply:
            self._error(worker, f"mini-batch {batch.id}: run() raised {reply['error']}", reply.get("traceback"))
            self._settle_failure(batch, f"run() raised {reply['error']}", [], items)
            return
        returned, rows = int(reply.get("returned", 0)), reply.get("rows") or []
        if returned < items:
            missing = _unnamed(batch.items, rows)
            which = f": no row names {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else "") if missing else ""
            reason = f"run() returned {returned} elements for {items} items{which}"
            self._error(worker, f"mini-batch {batch.id}: {reason}", None)
            self._settle_failure(batch, reason, rows, items - returned)
            return
        batch.done = True
        self.settled += 1
        self.succeeded_items += items
        self._write_rows(rows)

    def _on_gone(self, worker: _Worker):
        """A worker process ended by itself (killed, crashed, os._exit): its mini-batch is tried again elsewhere."""
        if worker.gone:
            return
        code = worker.process.wait()
        worker.close()
        batch = worker.busy
        worker.busy = None
        if not worker.ready:
            self._error(worker, f"process{worker.slot} exited with code {code} before init() returned", None)
            raise _JobFailed(f"a worker process exited with code {code} before init() returned (see its log)")
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        if batch is not None:
            self._error(worker, f"process{worker.slot} {how} while running mini-batch {batch.id}", None)
            self._settle_failure(batch, f"its worker process {how}", [], len(batch.items))
        self._start_worker(worker.slot)

    def _check_timeouts(self):
        now = time.monotonic()
        for worker in list(self.workers):
            if worker.gone:
                continue
            if worker.busy is not None and now - worker.since > self.settings.timeout:
                batch = worker.busy
                worker.busy = None
                worker.kill()
                worker.close()
                reason = f"run() ran past retry_settings.timeout ({self.settings.timeout:g} s)"
                self._error(worker, f"mini-batch {batch.id}: {reason}; its worker was stopped", None)
                self._settle_failure(batch, reason, [], len(batch.items))
                self._start_worker(worker.slot)
            elif not worker.ready and now - worker.since > INIT_TIMEOUT_S:
                raise _JobFailed(f"init() did not return within {INIT_TIMEOUT_S:g} s")

    def _check_thresholds(self):
        s = self.settings
        if s.error_threshold >= 0 and self.failed_items > s.error_threshold:
            raise _JobFailed(f"{self.failed_items} items failed, more than error_threshold ({s.error_threshold})")
        if s.mini_batch_error_threshold >= 0 and self.failed_mini_batches > s.mini_batch_error_threshold:
            raise _JobFailed(
                f"{self.failed_mini_batches} mini-batches failed, more than mini_batch_error_threshold "
                f"({s.mini_batch_error_threshold})"
            )

    def run(self, items: list, output_file: Path | None) -> Outcome:
        """Score `items` (the input's file paths); append_row lines go to output_file (None: summary_only)."""
        started = time.monotonic()
        batches = [_MiniBatch(i, chunk) for i, chunk in enumerate(cut(items, self.settings.mini_batch_size))]
        outcome = Outcome("Failed", None, len(items), len(batches))
        if not batches:
            outcome.message = "the input has no files to score"
            return outcome
        self.pending.extend(batches)
        partial = None
        if output_file is not None and self.settings.output_action == "append_row":
            output_file.parent.mkdir(parents=True, exist_ok=True)
            if output_file.exists():
                # As on Azure ("Troubleshoot batch endpoints": a batch deployment can't overwrite an existing file).
                outcome.message = f"the output file {output_file} exists already; give another output location"
                return outcome
            partial = output_file.with_name(f"{output_file.name}.partial")
            self.output = open(partial, "w")  # noqa: SIM115 - closed below
        count = min(self.settings.workers, len(batches))
        self.workers = [None] * count
        s = self.settings
        self.say(
            f"{len(items)} items in {len(batches)} mini-batches of up to {s.mini_batch_size}; {count} worker "
            f"processes ({s.instance_count} instance(s) x {s.max_concurrency_per_instance} per instance, no more than "
            "mini-batches)"
        )
        try:
            for slot in range(count):
                self._start_worker(slot)
            last_progress, last_state = time.monotonic(), None
            while self.settled < len(batches):
                try:
                    worker, reply = self.inbox.get(timeout=0.2)
                except queue.Empty:
                    pass
                else:
                    if reply.get("eof"):
                        self._on_gone(worker)
                    elif not worker.gone:
                        self._on_reply(worker, reply, len(items))
                    self._check_thresholds()
                self._check_timeouts()
                self._check_thresholds()
                for worker in self.workers:
                    self._dispatch(worker)
                since = time.monotonic() - last_progress
                state = (self.settled, sum(1 for w in self.workers if w.ready and not w.gone))
                if since >= QUIET_PROGRESS_S or (since >= PROGRESS_EVERY_S and state != last_state):
                    self.say(self._progress(len(batches), len(items)))
                    last_progress, last_state = time.monotonic(), state
            outcome.status = "Completed"
        except _JobFailed as failed:
            outcome.message = str(failed)
        finally:
            for worker in self.workers:
                if worker is not None and not worker.gone:
                    # Done: each worker finishes (shutdown() runs). Failed or canceled: none is waited for.
                    if outcome.status == "Completed":
                        worker.stop()
                    else:
                        worker.kill()
                        worker.close()
            if self.output is not None:
                self.output.close()
            outcome.succeeded_items, outcome.failed_items = self.succeeded_items, self.failed_items
            outcome.failed_mini_batches = self.failed_mini_batches
            outcome.seconds = round(time.monotonic() - started, 3)
            if partial is not None:
                if outcome.status == "Completed":
                    partial.replace(output_file)
                else:
                    partial.unlink(missing_ok=True)
        self.say(self._progress(len(batches), len(items), final=True))
        return outcome


class _JobFailed(Exception):
    """The job cannot complete (a threshold passed, init() failed): the message says why."""


def _unnamed(items: list, rows: list[str]) -> list[str]:
    """The items whose file name appears in no returned row: most scripts put the file's name in its row, so these
    are the items run() left out (a hint for the log only; a script that names no file gets no hint)."""
    names = [os.path.basename(str(item)) for item in items]
    text = "\n".join(rows)
    if not any(name in text for name in names):
        return []
    return [name for name in names if name not in text]


def check(settings: Settings, where: str) -> Settings:
    """Refuse settings that cannot run, in one line naming the field."""
    for field, value, low in (
        ("mini_batch_size", settings.mini_batch_size, 1),
        ("instance_count", settings.instance_count, 1),
        ("max_concurrency_per_instance", settings.max_concurrency_per_instance, 1),
        ("retry_settings.max_retries", settings.max_retries, 0),
        ("error_threshold", settings.error_threshold, -1),
        ("mini_batch_error_threshold", settings.mini_batch_error_threshold, -1),
    ):
        if value < low:
            raise AmlLocalError(f"{where}: {field} {value}: expected a whole number >= {low}")
    if settings.timeout <= 0:
        raise AmlLocalError(f"{where}: retry_settings.timeout {settings.timeout}: expected seconds > 0")
    if settings.output_action not in ("append_row", "summary_only"):
        raise AmlLocalError(f"{where}: output_action {settings.output_action!r}: expected append_row or summary_only")
    return settings
