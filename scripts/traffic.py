#!/usr/bin/env python3
"""Real traffic through an online endpoint's scoring URI, as any client sends it, and a check of who answered.

    printf '%s' "$key" | python3 scripts/traffic.py SCORING_URI --requests 200 --expect blue=90 green=10 \
        [--request-file endpoints/sample-request.json] [--label 7]

The key is read from stdin (never argv). Each request is the request file, POSTed with `Authorization: Bearer <key>`;
the deployment that answered is the response's `azureml-model-deployment` header, which Azure's front end (and the
local endpoint's router) puts on every answer. Prints one line: the counts per deployment and what was expected.
Exits 1, saying why, when a request fails (anything but 200, or no answer), an answer names no deployment or predicts
something other than --label, or a deployment's share is off its expected percentage by more than 4.5 standard
deviations of the binomial count (a 0% or 100% share must be exact). Standard library only: it runs wherever the
stage scripts run, against Azure (https) or this machine.
"""

import argparse
import http.client
import json
import math
import sys
import time
from urllib.parse import urlsplit

DEPLOYMENT_HEADER = "azureml-model-deployment"
TOLERANCE_SD = 4.5  # a correct router fails the check about once in 150,000 runs


def connect(uri: str, timeout: float) -> http.client.HTTPConnection:
    parts = urlsplit(uri)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    return kind(parts.hostname, parts.port, timeout=timeout)


def send(uri: str, key: str, body: bytes, count: int, timeout: float, label: int | None) -> tuple[dict, list]:
    """({deployment: answers}, [problems]); one kept-alive connection, opened again if the server closes it."""
    parts = urlsplit(uri)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    counts, problems, connection = {}, [], None
    for number in range(1, count + 1):
        connection = connection or connect(uri, timeout)
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as err:
            problems.append(f"request {number}: no answer ({type(err).__name__}: {err})")
            connection.close()
            connection = None
            continue
        deployment = response.getheader(DEPLOYMENT_HEADER)
        if response.status != 200:
            problems.append(f"request {number}: HTTP {response.status} from {deployment}: {raw[:200]!r}")
        elif not deployment:
            problems.append(f"request {number}: the answer has no {DEPLOYMENT_HEADER} header")
        elif label is not None and json.loads(raw).get("predictions") != [label]:
            problems.append(f"request {number}: {deployment} predicted {json.loads(raw).get('predictions')}")
        else:
            counts[deployment] = counts.get(deployment, 0) + 1
        if response.getheader("Connection", "").lower() == "close":
            connection.close()
            connection = None
    if connection is not None:
        connection.close()
    return counts, problems


def share_problems(counts: dict, expected: dict, total: int) -> list:
    problems = [f"{name} answered {counts[name]} requests, expected none" for name in counts if name not in expected]
    for name, percent in expected.items():
        got, p = counts.get(name, 0), percent / 100
        if p in (0, 1):
            if got != round(total * p):
                problems.append(f"{name} answered {got} of {total}, expected {percent}%")
            continue
        slack = TOLERANCE_SD * math.sqrt(total * p * (1 - p))
        if abs(got - total * p) > slack:
            problems.append(
                f"{name} answered {got} of {total} ({got / total:.0%}), expected {percent}% "
                f"({total * p - slack:.0f} to {total * p + slack:.0f})"
            )
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("uri", help="the endpoint's scoring URI")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--expect", nargs="+", required=True, metavar="DEPLOYMENT=PERCENT")
    parser.add_argument("--request-file", default="endpoints/sample-request.json")
    parser.add_argument("--label", type=int, help="the digit every answer must predict")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for one answer")
    args = parser.parse_args()
    expected = {}
    for pair in args.expect:
        name, _, percent = pair.partition("=")
        if not name or not percent.isdigit() or int(percent) > 100:
            parser.error(f"--expect {pair}: expected DEPLOYMENT=PERCENT")
        expected[name] = int(percent)
    if sum(expected.values()) != 100:
        parser.error(f"--expect {' '.join(args.expect)}: the percentages add up to {sum(expected.values())}, not 100")
    if args.requests < 1:
        parser.error("--requests: expected at least 1")
    key = sys.stdin.read().strip()
    if not key:
        parser.error("no key on stdin")
    with open(args.request_file, "rb") as handle:
        body = handle.read()
    started = time.monotonic()
    counts, problems = send(args.uri, key, body, args.requests, args.timeout, args.label)
    problems += share_problems(counts, expected, args.requests) if not problems else []
    answered = ", ".join(f"{name} {count}" for name, count in sorted(counts.items())) or "none"
    wanted = ", ".join(f"{name} {percent}%" for name, percent in expected.items())
    seconds = time.monotonic() - started
    print(f"{args.requests} requests through {args.uri} in {seconds:.1f} s: {answered} (expected {wanted})")
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        print(f"traffic check failed: {shown}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
