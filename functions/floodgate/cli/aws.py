"""Where a live Floodgate is, how to reach it, and AWS failures as one clear line.

The CLI is pointed at an account the way the AWS CLI is: `--profile`, `--region` and `--endpoint-url`, or
AWS_PROFILE, AWS_REGION / AWS_DEFAULT_REGION and AWS_ENDPOINT_URL. In that account, `--stack` (default
$FLOODGATE_STACK, else "Floodgate") names the CloudFormation stack whose outputs give the tables, the NACL
targets and the detector function. The detector's environment, read back with GetFunctionConfiguration,
gives the rest (budget, allowlist, prefix caps, owned rule range, retention), so the CLI decides exactly as
the deployed Lambdas do.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
    SSOError,
    TokenRetrievalError,
)

from floodgate.adapters.arming import Arming
from floodgate.adapters.dependencies import DependencyMemory
from floodgate.adapters.failure_queue import FailureQueue
from floodgate.adapters.health import HealthRecords
from floodgate.adapters.ledger import Ledger, LedgerError
from floodgate.adapters.nacl import NaclError, NaclGateway
from floodgate.adapters.notify import Notifier
from floodgate.adapters.retry import client_config, error_code
from floodgate.cli.errors import AWS, USAGE, CliError
from floodgate.core.decision import EnforcementConfig
from floodgate.engine.enforcer import Enforcer
from floodgate.engine.results import EnforcementError, PreflightError
from floodgate.observability import OUTPUT
from floodgate.settings import ConfigError, Settings

DEFAULT_STACK = "Floodgate"
STACK_ENV = "FLOODGATE_STACK"
CLI_ACTOR = "floodgate-cli"  # signs what a read-only command's engine would write (it writes nothing)

# Calls the CLI makes itself (the adapters bring their own retries): a few tries, and fail fast when the
# endpoint is not there at all.
_CLI_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30)

_EXPIRED = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired"})
_REJECTED = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "AuthFailure",
        "InvalidAccessKeyId",
    }
)
_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})


def add_deployment_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every live command takes: which deployment, and how to reach its account."""
    parser.add_argument("--json", action="store_true", help="JSON instead of a table")
    where = parser.add_argument_group("deployment (as in the AWS CLI)")
    where.add_argument(
        "--stack", metavar="NAME", help=f"the Floodgate stack (default: ${STACK_ENV}, else {DEFAULT_STACK})"
    )
    where.add_argument("--region", help="AWS Region (default: AWS_REGION, AWS_DEFAULT_REGION, the profile's)")
    where.add_argument("--profile", metavar="NAME", help="named profile (default: AWS_PROFILE)")
    where.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="where to send AWS calls, e.g. an emulator (default: AWS_ENDPOINT_URL)",
    )


def aws_command(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap a command so that any AWS failure leaves as a one-line CliError."""

    @functools.wraps(run)
    def wrapped(args: argparse.Namespace) -> int:
        with aws_failures():
            return run(args)

    return wrapped


class Deployment:
    """One Floodgate deployment, resolved lazily: each AWS lookup happens once, when first needed."""

    def __init__(
        self,
        *,
        stack: str | None,
        region: str | None,
        profile: str | None,
        endpoint_url: str | None,
        session: boto3.session.Session | None = None,
    ) -> None:
        self.stack = stack or os.environ.get(STACK_ENV) or DEFAULT_STACK
        self.endpoint_url = endpoint_url  # None: boto3 applies AWS_ENDPOINT_URL itself, as the AWS CLI does
        # `session`: another account's credentials (floodgate status --all); else the profile's.
        self._session = session or boto3.session.Session(profile_name=profile, region_name=region)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Deployment:
        return cls(stack=args.stack, region=args.region, profile=args.profile, endpoint_url=args.endpoint_url)

    def client(self, service: str, config: Config = _CLI_CONFIG) -> Any:
        return self._session.client(service, endpoint_url=self.endpoint_url, config=config)

    @functools.cached_property
    def outputs(self) -> Mapping[str, str]:
        """The stack's outputs by key."""
        cloudformation = self.client("cloudformation")
        try:
            stacks = cloudformation.describe_stacks(StackName=self.stack)["Stacks"]
        except ClientError as exc:
            if error_code(exc) == "ValidationError" and "does not exist" in str(exc):
                raise CliError(
                    f"stack {self.stack} not found in {cloudformation.meta.region_name}: pass --stack NAME "
                    f"or set {STACK_ENV} (and check --region / --profile)",
                    AWS,
                ) from None
            raise
        return {o["OutputKey"]: o.get("OutputValue", "") for o in stacks[0].get("Outputs", [])}

    def output(self, key: str) -> str:
        try:
            return self.outputs[key]
        except KeyError:
            raise CliError(
                f"stack {self.stack} has no output {key}: is it a Floodgate stack, completely deployed?", AWS
            ) from None

    @functools.cached_property
    def settings(self) -> Settings:
        """The configuration the deployed detector function runs with."""
        function = self.output(OUTPUT.DETECTOR_FUNCTION)
        environment = (
            self.client("lambda").get_function_configuration(FunctionName=function).get("Environment", {})
        )
        if "Error" in environment:  # e.g. no kms:Decrypt for the key that encrypts it
            code, message = environment["Error"].get("ErrorCode"), environment["Error"].get("Message")
            raise CliError(f"cannot read the environment of {function} ({code}): {message}", AWS)
        try:
            return Settings.from_env(environment.get("Variables", {}))
        except ConfigError as exc:
            raise CliError(f"detector function {function} is misconfigured: {exc}", AWS) from None

    @functools.cached_property
    def ledger(self) -> Ledger:
        return Ledger(
            self.output(OUTPUT.STATE_TABLE),
            self.output(OUTPUT.LOG_TABLE),
            self.client("dynamodb", client_config()),
            log_retention_days=self.settings.log_retention_days,
        )

    @functools.cached_property
    def config(self) -> EnforcementConfig:
        """The deployed detector's configuration, aimed at the stack's NACL targets."""
        nacl_ids = tuple(n.strip() for n in self.outputs.get(OUTPUT.NACL_IDS, "").split(",") if n.strip())
        vpc_id = self.outputs.get(OUTPUT.VPC_ID) or None
        try:
            return dataclasses.replace(
                EnforcementConfig.from_settings(self.settings), nacl_ids=nacl_ids, vpc_id=vpc_id
            )
        except ValueError as exc:
            raise CliError(f"stack {self.stack}: {exc}", AWS) from None

    def enforcer(self, actor: str) -> Enforcer:
        """The engine the Lambdas run, with this deployment's configuration; `actor` signs what it writes."""
        return Enforcer(self.config, self.gateway, self.ledger, actor=actor)

    @functools.cached_property
    def arming(self) -> Arming:
        return Arming(self.output(OUTPUT.STATE_TABLE), self.client("dynamodb", client_config()))

    @functools.cached_property
    def health(self) -> HealthRecords:
        return HealthRecords(self.output(OUTPUT.STATE_TABLE), self.client("dynamodb", client_config()))

    @functools.cached_property
    def failure_queue(self) -> FailureQueue | None:
        """The functions' on-failure queue; None for a stack deployed before it was an output."""
        url = self.outputs.get(OUTPUT.FAILURE_QUEUE)
        return FailureQueue(url, self.client("sqs", client_config())) if url else None

    @functools.cached_property
    def dependencies(self) -> DependencyMemory:
        return DependencyMemory(self.output(OUTPUT.STATE_TABLE), self.client("dynamodb", client_config()))

    @functools.cached_property
    def notifier(self) -> Notifier:
        """Announces blocks and unblocks on the stack's topic, as the console trigger does."""
        return Notifier(self.outputs.get(OUTPUT.TOPIC_ARN) or None, self.client("sns", client_config()))

    @functools.cached_property
    def gateway(self) -> NaclGateway:
        return NaclGateway(self.client("ec2", client_config()))

    @functools.cached_property
    def caller(self) -> str:
        """Who is at the keyboard, as AWS sees it: the caller identity's ARN."""
        return str(self.client("sts").get_caller_identity()["Arn"])


@contextmanager
def aws_failures() -> Iterator[None]:
    """Turn what boto3 and the adapters raise into one line that says which part failed."""
    try:
        yield
    except ProfileNotFound as exc:
        raise CliError(f"AWS profile not found: {exc.kwargs.get('profile')}", USAGE) from None
    except NoRegionError:
        raise CliError("no AWS Region: pass --region or set AWS_REGION", USAGE) from None
    except NoCredentialsError:
        raise CliError(
            "no AWS credentials (NoCredentialsError): pass --profile, set AWS_PROFILE, or export "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (any dummy values for an emulator)",
            AWS,
        ) from None
    except (PartialCredentialsError, SSOError, TokenRetrievalError) as exc:
        raise CliError(f"AWS credentials unusable ({type(exc).__name__}): {exc}", AWS) from None
    except EndpointConnectionError as exc:
        raise CliError(
            f"cannot reach the AWS endpoint {exc.kwargs.get('endpoint_url')} (EndpointConnectionError): "
            "check --endpoint-url / AWS_ENDPOINT_URL, --region and the network",
            AWS,
        ) from None
    except (ConnectTimeoutError, ReadTimeoutError) as exc:
        raise CliError(f"the AWS endpoint timed out ({type(exc).__name__}): {exc}", AWS) from None
    except ClientError as exc:
        raise CliError(_client_error_text(exc), AWS) from None
    except BotoCoreError as exc:
        raise CliError(f"{exc} ({type(exc).__name__})", AWS) from None
    except PreflightError as exc:
        raise CliError(f"target NACLs not fit for Floodgate: {'; '.join(exc.problems)}", AWS) from None
    except (NaclError, LedgerError, EnforcementError) as exc:
        raise CliError(str(exc), AWS) from None


def _client_error_text(exc: ClientError) -> str:
    code = error_code(exc) or "Unknown"
    message = exc.response.get("Error", {}).get("Message", "")
    call = exc.operation_name
    if code in _EXPIRED:
        return f"AWS credentials expired ({code}): refresh them (e.g. aws sso login) and try again"
    if code in _REJECTED:
        return f"AWS rejected the credentials ({code}) on {call}: wrong account, key or endpoint? {message}"
    if code in _DENIED:
        return f"access denied ({code}) on {call}: {message}"
    if code == "ResourceNotFoundException":
        return f"{call}: not found ({code}): {message} — is --stack the right deployment?"
    return f"{call} failed ({code}): {message}"
