#!/usr/bin/env python3
"""Floodgate CDK app: `cdk synth` / `cdk deploy` (context: cdk.json, -c key=value) or `python app.py`.

The `mode` setting chooses the stack: single (default), security or member (README: multi-account).
"""

from __future__ import annotations

import sys

from infra.app import build_deployment
from infra.settings import SettingsError


def main() -> int:
    try:
        app, _stack = build_deployment()
    except SettingsError as exc:
        print(f"floodgate: {exc}", file=sys.stderr)
        return 2
    app.synth()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
