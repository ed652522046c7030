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
                    if not isinstance(item, dict):
                        walk(item, prefix)
                        continue
                    # An item names the field it is about ("jobs.train"; "*" is the whole document).
                    where = str(item.get("path") or "*")
                    walk(item.get("message", ""), prefix if where == "*" else f"{prefix}{where}.")
                return
            for key, value in node.items():
                if key == "value" and _is_union(value):
                    walk_union(value, prefix)
                else:
                    walk(value, f"{prefix}{key}." if prefix else f"{key}.")
        elif isinstance(node, list):
            if node and all(isinstance(value, dict) and set(value) == {"_schema"} for value in node):
                # A field of several scalar types (an integer or a number...): every type it tried, in one message;
                # otherwise (a local path or a URL...) the first, which says what is wrong with the value.
                messages = [" ".join(str(m) for m in value["_schema"]).rstrip(".") for value in node]
                # A `${{...}}` binding is tried first wherever one may stand: no news to a value that is not one.
                messages = [m for m in messages if not m.startswith(_NOT_A_BINDING)] or messages
                if all(message.startswith("Not a valid ") for message in messages):
                    found.setdefault(_field(prefix), " or ".join(dict.fromkeys(messages)) + ".")
                else:
                    found.setdefault(_field(prefix), messages[0] + ".")
                return
            for value in node:
                walk(value, prefix)
        elif isinstance(node, str):
            nested = _json_after_failed(node)
            alternatives = _repr_alternatives(node) if nested is None else None
            if nested is not None:
                walk(nested, prefix)
            elif alternatives is not None:
                walk_union(alternatives, prefix)
            elif node.strip():
                # The first message per field is the one that says what is wrong; the SDK appends
                # the alternatives it also tried (URL, git path, registry...) after it.
                found.setdefault(_field(prefix), " ".join(node.split()))

    def walk_union(alternatives: list, prefix: str):
        # A field the SDK reads with one of several schemas (a search space's distributions, a job input's kinds, a
        # pipeline node's types) reports every schema it tried. Of those that took the value's kind, the ones that
        # found least wrong say what is wrong with it; when none took it, the one thing wrong is the type, and every
        # type the schemas take is what was expected.
        taken = [alternative for alternative in alternatives if not _refuses(alternative, alternatives)]
        if taken:
            closest = min(map(_distance, taken))
            for alternative in taken:
                if _distance(alternative) == closest:
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


def _refuses(alternative: dict, alternatives: list) -> bool:
    """Whether a schema of a union refused the value's kind: its `type` is not one the schema takes (or not a field
    of it), or it is a scalar's schema (`null`: a mapping is not a scalar; `_schema` alone, as a binding string's,
    while another schema of the union read the mapping's fields), as azure-ai-ml's TypeSensitiveUnionField weighs
    them (azure/ai/ml/_schema/core/fields.py)."""
    if "type" in alternative or set(alternative) == {"null"}:
        return True
    read_fields = any(set(other) - {"_schema", "null"} for other in alternatives)
    return set(alternative) == {"_schema"} and read_fields


def _messages(node) -> list[str]:
    if isinstance(node, dict):
        return [message for value in node.values() for message in _messages(value)]
    if isinstance(node, list):
        return [message for value in node for message in _messages(value)]
    return [str(node)]


def _distance(alternative: dict) -> tuple[int, int]:
    """How far a schema of a union was from the value: first the fields it lacks or does not know (a schema for
    another shape of node), then every complaint."""
    messages = _messages(alternative)
    return sum(m in ("Missing data for required field.", "Unknown field.") for m in messages), len(messages)


def _repr_alternatives(text: str) -> list[dict] | None:
    """A pipeline node's (or a search space entry's) errors, one per schema tried: the SDK joins their Python reprs,
    and a scalar schema's plain message, with '; '."""
    parts = re.split(r"; (?=\{)", text)
    if len(parts) < 2 and not text.startswith("{"):
        return None
    alternatives = []
    for part in parts:
        if not part.startswith("{"):
            alternatives.append({"_schema": [part]})  # a binding string's or a scalar's refusal
            continue
        try:
            alternatives.append(ast.literal_eval(part))
        except (ValueError, SyntaxError):
            return None
    return alternatives if all(isinstance(a, dict) for a in alternatives) else None


_NOT_A_BINDING = "Value passed is not a data binding string"


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
