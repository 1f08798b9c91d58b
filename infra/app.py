"""Building the CDK app: the one code path behind `app.py`, `cdk synth`, the tests and the emulator deploy."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import App, Stack

from infra.estate import MemberStack, SecurityStack
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
    """The app and its one single-account stack.

    Context precedence, lowest first: the defaults of floodgate.settings_table < cdk.json < `context` <
    the CLI's context (`-c key=value`, passed by the CDK CLI in the environment).
    With `nag`, the AwsSolutions checks run at synth and any unacknowledged finding fails it.
    """
    app, settings = _app(context, outdir=outdir, use_cdk_json=use_cdk_json)
    stack = FloodgateStack(app, STACK_CONSTRUCT_ID, settings=settings)
    if nag:
        enable_checks(app)
    return app, stack


def build_deployment(
    context: Mapping[str, Any] | None = None,
    *,
    outdir: str | os.PathLike[str] | None = None,
    use_cdk_json: bool = True,
    nag: bool = True,
) -> tuple[App, Stack]:
    """What `app.py` builds, by the `mode` setting: the single-account stack (the default, as `build_app`),
    the security account's stack (bus, routes, the members' StackSet), or one member's stack without the
    StackSet (to try a member out in one account). Context and checks as in `build_app`."""
    app, settings = _app(context, outdir=outdir, use_cdk_json=use_cdk_json)
    kinds: dict[str, type[FloodgateStack] | type[SecurityStack] | type[MemberStack]] = {
        "single": FloodgateStack,
        "security": SecurityStack,
        "member": MemberStack,
    }
    stack = kinds[settings.estate.mode](app, STACK_CONSTRUCT_ID, settings=settings)
    if nag:
        enable_checks(app)
    return app, stack


def _app(
    context: Mapping[str, Any] | None, *, outdir: str | os.PathLike[str] | None, use_cdk_json: bool
) -> tuple[App, FloodgateSettings]:
    merged: dict[str, Any] = dict(cdk_json_context()) if use_cdk_json else {}
    merged.update(context or {})
    app = App(context=merged, outdir=None if outdir is None else str(outdir))
    return app, FloodgateSettings.from_context(app.node.try_get_context)
