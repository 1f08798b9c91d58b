"""Imports point one way: the domain core never reaches for boto3, the adapters or the handlers."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).parents[2] / "functions" / "floodgate" / "core"
FORBIDDEN = ("boto3", "botocore", "aws_lambda_powertools", "floodgate.adapters", "floodgate.handlers")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_modules_import_no_aws_sdk_and_no_outer_layer() -> None:
    modules = sorted(CORE.glob("*.py"))
    assert len(modules) >= 6
    offenders = {path.name: sorted(n for n in _imports(path) if n.startswith(FORBIDDEN)) for path in modules}
    assert {name: bad for name, bad in offenders.items() if bad} == {}
