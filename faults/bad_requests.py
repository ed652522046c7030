"""Bad requests for a scoring endpoint: hand-written malformed ones, and Hypothesis strategies that derive invalid
requests from the service's own OpenAPI document (GET /swagger.json); the scenarios that send them.

The rule every answer is held to: a bad request gets a 4xx whose body is a JSON object with a "message"; never a 5xx,
never a hang; and the server still answers a good request correctly afterwards.
"""

import gzip
import json
import time

from faults.checks import Check, judge
from faults.client import Target, good_request, openapi, oversized_status, score
from faults.settings import Settings

PIXELS = 784
# A body limit above the largest hand-written case (10 MB), so that one reaches the scoring script.
LIMIT_ABOVE_EVERY_CASE = 12 * 1024 * 1024
GOOD_ROW = [0.5] * PIXELS


def _body(value) -> bytes:
    return json.dumps(value).encode()


def _raw_row(token: str) -> bytes:
    """{"data": [[token, token, ...784]]} with token written as is (NaN, 1e999, huge integers, ...)."""
    return ('{"data": [[' + ", ".join([token] * PIXELS) + "]]}").encode()


def malformed_requests(max_request_bytes: int) -> list[tuple[str, dict, bytes]]:
    """(what it is, extra headers, body) for requests every one of which must get a 4xx with a JSON message."""
    json_type = {"Content-Type": "application/json"}
    ten_mb_unclosed = b'{"data": [' + b"[0.5, 0.5]," * (10 * 1024 * 1024 // 11)  # 10 MB, never closed
    bomb = gzip.compress(b'{"data": [[' + b"0" * (20 * 1024 * 1024), compresslevel=9)  # 20 MB of "0" in ~20 KB
    cases = [
        ("empty body", json_type, b""),
        ("whitespace only", json_type, b"   \n\t "),
        ("truncated object", json_type, b'{"data": [[0.0, 0.1'),
        ("just an opening brace", json_type, b"{"),
        ("JSON null", json_type, b"null"),
        ("JSON array at the top", json_type, b"[[0.5]]"),
        ("JSON string at the top", json_type, b'"data"'),
        ("JSON number at the top", json_type, b"123"),
        ("object without data", json_type, _body({"images": [GOOD_ROW]})),
        ("data is null", json_type, _body({"data": None})),
        ("data is a string", json_type, _body({"data": "0.5"})),
        ("data is an object", json_type, _body({"data": {"0": GOOD_ROW}})),
        ("data is empty", json_type, _body({"data": []})),
        ("an empty image", json_type, _body({"data": [[]]})),
        ("783 pixels", json_type, _body({"data": [GOOD_ROW[:-1]]})),
        ("785 pixels", json_type, _body({"data": [[*GOOD_ROW, 0.5]]})),
        ("a flat list, not a list of images", json_type, _body({"data": GOOD_ROW})),
        ("images nested one level too deep", json_type, _body({"data": [[[0.5]] * PIXELS]})),
        ("a string pixel", json_type, _body({"data": [[*GOOD_ROW[:10], "0.5", *GOOD_ROW[11:]]]})),
        ("a boolean pixel", json_type, _body({"data": [[True, *GOOD_ROW[1:]]]})),
        ("a null pixel", json_type, _body({"data": [[None, *GOOD_ROW[1:]]]})),
        ("an object pixel", json_type, _body({"data": [[{"v": 0.5}, *GOOD_ROW[1:]]]})),
        ("NaN pixels", json_type, _raw_row("NaN")),
        ("Infinity pixels", json_type, _raw_row("Infinity")),
        ("1e999 pixels (overflow to inf)", json_type, _raw_row("1e999")),
        ("400-digit integer pixels", json_type, _raw_row("9" * 400)),
        ("negative pixels", json_type, _body({"data": [[-0.5] * PIXELS]})),
        ("0..255 pixels, not divided by 255", json_type, _body({"data": [[255] * PIXELS]})),
        ("2,001 images", json_type, _body({"data": [GOOD_ROW] * 2001})),
        ("unicode digits as pixels", json_type, _body({"data": [["\u0663"] * PIXELS]})),
        ("lone surrogate escape in a key", json_type, b'{"\\ud800": 1, "data": "x"}'),
        ("invalid UTF-8 bytes", json_type, b'{"data": "\xff\xfe\xfd"}'),
        ("10,000 nested arrays", json_type, b'{"data": ' + b"[" * 10000 + b"]" * 10000 + b"}"),
        ("10 MB body, unterminated", json_type, ten_mb_unclosed),
        ("gzip bomb (Content-Encoding: gzip)", json_type | {"Content-Encoding": "gzip"}, bomb),
        ("text/plain content type", {"Content-Type": "text/plain"}, _body({"data": [GOOD_ROW]})),
        ("form content type", {"Content-Type": "application/x-www-form-urlencoded"}, b"data=0.5"),
        ("no content type", {}, _body({"data": [GOOD_ROW]})),
    ]
    assert all(len(body) <= max_request_bytes for _, _, body in cases), "a case is over the size limit"
    return cases


def problem_with_refusal(status: int, content_type: str, raw: bytes) -> str | None:
    """None when the answer is a 4xx with a JSON object holding a message; else what is wrong with it."""
    if not 400 <= status < 500:
        return f"status {status}, expected a 4xx"
    if not content_type.startswith("application/json"):
        return f"status {status} with content type {content_type!r}, expected application/json"
    try:
        answer = json.loads(raw)
    except ValueError:
        return f"status {status} with a body that is not JSON: {raw[:120]!r}"
    if not isinstance(answer, dict) or not isinstance(answer.get("message"), str) or not answer["message"]:
        return f"status {status} with JSON that has no message: {raw[:120]!r}"
    return None


def is_valid_scoring_body(body: bytes, content_type: str) -> bool:
    """Whether a request is one the service must score (what the published schema allows)."""
    if not content_type.startswith("application/json"):
        return False
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return False
    if not isinstance(value, dict) or "data" not in value:
        return False
    data = value["data"]
    if not isinstance(data, list) or not 1 <= len(data) <= 2000:
        return False
    for row in data:
        if not isinstance(row, list) or len(row) != PIXELS:
            return False
        for pixel in row:
            if type(pixel) not in (int, float) or not 0 <= pixel <= 1:  # NaN fails the comparison too
                return False
    return True


def invalid_request_strategy(swagger: dict):
    """A Hypothesis strategy of (content type, body) built from the service's swagger: its ServiceInput schema's
    example and bounds, mutated to break one rule at a time, plus arbitrary JSON, text and bytes."""
    from hypothesis import strategies as st

    service_input = swagger["definitions"]["ServiceInput"]
    data_schema = service_input["properties"]["data"]
    row_schema = data_schema["items"]
    pixel_schema = row_schema["items"]
    example = service_input["example"]["data"]
    low, high = pixel_schema["minimum"], pixel_schema["maximum"]
    row_length = row_schema["maxItems"]

    json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
    any_json = st.recursive(
        json_leaf,
        lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
        max_leaves=30,
    )
    out_of_range = st.floats(max_value=low, exclude_max=True, allow_nan=False, allow_infinity=False) | st.floats(
        min_value=high, exclude_min=True, allow_nan=False, allow_infinity=False
    )
    not_a_number = st.none() | st.booleans() | st.text(max_size=10) | st.lists(json_leaf, max_size=3)

    @st.composite
    def one_bad_pixel(draw):
        row = list(example[0])
        row[draw(st.integers(0, row_length - 1))] = draw(out_of_range | not_a_number)
        return {"data": [row]}

    @st.composite
    def wrong_row_length(draw):
        length = draw(st.integers(0, row_length * 2).filter(lambda n: n != row_length))
        pixel = draw(st.floats(low, high))
        return {"data": [[pixel] * length]}

    @st.composite
    def wrong_container(draw):
        return {"data": draw(any_json.filter(lambda v: not (isinstance(v, list) and v and isinstance(v[0], list))))}

    @st.composite
    def extra_wrapping(draw):
        key = draw(st.text(max_size=10).filter(lambda k: k != "data"))
        return {key: example}

    bodies_from_schema = st.one_of(one_bad_pixel(), wrong_row_length(), wrong_container(), extra_wrapping(), any_json)
    json_requests = st.tuples(st.just("application/json"), bodies_from_schema.map(_body))
    raw_requests = st.tuples(
        st.sampled_from(["application/json", "text/plain", "application/octet-stream", ""]),
        st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
    )
    # A valid body cut short, or with one byte changed: near misses a parser must refuse cleanly.
    valid = _body({"data": example})
    truncated = st.integers(0, len(valid) - 1).map(lambda n: ("application/json", valid[:n]))
    flipped = st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 255)).map(
        lambda p: ("application/json", valid[: p[0]] + bytes([p[1]]) + valid[p[0] + 1 :])
    )
    return st.one_of(json_requests, raw_requests, truncated, flipped)


def run_generated(target: Target, swagger: dict, examples: int, seed: int = 0) -> dict:
    """Send `examples` generated requests; {"sent", "refused_4xx", "scored_2xx", "worst_s", "problems"}: an
    invalid request must get a 4xx JSON message, one that happens to be valid a 200."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    counts = {"sent": 0, "refused_4xx": 0, "scored_2xx": 0, "worst_s": 0.0, "problems": []}

    @hypothesis_seed(seed)
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.generate],  # every example is sent once; failures are collected, not shrunk
        suppress_health_check=list(HealthCheck),
    )
    @given(invalid_request_strategy(swagger))
    def send(case):
        content_type, body = case
        status, answer_type, raw, seconds = score(target, body, {"Content-Type": content_type} if content_type else {})
        counts["sent"] += 1
        counts["worst_s"] = max(counts["worst_s"], seconds)
        if is_valid_scoring_body(body, content_type):
            if status == 200:
                counts["scored_2xx"] += 1
            else:
                counts["problems"].append(f"a valid body got {status}: {raw[:120]!r}")
            return
        problem = problem_with_refusal(status, answer_type, raw)
        if problem:
            counts["problems"].append(f"{problem} (body {body[:80]!r})")
        else:
            counts["refused_4xx"] += 1

    send()
    return counts


# ---------------------------------------------------------------------------------------------------------------
# The scenarios.

MAX_ANSWER_S = 5.0  # a bad request is refused within this (the project's deployment's request_timeout_ms)


def case_problem(target: Target, case: tuple[str, dict, bytes]) -> tuple[str | None, float]:
    """(what is wrong with the answer to one hand-written case, or None; its seconds)."""
    label, headers, body = case
    status, content_type, raw, seconds = score(target, body, headers)
    problem = problem_with_refusal(status, content_type, raw)
    if problem is None and seconds >= MAX_ANSWER_S:
        problem = f"answered after {seconds:.1f} s"
    return (f"{label}: {problem}" if problem else None), seconds


def oversized_problem(target: Target) -> str | None:
    """None when a body declared one byte over the limit gets 413, naming the limit, before any of it is sent."""
    status, raw = oversized_status(target, target.max_request_bytes + 1)
    if status != 413:
        return f"a declared body over the limit: {status}"
    message = json.loads(raw).get("message", "")
    if f"larger than {target.max_request_bytes} bytes" not in message:
        return f"a declared body over the limit: 413 with {message!r}, which does not name the limit"
    return None


def hand_written(target: Target) -> Check:
    """Every hand-written malformed request, and a body declared over the limit: each refused with a JSON 4xx."""
    cases = malformed_requests(target.max_request_bytes)
    problems, slowest = [], 0.0
    for case in cases:
        problem, seconds = case_problem(target, case)
        slowest = max(slowest, seconds)
        problems += [problem] if problem else []
    problems += [problem] if (problem := oversized_problem(target)) else []
    figure = f"{len(cases) + 1} hand-written: {len(cases) + 1 - len(problems)} refused with a JSON 4xx"
    figure += f", slowest {slowest:.2f} s"
    return judge("bad input: hand-written", figure, problems=problems)


def generated(target: Target, settings: Settings) -> list[Check]:
    """settings.generated_examples requests generated from the service's /swagger.json: each invalid one refused with
    a JSON 4xx (nearly all are invalid), each valid one scored; then the sample request is still answered right."""
    swagger = openapi(target)
    if swagger.status != 200:
        return [
            judge("bad input: generated", f"GET /swagger.json answered {swagger.status}", {"it answers 200": False})
        ]
    started = time.monotonic()
    counts = run_generated(target, json.loads(swagger.body), settings.generated_examples, seed=settings.seed)
    figure = (
        f"{counts['sent']} from /swagger.json in {time.monotonic() - started:.0f} s: {counts['refused_4xx']} "
        f"refused 4xx, {counts['scored_2xx']} valid scored, problems {len(counts['problems'])}, slowest "
        f"{counts['worst_s']:.2f} s"
    )
    criteria = {
        f"all {settings.generated_examples} sent": counts["sent"] == settings.generated_examples,
        "at least 90% of them refused with a JSON 4xx": counts["refused_4xx"] >= settings.generated_examples * 0.9,
    }
    return [judge("bad input: generated", figure, criteria, counts["problems"]), good_request(target, "bad input")]
