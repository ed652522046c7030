"""Reading `az ml` YAML with azure.ai.ml's own loaders, so that what the CLI rejects is rejected here too, and the
SDK's long, nested validation errors cut down to one line that names each field and what is wrong with it."""

import ast
import json
import re
from pathlib import Path

from aml_local import AmlLocalError


def load(loader_name: str, file, overrides=(), expected: str | None = None):
    """azure.ai.ml.<loader_name>(file, params_override=overrides); a missing file, or anything the SDK refuses in the
    YAML, is one AmlLocalError line. `expected` names the kind of YAML in the missing-file message."""
    import azure.ai.ml
    from azure.ai.ml.exceptions import MlException
    from marshmallow.exceptions import ValidationError
    from yaml import YAMLError

    if not Path(file).is_file():
        raise AmlLocalError(f"--file {file}: no such file" + (f" (expected {expected} YAML)" if expected else ""))
    try:
        return getattr(azure.ai.ml, loader_name)(file, params_override=list(overrides))
    except (ValidationError, MlException, YAMLError, ValueError, KeyError, TypeError) as err:
        raise AmlLocalError(f"{file}: {sdk_error_summary(err)}") from None


def sdk_error_summary(err) -> str:
    """The field-level messages buried in the SDK's multi-line validation errors, on one line, each after the path of
    the field it is about."""
    text = str(err)
    found = {}

    def walk(node, prefix=""):
        if isinstance(node, dict):
            if "errors" in node and isinstance(node["errors"], list):
                for item in node["errors"]:
                    walk(item.get("message", "") if isinstance(item, dict) else item, prefix)
                return
            for key, value in node.items():
                if key == "value" and _is_union(value):
                    walk_union(value, prefix)
                else:
                    walk(value, f"{prefix}{key}." if prefix else f"{key}.")
        elif isinstance(node, list):
            if node and all(isinstance(value, dict) and set(value) == {"_schema"} for value in node):
                # A field of several scalar types (an integer or a number...): every type it tried, in one message.
                messages = [" ".join(str(m) for m in value["_schema"]).rstrip(".") for value in node]
                found.setdefault(_field(prefix), " or ".join(dict.fromkeys(messages)) + ".")
                return
            for value in node:
                walk(value, prefix)
        elif isinstance(node, str):
            nested = _json_after_failed(node)
            if nested is not None:
                walk(nested, prefix)
            elif node.strip():
                # The first message per field is the one that says what is wrong; the SDK appends
                # the alternatives it also tried (URL, git path, registry...) after it.
                found.setdefault(_field(prefix), " ".join(node.split()))

    def walk_union(alternatives: list, prefix: str):
        # A field the SDK reads with one of several schemas (a search space's distributions, a job input's kinds)
        # reports every schema it tried. Those that took the value's `type` say what is wrong with it; when none
        # did, the one thing wrong is the type, and every type the schemas take is what was expected.
        taken = [alternative for alternative in alternatives if not _refuses(alternative)]
        if taken:
            for alternative in taken:
                walk(alternative, prefix)
            return
        refusals = [_NOT_IN_SET.match(" ".join(map(str, alt.get("type", [])))) for alt in alternatives]
        expected = [value for match in refusals if match for value in ast.literal_eval(match["allowed"])]
        if not expected:
            for alternative in alternatives:
                walk(alternative, prefix)
            return
        given = next(match["given"] for match in refusals if match)
        found.setdefault(f"{prefix}type", f"Value {given} passed is not in set {list(dict.fromkeys(expected))}")

    nested = _json_after_failed(text)
    if nested is None:
        return " ".join(text.split())[:500]
    walk(nested)
    messages = [f"{field}: {message}" if field else message for field, message in found.items()]
    return "; ".join(messages) or " ".join(text.split())[:500]


# What the SDK's StringTransformedEnum says of a value outside its set.
_NOT_IN_SET = re.compile(r"Value (?P<given>.+) passed is not in set (?P<allowed>\[.*\])$")


def _field(prefix: str) -> str:
    return prefix.rstrip(".").removesuffix("._schema")


def _is_union(value) -> bool:
    return isinstance(value, list) and len(value) > 1 and all(isinstance(item, dict) for item in value)


def _refuses(alternative: dict) -> bool:
    """Whether a schema of a union refused the value's kind: its `type` is not one the schema takes (or not a field
    of it), or it is a scalar's schema (its only complaint, under `null`, that a mapping is not a scalar)."""
    return "type" in alternative or set(alternative) == {"null"}


def _json_after_failed(text: str):
    start = text.find("failed:")
    brace = text.find("{", start if start >= 0 else 0)
    if start < 0 or brace < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(text[brace:])
    except ValueError:
        return None
    return value


def parse_set_pairs(pairs, example: str) -> list[tuple[str, str]]:
    """`key=value` strings as (key, value), split at the first '='; one error line, with `example` (a pair the verb
    takes), for a string that is not one."""
    parsed = []
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise AmlLocalError(f"--set {pair!r}: expected key=value, e.g. --set {example}")
        parsed.append((key.strip(), value))
    return parsed
