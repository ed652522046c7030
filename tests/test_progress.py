"""Live progress (a line rewritten with a carriage return) appears only on a terminal: the download's bytes and rate,
a streamed sweep's trials by state and best so far, a deployment's readiness wait. With CI=true, or into a pipe,
there is none; the one-line-per-event output stays. A terminal is a real pseudo-terminal (the pty module)."""

import contextlib
import functools
import gzip
import hashlib
import http.server
import io
import os
import pathlib
import re
import subprocess
import sys
import textwrap
import threading

import pytest

from aml_local import progress
from aml_local.endpoints.online import servers

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_in(terminal: bool, argv, env, cwd=None, timeout=120) -> str:
    """Run argv with stdout and stderr on a new pseudo-terminal (terminal=True) or a pipe; return what it wrote."""
    if not terminal:
        result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout + result.stderr
    import pty

    leader, follower = pty.openpty()
    process = subprocess.Popen(argv, env=env, cwd=cwd, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    with contextlib.suppress(OSError):  # EIO once the child has exited and the terminal is closed
        while chunk := os.read(leader, 65536):
            chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=timeout) == 0, b"".join(chunks)[-2000:]
    return b"".join(chunks).decode(errors="replace")


def read_until(screen, end: bytes, timeout: float = 5.0) -> bytes:
    """What a pty's leader side shows up to and including `end`: one read may return only part of the writes."""
    import select

    seen = b""
    while not seen.endswith(end) and select.select([screen], [], [], timeout)[0]:
        seen += screen.read(200)
    return seen


def environment(ci: bool, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "CI" and not k.startswith(("MLFLOW_", "AZUREML_"))}
    return env | ({"CI": "true"} if ci else {}) | extra


# ---------------------------------------------------------------------------------------------------------------
# The helpers' one rule.


def test_only_a_terminal_outside_ci_gets_a_live_line(monkeypatch):
    import pty

    leader, follower = pty.openpty()
    with os.fdopen(follower, "w") as terminal, os.fdopen(leader, "rb", buffering=0) as screen:
        monkeypatch.delenv("CI", raising=False)
        assert progress.interactive(terminal)
        line = progress.StatusLine(terminal)
        line.show("2 running, 1 completed")
        line.finish("done")
        assert read_until(screen, b"done\r\n") == b"\r\x1b[K2 running, 1 completed\r\x1b[Kdone\r\n"
        for ci in ("true", "1"):
            monkeypatch.setenv("CI", ci)
            assert not progress.interactive(terminal)
        monkeypatch.setenv("CI", "false")
        assert progress.interactive(terminal)
    read, write = os.pipe()
    with os.fdopen(read) as pipe_out, os.fdopen(write, "w") as pipe_in:
        assert not progress.interactive(pipe_in) and not progress.interactive(io.StringIO())
        quiet = progress.StatusLine(pipe_in)
        quiet.show("never shown")
        quiet.finish("nor this")
        pipe_in.close()
        assert pipe_out.read() == ""
    sys.path.insert(0, str(REPO_ROOT / "src"))
    import mnist_data

    monkeypatch.delenv("CI")
    assert not mnist_data._live_progress(io.StringIO())


# ---------------------------------------------------------------------------------------------------------------
# Download: bytes and rate.


@pytest.fixture
def mirror(tmp_path, idx_files):
    """The tiny MNIST files gzipped behind a local HTTP server: (base URL, checksums of the decompressed files)."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    for name, raw in idx_files.items():
        (folder / f"{name}.gz").write_bytes(gzip.compress(raw, mtime=0))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/", {n: hashlib.md5(raw).hexdigest() for n, raw in idx_files.items()}
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("terminal", "ci", "live"), [(True, False, True), (True, True, False), (False, False, False)])
def test_download_progress_shows_bytes_and_rate_only_on_a_terminal(mirror, tmp_path, terminal, ci, live):
    base, checksums = mirror
    script = f"import mnist_data; mnist_data.fetch({str(tmp_path / 'cache')!r}, [{base!r}], checksums={checksums!r})"
    env = environment(ci, PYTHONPATH=str(REPO_ROOT / "src"))
    output = run_in(terminal, [sys.executable, "-c", script], env)
    assert output.count("checksum ok") == 4, output  # the plain lines are there either way
    assert ("\r" in output.replace("\r\n", "")) is live, output
    assert ("MB/s" in output) is live, output
    if live:
        assert re.search(r"\r  \S+/train-images-idx3-ubyte\.gz: \d+\.\d\d of \d+\.\d\d MB, \d+\.\d MB/s", output), (
            output
        )


# ---------------------------------------------------------------------------------------------------------------
# A streamed sweep: trials by state and the best so far.

TRIAL = """
import sys, time, mlflow
with mlflow.start_run():
    for epoch in range(1, 4):
        mlflow.log_metric("acc", float(sys.argv[1]) * epoch / 3, step=epoch)
        time.sleep(0.3 if sys.argv[1] == "0.9" else 1.5)  # the better trial ends first: a best while one runs
"""

SWEEP = """\
$schema: https://azuremlschemas.azureedge.net/latest/sweepJob.schema.json
type: sweep
experiment_name: progress-sweep
compute: azureml:cpu-cluster
trial:
  code: src
  command: python trial.py ${{search_space.quality}}
  environment: azureml:tiny-env@latest
search_space:
  quality:
    type: choice
    values: [0.9, 0.5]
sampling_algorithm: grid
objective:
  goal: maximize
  primary_metric: acc
limits:
  max_total_trials: 2
  max_concurrent_trials: 2
"""


@pytest.mark.slow
def test_a_streamed_sweep_shows_its_trials_and_best_live_on_a_terminal(
    tmp_path, project_environments, warm_aml_local, seed_store
):
    project_environments(tmp_path)
    seed_store(tmp_path / "home")
    (tmp_path / "src").mkdir()
    (tmp_path / "src/trial.py").write_text(textwrap.dedent(TRIAL))
    (tmp_path / "sweep.yml").write_text(SWEEP)
    # The command as a process forked from conftest's warm_aml_local, with the terminal as its stdout and stderr.
    env = environment(False, AML_LOCAL_HOME=str(tmp_path / "home"), **warm_aml_local["env"])
    aml_local = [warm_aml_local["command"], "job", "create", "--file", "sweep.yml", "--stream"]
    output = run_in(True, aml_local, env, cwd=tmp_path, timeout=240)
    assert "Status: Completed" in output and "new best:" in output, output[-3000:]
    live = [part for part in output.split("\r\x1b[K") if part.startswith("[sweep ")]
    assert any("2 running, 0 to start" in part for part in live), output[-3000:]
    assert any("1 completed, 1 running, 0 to start; best acc 0.9000" in part for part in live), output[-3000:]


# ---------------------------------------------------------------------------------------------------------------
# A deployment waiting for its server.


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


class StillStarting:
    def poll(self):
        return None


@pytest.mark.parametrize("ci", [False, True])
def test_the_readiness_wait_counts_seconds_on_a_terminal(monkeypatch, ci):
    answers = iter([False, False, True])
    monkeypatch.setattr(servers, "ready", lambda server, timeout: next(answers))
    monkeypatch.setattr(servers, "READY_POLL_S", 0.01)
    monkeypatch.setattr(sys, "stderr", FakeTerminal())
    if ci:
        monkeypatch.setenv("CI", "true")
    else:
        monkeypatch.delenv("CI", raising=False)
    probe = {"initial_delay": 1, "period": 1, "failure_threshold": 5, "timeout": 1}
    servers.wait_until_ready({"name": "blue", "readiness_probe": probe}, [{"process": StillStarting(), "port": 1}])
    shown = sys.stderr.getvalue()
    if ci:
        assert shown == ""
    else:
        assert shown.count("\r\x1b[Kdeployment blue: waiting for 1 of 1 servers to be ready, 0 s of 6 s") == 2
        assert shown.endswith("\r\x1b[Kdeployment blue: ready after 0.0 s\n")
