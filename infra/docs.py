"""`make docs`: cdk.json's context and the README's settings table, written from floodgate.settings_table.

The tests compare both files with what this module renders, row by row, so a hand edit that drifts from the
table fails them with the row named.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from floodgate.settings_table import SETTINGS, Json, Setting, cdk_context
from infra.app import CDK_JSON, REPO_ROOT

README = REPO_ROOT / "README.md"
TABLE_BEGIN = "<!-- settings table: written by `make docs` from functions/floodgate/settings_table.py -->"
TABLE_END = "<!-- end of the settings table -->"
TABLE_HEAD = ("| Area | Context key | Variable | Type | Default | Meaning |", "|---|---|---|---|---|---|")


def readme_rows() -> list[str]:
    """One Markdown line per row of the table, in its order."""
    lines: list[str] = []
    area = ""
    for row in SETTINGS:
        shown_area = row.area if row.area != area else ""
        area = row.area
        key = f"`{row.key}`" if row.key else "— (set by the stack)"
        env = f"`{row.env}`" if row.env else "— (synth only)"
        lines.append(f"| {shown_area} | {key} | {env} | {_type(row)} | {_default(row)} | {row.meaning} |")
    return lines


def _type(row: Setting) -> str:
    low, high = row.low, row.high
    described = {
        "text": row.what or "text",
        "choice": " / ".join(row.choices),
        "strings": "list",
        "cidrs": "CIDR list",
        "int": f"integer {low:g}..{high:g}" if low is not None and high is not None else "integer",
        "number": f"number {low:g}..{high:g}" if high is not None else f"number ≥ {low or 0:g}",
        "flag": "true / false",
        "duration": "duration",
        "retention": "log retention days",
        "dimensions": "Name=Value,…",
        "format": "flow-log format",
        "names": "JSON list of names",
    }[row.kind]
    empty_default = row.default in (None, "", [])
    return described + (" (required)" if not row.optional and empty_default and row.kind != "strings" else "")


def _default(row: Setting) -> str:
    shown = f"`{_json(row.default)}`"
    if row.example is not None:
        label = "placeholder, refused" if row.placeholder else "example"
        shown += f"; cdk.json: `{_json(row.example)}` ({label})"
    return shown


def _json(value: Json) -> str:
    return json.dumps(value, ensure_ascii=False)


def readme_table(text: str) -> list[str]:
    """The lines of the README's settings table, between its markers (without them)."""
    lines = text.splitlines()
    begin, end = lines.index(TABLE_BEGIN), lines.index(TABLE_END)
    return lines[begin + 1 : end]


def cdk_json_drift(document: Mapping[str, Any]) -> list[str]:
    """Where cdk.json's context differs from the table, one line per key."""
    context: Mapping[str, Any] = document.get("context", {})
    expected = cdk_context()
    drift = [
        f"{key}: cdk.json has {context[key]!r}, the table {value!r}"
        if key in context
        else f"{key}: missing from cdk.json (the table: {value!r})"
        for key, value in expected.items()
        if key not in context or context[key] != value
    ]
    return drift + [f"{key}: in cdk.json, not in the table" for key in context if key not in expected]


def readme_drift(text: str) -> list[str]:
    """Where the README's settings table differs from the table, one line per row."""
    found = readme_table(text)
    drift = [f"table head: README has {found[:2]!r}"] if tuple(found[:2]) != TABLE_HEAD else []
    found_by_name = {_row_name(line): line for line in found[2:]}
    expected_by_name = {_row_name(line): line for line in readme_rows()}
    for name, line in expected_by_name.items():
        if name not in found_by_name:
            drift.append(f"{name}: missing from the README")
        elif found_by_name[name] != line:
            drift.append(f"{name}: README has {found_by_name[name]!r}, the table {line!r}")
    drift += [
        f"{name}: in the README, not in the table" for name in found_by_name if name not in expected_by_name
    ]
    if not drift and found[2:] != readme_rows():
        drift.append("the README's rows are not in the table's order")
    return drift


def _row_name(line: str) -> str:
    """A row's context key, or its variable when it has no key."""
    cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
    key, variable = [*cells, "", ""][1:3]
    return (key if key.startswith("`") else variable).strip("`")


def write_readme(path: Path = README) -> None:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    begin, end = lines.index(TABLE_BEGIN), lines.index(TABLE_END)
    lines[begin + 1 : end] = [*TABLE_HEAD, *readme_rows()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_cdk_json(path: Path = CDK_JSON) -> None:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    document["context"] = cdk_context()
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main() -> None:
    write_cdk_json()
    write_readme()


if __name__ == "__main__":
    main()
