"""`--query` (JMESPath) and `-o json|tsv|table|yaml|none`, with az's conventions."""

import json

import jmespath
import yaml

from aml_local import AmlLocalError

FORMATS = ("json", "jsonc", "tsv", "table", "yaml", "none")


def render(result, query=None, output="json"):
    if query:
        try:
            result = jmespath.search(query, result)
        except jmespath.exceptions.JMESPathError as err:
            raise AmlLocalError(f"--query {query!r}: {err}") from None
    if output == "none" or (result is None and output != "json"):
        return ""
    if output in ("json", "jsonc"):
        return json.dumps(result, indent=2, default=str)
    if output == "yaml":
        return yaml.safe_dump(result, sort_keys=False).rstrip("\n")
    if output == "tsv":
        return _tsv(result)
    return _table(result)


def _scalar(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    return str(value)


def _tsv_row(item):
    # az's tsv: a dict prints its scalar values in key order, nested objects are skipped.
    if isinstance(item, dict):
        return "\t".join(_scalar(v) for v in item.values() if not isinstance(v, dict | list))
    if isinstance(item, list):
        return "\t".join(_scalar(v) for v in item if not isinstance(v, dict | list))
    return _scalar(item)


def _tsv(result):
    if isinstance(result, list):
        return "\n".join(_tsv_row(item) for item in result)
    return _tsv_row(result)


def _table(result):
    rows = result if isinstance(result, list) else [result]
    rows = [r if isinstance(r, dict) else {"Result": r} for r in rows]
    if not rows:
        return ""
    columns = [k for k in rows[0] if not isinstance(rows[0][k], dict | list)]
    header = ["".join(part[:1].upper() + part[1:] for part in c.split("_")) for c in columns]  # DisplayName
    cells = [[_scalar(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)
