"""The verbs' side of an endpoint's router (endpoints/router/server.py): the routing table they write, the router
process they start, find and stop, and waiting until the router has a table in force.

- routing.json (in the endpoint's folder, mode 0600: it holds the keys) is the one record of what the router serves:
  the keys, the port, the live and mirrored traffic, and each ready deployment's limits, probe and servers. A verb
  changes it under the store's "endpoints" lock by reading it, changing it, adding 1 to its generation and writing it
  whole (a temporary file renamed over it), checked first by the router's own rules (routing_table.parse_table), so a
  table the router would refuse is never written.
- The router runs in a session of its own (`python -m aml_local.endpoints.router --state-dir DIR`, stderr appended to
  DIR/router.log) and names itself in DIR/router.json (pid, start time, port, the generation in force). It is found
  by that pid and start time (aml_local.processes: a reused pid is never taken for it) and by `GET /` answering 200;
  a command that needs it and finds it gone starts it again, on the port routing.json records, so the endpoint's
  scoring URI never changes.
- After a write, `wait_for` returns once router.json shows that generation (or says why the router refused it).
"""

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from aml_local import AmlLocalError, processes, store
from aml_local.endpoints.online import records
from aml_local.endpoints.router.routing_table import ROUTER_FILE, ROUTING_FILE, SCHEMA_VERSION, parse_table

ROUTER_LOG = "router.log"
START_TIMEOUT_S = 20  # importing the router and binding its port takes well under a second; a loaded machine more
APPLY_TIMEOUT_S = 15  # the router looks at routing.json every 0.1 s
HEALTH_TIMEOUT_S = 2
STOP_GRACE_S = 15  # the router lets requests in progress finish (at most the longest request_timeout_ms) first


def state_dir(endpoint: str) -> Path:
    return records.endpoint_dir(endpoint)


def routing_path(endpoint: str) -> Path:
    return state_dir(endpoint) / ROUTING_FILE


def read(endpoint: str) -> dict:
    """routing.json as a dict (the keys included)."""
    path = routing_path(endpoint)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        records.load_endpoint(endpoint)  # names the endpoints that exist when this one does not
        raise AmlLocalError(f"online endpoint {endpoint}: its routing table {path} is missing") from None
    except (OSError, ValueError) as err:
        raise AmlLocalError(f"online endpoint {endpoint}: its routing table {path} is unreadable ({err})") from None


def _write(endpoint: str, document: dict):
    parse_table(document)  # the router's own rules: a table it would refuse is never written
    path = routing_path(endpoint)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(document, handle, indent=1)
    os.replace(temporary, path)


def create(endpoint: str, keys: dict, port: int):
    """The first routing table: keys, no deployments, no traffic; port 0 lets the router pick a free one."""
    _write(
        endpoint,
        {
            "schema_version": SCHEMA_VERSION,
            "generation": 1,
            "endpoint": endpoint,
            "port": port,
            "keys": keys,
            "traffic": {},
            "mirror_traffic": {},
            "deployments": {},
        },
    )


def change(endpoint: str, edit) -> int:
    """Apply edit(document) to routing.json under the endpoints lock and write it with the next generation; the
    generation written. Call wait_for(endpoint, generation) to know the router serves it."""
    with store.locked("endpoints"):
        document = read(endpoint)
        edit(document)
        document["generation"] = int(document.get("generation", 0)) + 1
        _write(endpoint, document)
        return document["generation"]


# ---------------------------------------------------------------------------------------------------------------------
# The router process
# ---------------------------------------------------------------------------------------------------------------------


def state(endpoint: str) -> dict | None:
    """router.json, or None when the router never wrote one (or it is being replaced this instant)."""
    try:
        return json.loads((state_dir(endpoint) / ROUTER_FILE).read_text())
    except (OSError, ValueError):
        return None


def answers(port: int, timeout: float = HEALTH_TIMEOUT_S) -> bool:
    """Whether 127.0.0.1:port answers `GET /` with 200: the router's health route and a server's liveness route."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", "/")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def running(endpoint: str) -> dict | None:
    """router.json when the process it names is still that router; else None."""
    found = state(endpoint)
    if found and processes.alive(found.get("pid"), found.get("started")):
        return found
    return None


def _last_log_line(endpoint: str) -> str:
    lines = [line for line in _tail(state_dir(endpoint) / ROUTER_LOG).splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(router.log is empty)"


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - 64 * 1024))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def start(endpoint: str) -> int:
    """Start the endpoint's router and wait until it answers; its port. The port routing.json records is the one it
    takes (0 the first time: a free one, then written back so that every later start takes the same)."""
    folder = state_dir(endpoint)
    wanted = int(read(endpoint).get("port") or 0)
    if wanted and port_in_use(wanted):
        raise AmlLocalError(
            f"online endpoint {endpoint}: its port {wanted} on 127.0.0.1 is taken by another program, so its router "
            "cannot start there and its scoring URI cannot be kept; free the port, or delete and create the endpoint"
        )
    with open(folder / ROUTER_LOG, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "aml_local.endpoints.router", "--state-dir", str(folder)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=folder,
            start_new_session=True,  # outlives this command, and a Ctrl-C in its terminal
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        code = process.poll()
        if code is not None:
            raise AmlLocalError(
                f"online endpoint {endpoint}: its router exited with code {code} at start: {_last_log_line(endpoint)}"
            )
        found = state(endpoint)
        if found and found.get("pid") == process.pid and found.get("port") and answers(found["port"]):
            port = int(found["port"])
            break
        if time.monotonic() > deadline:
            processes.stop_group(process.pid, grace=2)
            raise AmlLocalError(
                f"online endpoint {endpoint}: its router did not answer within {START_TIMEOUT_S} s "
                f"(last line of {folder / ROUTER_LOG}: {_last_log_line(endpoint)})"
            )
        time.sleep(0.05)
    if port != wanted:
        wait_for(endpoint, change(endpoint, lambda document: document.update(port=port)))
    return port


def ensure(endpoint: str) -> int:
    """The router's port, the router started again first if it is gone (or alive but not answering for a while)."""
    found = running(endpoint)
    if found is not None:
        deadline = time.monotonic() + 3 * HEALTH_TIMEOUT_S
        while time.monotonic() < deadline:
            if answers(found["port"]):
                return int(found["port"])
            time.sleep(0.2)
        processes.stop_group(found["pid"], grace=STOP_GRACE_S)  # alive, but not answering its health route: hung
    return start(endpoint)


def stop(endpoint: str):
    """Stop the router, if it is running (requests in progress finish first)."""
    found = running(endpoint)
    if found is not None and not processes.stop_group(found["pid"], grace=STOP_GRACE_S):
        raise AmlLocalError(f"online endpoint {endpoint}: its router (process group {found['pid']}) did not stop")


def wait_for(endpoint: str, generation: int):
    """Wait until the router has routing table `generation` (or a later one) in force, starting it if it is gone."""
    ensure(endpoint)
    deadline = time.monotonic() + APPLY_TIMEOUT_S
    while True:
        found = state(endpoint) or {}
        if int(found.get("generation", 0)) >= generation:
            return
        if time.monotonic() > deadline:
            # Never expected (every table is checked before it is written), but said plainly if it happens.
            refused = f": it refused it ({found['routing_error']})" if found.get("routing_error") else ""
            raise AmlLocalError(
                f"online endpoint {endpoint}: its router did not take routing table generation {generation} within "
                f"{APPLY_TIMEOUT_S} s{refused} (see {state_dir(endpoint) / ROUTER_LOG})"
            )
        time.sleep(0.02)


def wait_drained(endpoint: str, addresses: set[tuple[str, int]], timeout: float):
    """Wait until none of these servers, taken out of the routing table, has a request in progress (router.json's
    draining list), at most timeout seconds (the longest a request lasts there). A router that is gone, or was started
    again since, has nothing in progress on them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = running(endpoint)
        draining = {(server["host"], server["port"]) for server in (found or {}).get("draining", [])}
        if not addresses & draining:
            return
        time.sleep(0.02)


def restarted_servers(endpoint: str, deployment: str) -> list[tuple[int, float]]:
    """(pid, start time) of each of the deployment's servers that the router started again itself (router.json)."""
    found = state(endpoint) or {}
    return [
        (server["pid"], server["started"])
        for server in (found.get("deployments") or {}).get(deployment, [])
        if server.get("restarts") and server.get("pid") and server.get("started") is not None
    ]


def server_states(endpoint: str, deployment: str) -> dict[int, dict]:
    """What router.json says of the deployment's servers, by port: up, failures, restarts, and the pid and start time
    of the process serving there now."""
    found = state(endpoint) or {}
    return {server["port"]: server for server in (found.get("deployments") or {}).get(deployment, [])}


def stop_process(pid: int, started: float | None, grace: float) -> bool:
    """Stop a server's process group unless its leader's pid names another program now; whether it is gone. A leader
    gone, or a zombie, is no proof the group is: its workers, or its own threads still exiting, may hold its port."""
    if started is None or processes.replaced(pid, started):
        processes.reap(pid)
        return True
    return processes.stop_group(pid, grace=grace)
