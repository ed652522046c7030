"""The routing table of a local online endpoint's router (endpoints/router/server.py): its file, its rules, and the
state file the router writes back. Read by the router, written by the verbs (aml_local/endpoints/online/routing.py).

The routing table: DIR/routing.json, written by the online-endpoint and online-deployment verbs (write a temporary
file in DIR, then rename it over routing.json: the router never reads half a table), mode 0600 (it holds the keys):

    {
      "schema_version": 1,
      "generation": 7,                      # the verbs add 1 per write; router.json reports the one in force
      "endpoint": "mnist-endpoint",
      "port": 41234,                        # 0 or absent: the router picks a free port and records it in router.json
      "keys": {"primary": "...", "secondary": "..."},
      "traffic": {"blue": 90, "green": 10}, # whole percentages adding up to 100, or all 0
      "mirror_traffic": {"green": 0},       # at most one deployment with a positive share, at most 50
      "deployments": {
        "blue": {
          "instance_count": 1,
          "max_concurrent_requests_per_instance": 4,
          "request_timeout_ms": 5000,
          "max_request_bytes": 33554432,    # optional, default 32 MiB
          "liveness_probe": {"initial_delay": 30, "period": 10, "timeout": 5, "failure_threshold": 6},
          "servers": [
            {"host": "127.0.0.1", "port": 40001,
             "pid": 1234, "started": 1767000000.5,     # optional: the process to stop before a restart (its create
                                                       # time as psutil gives it, so a reused pid is left alone)
             "restart": {"argv": ["python", "-m", "gunicorn", "--bind", "127.0.0.1:40001", "..."],
                         "env": {"...": "..."},        # the whole environment; absent: the router's own
                         "cwd": "/path/app",
                         "log": "/path/logs/inference-server.log"}}   # optional: appended to
          ]
        }
      }
    }

A new version is picked up within the router's RELOAD_POLL_S (or at once on SIGHUP). Requests already in progress finish
where they started; new ones follow the new table (one routed by the old table but not yet sent goes to its deployment's
servers in force now, or, for a deployment just deleted, to a deployment chosen again by the new table: a server that
left the table takes no new request, and the verbs stop it once the requests already sent to it have ended); a server
that stays in the table keeps its health and connections. A table that cannot be read or breaks a rule is refused whole
(the one in force stays, and router.json says why).

What the router writes: DIR/router.json, replaced atomically (write then rename) at start and at every change of the
table in force or of a server's health:

    {"pid": 4321, "started": 1767000000.1, "port": 41234, "state_dir": "...", "generation": 7,
     "applied_at": "2026-12-02T14:05:00+00:00", "routing_error": null,
     "deployments": {"blue": [{"host": "127.0.0.1", "port": 40001, "up": true, "failures": 0, "restarts": 1,
                               "pid": 5678, "started": 1767000100.2}]},
     "draining": [{"host": "127.0.0.1", "port": 40000, ..., "in_progress": 2}]}

(`draining`: servers that left the table while requests sent to them were still in progress, until the last ends.)

(`pid`/`started` of a server: the process the router started for it, when it restarted one; else those of routing.json.)
SIGTERM or SIGINT: stop taking connections, let requests in progress finish (at most the longest request_timeout_ms),
exit 0; servers the router restarted keep running (they are the deployment's, stopped with it by the verbs, who find
them in router.json). A routing table that is missing or invalid at start, or a port that is taken: one line on
stderr, exit 2.
"""

import functools
import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from aml_local import AmlLocalError

ROUTING_FILE = "routing.json"
ROUTER_FILE = "router.json"
SCHEMA_VERSION = 1
# The cap on a request body when the deployment sets none. Azure's docs give no number for managed online endpoints;
# 32 MiB is our choice (it fits the 2,000 images score.py takes with room to spare).
DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Probe:
    initial_delay: float
    period: float
    timeout: float
    failure_threshold: int


@dataclass(frozen=True)
class ServerSpec:
    host: str
    port: int
    pid: int | None
    started: float | None
    restart: dict | None  # {"argv": [...], "env": {...} | None, "cwd": str | None, "log": str | None}

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port


@dataclass(frozen=True)
class DeploymentSpec:
    name: str
    instance_count: int
    max_concurrent_requests_per_instance: int
    request_timeout_ms: int
    max_request_bytes: int
    liveness_probe: Probe
    servers: tuple[ServerSpec, ...]

    @property
    def capacity(self) -> int:
        """Requests in progress at once, beyond which Azure answers 429."""
        return 2 * self.max_concurrent_requests_per_instance * self.instance_count


@dataclass(frozen=True)
class RoutingTable:
    generation: int
    endpoint: str
    port: int
    keys: tuple[bytes, ...]
    weighted: tuple[tuple[str, int], ...]  # deployments with a positive traffic share, and the share
    mirror: tuple[str, int] | None  # (deployment, percent) when a positive share is mirrored
    deployments: dict

    @functools.cached_property
    def draw(self) -> tuple[tuple[str, ...], tuple[int, ...]]:
        """(deployment names, cumulative weights) for random.choices, worked out once per table."""
        names = tuple(name for name, _ in self.weighted)
        return names, tuple(itertools.accumulate(percent for _, percent in self.weighted))


def _fail(where: str, message: str):
    raise AmlLocalError(f"{ROUTING_FILE}: {where}: {message}")


def _field(container: dict, key: str, where: str, kind, *, required=True, default=None):
    if key not in container:
        if required:
            _fail(where, f"missing {key!r}")
        return default
    value = container[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int in Python, never a count or a port here
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        _fail(f"{where}.{key}" if where else key, f"expected {names}, got {json.dumps(value)[:60]}")
    return value


def _number(container, key, where, *, minimum, integer=False, required=True, default=None):
    value = _field(container, key, where, int if integer else (int, float), required=required, default=default)
    if value is not None and (not math.isfinite(value) or value < minimum):
        _fail(f"{where}.{key}", f"expected a number >= {minimum}, got {value}")
    return value


def _port(container, key, where, *, allow_zero=False):
    value = _field(container, key, where, int, required=not allow_zero, default=0)
    if not (0 if allow_zero else 1) <= value <= 65535:
        _fail(f"{where}.{key}" if where else key, f"expected a port number from 1 to 65535, got {value}")
    return value


def _restart_spec(raw, where) -> dict | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        _fail(where, "expected an object with argv (and env, cwd, log)")
    argv = _field(raw, "argv", where, list)
    if not argv or not all(isinstance(part, str) and part for part in argv):
        _fail(f"{where}.argv", "expected a non-empty list of non-empty strings")
    env = _field(raw, "env", where, dict, required=False)
    if env is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        _fail(f"{where}.env", "expected an object of string values")
    return {
        "argv": list(argv),
        "env": dict(env) if env is not None else None,
        "cwd": _field(raw, "cwd", where, str, required=False),
        "log": _field(raw, "log", where, str, required=False),
    }


def _server_spec(raw, where) -> ServerSpec:
    if not isinstance(raw, dict):
        _fail(where, "expected an object with host and port")
    host = _field(raw, "host", where, str)
    if host not in ("127.0.0.1", "localhost", "::1"):
        _fail(f"{where}.host", f"expected a loopback address (127.0.0.1), got {host!r}")
    return ServerSpec(
        host=host,
        port=_port(raw, "port", where),
        pid=_number(raw, "pid", where, minimum=1, integer=True, required=False),
        started=_number(raw, "started", where, minimum=0, required=False),
        restart=_restart_spec(raw.get("restart"), f"{where}.restart"),
    )


def _deployment_spec(name: str, raw) -> DeploymentSpec:
    where = f"deployments.{name}"
    if not isinstance(raw, dict):
        _fail(where, "expected an object")
    probe_raw = _field(raw, "liveness_probe", where, dict)
    probe_where = f"{where}.liveness_probe"
    probe = Probe(
        initial_delay=_number(probe_raw, "initial_delay", probe_where, minimum=0),
        period=_number(probe_raw, "period", probe_where, minimum=0.01),
        timeout=_number(probe_raw, "timeout", probe_where, minimum=0.01),
        failure_threshold=_number(probe_raw, "failure_threshold", probe_where, minimum=1, integer=True),
    )
    servers_raw = _field(raw, "servers", where, list)
    servers = tuple(_server_spec(item, f"{where}.servers[{i}]") for i, item in enumerate(servers_raw))
    if len({server.address for server in servers}) != len(servers):
        _fail(f"{where}.servers", "the same host and port appear twice")
    return DeploymentSpec(
        name=name,
        instance_count=_number(raw, "instance_count", where, minimum=1, integer=True),
        max_concurrent_requests_per_instance=_number(
            raw, "max_concurrent_requests_per_instance", where, minimum=1, integer=True
        ),
        request_timeout_ms=_number(raw, "request_timeout_ms", where, minimum=1, integer=True),
        max_request_bytes=_number(
            raw, "max_request_bytes", where, minimum=0, integer=True, required=False, default=DEFAULT_MAX_REQUEST_BYTES
        ),
        liveness_probe=probe,
        servers=servers,
    )


def _shares(raw: dict, key: str, deployments: dict) -> dict:
    shares = _field(raw, key, "", dict, required=False, default={})
    for name, percent in shares.items():
        if name not in deployments:
            known = ", ".join(sorted(deployments)) or "none"
            _fail(f"{key}.{name}", f"no such deployment (deployments: {known})")
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            _fail(f"{key}.{name}", f"expected a whole percentage from 0 to 100, got {json.dumps(percent)[:30]}")
    return shares


def parse_table(raw) -> RoutingTable:
    """The routing table in routing.json's shape, checked whole; AmlLocalError naming the first bad field."""
    if not isinstance(raw, dict):
        raise AmlLocalError(f"{ROUTING_FILE}: expected a JSON object")
    version = _field(raw, "schema_version", "", int)
    if version != SCHEMA_VERSION:
        _fail("schema_version", f"this router reads version {SCHEMA_VERSION}, got {version}")
    keys_raw = _field(raw, "keys", "", dict)
    keys = tuple(_field(keys_raw, which, "keys", str).encode() for which in ("primary", "secondary"))
    if not all(keys):
        _fail("keys", "primary and secondary must be non-empty")
    deployments_raw = _field(raw, "deployments", "", dict)
    deployments = {name: _deployment_spec(name, spec) for name, spec in deployments_raw.items()}
    traffic = _shares(raw, "traffic", deployments)
    if sum(traffic.values()) not in (0, 100):
        _fail("traffic", f"the percentages add up to {sum(traffic.values())}, not 100 (or 0)")
    mirrored = {name: p for name, p in _shares(raw, "mirror_traffic", deployments).items() if p > 0}
    # The safe-rollout page's rules for mirrored traffic.
    if len(mirrored) > 1:
        _fail("mirror_traffic", f"mirrored traffic goes to one deployment only, got {', '.join(sorted(mirrored))}")
    if sum(mirrored.values()) > 50:
        _fail("mirror_traffic", f"at most 50% of traffic can be mirrored, got {sum(mirrored.values())}%")
    for name in mirrored:
        if traffic.get(name, 0) > 0:
            _fail("mirror_traffic", f"deployment {name} takes live traffic ({traffic[name]}%); it cannot also mirror")
    return RoutingTable(
        generation=_number(raw, "generation", "", minimum=0, integer=True, required=False, default=0),
        endpoint=_field(raw, "endpoint", "", str),
        port=_port(raw, "port", "", allow_zero=True),
        keys=keys,
        weighted=tuple((name, percent) for name, percent in traffic.items() if percent > 0),
        mirror=next(iter(mirrored.items()), None),
        deployments=deployments,
    )


def read_table(path: Path) -> RoutingTable:
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise AmlLocalError(f"no routing table at {path}: the online-endpoint verbs write it") from None
    except OSError as err:
        raise AmlLocalError(f"{path}: cannot read it ({err.strerror})") from None
    try:
        raw = json.loads(text)
    except ValueError as err:
        raise AmlLocalError(f"{path}: not valid JSON ({err})") from None
    return parse_table(raw)


def write_json_atomically(path: Path, document: dict):
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w") as handle:
        json.dump(document, handle, indent=1)
    os.replace(temporary, path)
