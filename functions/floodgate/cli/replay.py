"""`floodgate replay`: redeliver the events Lambda gave up on (the failure queue) to the deployed function."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping
from typing import Any

from floodgate.cli.aws import Deployment, add_deployment_arguments, aws_command
from floodgate.cli.errors import AWS, CliError
from floodgate.cli.render import table
from floodgate.cli.views import counted
from floodgate.core.durations import format_duration
from floodgate.observability import OUTPUT
from floodgate.services.replay import DETECTOR, EXPIRER, FailedInvocation, ReplayReport, replay

ACCEPTED = 202  # Lambda's answer to an asynchronous Invoke it queued


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "replay",
        help="redeliver failed deliveries from the failure queue",
        description="Reads the functions' on-failure queue (events Lambda gave up on after its retries, or "
        "that waited too long) and invokes the function each was for again, asynchronously; a message is "
        "deleted only once Lambda accepted its event. What cannot be replayed stays in the queue, with the "
        "reason, and the command exits 1. Replaying is safe: a flow-log batch already stored is not counted "
        "twice.",
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would be replayed; change nothing")
    parser.add_argument("--max", type=_positive, metavar="N", help="replay at most N events (default: all)")
    add_deployment_arguments(parser)
    parser.set_defaults(run=aws_command(run_replay))


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def run_replay(args: argparse.Namespace) -> int:
    deployment = Deployment.from_args(args)
    queue = deployment.failure_queue
    if queue is None:
        raise CliError(f"stack {deployment.stack} has no output {OUTPUT.FAILURE_QUEUE}: redeploy it", AWS)
    functions = {  # the detector last: its events are checked before replay, should one function be both
        deployment.output(OUTPUT.EXPIRER_FUNCTION): EXPIRER,
        deployment.output(OUTPUT.DETECTOR_FUNCTION): DETECTOR,
    }
    invoker = deployment.client("lambda")

    def redeliver(function: str, event: Mapping[str, Any]) -> None:
        answer = invoker.invoke(
            FunctionName=function, InvocationType="Event", Payload=json.dumps(event).encode()
        )
        if answer.get("StatusCode") != ACCEPTED:
            raise RuntimeError(f"Lambda answered {answer.get('StatusCode')}, not {ACCEPTED}")

    report = replay(queue, redeliver, functions=functions, dry_run=args.dry_run, limit=args.max)
    now = time.time()
    print(json.dumps(report.as_dict(now)) if args.json else replay_text(report, now))
    return 1 if report.left else 0


def replay_text(report: ReplayReport, now: float) -> str:
    out: list[str] = []
    listed = report.would_replay if report.dry_run else report.replayed
    if report.dry_run:
        out.append(f"dry run: {counted(len(listed), 'event')} would be replayed; nothing changed")
    else:
        out.append(f"replayed {counted(len(listed), 'event')}: accepted by Lambda and deleted from the queue")
    if listed:
        out += [
            "",
            table(("AGE", "KIND", "SIZE", "FUNCTION", "WHY IT FAILED"), [_row(f, now) for f in listed]),
        ]
    if report.left:
        out += ["", f"{counted(len(report.left), 'message')} left in the queue:"]
        out += [f"  {m.message_id}: {m.why}" for m in report.left]
    if not listed and not report.left:
        out.append("the failure queue is empty")
    return "\n".join(out)


def _row(failed: FailedInvocation, now: float) -> tuple[str, ...]:
    age = "?" if failed.failed_at is None else format_duration(max(0.0, now - failed.failed_at))
    attempts = "" if failed.attempts is None else f" after {counted(failed.attempts, 'attempt')}"
    return (age, failed.kind, f"{failed.size:,} B", failed.function, f"{failed.condition}{attempts}")
