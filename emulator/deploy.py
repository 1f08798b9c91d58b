"""Deploy the real synthesized Floodgate stack into the emulator (moto server), and describe it.

The path is the one `cdk deploy` takes, minus what only a real account has:

1. synthesize the app (`infra.app.build_app`, the code behind `app.py`) with the demo network's context;
2. a minimal bootstrap in the emulator: the asset bucket and the bootstrap-version SSM parameter the
   template's `BootstrapVersion` parameter reads (the template is byte-for-byte what `cdk deploy` would use);
3. upload the file assets (the `functions/` zip) under the names the template expects;
4. CloudFormation `create_stack` and wait;
5. fill in what moto's CloudFormation does not do, from the same template properties (`FILLERS` for resource
   types moto skips, `_complete_*` for properties of supported types it ignores). Anything the template
   holds that is neither created by moto nor filled here fails the deploy (never silently skipped); what
   cannot be reproduced at all is listed in `DeployedStack.not_emulated`;
6. read back what was deployed: outputs, and each function's name, handler and environment from
   `lambda get_function_configuration`, so a runner can invoke the handlers with the deployed configuration.

Moto's CloudFormation (5.x) skips with a warning, rather than failing on, resource types it does not model.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from emulator.server import Emulator, client
from infra.app import build_app

REPO_ROOT = Path(__file__).resolve().parent.parent
BOOTSTRAP_QUALIFIER = "hnb659fds"  # the CDK default
BOOTSTRAP_VERSION = "30"  # what a current `cdk bootstrap` writes; the template only requires >= 6
MAX_TEMPLATE_BODY = 51_200  # CloudFormation's TemplateBody limit; above it, upload and use TemplateURL
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]


class DeployError(RuntimeError):
    """The stack could not be deployed faithfully into the emulator; the message says what and why."""


# --------------------------------------------------------------------------------------------- synth


@dataclass(frozen=True)
class Synthesized:
    """A synthesized cloud assembly: the stack's template and its asset manifest."""

    outdir: Path
    stack_name: str
    template_path: Path
    assets_path: Path

    @property
    def template(self) -> dict[str, Any]:
        return json.loads(self.template_path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]

    @property
    def assets(self) -> dict[str, Any]:
        return json.loads(self.assets_path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def synthesize(context: Mapping[str, Any], *, outdir: Path | None = None) -> Synthesized:
    """Synthesize the Floodgate app with cdk.json's context overlaid by `context`, in this process, through
    infra.app.build_app: what app.py (and so `cdk synth`) calls."""
    target = Path(outdir) if outdir is not None else Path(tempfile.mkdtemp(prefix="floodgate-cdk-"))
    target.mkdir(parents=True, exist_ok=True)
    app, _stack = build_app(context, outdir=target)
    app.synth()
    manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8"))
    for artifact_id, artifact in manifest["artifacts"].items():
        if artifact.get("type") == "aws:cloudformation:stack":
            props = artifact["properties"]
            template_path = target / props["templateFile"]
            stack_name = props.get("stackName") or artifact_id
            assets = [
                target / other["properties"]["file"]
                for other in manifest["artifacts"].values()
                if other.get("type") == "cdk:asset-manifest"
            ]
            if len(assets) != 1:
                raise DeployError(f"expected one asset manifest in {target}, found {len(assets)}")
            return Synthesized(target, stack_name, template_path, assets[0])
    raise DeployError(f"no CloudFormation stack in the cloud assembly {target}")


# --------------------------------------------------------------------------------------------- result


@dataclass(frozen=True)
class DeployedFunction:
    """A function as the emulator holds it (read back with get_function_configuration)."""

    logical_id: str
    name: str
    arn: str
    handler: str
    runtime: str
    environment: dict[str, str]
    timeout_s: int
    memory_mb: int
    reserved_concurrency: int | None
    configuration: dict[str, Any]


@dataclass(frozen=True)
class Gap:
    """Something of the template moto's CloudFormation did not do, and what was done about it."""

    logical_id: str
    resource_type: str
    what: str
    how: str


@dataclass
class DeployedStack:
    stack_name: str
    stack_id: str
    endpoint: str
    region: str
    outputs: dict[str, str]
    resources: dict[str, str]  # logical id -> physical id (moto's and the filled-in ones)
    functions: dict[str, DeployedFunction]  # by logical id
    template: dict[str, Any]
    synthesized: Synthesized
    filled: list[Gap] = field(default_factory=list)
    not_emulated: list[Gap] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        """A few readable lines: what was deployed, what had to be filled in, what the emulator lacks."""
        lines = [
            f"stack {self.stack_name}: {len(self.resources)} resources on {self.endpoint} "
            f"(synth {self.timings.get('synth_s', 0):.1f}s, deploy {self.timings.get('deploy_s', 0):.1f}s)"
        ]
        for function in self.functions.values():
            lines.append(
                f"  function {function.name}: {function.handler} ({len(function.environment)} env vars)"
            )
        for gap in self.filled:
            lines.append(f"  filled  {gap.logical_id} ({gap.resource_type}): {gap.how}")
        for gap in self.not_emulated:
            lines.append(f"  not emulated  {gap.logical_id}: {gap.what.split(' (')[0]}")
        return "\n".join(lines)

    def function_by_name(self, name: str) -> DeployedFunction:
        for function in self.functions.values():
            if function.name == name:
                return function
        raise KeyError(f"no deployed function named {name!r}")

    def function_for_output(self, output_key: str) -> DeployedFunction:
        """E.g. function_for_output(OUTPUT.DETECTOR_FUNCTION)."""
        return self.function_by_name(self.outputs[output_key])


# --------------------------------------------------------------------------------------------- deploy


def deploy(
    emulator: Emulator,
    *,
    context: Mapping[str, Any],
    outdir: Path | None = None,
    timeout_s: float = 120.0,
) -> DeployedStack:
    """Synthesize with `context` (e.g. DemoNetwork.context()), deploy into `emulator`, describe the result."""
    started = time.monotonic()
    synthesized = synthesize(context, outdir=outdir)
    synth_s = time.monotonic() - started
    deployed = deploy_synthesized(emulator, synthesized, timeout_s=timeout_s)
    deployed.timings["synth_s"] = synth_s
    return deployed


def deploy_synthesized(
    emulator: Emulator, synthesized: Synthesized, *, timeout_s: float = 120.0
) -> DeployedStack:
    started = time.monotonic()
    cfn = client(emulator, "cloudformation")
    account = client(emulator, "sts").get_caller_identity()["Account"]
    pseudo = {
        "AWS::AccountId": account,
        "AWS::Region": emulator.region,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::StackName": synthesized.stack_name,
        "AWS::NoValue": None,
    }
    template = synthesized.template
    _bootstrap(emulator, template, pseudo)
    _publish_assets(emulator, synthesized, pseudo)

    body = synthesized.template_path.read_text(encoding="utf-8")
    request: dict[str, Any] = {"StackName": synthesized.stack_name, "Capabilities": CAPABILITIES}
    if len(body.encode()) <= MAX_TEMPLATE_BODY:
        request["TemplateBody"] = body
    else:
        bucket = _substitute(_asset_bucket_name(), pseudo)
        key = f"templates/{synthesized.stack_name}.json"
        client(emulator, "s3").put_object(Bucket=bucket, Key=key, Body=body.encode())
        request["TemplateURL"] = f"https://{bucket}.s3.amazonaws.com/{key}"
    stack_id = cfn.create_stack(**request)["StackId"]
    pseudo["AWS::StackId"] = stack_id
    _wait_for_create(cfn, synthesized.stack_name, timeout_s)

    stack_resources = cfn.describe_stack_resources(StackName=synthesized.stack_name)["StackResources"]
    # Moto lists skipped resources as entries without a LogicalResourceId, and some created ones (e.g.
    # Lambda permissions) without a PhysicalResourceId: those are checked by their completer.
    physical = {
        r["LogicalResourceId"]: r.get("PhysicalResourceId") or r["LogicalResourceId"]
        for r in stack_resources
        if "LogicalResourceId" in r
    }
    resolver = _Resolver(emulator, template, physical, pseudo)
    filled: list[Gap] = []
    not_emulated: list[Gap] = []
    for logical_id, resource in template.get("Resources", {}).items():
        if "Condition" in resource:
            raise DeployError(
                "conditional resources are not supported by the emulator deploy "
                f"(condition {resource['Condition']})"
            )
        kind = resource["Type"]
        if logical_id in physical:
            completer = COMPLETERS.get(kind)
            if completer is not None:
                completer(resolver, logical_id, resource, filled, not_emulated)
            continue
        filler = FILLERS.get(kind)
        if filler is None:
            raise DeployError(
                f"moto's CloudFormation skipped {logical_id} ({kind}) and the deploy helper has no way to "
                "create it: add a filler in emulator/deploy.py or document the gap"
            )
        physical_id, how = filler(resolver, logical_id, resource)
        physical[logical_id] = physical_id
        filled.append(Gap(logical_id, kind, "resource type not supported by moto's CloudFormation", how))

    stack = cfn.describe_stacks(StackName=synthesized.stack_name)["Stacks"][0]
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}
    functions = {
        logical_id: _read_function(emulator, logical_id, physical[logical_id])
        for logical_id, resource in template.get("Resources", {}).items()
        if resource["Type"] == "AWS::Lambda::Function" and logical_id in physical
    }
    deployed = DeployedStack(
        stack_name=synthesized.stack_name,
        stack_id=stack_id,
        endpoint=emulator.endpoint,
        region=emulator.region,
        outputs=outputs,
        resources=physical,
        functions=functions,
        template=template,
        synthesized=synthesized,
        filled=filled,
        not_emulated=not_emulated,
    )
    deployed.timings["deploy_s"] = time.monotonic() - started
    return deployed


def _asset_bucket_name() -> str:
    return f"cdk-{BOOTSTRAP_QUALIFIER}-assets-${{AWS::AccountId}}-${{AWS::Region}}"


def _bootstrap(emulator: Emulator, template: Mapping[str, Any], pseudo: Mapping[str, Any]) -> None:
    """The two things of `cdk bootstrap` the template relies on: the asset bucket, the version parameter."""
    s3 = client(emulator, "s3")
    bucket = _substitute(_asset_bucket_name(), pseudo)
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        if emulator.region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": emulator.region})
    parameter = template.get("Parameters", {}).get("BootstrapVersion")
    if parameter is not None:
        client(emulator, "ssm").put_parameter(
            Name=parameter["Default"], Value=BOOTSTRAP_VERSION, Type="String", Overwrite=True
        )


def _publish_assets(emulator: Emulator, synthesized: Synthesized, pseudo: Mapping[str, Any]) -> None:
    s3 = client(emulator, "s3")
    for asset in synthesized.assets.get("files", {}).values():
        source = synthesized.outdir / asset["source"]["path"]
        if source == synthesized.template_path:
            continue  # the template goes through create_stack
        packaging = asset["source"].get("packaging", "file")
        if packaging == "zip":
            body = _zip_directory(source) if source.is_dir() else source.read_bytes()
        elif packaging == "file":
            body = source.read_bytes()
        else:
            raise DeployError(f"asset packaging {packaging!r} is not supported by the emulator deploy")
        for destination in asset["destinations"].values():
            s3.put_object(
                Bucket=_substitute(destination["bucketName"], pseudo),
                Key=_substitute(destination["objectKey"], pseudo),
                Body=body,
            )
    if synthesized.assets.get("dockerImages"):
        raise DeployError("the stack has Docker image assets: the emulator deploy cannot publish them")


def _zip_directory(directory: Path) -> bytes:
    """A deterministic zip of a staged asset directory (what the CDK CLI uploads)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                info = zipfile.ZipInfo(
                    path.relative_to(directory).as_posix(), date_time=(1980, 1, 1, 0, 0, 0)
                )
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def _substitute(text: str, pseudo: Mapping[str, Any]) -> str:
    for name, value in pseudo.items():
        if value is not None:
            text = text.replace(f"${{{name}}}", str(value))
    return text


def _wait_for_create(cfn: Any, stack_name: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        status = stack["StackStatus"]
        if status == "CREATE_COMPLETE":
            return
        if status.endswith(("FAILED", "ROLLBACK_COMPLETE", "ROLLBACK_IN_PROGRESS")):
            events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
            reasons = [
                f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}"
                for e in events
                if e.get("ResourceStatusReason")
            ]
            raise DeployError(f"stack {stack_name} ended in {status}: {'; '.join(reasons[:10])}")
        if time.monotonic() > deadline:
            raise DeployError(f"stack {stack_name} still {status} after {timeout_s:.0f}s")
        time.sleep(0.2)


def _read_function(emulator: Emulator, logical_id: str, name: str) -> DeployedFunction:
    lam = client(emulator, "lambda")
    config = lam.get_function_configuration(FunctionName=name)
    config.pop("ResponseMetadata", None)
    concurrency = lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")
    return DeployedFunction(
        logical_id=logical_id,
        name=config["FunctionName"],
        arn=config["FunctionArn"],
        handler=config["Handler"],
        runtime=config.get("Runtime", ""),
        environment=dict(config.get("Environment", {}).get("Variables", {})),
        timeout_s=int(config.get("Timeout", 3)),
        memory_mb=int(config.get("MemorySize", 128)),
        reserved_concurrency=concurrency,
        configuration=config,
    )


# --------------------------------------------------------------------------------------------- intrinsics


class _Resolver:
    """Resolves the intrinsic functions our template uses, against what the emulator holds."""

    def __init__(
        self,
        emulator: Emulator,
        template: Mapping[str, Any],
        physical: Mapping[str, str],
        pseudo: Mapping[str, Any],
    ) -> None:
        self.emulator = emulator
        self.template = template
        self.physical = physical
        self.pseudo = pseudo
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = client(self.emulator, service)
        return self._clients[service]

    @property
    def account(self) -> str:
        return str(self.pseudo["AWS::AccountId"])

    @property
    def region(self) -> str:
        return str(self.pseudo["AWS::Region"])

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            intrinsic = self._INTRINSICS.get(key)
            if intrinsic is not None:
                return intrinsic(self, arg)
            if key.startswith("Fn::") or key == "Condition":
                raise DeployError(f"intrinsic {key} is not supported by the emulator deploy's resolver")
        return {k: self.resolve(v) for k, v in value.items()}

    def _get_att_arg(self, arg: Any) -> str:
        logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
        return self.get_att(logical_id, attribute)

    def _join(self, arg: Any) -> str:
        separator, items = arg
        return str(separator).join(str(self.resolve(item)) for item in self.resolve(items))

    def _select(self, arg: Any) -> Any:
        index, items = arg
        return self.resolve(items)[int(self.resolve(index))]

    _INTRINSICS: ClassVar[dict[str, Callable[[_Resolver, Any], Any]]] = {
        "Ref": lambda self, arg: self.ref(arg),
        "Fn::GetAtt": lambda self, arg: self._get_att_arg(arg),
        "Fn::Join": lambda self, arg: self._join(arg),
        "Fn::Sub": lambda self, arg: self.sub(arg),
        "Fn::Select": lambda self, arg: self._select(arg),
    }

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        parameters = self.template.get("Parameters", {})
        if name in parameters:
            return parameters[name].get("Default")
        if name in self.physical:
            return self.physical[name]
        raise DeployError(f"Ref to {name}, which the emulator does not hold")

    def sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
        out = text
        for name, value in variables.items():
            out = out.replace(f"${{{name}}}", str(value))

        def replace(match: re.Match[str]) -> str:
            token = match.group(1)
            if "." in token:
                logical_id, attribute = token.split(".", 1)
                return str(self.get_att(logical_id, attribute))
            return str(self.ref(token))

        return re.sub(r"\$\{([A-Za-z0-9:.]+)\}", replace, out)

    def get_att(self, logical_id: str, attribute: str) -> str:
        resource = self.template["Resources"][logical_id]
        kind = resource["Type"]
        physical_id = self.physical.get(logical_id)
        if physical_id is None:
            raise DeployError(f"GetAtt {logical_id}.{attribute}: the emulator does not hold {logical_id} yet")
        if kind == "AWS::SQS::Queue" and attribute == "QueueName":
            return physical_id.rsplit("/", 1)[-1]
        if kind == "AWS::SNS::Topic" and attribute == "TopicName":
            return physical_id.rsplit(":", 1)[-1]
        if attribute != "Arn":
            raise DeployError(f"GetAtt {logical_id}.{attribute} is not supported by the emulator deploy")
        arn_of = self._ARNS.get(kind)
        if arn_of is None:
            raise DeployError(f"GetAtt {logical_id}.Arn ({kind}) is not supported by the emulator deploy")
        return str(arn_of(self, physical_id))

    _ARNS: ClassVar[dict[str, Callable[[_Resolver, str], Any]]] = {
        "AWS::Lambda::Function": lambda self, name: self.client("lambda").get_function_configuration(
            FunctionName=name
        )["FunctionArn"],
        # On AWS a log group's Arn attribute ends in ":*".
        "AWS::Logs::LogGroup": lambda self, name: (
            f"arn:aws:logs:{self.region}:{self.account}:log-group:{name}:*"
        ),
        "AWS::SQS::Queue": lambda self, url: self.client("sqs").get_queue_attributes(
            QueueUrl=url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"],
        "AWS::SNS::Topic": lambda self, arn: arn,
        "AWS::IAM::Role": lambda self, name: self.client("iam").get_role(RoleName=name)["Role"]["Arn"],
        "AWS::KMS::Key": lambda self, key: self.client("kms").describe_key(KeyId=key)["KeyMetadata"]["Arn"],
        "AWS::DynamoDB::Table": lambda self, name: self.client("dynamodb").describe_table(TableName=name)[
            "Table"
        ]["TableArn"],
        "AWS::Events::Rule": lambda self, name: self.client("events").describe_rule(Name=name)["Arn"],
        "AWS::CloudWatch::Alarm": lambda self, name: (
            f"arn:aws:cloudwatch:{self.region}:{self.account}:alarm:{name}"
        ),
        "AWS::Kinesis::Stream": lambda self, name: self.client("kinesis").describe_stream_summary(
            StreamName=name
        )["StreamDescriptionSummary"]["StreamARN"],
        "AWS::Logs::Destination": lambda self, arn: arn,
    }

    def generated_name(self, logical_id: str, limit: int = 255) -> str:
        """A physical name the way CloudFormation makes one: <stack>-<logical id>-<suffix>."""
        suffix = hashlib.sha256(f"{self.pseudo['AWS::StackName']}/{logical_id}".encode()).hexdigest()[:12]
        return f"{self.pseudo['AWS::StackName']}-{logical_id}"[: limit - 13] + f"-{suffix.upper()}"


# --------------------------------------------------------------------------------------------- fillers
# Resource types moto's CloudFormation skips: created here through the service API, from the template's own
# properties, returning (physical id, what was done).

Filler = Callable[[_Resolver, str, Mapping[str, Any]], tuple[str, str]]


def _fill_subscription_filter(r: _Resolver, logical_id: str, resource: Mapping[str, Any]) -> tuple[str, str]:
    props = r.resolve(resource.get("Properties", {}))
    name = props.get("FilterName") or r.generated_name(logical_id, 512)
    request = {
        "logGroupName": props["LogGroupName"],
        "filterName": name,
        "filterPattern": props.get("FilterPattern", ""),
        "destinationArn": props["DestinationArn"],
    }
    if props.get("RoleArn"):
        request["roleArn"] = props["RoleArn"]
    if props.get("Distribution"):
        request["distribution"] = props["Distribution"]
    how = f"logs.put_subscription_filter on {props['LogGroupName']} -> {props['DestinationArn']}"
    if ":destination:" in props["DestinationArn"]:
        # moto reads a logs ARN as a log group's, never a destination's: subscribe to what the destination
        # forwards to, with its role (the local runner delivers into that stream: emulator.stream_runner).
        destination = _destination(r, props["DestinationArn"])
        request["destinationArn"], request["roleArn"] = destination["targetArn"], destination["roleArn"]
        how += f" (moto: straight to its target {destination['targetArn']})"
    r.client("logs").put_subscription_filter(**request)
    return name, how


def _destination(r: _Resolver, arn: str) -> dict[str, Any]:
    name = arn.rpartition(":destination:")[2]
    found = r.client("logs").describe_destinations(DestinationNamePrefix=name)["destinations"]
    match = [d for d in found if d["destinationName"] == name]
    if not match:
        raise DeployError(f"subscription filter to {arn}: no such logs destination in the emulator")
    return dict(match[0])


_ALARM_PROPERTIES = (
    "AlarmDescription",
    "ActionsEnabled",
    "OKActions",
    "AlarmActions",
    "InsufficientDataActions",
    "MetricName",
    "Namespace",
    "Statistic",
    "ExtendedStatistic",
    "Dimensions",
    "Period",
    "Unit",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "Threshold",
    "ComparisonOperator",
    "TreatMissingData",
    "EvaluateLowSampleCountPercentile",
    "Metrics",
    "ThresholdMetricId",
)


def _fill_alarm(r: _Resolver, logical_id: str, resource: Mapping[str, Any]) -> tuple[str, str]:
    props = r.resolve(resource.get("Properties", {}))
    name = props.get("AlarmName") or r.generated_name(logical_id)
    request = {key: props[key] for key in _ALARM_PROPERTIES if key in props}
    unknown = set(props) - set(_ALARM_PROPERTIES) - {"AlarmName", "Tags"}
    if unknown:
        raise DeployError(f"{logical_id}: alarm properties {sorted(unknown)} are not handled by the filler")
    r.client("cloudwatch").put_metric_alarm(AlarmName=name, **request)
    return name, "cloudwatch.put_metric_alarm with the template's properties"


def _fill_event_invoke_config(r: _Resolver, logical_id: str, resource: Mapping[str, Any]) -> tuple[str, str]:
    props = r.resolve(resource.get("Properties", {}))
    request = {"FunctionName": props["FunctionName"], "Qualifier": props.get("Qualifier", "$LATEST")}
    for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig"):
        if key in props:
            request[key] = props[key]
    r.client("lambda").put_function_event_invoke_config(**request)
    return (
        f"{props['FunctionName']}:{request['Qualifier']}",
        "lambda.put_function_event_invoke_config (retries, max age, on-failure destination)",
    )


def _fill_topic_policy(r: _Resolver, logical_id: str, resource: Mapping[str, Any]) -> tuple[str, str]:
    props = r.resolve(resource.get("Properties", {}))
    policy = json.dumps(props["PolicyDocument"])
    for topic_arn in props["Topics"]:
        r.client("sns").set_topic_attributes(
            TopicArn=topic_arn, AttributeName="Policy", AttributeValue=policy
        )
    return logical_id, "sns.set_topic_attributes Policy on each topic"


def _fill_queue_policy(r: _Resolver, logical_id: str, resource: Mapping[str, Any]) -> tuple[str, str]:
    props = r.resolve(resource.get("Properties", {}))
    policy = json.dumps(props["PolicyDocument"])
    for queue_url in props["Queues"]:
        r.client("sqs").set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": policy})
    return logical_id, "sqs.set_queue_attributes Policy on each queue"


def _fill_subscription(r: _Resolver, logical_id: str, resource: Mapping[str, Any]) -> tuple[str, str]:
    props = r.resolve(resource.get("Properties", {}))
    arn = r.client("sns").subscribe(
        TopicArn=props["TopicArn"], Protocol=props["Protocol"], Endpoint=props["Endpoint"]
    )["SubscriptionArn"]
    return str(arn), "sns.subscribe"


def _fill_log_destination(r: _Resolver, logical_id: str, resource: Mapping[str, Any]) -> tuple[str, str]:
    props = r.resolve(resource.get("Properties", {}))
    logs = r.client("logs")
    destination = logs.put_destination(
        destinationName=props["DestinationName"], targetArn=props["TargetArn"], roleArn=props["RoleArn"]
    )["destination"]
    if props.get("DestinationPolicy"):
        logs.put_destination_policy(
            destinationName=props["DestinationName"], accessPolicy=props["DestinationPolicy"]
        )
    return str(destination["arn"]), f"logs.put_destination -> {props['TargetArn']} (and its access policy)"


FILLERS: dict[str, Filler] = {
    "AWS::Logs::SubscriptionFilter": _fill_subscription_filter,
    "AWS::Logs::Destination": _fill_log_destination,
    "AWS::CloudWatch::Alarm": _fill_alarm,
    "AWS::Lambda::EventInvokeConfig": _fill_event_invoke_config,
    "AWS::SNS::TopicPolicy": _fill_topic_policy,
    "AWS::SQS::QueuePolicy": _fill_queue_policy,
    "AWS::SNS::Subscription": _fill_subscription,
}


# --------------------------------------------------------------------------------------------- completers
# Resource types moto creates but with some template properties ignored: set them through the API, or, when
# the emulator cannot hold them, record them in `not_emulated`.

Completer = Callable[[_Resolver, str, Mapping[str, Any], list[Gap], list[Gap]], None]


def _complete_table(
    r: _Resolver, logical_id: str, resource: Mapping[str, Any], filled: list[Gap], not_emulated: list[Gap]
) -> None:
    props = r.resolve(resource.get("Properties", {}))
    ddb = r.client("dynamodb")
    table = r.physical[logical_id]
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        ddb.update_time_to_live(
            TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
        )
        filled.append(
            Gap(
                logical_id,
                resource["Type"],
                "TimeToLiveSpecification ignored by moto's CloudFormation",
                f"dynamodb.update_time_to_live on {ttl['AttributeName']!r} "
                "(moto never deletes expired items)",
            )
        )
    pitr = props.get("PointInTimeRecoverySpecification")
    if pitr and pitr.get("PointInTimeRecoveryEnabled"):
        ddb.update_continuous_backups(
            TableName=table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
        filled.append(
            Gap(
                logical_id,
                resource["Type"],
                "PointInTimeRecoverySpecification ignored by moto's CloudFormation",
                "dynamodb.update_continuous_backups",
            )
        )


def _complete_function(
    r: _Resolver, logical_id: str, resource: Mapping[str, Any], filled: list[Gap], not_emulated: list[Gap]
) -> None:
    props = r.resolve(resource.get("Properties", {}))
    lam = r.client("lambda")
    name = r.physical[logical_id]
    config = lam.get_function_configuration(FunctionName=name)
    reserved = props.get("ReservedConcurrentExecutions")
    if reserved is not None:
        current = lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")
        if current != int(reserved):
            lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=int(reserved))
            filled.append(
                Gap(
                    logical_id,
                    resource["Type"],
                    "ReservedConcurrentExecutions not applied",
                    "lambda.put_function_concurrency",
                )
            )
    if props.get("Architectures") and config.get("Architectures") != props["Architectures"]:
        not_emulated.append(
            Gap(
                logical_id,
                resource["Type"],
                f"Architectures {props['Architectures']} (moto keeps "
                f"{config.get('Architectures')}; no API changes it after creation)",
                "irrelevant in the emulator: handlers run in-process on the host",
            )
        )
    if props.get("Layers"):
        not_emulated.append(
            Gap(
                logical_id,
                resource["Type"],
                f"Layers {props['Layers']} (public layers of other accounts do "
                "not exist in the emulator, and moto's CloudFormation drops Layers)",
                "the in-process runner imports aws-lambda-powertools from the virtualenv instead",
            )
        )
    if props.get("LoggingConfig"):
        not_emulated.append(
            Gap(
                logical_id,
                resource["Type"],
                f"LoggingConfig {props['LoggingConfig']} (not modelled by moto)",
                "the log group itself is deployed; handlers' logs go to the runner's output",
            )
        )


def _complete_key(
    r: _Resolver, logical_id: str, resource: Mapping[str, Any], filled: list[Gap], not_emulated: list[Gap]
) -> None:
    props = resource.get("Properties", {})
    kms = r.client("kms")
    key_id = r.physical[logical_id]
    if props.get("EnableKeyRotation") and not kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"]:
        kms.enable_key_rotation(KeyId=key_id)
        filled.append(
            Gap(logical_id, resource["Type"], "EnableKeyRotation not applied", "kms.enable_key_rotation")
        )


def _complete_log_group(
    r: _Resolver, logical_id: str, resource: Mapping[str, Any], filled: list[Gap], not_emulated: list[Gap]
) -> None:
    days = resource.get("Properties", {}).get("RetentionInDays")
    if days is None:
        return
    name = r.physical[logical_id]
    groups = r.client("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    current = next((g.get("retentionInDays") for g in groups if g["logGroupName"] == name), None)
    if current != int(days):
        r.client("logs").put_retention_policy(logGroupName=name, retentionInDays=int(days))
        filled.append(
            Gap(logical_id, resource["Type"], "RetentionInDays not applied", "logs.put_retention_policy")
        )


def _complete_permission(
    r: _Resolver, logical_id: str, resource: Mapping[str, Any], filled: list[Gap], not_emulated: list[Gap]
) -> None:
    """Moto adds the statement but reports no physical id: check it is in the function's policy."""
    props = r.resolve(resource.get("Properties", {}))
    lam = r.client("lambda")
    statements = json.loads(lam.get_policy(FunctionName=props["FunctionName"])["Policy"])["Statement"]
    principal = props["Principal"]
    # A log group's Arn attribute ends in ":*" on AWS, not in moto: compare without it.
    source = str(props.get("SourceArn", "")).removesuffix(":*")
    for statement in statements:
        if principal in json.dumps(statement.get("Principal")) and source in json.dumps(
            statement.get("Condition", {})
        ):
            return
    raise DeployError(f"{logical_id}: the function policy lacks the permission for {principal} ({source})")


def _complete_document(
    r: _Resolver, logical_id: str, resource: Mapping[str, Any], filled: list[Gap], not_emulated: list[Gap]
) -> None:
    """Moto's CloudFormation stores an object Content as Python's repr, not JSON: store the JSON."""
    props = r.resolve(resource.get("Properties", {}))
    content = props.get("Content")
    if not isinstance(content, dict):
        return
    ssm = r.client("ssm")
    name = r.physical[logical_id]
    stored = ssm.get_document(Name=name)["Content"]
    try:
        if json.loads(stored) == content:
            return
    except json.JSONDecodeError:
        pass
    version = ssm.update_document(
        Name=name, Content=json.dumps(content), DocumentVersion="$LATEST", DocumentFormat="JSON"
    )["DocumentDescription"]["DocumentVersion"]
    ssm.update_document_default_version(Name=name, DocumentVersion=version)
    filled.append(
        Gap(
            logical_id,
            resource["Type"],
            "Content stored as Python repr (not JSON) by moto's CloudFormation",
            "ssm.update_document with the JSON content, made the default version",
        )
    )


COMPLETERS: dict[str, Completer] = {
    "AWS::SSM::Document": _complete_document,
    "AWS::Lambda::Permission": _complete_permission,
    "AWS::DynamoDB::Table": _complete_table,
    "AWS::Lambda::Function": _complete_function,
    "AWS::KMS::Key": _complete_key,
    "AWS::Logs::LogGroup": _complete_log_group,
}
