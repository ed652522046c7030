"""az's generic `update` on a shown entity: --set, --add, --remove and --force-string, as azure-cli applies them to
the object its getter returned before handing it to the setter (azure/cli/core/commands/arm.py:
_cli_generic_update_command, set_properties, add_properties, remove_properties; the az ml extension's update verbs
are generic_update_commands, azext_mlv2/manual/commands.py).

Here the object is the JSON the show verb prints (a dict): a path is dotted keys with [index] for list items
(`tags.stage`, `request_settings.max_concurrent_requests_per_instance`, `items[0]`); a value is read as JSON when it
parses (so `--set max_instances=3` is a number and `--set tags.a=1` is 1), else kept as text, and --force-string
keeps every value as text. The command then takes from the result what can change locally and refuses the rest."""

import json
import re

from aml_local import AmlLocalError

# azure-cli's usage strings (arm.py add_usage, remove_usage), named in its syntax errors.
ADD_USAGE = "--add property.listProperty <key=value, string or JSON string>"
REMOVE_USAGE = "--remove property.list <indexToRemove> OR --remove propertyToRemove"
# What the help of each shows after "e.g.".
EXAMPLES = {"--set": "tags.stage=prod", "--add": "<list> <value or key=value ...>", "--remove": "tags.stage"}
_PART = re.compile(r"\[(-?\d+)\]|([^.\[\]]+)")


def _parts(path: str) -> list:
    """`a.b[0].c` -> ["a", "b", 0, "c"]."""
    parts = []
    for index, key in _PART.findall(path):
        parts.append(int(index) if index else key)
    if not parts or "".join(str(p) for p in parts) != re.sub(r"[.\[\]]", "", path):
        raise AmlLocalError(f"invalid property path {path!r}")
    return parts


def _value(text: str, force_string: bool):
    if force_string:
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _walk(target, parts: list, path: str, create: bool = False):
    """The container `parts` leads to (a dict or list); with `create`, missing dict keys become {} on the way, as
    set_properties makes a missing parent."""
    node = target
    for depth, part in enumerate(parts):
        where = ".".join(str(p) for p in parts[:depth]) or "the object"
        if isinstance(part, int):
            if not isinstance(node, list) or not -len(node) <= part < len(node):
                raise AmlLocalError(f"index {part} doesn't exist on {where} ({path})")
            node = node[part]
        elif isinstance(node, dict):
            if part not in node or (create and node[part] is None):
                if not create:
                    raise AmlLocalError(f"Couldn't find '{part}' in '{where}'. Available options: {sorted(node)}")
                node[part] = {}
            node = node[part]
        else:
            raise AmlLocalError(f"Couldn't find '{part}' in '{where}': '{where}' does not support further indexing")
    return node


def _set(target: dict, expression: str, force_string: bool) -> None:
    # set_properties: split at the first "=" (a word without one sets the property to ""); an empty key is an error.
    key, _, text = expression.partition("=")
    if not key.strip():
        raise AmlLocalError("usage error: Empty key in --set. Correct syntax: --set KEY=VALUE [KEY=VALUE ...]")
    *parents, last = _parts(key)
    node = _walk(target, parents, key, create=True)
    if isinstance(last, int):
        if not isinstance(node, list) or not -len(node) <= last < len(node):
            raise AmlLocalError(f"index {last} doesn't exist on {key}")
        node[last] = _value(text, force_string)
    elif isinstance(node, dict):
        node[last] = _value(text, force_string)
    else:
        raise AmlLocalError(f"Couldn't set '{key}': its parent is not an object")


def _add(target: dict, words: list[str], force_string: bool) -> None:
    """The first word is the list's path; key=value words make one dict entry, other words one entry each."""
    if len(words) < 2:
        raise AmlLocalError(f"invalid syntax: {ADD_USAGE}")
    parts = _parts(words[0])
    parent = _walk(target, parts[:-1], words[0], create=True)
    if isinstance(parent, dict) and parent.get(parts[-1]) is None:
        parent[parts[-1]] = []
    items = _walk(target, parts, words[0])
    if not isinstance(items, list):
        raise AmlLocalError(f"invalid syntax: {ADD_USAGE} ({words[0]} is not a list)")
    entry = {}
    for word in words[1:]:
        key, sep, text = word.partition("=")
        if sep:
            entry[key] = text
            continue
        if entry:
            items.append(entry)
            entry = {}
        items.append(_value(word, force_string))
    if entry:
        items.append(entry)


def _remove(target: dict, words: list[str]) -> None:
    if len(words) > 2:
        raise AmlLocalError(f"invalid syntax: {REMOVE_USAGE}")
    parts = _parts(words[0])
    if len(words) == 2:
        items = _walk(target, parts, words[0])
        if not isinstance(items, list) or not words[1].lstrip("-").isdigit():
            raise AmlLocalError(f"invalid syntax: {REMOVE_USAGE}")
        index = int(words[1])
        if not -len(items) <= index < len(items):
            raise AmlLocalError(f"index {index} doesn't exist on {words[0]}")
        items.pop(index)
        return
    parent = _walk(target, parts[:-1], words[0])
    if isinstance(parent, dict) and parts[-1] in parent:
        del parent[parts[-1]]
    elif isinstance(parent, list) and isinstance(parts[-1], int) and -len(parent) <= parts[-1] < len(parent):
        parent.pop(parts[-1])
    else:
        where = ".".join(str(p) for p in parts[:-1]) or "the object"
        raise AmlLocalError(f"Couldn't find '{parts[-1]}' in '{where}'")


def apply(shown: dict, *update_lists, force_string: bool = False) -> dict:
    """A copy of `shown` with the updates applied in the order given on the command line (each list holds parser.py
    GenericUpdate's (position, option, words) entries)."""
    updated = json.loads(json.dumps(shown))
    for _, option, words in sorted(entry for entries in update_lists for entry in entries or []):
        if option == "--set":
            for expression in words:
                _set(updated, expression, force_string)
        elif option == "--add":
            _add(updated, words, force_string)
        else:
            _remove(updated, words)
    return updated


def changed(before: dict, after: dict) -> set[str]:
    """The top-level fields an update changed."""
    return {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}


def refuse_others(
    before: dict, after: dict, allowed: set[str], what: str, instead: str = "create a new version"
) -> None:
    others = sorted(changed(before, after) - allowed)
    if others:
        raise AmlLocalError(
            f"{what}: {', '.join(others)} cannot change here (what can: {', '.join(sorted(allowed))}); {instead}"
        )
