"""aml-local as the scenarios drive it: one subprocess per command (the process boundary is part of what they
test: a killed `job create --stream` is a killed process), in a home of the caller's choosing; the reads that only
check what those commands left (a job's status, a listing) in this process; and waiting."""

import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

from aml_local import cli

REPO_ROOT = Path(__file__).resolve().parents[1]
AML_LOCAL = (sys.executable, "-m", "aml_local")


class CommandFailed(RuntimeError):
    """An aml-local command a scenario needed (not the one it checks) exited non-zero."""


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without the settings of an enclosing MLflow run or Azure ML job (a scenario must
    not log into the caller's run), with this venv's commands first on PATH and TensorFlow's start-up chatter off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AZUREML_", "TF_CONFIG"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.pop("AML_LOCAL_PORT", None)  # every deployment a scenario makes takes a free port
    return env | extra


@dataclasses.dataclass(frozen=True)
class Aml:
    """aml-local with AML_LOCAL_HOME=home, run from the repository root (the specs' relative paths hold there).
    `command` is what run() starts: `python -m aml_local`, or another way to start the same command as a process
    (the tests give tests/warm_aml_local/aml-local: a process forked from a parent that imported MLflow and the SDK
    once); a command that a scenario may kill is always `python -m aml_local` (start())."""

    home: Path
    env: dict[str, str]
    command: tuple[str, ...] = AML_LOCAL

    @classmethod
    def at(cls, home: Path, command: tuple[str, ...] = AML_LOCAL, **env: str) -> "Aml":
        return cls(Path(home), clean_env(AML_LOCAL_HOME=str(home), **env), tuple(command))

    def run(self, *args, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        argv = [*self.command, *map(str, args)]
        result = subprocess.run(argv, env=self.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode:
            raise CommandFailed(f"aml-local {' '.join(map(str, args[:2]))}: {result.stderr.strip()[-1500:]}")
        return result

    def json(self, *args, timeout: float = 600):
        return json.loads(self.run(*args, "-o", "json", timeout=timeout).stdout)

    def read(self, *args, check: bool = True) -> str | None:
        """What a read-only command (`job show`, `job list`, `model list`) prints, run in this process with this
        home (None when it fails and check is False): the scenarios poll and check the store with these, and a
        `job` or `model` command as a process spends seconds importing MLflow each time (polled every 0.5 s, that
        kept a core busy while the jobs under test started)."""
        out, err = io.StringIO(), io.StringIO()
        with (
            mock.patch.dict(os.environ, self.env, clear=True),
            contextlib.chdir(REPO_ROOT),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            code = cli.main([str(a) for a in args])
        if code and check:
            raise CommandFailed(f"aml-local {' '.join(map(str, args[:2]))}: {err.getvalue().strip()[-1500:]}")
        return None if code else out.getvalue()

    def read_json(self, *args):
        return json.loads(self.read(*args, "-o", "json"))

    def start(self, *args, stderr=subprocess.DEVNULL, waited_for: bool = False) -> subprocess.Popen:
        """A command left running (e.g. `job create --stream`): the caller waits for it, or kills it. One that the
        caller only waits for (waited_for) is started as run() starts commands; one it may kill is always
        `python -m aml_local`, the process that is the command."""
        return subprocess.Popen(
            [*(self.command if waited_for else AML_LOCAL), *map(str, args)],
            env=self.env,
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
        )


def wait_until(predicate, timeout: float, what: str | None = None, interval: float = 0.2):
    """Poll predicate until it returns something true; return that. After `timeout` seconds: raise TimeoutError
    naming `what` when given, else return the last (false) value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            break
        time.sleep(interval)
    if not value and what is not None:
        raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
    return value
