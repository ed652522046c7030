"""Soak: the endpoint, the trainer and the sweep under load, faults and bad input. `make soak` runs it:

    python bench/soak.py [--load-seconds 60] [--examples 1000] [--kills 6] [--only NAME ...] [--results FILE]

Prints one line per check, `CHECK  figure  PASS|FAIL` (SKIP with the reason when this machine cannot do it, e.g.
no permission to mount a tmpfs), and exits 1 if any check failed. Everything runs on 127.0.0.1, in a throwaway
AML_LOCAL_HOME, with bounded counts and durations (about 15 minutes on 2 cores). Sections (--only picks some):

- endpoint:  a model trained on MNIST_DATA, deployed with endpoints/blue-deployment.yml; wrk for --load-seconds at
             16 then 64 connections: no non-2xx, no timeouts, p99; server RSS after both within 10% of after warm-up.
- overload:  a deployment whose run() sleeps as long as asked, max_concurrent 2 and request_timeout_ms 1500:
             16 clients at once get only 200 or 429 and never wait past the timeout; a stuck run() gets 408.
- badinput:  the hand-written malformed requests and --examples generated ones (bench/soak_requests.py) against
             the real deployment: each a 4xx with a JSON message; a good request is still answered right after.
- security:  401 without or with a wrong key, 413 past the size limit, listening on 127.0.0.1 only, and neither
             the key nor any request body in the server's log or the store.
- recovery:  the server killed (SIGKILL to its group): `show` says Failed, `create` again brings it back.
- training:  train.py SIGKILLed --kills times at random instants (seeded) and 3 times while a checkpoint is being
             written, resumed each time; it ends within 0.3 points of an uninterrupted run; disk full and a
             read-only output folder fail with one clear line.
- jobs:      a hanging trial ended by trial_timeout; a killed `aml-local job create --stream` (sweep and command
             job) leaves no process and no run Running; two job creates and a model create at once while a
             sweep runs leave every record and the MLflow database intact.
"""

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

import soak_jobs
import soak_requests

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SAMPLE = REPO_ROOT / "endpoints/sample-request.json"
SAMPLE_LABEL = 7  # endpoints/sample-request.json is MNIST test image 0, a 7
SECTIONS = ("endpoint", "overload", "badinput", "security", "recovery", "training", "jobs")
WRK_SCRIPT = """
local file = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BEARER_KEY")

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "non_2xx": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""
# A scoring script for the overload check: run() sleeps as long as the request asks.
SLEEPY_SCORE = """
import json, time
def init():
    pass
def run(raw_data):
    time.sleep(float(json.loads(raw_data)["sleep"]))
    return {"slept": True}
"""
SLEEPY_DEPLOYMENT = """\
$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json
name: sleepy
endpoint_name: mnist-endpoint
code_configuration:
  code: ./code
  scoring_script: sleepy.py
environment: azureml:mnist-inference@latest
instance_type: Standard_DS3_v2
instance_count: 1
request_settings:
  request_timeout_ms: 1500
  max_concurrent_requests_per_instance: 2
environment_variables:
  WORKER_COUNT: "1"
readiness_probe:
  initial_delay: 1
  period: 1
  failure_threshold: 60
"""


class Report:
    def __init__(self):
        self.rows = []

    def add(self, check: str, figure: str, passed: bool | None, reason: str = ""):
        verdict = "SKIP" if passed is None else "PASS" if passed else "FAIL"
        shown = figure if passed is not None else f"skipped: {reason}"
        self.rows.append({"check": check, "figure": shown, "verdict": verdict})
        print(f"{check:<34} {shown:<78} {verdict}", flush=True)

    @property
    def failed(self):
        return [row for row in self.rows if row["verdict"] == "FAIL"]


class Soak:
    def __init__(self, args, scratch: Path):
        self.args = args
        self.scratch = scratch
        self.report = Report()
        self.rng = random.Random(args.seed)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AZUREML_", "TF_CONFIG"))}
        self.env |= {
            "AML_LOCAL_HOME": str(scratch / "home"),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.env.pop("AML_LOCAL_PORT", None)
        self.data = os.environ.get("MNIST_DATA", "")
        self.deployment = None  # {"port", "key", "secondary", "pid"} of the real model's deployment

    # --- helpers -------------------------------------------------------------------------------------------------

    def aml(self, *args, check=True, timeout=600) -> subprocess.CompletedProcess:
        command = [str(BIN / "aml-local"), *map(str, args)]
        result = subprocess.run(
            command, env=self.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode:
            raise RuntimeError(f"aml-local {' '.join(map(str, args[:2]))}: {result.stderr.strip()[-600:]}")
        return result

    def aml_json(self, *args):
        return json.loads(self.aml(*args, "-o", "json").stdout)

    def train(self, folder: Path, epochs: int, *extra, resume: Path | None = None) -> subprocess.Popen:
        env = self.env | {"MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}", "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, str(REPO_ROOT / "src/train.py"), "--epochs", str(epochs), "--momentum", "0.9"]
        command += ["--data-folder", self.data, *map(str, extra)]
        if resume:
            command += ["--resume-from", str(resume)]
        return subprocess.Popen(
            command, env=env, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def server_rss(self) -> int:
        master = psutil.Process(self.deployment["pid"])
        return sum(p.memory_info().rss for p in [master, *master.children(recursive=True)])

    def wrk(self, connections: int, seconds: int) -> dict:
        script = self.scratch / "post.lua"
        script.write_text(WRK_SCRIPT)
        env = {**os.environ, "BODY_FILE": str(SAMPLE), "BEARER_KEY": self.deployment["key"]}
        url = f"http://127.0.0.1:{self.deployment['port']}/score"
        # --timeout 5s is the deployment's request_timeout_ms: a request still unanswered then counts as hung.
        command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script), url]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 60)
        lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
        if result.returncode or not lines:
            raise RuntimeError(f"wrk failed ({result.returncode}): {result.stdout[-500:]} {result.stderr[-500:]}")
        return json.loads(lines[-1].removeprefix("RESULT "))

    def good_request_ok(self) -> bool:
        status, _, raw, _ = soak_requests.request(
            self.deployment["port"], self.deployment["key"], SAMPLE.read_bytes(), {"Content-Type": "application/json"}
        )
        return status == 200 and json.loads(raw)["predictions"] == [SAMPLE_LABEL]

    # --- the real model's deployment ------------------------------------------------------------------------------

    def deploy_model(self):
        folder = self.scratch / "model-training"
        folder.mkdir()
        trainer = self.train(folder, 3, "--model-output", folder / "model", "--checkpoint-dir", folder / "ckpt")
        output, _ = trainer.communicate(timeout=600)
        if trainer.returncode:
            raise RuntimeError(f"training the model failed: {output[-1000:]}")
        self.aml("model", "create", "-f", "endpoints/model.yml", "--path", folder / "model", "-o", "none")
        self.aml("online-endpoint", "create", "-f", "endpoints/endpoint.yml", "-o", "none")
        # The spec's 4 workers on a 4-core VM; this machine has 2 cores. Its request_settings stay as they are.
        shown = self.aml_json(
            "online-deployment",
            "create",
            "-f",
            "endpoints/blue-deployment.yml",
            "--all-traffic",
            "--set",
            "environment_variables.WORKER_COUNT=2",
        )
        keys = self.aml_json("online-endpoint", "get-credentials", "-n", "mnist-endpoint")
        self.deployment = {
            "port": int(shown["properties"]["aml_local.port"]),
            "pid": int(shown["properties"]["aml_local.pid"]),
            "key": keys["primaryKey"],
            "secondary": keys["secondaryKey"],
            "log": Path(shown["properties"]["aml_local.log_file"]),
            "settings": shown["request_settings"],
        }

    # --- checks ---------------------------------------------------------------------------------------------------

    def check_endpoint(self):
        seconds = self.args.load_seconds
        self.wrk(16, min(10, seconds))  # warm-up: every worker has served, allocators have grown
        rss_warm = self.server_rss()
        for connections in (16, 64):
            numbers = self.wrk(connections, seconds)
            rps = numbers["requests"] / (numbers["duration_us"] / 1e6)
            errors = numbers["connect"] + numbers["read"] + numbers["write"] + numbers["timeout"]
            figure = (
                f"{numbers['requests']} req, {rps:.0f}/s, p50 {numbers['p50_us'] / 1e3:.1f} ms, "
                f"p99 {numbers['p99_us'] / 1e3:.1f} ms, max {numbers['max_us'] / 1e3:.0f} ms, "
                f"non-2xx {numbers['non_2xx']}, errors {errors}"
            )
            passed = numbers["non_2xx"] == 0 and errors == 0 and numbers["requests"] > 0
            self.report.add(f"load {connections} conns {seconds}s", figure, passed)
        rss_end = self.server_rss()
        change = (rss_end - rss_warm) / rss_warm
        figure = f"RSS {rss_warm / 2**20:.0f} MiB after warm-up, {rss_end / 2**20:.0f} MiB at end ({change:+.1%})"
        self.report.add("load memory (RSS within 10%)", figure, abs(change) <= 0.10)
        self.report.add("load then a good request", "answered 200 with the right digit", self.good_request_ok())

    def check_overload(self):
        folder = self.scratch / "sleepy"
        (folder / "code").mkdir(parents=True)
        # Its environment, azureml:mnist-inference@latest, is found as the project's own environments/*.yml.
        shutil.copytree(REPO_ROOT / "environments", folder / "environments")
        (folder / "code" / "sleepy.py").write_text(SLEEPY_SCORE)
        (folder / "sleepy.yml").write_text(SLEEPY_DEPLOYMENT)
        shown = self.aml_json("online-deployment", "create", "-f", folder / "sleepy.yml")
        port, key = int(shown["properties"]["aml_local.port"]), self.deployment["key"]
        timeout_s = shown["request_settings"]["request_timeout_ms"] / 1000
        try:
            statuses, slowest = overload(port, key, clients=16, per_client=4, sleep_s=0.4)
            # 429: no slot freed up within request_timeout_ms; 408: a slot did, too late to finish within it.
            figure = (
                f"16 clients x 4 of a 0.4 s run(), 2 slots: statuses {dict(sorted(statuses.items()))}; slowest "
                f"{slowest:.2f} s (request_timeout {timeout_s:.1f} s)"
            )
            allowed = set(statuses) <= {200, 408, 429}
            passed = allowed and statuses.get(429, 0) > 0 and statuses.get(200, 0) > 0 and slowest <= timeout_s + 0.5
            self.report.add("overload: 429 past the slots", figure, passed)
            status, _, raw, seconds = soak_requests.request(
                port, key, json.dumps({"sleep": 10}).encode(), {"Content-Type": "application/json"}
            )
            problem = soak_requests.problem_with_refusal(status, "application/json", raw)
            figure = f"a 10 s run(): {status} after {seconds:.2f} s"
            self.report.add("overload: stuck run() times out", figure, status == 408 and not problem and seconds < 2.5)
        finally:
            self.aml("online-deployment", "delete", "-n", "sleepy", "-e", "mnist-endpoint", "-o", "none", check=False)

    def check_badinput(self):
        port, key = self.deployment["port"], self.deployment["key"]
        limit = int(os.environ.get("AML_LOCAL_MAX_REQUEST_BYTES") or 32 * 1024 * 1024)
        problems, slowest = [], 0.0
        cases = soak_requests.malformed_requests(limit)
        for label, headers, body in cases:
            status, content_type, raw, seconds = soak_requests.request(port, key, body, headers)
            slowest = max(slowest, seconds)
            problem = soak_requests.problem_with_refusal(status, content_type, raw)
            if problem:
                problems.append(f"{label}: {problem}")
        status, raw = soak_requests.oversized_status(port, key, limit + 1)
        if status != 413:
            problems.append(f"a declared body over the limit: {status}")
        figure = f"{len(cases) + 1} hand-written: {len(cases) + 1 - len(problems)} refused with a JSON 4xx"
        figure += f", slowest {slowest:.2f} s" + (f"; {problems[0]}" if problems else "")
        self.report.add("bad input: hand-written", figure, not problems)

        swagger_status, _, raw, _ = soak_requests.request(port, key, b"", {}, path="/swagger.json", method="GET")
        swagger = json.loads(raw) if swagger_status == 200 else None
        if swagger is None:
            self.report.add("bad input: generated", f"GET /swagger.json answered {swagger_status}", False)
            return
        started = time.monotonic()
        counts = soak_requests.run_generated(port, key, swagger, self.args.examples, seed=self.args.seed)
        figure = (
            f"{counts['sent']} from /swagger.json in {time.monotonic() - started:.0f} s: {counts['refused_4xx']} "
            f"refused 4xx, {counts['scored_2xx']} valid scored, problems {len(counts['problems'])}, slowest "
            f"{counts['worst_s']:.2f} s" + (f"; {counts['problems'][0]}" if counts["problems"] else "")
        )
        passed = not counts["problems"] and counts["sent"] >= self.args.examples
        self.report.add("bad input: generated", figure, passed)
        self.report.add("bad input then a good request", "answered 200 with the right digit", self.good_request_ok())

    def check_security(self):
        port, key = self.deployment["port"], self.deployment["key"]
        body, json_type = SAMPLE.read_bytes(), {"Content-Type": "application/json"}
        answers = [
            soak_requests.request(port, "", body, json_type)[0],
            soak_requests.request(port, "wrong-" + key, body, json_type)[0],
            soak_requests.request(port, key[:-1], body, json_type)[0],
            soak_requests.request(port, "", b"", {}, path="/swagger.json", method="GET")[0],
        ]
        figure = f"no key, wrong key, key minus a character, swagger without key: {answers}"
        self.report.add("security: key required", figure, answers == [401] * 4)
        master = psutil.Process(self.deployment["pid"])
        listening = {
            f"{c.laddr.ip}:{c.laddr.port}"
            for p in [master, *master.children(recursive=True)]
            for c in p.net_connections()
            if c.status == psutil.CONN_LISTEN
        }
        passed = bool(listening) and all(address.startswith("127.0.0.1:") for address in listening)
        self.report.add("security: listens on 127.0.0.1 only", ", ".join(sorted(listening)), passed)
        marker = f"BODY-MARKER-{self.rng.randrange(10**9)}"
        soak_requests.request(port, key, json.dumps({"data": [[marker]]}).encode(), json_type)
        soak_requests.request(port, "", json.dumps({"note": marker}).encode(), json_type)
        home = Path(self.env["AML_LOCAL_HOME"])
        leaks = []
        for path in [*home.rglob("*"), *self.scratch.glob("*.log")]:
            if not path.is_file() or path.name == "keys.json" or path.suffix in (".db", ".npz", ".keras", ".h5"):
                continue
            text = path.read_text(errors="replace")
            for secret, what in (
                (key, "primary key"),
                (self.deployment["secondary"], "secondary key"),
                (marker, "body"),
            ):
                if secret in text:
                    leaks.append(f"{what} in {path.relative_to(self.scratch)}")
        figure = f"searched the server log and {home.name}/ for both keys and a request body: {leaks or 'none found'}"
        self.report.add("security: no key or body in logs", figure, not leaks)

    def check_recovery(self):
        pid = self.deployment["pid"]
        os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        shown = self.aml_json("online-deployment", "show", "-n", "blue", "-e", "mnist-endpoint")
        state, message = shown["provisioning_state"], shown["properties"].get("aml_local.status_message", "")
        self.report.add(
            "recovery: show a dead server", f"{state}: {message}", state == "Failed" and "not running" in message
        )
        started = time.monotonic()
        shown = self.aml_json(
            "online-deployment",
            "create",
            "-f",
            "endpoints/blue-deployment.yml",
            "--set",
            "environment_variables.WORKER_COUNT=2",
        )
        traffic = self.aml_json("online-endpoint", "show", "-n", "mnist-endpoint")["traffic"]
        self.deployment |= {
            "port": int(shown["properties"]["aml_local.port"]),
            "pid": int(shown["properties"]["aml_local.pid"]),
        }
        answered = self.good_request_ok()
        figure = f"create again: {shown['provisioning_state']} in {time.monotonic() - started:.0f} s, traffic {traffic}"
        figure += ", scores the sample right" if answered else ", the sample request failed"
        passed = shown["provisioning_state"] == "Succeeded" and traffic.get("blue") == 100 and answered
        self.report.add("recovery: create again restarts it", figure, passed)

    def check_training(self):
        if not self.data:
            self.report.add("training: SIGKILL and resume", "", None, "MNIST_DATA is not set")
            return
        epochs = self.args.epochs
        reference_dir = self.scratch / "train-reference"
        reference_dir.mkdir()
        trainer = self.train(
            reference_dir, epochs, "--model-output", reference_dir / "model", "--checkpoint-dir", reference_dir / "ckpt"
        )
        output, _ = trainer.communicate(timeout=900)
        if trainer.returncode:
            self.report.add("training: SIGKILL and resume", f"the uninterrupted run failed: {output[-300:]}", False)
            return
        reference = json.loads((reference_dir / "model" / "test_metrics.json").read_text())["test_acc"]
        self.killed_training(epochs, reference)
        self.disk_full()
        self.read_only_output()

    def killed_training(self, epochs: int, reference: float):
        """SIGKILL train.py again and again, resuming each time from its checkpoint folder. A "random" kill comes at
        a seeded random instant within the 1.5 s after the run's first epoch line (mid-epoch, or in a checkpoint
        write); a "during-write" kill as soon as a checkpoint's temporary file appears (watched from outside)."""
        folder = self.scratch / "train-killed"
        folder.mkdir()
        checkpoints = folder / "ckpt"
        # Taken from the end: the kills during a write first (each costs at most the epoch being saved), then the
        # random ones. The other way round, the random kills could finish the training before any write was hit.
        plan = ["random"] * self.args.kills + ["during-write"] * 3
        attempts, kills, in_write, behind, printed, problems, extra_tries = 0, 0, 0, 0, [], [], 0
        final = None
        while final is None and not problems:
            attempts += 1
            resume = checkpoints if (checkpoints / "checkpoint.npz").exists() else None
            resumed_from = checkpoint_epoch(checkpoints) if resume else 0
            model_dir = folder / f"model-{attempts}"
            trainer = self.train(
                folder, epochs, "--model-output", model_dir, "--checkpoint-dir", checkpoints, resume=resume
            )
            lines = []
            reader = threading.Thread(target=lines.extend, args=(trainer.stdout,), daemon=True)
            reader.start()
            how = plan.pop() if plan else None
            if how is None and in_write == 0 and extra_tries < 6:  # a write lasts a few ms: try again, bounded
                how, extra_tries = "during-write", extra_tries + 1
            leftovers = set(checkpoints.glob(".checkpoint-*.tmp"))
            if how == "random":
                wait_for(lambda run=trainer, out=lines: printed_epochs(out) or run.poll() is not None, timeout=300)
                time.sleep(self.rng.uniform(0.0, 1.5))
            elif how == "during-write":
                wait_for_checkpoint_write(checkpoints, trainer, timeout=300)
            if how and trainer.poll() is None:
                trainer.kill()
                kills += 1
                trainer.wait()
                reader.join(5)
                printed += printed_epochs(lines)
                in_write += bool(set(checkpoints.glob(".checkpoint-*.tmp")) - leftovers)
                finished = max([resumed_from, *printed_epochs(lines)])
                # The next run resumes from the checkpoint: it must hold every epoch this run said it finished.
                saved = checkpoint_epoch(checkpoints) if (checkpoints / "checkpoint.npz").exists() else 0
                behind += max(0, finished - saved)
                continue
            trainer.wait(timeout=900)
            reader.join(5)
            printed += printed_epochs(lines)
            if trainer.returncode or not (model_dir / "test_metrics.json").exists():
                problems.append(f"run {attempts} exited {trainer.returncode}: {''.join(lines)[-300:]}")
            else:
                final = json.loads((model_dir / "test_metrics.json").read_text())["test_acc"]
        if problems:
            self.report.add("training: SIGKILL and resume", problems[0], False)
            return
        # An epoch's line is printed after its checkpoint is written: an epoch printed twice was trained twice.
        trained_twice = len(printed) - len(set(printed))
        difference = abs(final - reference) * 100
        figure = (
            f"{kills} kills ({in_write} mid checkpoint write), {attempts} runs: test_acc {final:.4f} vs "
            f"{reference:.4f} uninterrupted ({difference:.2f} points); finished epochs redone {trained_twice}, "
            f"checkpoint behind {behind}, every epoch done {sorted(set(printed)) == list(range(1, epochs + 1))}"
        )
        passed = difference <= 0.3 and trained_twice == 0 and behind == 0 and in_write >= 1
        passed = passed and sorted(set(printed)) == list(range(1, epochs + 1))
        self.report.add("training: SIGKILL and resume", figure, passed)

    def disk_full(self):
        mount_point = self.scratch / "tiny-disk"
        mount_point.mkdir()
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)], capture_output=True, text=True
        )
        if mounted.returncode:
            self.report.add("training: disk full", "", None, f"cannot mount a 256 KiB tmpfs: {mounted.stderr.strip()}")
            return
        try:
            trainer = self.train(
                self.scratch,
                1,
                "--model-output",
                self.scratch / "full-model",
                "--checkpoint-dir",
                mount_point,
                "--train-subset",
                "2000",
            )
            output, _ = trainer.communicate(timeout=300)
            last = output.strip().splitlines()[-1] if output.strip() else ""
            clear = trainer.returncode == 2 and last.startswith("error: ") and "No space left on device" in last
            clear = clear and "Traceback" not in output and not list(mount_point.glob(".checkpoint-*"))
            self.report.add("training: disk full", f"exit {trainer.returncode}: {last[:130]}", clear)
        finally:
            subprocess.run(["umount", str(mount_point)], check=False)

    def read_only_output(self):
        source, mount_point = self.scratch / "ro-source", self.scratch / "read-only"
        source.mkdir()
        mount_point.mkdir()
        bound = subprocess.run(["mount", "--bind", "-o", "ro", str(source), str(mount_point)], capture_output=True)
        if bound.returncode:
            self.report.add("training: unwritable output", "", None, "cannot make a read-only bind mount")
            return
        try:
            trainer = self.train(
                self.scratch, 1, "--model-output", mount_point / "model", "--checkpoint-dir", self.scratch / "ro-ckpt"
            )
            output, _ = trainer.communicate(timeout=300)
            last = output.strip().splitlines()[-1] if output.strip() else ""
            clear = trainer.returncode == 2 and last.startswith("error: cannot write to") and "Traceback" not in output
            self.report.add("training: unwritable output", f"exit {trainer.returncode}: {last[:130]}", clear)
        finally:
            subprocess.run(["umount", str(mount_point)], check=False)

    def check_jobs(self):
        project = soak_jobs.write_project(self.scratch / "jobs")
        folder = project["folder"]
        # A sweep of 2 trials that hang for 10 minutes, with trial_timeout 60 (the shortest the SDK allows).
        hanging = soak_jobs.sweep_spec(folder, "hanging", trials=2, seconds=600, trial_timeout=60)
        started = time.monotonic()
        sweep = subprocess.Popen(
            [str(BIN / "aml-local"), "job", "create", "-f", hanging, "-n", "soak_hang", "--stream", "-o", "none"],
            env=self.env,
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for_trials(self, "soak_hang", 2, timeout=120)
            self.concurrent_commands(project)
            self.killed_driver(project)
            sweep.communicate(timeout=240)
        finally:
            if sweep.poll() is None:
                sweep.kill()
        trials = self.aml_json("job", "list", "--parent-job-name", "soak_hang")
        states = sorted(t["status"] for t in trials)
        pids = [trial_pid(self, t["name"]) for t in trials]
        alive = [pid for pid in pids if pid and process_alive(pid)]
        elapsed = time.monotonic() - started
        figure = f"2 hanging trials, trial_timeout 60: {states} after {elapsed:.0f} s, processes left {len(alive)}"
        self.report.add("jobs: trial_timeout ends a hang", figure, states == ["Canceled", "Canceled"] and not alive)

    def concurrent_commands(self, project):
        folder = project["folder"]
        model_source = folder / "model-src"
        model_source.mkdir()
        (model_source / "weights.txt").write_text("not a real model\n")
        commands = [
            ["job", "create", "-f", project["command"], "-n", "soak_a", "--stream", "-o", "none"],
            ["job", "create", "-f", project["command"], "-n", "soak_b", "--stream", "-o", "none"],
            ["model", "create", "-n", "soak-model", "--path", model_source, "--type", "custom_model", "-o", "none"],
            ["model", "create", "-n", "soak-model", "--path", model_source, "--type", "custom_model", "-o", "none"],
        ]
        processes = [
            subprocess.Popen(
                [str(BIN / "aml-local"), *map(str, c)],
                env=self.env,
                cwd=REPO_ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for c in commands
        ]
        errors = [p.communicate(timeout=300)[1] for p in processes]
        codes = [p.returncode for p in processes]
        statuses = [
            self.aml("job", "show", "-n", n, "--query", "status", "-o", "tsv").stdout.strip()
            for n in ("soak_a", "soak_b")
        ]
        versions = (
            sorted(m["version"] for m in self.aml_json("model", "list", "-n", "soak-model"))
            if all(c == 0 for c in codes)
            else []
        )
        database = Path(self.env["AML_LOCAL_HOME"]) / "mlflow.db"
        with contextlib.closing(sqlite3.connect(database)) as connection:
            integrity = connection.execute("PRAGMA integrity_check").fetchone()[0]
        listed = {j["name"] for j in self.aml_json("job", "list")}
        figure = (
            f"2 jobs + 2 model creates during a sweep: exits {codes}, jobs {statuses}, model versions {versions}, "
            f"sqlite {integrity}, listed {len(listed & {'soak_a', 'soak_b', 'soak_hang'})}/3"
        )
        passed = (
            codes == [0, 0, 0, 0]
            and statuses == ["Completed", "Completed"]
            and versions == ["1", "2"]
            and integrity == "ok"
            and {"soak_a", "soak_b", "soak_hang"} <= listed
        )
        if not passed and any(errors):
            figure += f"; {next(e for e in errors if e).strip()[-150:]}"
        self.report.add("jobs: concurrent commands", figure, passed)

    def killed_driver(self, project):
        folder = project["folder"]
        cases = [
            ("sweep", soak_jobs.sweep_spec(folder, "killed", trials=2, seconds=600), "soak_killed_sweep"),
            ("command job", project["command"], "soak_killed_job"),
        ]
        for what, spec, name in cases:
            extra = ["--set", "inputs.seconds=600"] if what == "command job" else []
            driver = subprocess.Popen(
                [str(BIN / "aml-local"), "job", "create", "-f", spec, "-n", name, "--stream", "-o", "none", *extra],
                env=self.env,
                cwd=REPO_ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if what == "sweep":
                wait_for_trials(self, name, 2, timeout=120)
                children = [t["name"] for t in self.aml_json("job", "list", "--parent-job-name", name)]
            else:
                children = [name]
            pids = wait_for_pids(self, children, timeout=120)
            driver.kill()  # SIGKILL: no handler runs, nothing is recorded by the driver itself
            driver.wait()
            killed_at = time.monotonic()
            deadline = killed_at + 30
            while any(process_alive(pid) for pid in pids) and time.monotonic() < deadline:
                time.sleep(0.2)
            gone_after = time.monotonic() - killed_at
            left = [pid for pid in pids if process_alive(pid)]
            shown = self.aml("job", "show", "-n", name, "--query", "status", "-o", "tsv").stdout.strip()
            child_states = (
                sorted(t["status"] for t in self.aml_json("job", "list", "--parent-job-name", name))
                if what == "sweep"
                else []
            )
            figure = (
                f"{what}: SIGKILL of the streaming aml-local: {len(pids) - len(left)}/{len(pids)} processes gone in "
                f"{gone_after:.1f} s; status {shown}" + (f", trials {child_states}" if child_states else "")
            )
            ended = ("Failed", "Canceled")
            passed = not left and shown in ended and all(s in ended for s in child_states)
            self.report.add(f"jobs: killed driver ({what})", figure, passed)


def overload(port, key, clients, per_client, sleep_s):
    """clients threads each sending per_client requests asking run() to sleep: ({status: count}, slowest s)."""
    statuses, slowest, lock = {}, [0.0], threading.Lock()
    body = json.dumps({"sleep": sleep_s}).encode()

    def client():
        for _ in range(per_client):
            try:
                status, _, _, seconds = soak_requests.request(port, key, body, {"Content-Type": "application/json"})
            except OSError:
                status, seconds = -1, 30.0
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                slowest[0] = max(slowest[0], seconds)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses, slowest[0]


def checkpoint_epoch(folder: Path) -> int:
    import numpy as np

    with np.load(folder / "checkpoint.npz") as saved:
        return int(json.loads(str(saved["meta"]))["epoch"])


def printed_epochs(lines) -> list[int]:
    return [int(m[1]) for line in lines if (m := re.match(r"epoch (\d+)/\d+ ", line))]


def wait_for(predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)


def wait_for_checkpoint_write(folder: Path, trainer: subprocess.Popen, timeout: float):
    """Return as soon as a checkpoint is being written (its temporary file exists): watched from outside, polling
    every 0.2 ms (a write takes a few milliseconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and trainer.poll() is None:
        with contextlib.suppress(OSError):
            if any(name.startswith(".checkpoint-") for name in os.listdir(folder)):
                return
        time.sleep(0.0002)


def process_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def trial_pid(soak: Soak, name: str) -> int | None:
    path = Path(soak.env["AML_LOCAL_HOME"]) / "jobs" / name / "outputs" / "out" / "pid.json"
    with contextlib.suppress(OSError, ValueError):
        return json.loads(path.read_text())["pid"]
    return None


def wait_for_trials(soak: Soak, sweep: str, count: int, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = soak.aml("job", "list", "--parent-job-name", sweep, "-o", "json", check=False)
        if result.returncode == 0 and len(json.loads(result.stdout)) >= count:
            names = [t["name"] for t in json.loads(result.stdout)]
            wait_for_pids(soak, names, timeout=deadline - time.monotonic())
            return
        time.sleep(0.5)
    raise RuntimeError(f"sweep {sweep}: {count} trials did not start within {timeout:.0f} s")


def wait_for_pids(soak: Soak, names, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [trial_pid(soak, name) for name in names]
        if all(pids):
            return pids
        time.sleep(0.2)
    raise RuntimeError(f"jobs {names}: their processes did not start within {timeout:.0f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load-seconds", type=int, default=60, help="seconds of wrk per connection count")
    parser.add_argument("--examples", type=int, default=1000, help="generated bad requests")
    parser.add_argument("--kills", type=int, default=5, help="SIGKILLs of train.py at random instants")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the killed and the reference training run")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--results", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    if not shutil.which("wrk") and "endpoint" in args.only:
        sys.exit("error: the endpoint checks need wrk (Debian: apt-get install wrk)")
    if not os.environ.get("MNIST_DATA"):
        sys.exit("error: MNIST_DATA is not set: point it at the MNIST folder (make soak sets it when ../shared has it)")
    started = time.monotonic()
    print(f"soak started {time.strftime('%Y-%m-%d %H:%M:%S')} on {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory(prefix="aml-soak-") as scratch_name:
        soak = Soak(args, Path(scratch_name))
        needs_deployment = {"endpoint", "overload", "badinput", "security", "recovery"} & set(args.only)
        try:
            if needs_deployment:
                soak.deploy_model()
            for section in SECTIONS:
                if section in args.only:
                    try:
                        getattr(soak, f"check_{section}")()
                    except Exception as err:  # one broken section is a FAIL line, and the others still run
                        soak.report.add(f"{section}: could not run", f"{type(err).__name__}: {err}"[:200], False)
        finally:
            if needs_deployment:
                soak.aml("online-endpoint", "delete", "-n", "mnist-endpoint", "--yes", "-o", "none", check=False)
    minutes = (time.monotonic() - started) / 60
    failed = soak.report.failed
    print(
        f"soak finished in {minutes:.1f} min: {len(soak.report.rows) - len(failed)} of {len(soak.report.rows)} "
        f"checks did not fail",
        flush=True,
    )
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(
            json.dumps(
                {
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "minutes": round(minutes, 1),
                    "rows": soak.report.rows,
                },
                indent=2,
            )
            + "\n"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
