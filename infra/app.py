"""Building the CDK app: the one code path behind `app.py`, `cdk synth`, the tests and the emulator deploy."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import App

from infra.nag import enable_checks
from infra.settings import FloodgateSettings
from infra.stack import FloodgateStack

REPO_ROOT = Path(__file__).resolve().parent.parent
CDK_JSON = REPO_ROOT / "cdk.json"
STACK_CONSTRUCT_ID = "Floodgate"


def cdk_json_context(path: Path = CDK_JSON) -> dict[str, Any]:
    """The `context` block of cdk.json (the CLI passes it itself; `python app.py` alone does not)."""
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    context = data.get("context", {})
    if not isinstance(context, dict):
        raise ValueError(f"{path}: 'context' must be an object")
    return context


def build_app(
    context: Mapping[str, Any] | None = None,
    *,
    outdir: str | os.PathLike[str] | None = None,
    use_cdk_json: bool = True,
    nag: bool = True,
) -> tuple[App, FloodgateStack]:
    """The app and its one stack.

    Context precedence, lowest first: the defaults of floodgate.settings_table < cdk.json < `context` <
    the CLI's context (`-c key=value`, passed by the CDK CLI in the environment).
    With `nag`, the AwsSolutions checks run at synth and any unacknowledged finding fails it.
    """
    merged: dict[str, Any] = dict(cdk_json_context()) if use_cdk_json else {}
    merged.update(context or {})
    app = App(context=merged, outdir=None if outdir is None else str(outdir))
    settings = FloodgateSettings.from_context(app.node.try_get_context)
    stack = FloodgateStack(app, STACK_CONSTRUCT_ID, settings=settings)
    if nag:
        enable_checks(app)
    return app, stack
