"""Process helpers shared by jobs and deployments, one implementation each, on psutil:

- a process is named by (pid, start time), so a pid the system has since given to another program is never taken
  for ours (`start_time`, `alive`, `alive_from_file`);
- a process group is stopped with SIGTERM, then SIGKILL after a grace period, and counted as gone once only
  zombies are left (`stop_group`).
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

# Two readings of one process's start time differ by less than this (psutil rounds to the clock tick).
_SAME_START_S = 1.0


def start_time(pid: int | None = None) -> float | None:
    """The process's start time (seconds since the epoch), or None when it is gone."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def alive(pid: int | None, started: float | None) -> bool:
    """Whether pid is still the process that started at `started`, and not a zombie."""
    if not pid or started is None:
        return False
    try:
        process = psutil.Process(pid)
        return abs(process.create_time() - started) < _SAME_START_S and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def replaced(pid: int, started: float) -> bool:
    """Whether pid now names another process than the one that started at `started` (the system gave the pid to
    another program once ours was gone)."""
    now = start_time(pid)
    return now is not None and abs(now - started) >= _SAME_START_S


def listens(pid: int, port: int) -> bool:
    """Whether process pid itself holds a listening TCP socket on port (a free port chosen for a server may be given
    to another program before the server has bound it)."""
    try:
        return any(
            found.status == psutil.CONN_LISTEN and found.laddr.port == port
            for found in psutil.Process(pid).net_connections(kind="tcp")
        )
    except psutil.Error:
        return False


def write_pid_file(path: Path):
    """Name this process in `path` as {"pid", "started"} (read back by alive_from_file)."""
    # Written whole, then renamed into place: a reader never sees it empty or half written (alive_from_file would
    # take that for a dead driver, and `job stream` would end on a job shown Failed while it starts).
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps({"pid": os.getpid(), "started": start_time()}))
    os.replace(partial, path)


def alive_from_file(path: Path) -> bool:
    """Whether the process a pid file names is still running."""
    try:
        info = json.loads(Path(path).read_text())
        return alive(info["pid"], info["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def terminate_from_file(path: Path) -> bool:
    """SIGTERM to the process a pid file names, if it is still that process; whether a signal was sent."""
    try:
        info = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    if not alive(info.get("pid"), info.get("started")):
        return False
    with contextlib.suppress(psutil.Error):
        psutil.Process(info["pid"]).terminate()
        return True
    return False


def reap(pid: int):
    # A process is a child of this one only when this process started it (create, then delete, in one Python
    # session): collect its exit status so it does not linger as a zombie.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def group_gone(pgid: int) -> bool:
    """Whether no process of the group is left but zombies that have finished exiting (reaped by their parents
    soon: they hold no port and run nothing)."""
    reap(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid and not _exited(psutil.Process(pid)):
                return False
        except (OSError, psutil.Error):
            continue
    return True


def _exited(process: psutil.Process) -> bool:
    # A killed process's main thread shows as a zombie while its other threads are still exiting, and until the
    # last of them has, its files (a server's listening socket among them) are open: a connection to its port is
    # still accepted, then dropped. Only a zombie left with its main thread alone holds nothing.
    with process.oneshot():
        return process.status() == psutil.STATUS_ZOMBIE and process.num_threads() <= 1


def stop_group(pgid: int, grace: float = 10.0) -> bool:
    """SIGTERM to a process group, SIGKILL to what is left after `grace` seconds; whether it is gone."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            reap(pgid)
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if group_gone(pgid):
                return True
            time.sleep(0.1)
    return group_gone(pgid)


# The watchdog (see `guard`): it blocks on a pipe that only the guarded process holds open. The pipe closes when
# that process ends, however it ends (SIGKILL included); then what is left of the group is stopped (SIGTERM, and
# SIGKILL after the grace period), and the follow-up command, if any, runs.
_WATCHDOG = """
import os, signal, subprocess, sys, time
pgid, fd, grace, sentinel, then = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5:]
while os.read(fd, 1):
    pass
def alive():
    try:
        os.killpg(pgid, 0)
        return True
    except OSError:
        return False
if pgid and alive():
    os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive():
        os.killpg(pgid, signal.SIGKILL)
if then and (not sentinel or os.path.exists(sentinel)):
    subprocess.run(then, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
"""


def guard(
    pgid: int = 0, grace: float = 10.0, then: list[str] | None = None, sentinel: Path | None = None
) -> tuple[subprocess.Popen, int]:
    """Start a watchdog that acts once this process has ended or closed the returned pipe end: it stops process
    group `pgid` (0: none), then runs `then` if the file `sentinel` still exists (or always, without one).
    Returns (the watchdog, the pipe's write end: close it when the guarded work ended normally). A job's command
    runs in its own session, so without this a killed driver would leave it running."""
    read_end, write_end = os.pipe()
    try:
        watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(pgid), str(read_end), str(grace), str(sentinel or ""), *(then or [])],
            pass_fds=(read_end,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the driver's terminal must not stop the watchdog first
        )
    finally:
        os.close(read_end)
    return watchdog, write_end


def release(guards, wait: float = 15.0):
    """Close the guards' pipes (the work ended normally) and wait for their watchdogs to finish."""
    for _, write_end in guards:
        with contextlib.suppress(OSError):
            os.close(write_end)
    for watchdog, _ in guards:
        with contextlib.suppress(subprocess.TimeoutExpired):
            watchdog.wait(timeout=wait)
