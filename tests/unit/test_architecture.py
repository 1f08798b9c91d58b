"""Imports point one way: the domain core never reaches for boto3, the adapters or the handlers; each layer
imports only the layers beneath it (core <- adapters <- engine <- services <- handlers, cli)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "functions" / "floodgate"
CORE = PACKAGE / "core"
FORBIDDEN = (
    "boto3",
    "botocore",
    "aws_lambda_powertools",
    "floodgate.adapters",
    "floodgate.engine",
    "floodgate.services",
    "floodgate.handlers",
    "floodgate.cli",
)
# What each layer must not import: the layers above it.
ABOVE = {
    "adapters": ("floodgate.engine", "floodgate.services", "floodgate.handlers", "floodgate.cli"),
    "engine": ("floodgate.services", "floodgate.handlers", "floodgate.cli"),
    "services": ("floodgate.handlers", "floodgate.cli"),
    "handlers": ("floodgate.cli",),
    "cli": ("floodgate.handlers",),
}
# Modules at the top of the package, shared with the stack in infra/ (configuration, table keys, names).
SHARED = {"__init__.py", "__main__.py", "settings.py", "settings_table.py", "tables.py", "observability.py"}


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


@pytest.mark.parametrize("layer", sorted(ABOVE))
def test_a_layer_imports_nothing_above_it(layer: str) -> None:
    modules = sorted((PACKAGE / layer).glob("*.py"))
    assert modules, f"no modules in {layer}/"
    offenders = {
        path.name: sorted(n for n in _imports(path) if n.startswith(ABOVE[layer])) for path in modules
    }
    assert {name: bad for name, bad in offenders.items() if bad} == {}


def test_every_module_has_its_room() -> None:
    loose = {path.name for path in PACKAGE.glob("*.py")} - SHARED
    rooms = {path.name for path in PACKAGE.iterdir() if path.is_dir() and (path / "__init__.py").exists()}
    assert loose == set()
    assert rooms == {"core", *ABOVE}
