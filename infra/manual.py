"""Manual trigger from the console: SSM Automation runbooks that invoke the detector with the manual payload.

A person fills a form (CIDR, TTL, reason, name) instead of writing JSON. The runbooks send exactly the
payload the documented Lambda test events and the CLI send:
    {"action": "block", "cidr": ..., "ttl": ..., "reason": ..., "actor": ...}
    {"action": "unblock", "cidr": ..., "reason": ..., "actor": ...}
    {"action": "analyze", "dry_run": true|false}
Parameters are constrained by allowedPattern so a value cannot break out of its JSON string.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_ssm as ssm
from constructs import Construct

# Dotted IPv4, or IPv6 hex groups optionally ending in a dotted IPv4 part ("::ffff:203.0.113.7", which the
# detector maps to IPv4). No zone id ("%eth0"), space or quote: what floodgate.core.networks.parse_network
# refuses for its shape is refused here already; ranges and host bits are checked by the detector.
CIDR_PATTERN = (
    r"^([0-9]{1,3}(\.[0-9]{1,3}){3}(/[0-9]{1,2})?"
    r"|[0-9A-Fa-f]{0,4}(:[0-9A-Fa-f]{0,4}){2,7}(:[0-9]{1,3}(\.[0-9]{1,3}){3})?(/[0-9]{1,3})?)$"
)
TTL_PATTERN = r"^([0-9]+[smhdw])+$"
REASON_PATTERN = r'^[^"\\\x00-\x1f]{3,256}$'  # no quote, backslash or control character: stays JSON'
ACTOR_PATTERN = r"^[A-Za-z0-9@._+=,/ -]{1,128}$"
STEP_NAME = "InvokeDetector"


@dataclass(frozen=True, slots=True)
class Runbook:
    """What a runbook asks for and the payload template it sends ({{ Name }} = SSM parameter)."""

    construct_id: str
    description: str
    parameters: dict[str, dict[str, Any]]
    payload: dict[str, Any]
    raw_booleans: tuple[str, ...] = ()  # payload keys whose {{ Param }} is substituted unquoted (Boolean)


def _param(kind: str, description: str, pattern: str | None = None, default: Any = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": kind, "description": description}
    if pattern is not None:
        spec["allowedPattern"] = pattern
    if default is not None:
        spec["default"] = default
    return spec


CIDR = _param(
    "String", "Source to deny, e.g. 203.0.113.7/32 or 198.51.100.0/24 (host bits zero)", CIDR_PATTERN
)
REASON = _param("String", "Why (kept in the deny log); no double quotes or backslashes", REASON_PATTERN)
ACTOR = _param("String", "Who you are (kept in the deny log), e.g. your e-mail", ACTOR_PATTERN)

RUNBOOKS: tuple[Runbook, ...] = (
    Runbook(
        "BlockRunbook",
        "Floodgate: deny a source CIDR in the protected NACLs for a while (manual block).",
        {
            "Cidr": CIDR,
            "Ttl": _param("String", "How long, e.g. 30m, 2h, 1d", TTL_PATTERN, "30m"),
            "Reason": REASON,
            "Actor": ACTOR,
        },
        {
            "action": "block",
            "cidr": "{{ Cidr }}",
            "ttl": "{{ Ttl }}",
            "reason": "{{ Reason }}",
            "actor": "{{ Actor }}",
        },
    ),
    Runbook(
        "UnblockRunbook",
        "Floodgate: remove the deny of a source CIDR from the protected NACLs (manual unblock).",
        {"Cidr": CIDR, "Reason": REASON, "Actor": ACTOR},
        {"action": "unblock", "cidr": "{{ Cidr }}", "reason": "{{ Reason }}", "actor": "{{ Actor }}"},
    ),
    Runbook(
        "AnalyzeRunbook",
        "Floodgate: analyze the current traffic window now; with DryRun=false, enforce the result.",
        {"DryRun": _param("Boolean", "true: report only; false: write the denies it finds", default=True)},
        {"action": "analyze", "dry_run": "{{ DryRun }}"},
        raw_booleans=("dry_run",),
    ),
)


def payload_template(runbook: Runbook) -> str:
    """The JSON text of the payload with SSM placeholders; Boolean placeholders are left unquoted."""
    text = json.dumps(runbook.payload, separators=(", ", ": "))
    for key in runbook.raw_booleans:
        placeholder = runbook.payload[key]
        text = text.replace(f'"{key}": "{placeholder}"', f'"{key}": {placeholder}')
    return text


class ManualTrigger(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, detector: lambda_.IFunction) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "AutomationRole",
            description="Floodgate runbooks: invoke the detector, nothing else",
            assumed_by=iam.ServicePrincipal(
                "ssm.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {
                        "aws:SourceArn": f"arn:{Aws.PARTITION}:ssm:{Aws.REGION}:{Aws.ACCOUNT_ID}:"
                        "automation-execution/*"
                    },
                },
            ),
        )
        # Exactly the function ARN (grant_invoke would add the "ARN:*" versions wildcard as well).
        self.role.add_to_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[detector.function_arn])
        )
        self.documents: dict[str, ssm.CfnDocument] = {}
        for runbook in RUNBOOKS:
            self.documents[runbook.construct_id] = ssm.CfnDocument(
                self,
                runbook.construct_id,
                document_type="Automation",
                document_format="JSON",
                content=self._content(runbook, detector),
            )

    def _content(self, runbook: Runbook, detector: lambda_.IFunction) -> dict[str, Any]:
        return {
            "schemaVersion": "0.3",
            "description": runbook.description,
            "assumeRole": self.role.role_arn,
            "parameters": runbook.parameters,
            "mainSteps": [
                {
                    "name": STEP_NAME,
                    "action": "aws:invokeLambdaFunction",
                    "maxAttempts": 1,
                    "timeoutSeconds": 300,
                    "onFailure": "Abort",
                    "isEnd": True,
                    "inputs": {
                        "FunctionName": detector.function_name,
                        "InvocationType": "RequestResponse",
                        "Payload": payload_template(runbook),
                    },
                }
            ],
            "outputs": [f"{STEP_NAME}.Payload", f"{STEP_NAME}.FunctionError"],
        }
