"""A warm parent for the `aml-local` processes of the stage-script tests (tests/test_stage_scripts.py): the scripts
find tests/warm_aml_local/aml-local first on PATH, which hands its argv, environment, working folder and its three
standard file descriptors to this server over a Unix socket; the server forks a child that takes them all on and runs
aml-local's `main` (the console script's own function), and the child's exit code becomes the command's.

Each command is still a process of its own, with the caller's stdin, stdout and stderr (a terminal stays a terminal),
environment and folder, and its own exit code; what the fork saves is the start-up: importing MLflow, the SDK and
aml-local, about 3 s of CPU per `aml-local job ...` or `model ...` command, done once here. What it does not give is
a fresh interpreter: anything a module reads from the environment when it is imported is read here, once (aml-local
reads the environment when a command runs). The child's parent is this server, not the script's shell.

    python tests/warm_aml_local/server.py SOCKET_PATH     (prints "ready" once it listens)
"""

import contextlib
import json
import os
import signal
import socket
import struct
import sys
import traceback


def receive(connection: socket.socket) -> tuple[dict, list[int]]:
    """The client's request and its three file descriptors: a 4-byte length with the descriptors, then the JSON."""
    fds_size = socket.CMSG_SPACE(3 * 4)
    header, ancillary, _, _ = connection.recvmsg(4, fds_size)
    fds = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += list(struct.unpack(f"{len(data) // 4}i", data[: len(data) - len(data) % 4]))
    (length,) = struct.unpack(">I", header)
    body = b""
    while len(body) < length:
        chunk = connection.recv(length - len(body))
        if not chunk:
            raise ConnectionError("the client went away mid-request")
        body += chunk
    return json.loads(body), fds


def run_one(connection: socket.socket) -> None:
    """In the forked child: become the client's command, run it, send back its exit code, exit with it."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the server ignores it; the command waits for its own children
    code = 1
    try:
        request, fds = receive(connection)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["aml-local", *request["argv"]]
        from aml_local.cli import main

        code = main(request["argv"])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        with contextlib.suppress(OSError):
            connection.sendall(str(code or 0).encode())
        os._exit(code or 0)


def serve(path: str) -> None:
    # What every command would import: aml-local, MLflow's client and stores, the SDK that loads the YAML.
    import azure.ai.ml  # noqa: F401
    import mlflow.artifacts
    import mlflow.store.model_registry.sqlalchemy_store
    import mlflow.store.tracking.sqlalchemy_store
    import mlflow.tracking  # noqa: F401

    import aml_local.cli  # noqa: F401

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    print("ready", flush=True)
    while True:
        connection, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            run_one(connection)
        connection.close()


if __name__ == "__main__":
    serve(sys.argv[1])
