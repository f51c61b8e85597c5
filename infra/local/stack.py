#!/usr/bin/env python3
"""Deploy Ariane's production SAM template (infra/template.yaml) to a moto server.

The local stack is the production definition, not a copy of it:

  1. infra/template.yaml is loaded and each AWS::Serverless::Function's CodeUri
     is pointed at a stub zip in moto's S3 (the Rust binaries run outside moto,
     through the local runner, which reads the manifest written here);
  2. the SAM transform is expanded offline with aws-sam-translator;
  3. the resulting CloudFormation template is deployed to moto's CloudFormation;
  4. the parts moto stores but does not act on are read back and recorded in a
     JSON manifest: the SQS event source mappings (then deleted from moto, which
     would otherwise try to run the function in Docker and swallow messages),
     the schedules, the state machines (played by the runner, as moto does not run
     their Lambda tasks), and the S3 bucket notifications (which moto's CloudFormation
     ignores; they are applied here with PutBucketNotificationConfiguration).

Several functions may share one binary (every ingest instance and the landing
router run `ingest`, told apart by INGEST_CHANNEL): the manifest keys functions by
logical id, each with its own environment and event source mappings.

Usage:
  python infra/local/stack.py deploy --endpoint http://127.0.0.1:5123 --stage dev \
      [--region eu-west-3] [--param Key=Value ...] --out .local/stack.json
  python infra/local/stack.py translate [--out translated.json]

Only boto3, aws-sam-translator and PyYAML (a dependency of both cfn-lint and
aws-sam-translator's tooling) are needed; see infra/local/requirements.txt.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import re
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE = REPO_ROOT / "infra" / "template.yaml"
DEFAULT_REGION = "eu-west-3"
ARTIFACT_BUCKET = "ariane-local-artifacts"
CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
STACK_TIMEOUT_S = 180


class StackError(Exception):
    """An expected failure: reported as a one-line message, no traceback."""


def log(msg: str) -> None:
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Template loading (CloudFormation YAML with short-form intrinsic tags)
# ---------------------------------------------------------------------------


def _yaml_loader() -> type:
    import yaml

    class CfnLoader(yaml.SafeLoader):
        pass

    # CloudFormation reads YAML 1.2-ish: keep dates ("2010-09-09") as strings.
    CfnLoader.yaml_implicit_resolvers = {
        k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
        for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct(loader: Any, node: Any) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return loader.construct_scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_mapping(node, deep=True)

    def intrinsic(name: str) -> Any:
        key = "Ref" if name == "Ref" else f"Fn::{name}"
        if name == "Condition":
            key = "Condition"

        def ctor(loader: Any, node: Any) -> Any:
            value = construct(loader, node)
            if name == "GetAtt" and isinstance(value, str):
                resource, _, attribute = value.partition(".")
                value = [resource, attribute]
            return {key: value}

        return ctor

    for name in (
        "Ref", "Condition", "GetAtt", "Sub", "Join", "Select", "Split", "If",
        "Equals", "And", "Or", "Not", "FindInMap", "Base64", "Cidr",
        "ImportValue", "GetAZs", "Transform", "ToJsonString", "Length",
    ):
        CfnLoader.add_constructor(f"!{name}", intrinsic(name))
    return CfnLoader


def load_template(path: Path) -> dict[str, Any]:
    import yaml

    try:
        text = path.read_text()
    except OSError as e:
        raise StackError(f"cannot read template {path}: {e}") from None
    try:
        data = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 (SafeLoader subclass)
    except yaml.YAMLError as e:
        raise StackError(f"cannot parse {path}: {e}") from None
    if not isinstance(data, dict) or "Resources" not in data:
        raise StackError(f"{path} is not a CloudFormation template")
    return data


def prepare_for_local(sam: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Point every function's code at a stub zip in moto's S3 and make the stack disposable.

    Returns the rewritten template and {function logical id: cargo binary name}.
    """
    sam = copy.deepcopy(sam)
    binaries: dict[str, str] = {}
    for logical_id, resource in sam["Resources"].items():
        if resource.get("Type") == "AWS::Serverless::Function":
            binary = ((resource.get("Metadata") or {}).get("BuildProperties") or {}).get("Binary")
            if not binary:
                raise StackError(f"{logical_id}: Metadata.BuildProperties.Binary is missing")
            binaries[logical_id] = binary
            resource.setdefault("Properties", {})["CodeUri"] = f"s3://{ARTIFACT_BUCKET}/{logical_id}.zip"
        # Production keeps data stores on stack deletion; the local stack is
        # recreated on every deploy, so retained buckets/tables would collide.
        for policy in ("DeletionPolicy", "UpdateReplacePolicy"):
            if resource.get(policy) in ("Retain", "RetainExceptOnCreate", "Snapshot"):
                resource[policy] = "Delete"
    if not binaries:
        raise StackError("the template defines no AWS::Serverless::Function")
    return sam, binaries


def substitute_definitions(cfn: dict[str, Any]) -> dict[str, Any]:
    """Fold each state machine's DefinitionSubstitutions into its DefinitionString.

    SAM moves the intrinsics of an inline Definition (the function ARNs) into
    DefinitionSubstitutions, which Step Functions applies and moto's CloudFormation
    ignores (it would store "${definition_substitution_1}" as the function). The same
    substitution is written as an Fn::Join of the definition's text and the values,
    which moto resolves: the state machine moto stores is the one AWS would run.
    """
    for lid, r in cfn.get("Resources", {}).items():
        if r.get("Type") != "AWS::StepFunctions::StateMachine":
            continue
        props = r["Properties"]
        subs = props.pop("DefinitionSubstitutions", None)
        if not subs:
            continue
        definition = props.get("DefinitionString")
        join = definition.get("Fn::Join") if isinstance(definition, dict) else None
        if not join or not all(isinstance(part, str) for part in join[1]):
            raise StackError(f"{lid}: DefinitionString is not a join of plain text; cannot fold its substitutions")
        # An Fn::Join of the text between placeholders and their values (not an Fn::Sub:
        # moto's Fn::Sub would also rewrite the "$$" of context paths like
        # "$$.Map.Item.Value").
        parts: list[Any] = []
        for piece in re.split(r"(\$\{[A-Za-z0-9_]+\})", join[0].join(join[1])):
            name = piece[2:-1] if piece.startswith("${") and piece.endswith("}") else None
            if name is not None and name in subs:
                parts.append(subs[name])
            elif piece:
                parts.append(piece)
        props["DefinitionString"] = {"Fn::Join": ["", parts]}
    return cfn


def translate(sam: dict[str, Any], region: str) -> dict[str, Any]:
    """Expand the SAM transform offline (no AWS call)."""
    os.environ["AWS_DEFAULT_REGION"] = region
    os.environ.setdefault("AWS_ACCESS_KEY_ID", CREDENTIALS["aws_access_key_id"])
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", CREDENTIALS["aws_secret_access_key"])
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.translator.transform import transform

    class OfflinePolicyLoader:
        # Only consulted for managed-policy *names* in Policies; the template
        # uses policy templates and inline statements, which expand offline.
        def load(self) -> dict[str, str]:
            return {}

    try:
        return transform(copy.deepcopy(sam), {}, OfflinePolicyLoader())
    except InvalidDocumentException as e:
        causes = "; ".join(str(c) for c in e.causes)
        raise StackError(f"SAM translation failed: {causes}") from None


def stub_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o100755 << 16
        zf.writestr(
            info,
            "#!/bin/sh\n"
            "echo 'Ariane local stack: functions run through the local runner, not in moto' >&2\n"
            "exit 1\n",
        )
    return buf.getvalue()


# ---------------------------------------------------------------------------
# AWS (moto) access
# ---------------------------------------------------------------------------


class Aws:
    def __init__(self, endpoint: str, region: str):
        import boto3
        from botocore.config import Config

        self.endpoint = endpoint
        self.region = region
        self._session = boto3.session.Session(region_name=region, **CREDENTIALS)
        self._config = Config(
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 2, "mode": "standard"},
            s3={"addressing_style": "path"},
        )
        self._clients: dict[str, Any] = {}

    def __call__(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._session.client(
                service, endpoint_url=self.endpoint, config=self._config
            )
        return self._clients[service]


def is_not_found(e: Exception, *codes: str) -> bool:
    from botocore.exceptions import ClientError

    if not isinstance(e, ClientError):
        return False
    code = e.response.get("Error", {}).get("Code", "")
    return code in codes or "does not exist" in str(e) or "NotFound" in code


def check_endpoint(aws: Aws) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return aws("sts").get_caller_identity()["Account"]
    except (BotoCoreError, ClientError) as e:
        raise StackError(f"cannot reach moto at {aws.endpoint} ({e}); start it with "
                         f"`.venv/bin/moto_server -H 127.0.0.1 -p PORT`") from None


def upload_stubs(aws: Aws, logical_ids: list[str]) -> None:
    s3 = aws("s3")
    try:
        kwargs: dict[str, Any] = {"Bucket": ARTIFACT_BUCKET}
        if aws.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": aws.region}
        s3.create_bucket(**kwargs)
    except Exception as e:  # noqa: BLE001
        if not is_not_found(e) and "BucketAlreadyOwnedByYou" not in str(e):
            raise
    body = stub_zip()
    for logical_id in logical_ids:
        s3.put_object(Bucket=ARTIFACT_BUCKET, Key=f"{logical_id}.zip", Body=body)


def stack_status(aws: Aws, stack_name: str) -> str | None:
    try:
        stacks = aws("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    except Exception as e:  # noqa: BLE001
        if is_not_found(e, "ValidationError"):
            return None
        raise
    live = [s for s in stacks if s["StackStatus"] != "DELETE_COMPLETE"]
    return live[0]["StackStatus"] if live else None


def wait_stack(aws: Aws, stack_name: str, gone: bool = False) -> str | None:
    deadline = time.monotonic() + STACK_TIMEOUT_S
    while True:
        status = stack_status(aws, stack_name)
        if status is None or not status.endswith("_IN_PROGRESS"):
            if gone and status is not None and status != "DELETE_COMPLETE":
                raise StackError(f"stack {stack_name} could not be deleted (status {status})")
            return status
        if time.monotonic() > deadline:
            raise StackError(f"stack {stack_name} still {status} after {STACK_TIMEOUT_S}s")
        time.sleep(0.5)


def empty_bucket(aws: Aws, bucket: str) -> None:
    """moto silently keeps a non-empty bucket on stack deletion: empty it first."""
    s3 = aws("s3")
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            objects = [
                {"Key": o["Key"], "VersionId": o["VersionId"]}
                for o in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            for i in range(0, len(objects), 1000):
                s3.delete_objects(Bucket=bucket, Delete={"Objects": objects[i:i + 1000], "Quiet": True})
    except Exception as e:  # noqa: BLE001
        if not is_not_found(e, "NoSuchBucket"):
            raise


def delete_stack(aws: Aws, stack_name: str) -> None:
    cfn = aws("cloudformation")
    resources = cfn.describe_stack_resources(StackName=stack_name)["StackResources"]
    # (moto lists the resource types it skipped as entries with no type or id.)
    buckets = [r["PhysicalResourceId"] for r in resources
               if r.get("ResourceType") == "AWS::S3::Bucket" and r.get("PhysicalResourceId")]
    for bucket in buckets:
        empty_bucket(aws, bucket)
    cfn.delete_stack(StackName=stack_name)
    wait_stack(aws, stack_name, gone=True)
    # Anything moto failed to delete would make the recreation fail later with
    # a less obvious message: check the named resources are really gone.
    leftovers = []
    for bucket in buckets:
        try:
            aws("s3").head_bucket(Bucket=bucket)
            leftovers.append(f"bucket {bucket}")
        except Exception:  # noqa: BLE001
            pass
    if leftovers:
        raise StackError(f"deleting the previous stack {stack_name} left {', '.join(leftovers)} behind")


def create_stack(aws: Aws, stack_name: str, template: dict[str, Any], params: dict[str, str]) -> None:
    cfn = aws("cloudformation")
    cfn.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(template, separators=(",", ":")),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        Tags=[{"Key": "ariane:local", "Value": "true"}],
    )
    status = wait_stack(aws, stack_name)
    if status != "CREATE_COMPLETE":
        reasons = []
        try:
            for ev in cfn.describe_stack_events(StackName=stack_name)["StackEvents"]:
                if ev.get("ResourceStatus", "").endswith("FAILED"):
                    reasons.append(f"{ev['LogicalResourceId']}: {ev.get('ResourceStatusReason', '?')}")
        except Exception:  # noqa: BLE001
            pass
        raise StackError(f"stack {stack_name} ended in {status}: " + ("; ".join(reasons) or "no reason given"))


# ---------------------------------------------------------------------------
# Intrinsic resolution against the deployed stack (for what moto leaves undone)
# ---------------------------------------------------------------------------


class Resolver:
    def __init__(self, aws: Aws, account_id: str, stack_name: str, params: dict[str, str],
                 resources: dict[str, dict[str, str]], queue_arns: dict[str, str]):
        self.aws = aws
        self.refs: dict[str, str] = {
            "AWS::AccountId": account_id,
            "AWS::Region": aws.region,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": stack_name,
            "AWS::NoValue": "",
        }
        self.refs.update(params)
        self.resources = resources
        self.queue_arns = queue_arns  # logical id -> ARN
        self.account_id = account_id

    def ref(self, name: str) -> str:
        if name in self.refs:
            return self.refs[name]
        if name in self.resources:
            return self.resources[name]["physical_id"]
        raise StackError(f"cannot resolve Ref {name}")

    def get_att(self, logical_id: str, attribute: str) -> str:
        res = self.resources.get(logical_id)
        if res is None:
            raise StackError(f"cannot resolve Fn::GetAtt {logical_id}.{attribute}: no such resource")
        rtype, pid = res["type"], res["physical_id"]
        region, account = self.aws.region, self.account_id
        if rtype == "AWS::SQS::Queue":
            if attribute == "Arn":
                return self.queue_arns[logical_id]
            if attribute == "QueueName":
                return self.queue_arns[logical_id].rsplit(":", 1)[1]
            if attribute == "QueueUrl":
                return pid
        if rtype == "AWS::S3::Bucket":
            if attribute == "Arn":
                return f"arn:aws:s3:::{pid}"
            if attribute in ("DomainName", "RegionalDomainName"):
                return f"{pid}.s3.{region}.amazonaws.com"
        if rtype == "AWS::Lambda::Function" and attribute == "Arn":
            return f"arn:aws:lambda:{region}:{account}:function:{pid}"
        if rtype == "AWS::DynamoDB::Table" and attribute == "Arn":
            return f"arn:aws:dynamodb:{region}:{account}:table/{pid}"
        if rtype == "AWS::SNS::Topic" and attribute == "TopicArn":
            return pid
        raise StackError(f"cannot resolve Fn::GetAtt {logical_id}.{attribute} ({rtype})")

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                parts = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(self(parts[0]), self(parts[1]))
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self(arg[1]))

                def sub(m: re.Match) -> str:
                    name = m.group(1)
                    if name.startswith("!"):
                        return "${" + name[1:] + "}"
                    if name in variables:
                        return str(variables[name])
                    if "." in name and name.split(".", 1)[0] in self.resources:
                        return self.get_att(*name.split(".", 1))
                    return self.ref(name)

                return re.sub(r"\$\{([^}]+)\}", sub, text)
            if key == "Fn::Join":
                return str(self(arg[0])).join(str(v) for v in self(arg[1]))
            if key == "Fn::Select":
                return self(arg[1])[int(self(arg[0]))]
            if key == "Fn::Split":
                return str(self(arg[1])).split(self(arg[0]))
            if key.startswith("Fn::"):
                raise StackError(f"cannot resolve {key} locally")
        return {k: self(v) for k, v in value.items()}


def unresolved(value: Any) -> bool:
    """Does a value that moto returned still look like an unexpanded intrinsic?"""
    if not isinstance(value, str):
        return True
    return bool(re.search(r"\$\{[^}]+\}|\{'(Ref|Fn::[A-Za-z]+)'|\"(Ref|Fn::[A-Za-z]+)\"", value))


# ---------------------------------------------------------------------------
# deploy
# ---------------------------------------------------------------------------


def reconcile_ignored(aws: Aws, template_resources: dict[str, Any], resources: dict[str, dict[str, Any]],
                      resolve: Resolver, url_by_arn: dict[str, str]) -> list[dict[str, Any]]:
    """Apply the template properties/resources moto's CloudFormation silently skips.

    moto 5.2 ignores S3 NotificationConfiguration, VersioningConfiguration and
    PublicAccessBlockConfiguration, DynamoDB TimeToLiveSpecification and
    PointInTimeRecoverySpecification, and whole AWS::S3::BucketPolicy,
    AWS::SQS::QueuePolicy and AWS::CloudWatch::Alarm resources. Apply them with
    the service APIs so the local stack matches the template. Bucket policies
    are the exception (see below); moto stores queue policies and alarms
    without enforcing or evaluating them.

    Returns the manifest's bucket_notifications.
    """
    s3, ddb = aws("s3"), aws("dynamodb")
    notifications: list[dict[str, Any]] = []
    skipped: list[str] = []
    for logical_id, resource in template_resources.items():
        rtype = resource["Type"]
        props = resource.get("Properties") or {}
        pid = resources[logical_id]["physical_id"]

        if rtype == "AWS::S3::Bucket":
            if "VersioningConfiguration" in props:
                s3.put_bucket_versioning(
                    Bucket=pid, VersioningConfiguration={"Status": resolve(props["VersioningConfiguration"])["Status"]})
            if "PublicAccessBlockConfiguration" in props:
                s3.put_public_access_block(
                    Bucket=pid, PublicAccessBlockConfiguration=resolve(props["PublicAccessBlockConfiguration"]))
            config = resolve(props.get("NotificationConfiguration") or {})
            for other in sorted(set(config) - {"QueueConfigurations"}):
                log(f"warning: {logical_id}.NotificationConfiguration.{other} is not applied locally")
            api_configs = []
            for i, qc in enumerate(config.get("QueueConfigurations") or []):
                rules = (((qc.get("Filter") or {}).get("S3Key") or {}).get("Rules")) or []
                api = {"Id": f"{logical_id}-{i}", "QueueArn": qc["Queue"], "Events": [qc["Event"]]}
                if rules:
                    api["Filter"] = {"Key": {"FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]}}
                api_configs.append(api)
                by_name = {r["Name"].lower(): r["Value"] for r in rules}
                notifications.append({
                    "bucket": pid,
                    "queue_arn": qc["Queue"],
                    "queue_url": url_by_arn.get(qc["Queue"]),
                    "events": [qc["Event"]],
                    "prefix": by_name.get("prefix"),
                    "suffix": by_name.get("suffix"),
                })
            if api_configs:
                # Like AWS, this sends an s3:TestEvent message to each queue: consumers skip it.
                s3.put_bucket_notification_configuration(
                    Bucket=pid, NotificationConfiguration={"QueueConfigurations": api_configs})

        elif rtype == "AWS::DynamoDB::Table":
            ttl = resolve(props.get("TimeToLiveSpecification"))
            if ttl and str(ttl.get("Enabled")).lower() == "true":
                ddb.update_time_to_live(
                    TableName=pid, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True})
            pitr = resolve(props.get("PointInTimeRecoverySpecification"))
            if pitr and str(pitr.get("PointInTimeRecoveryEnabled")).lower() == "true":
                ddb.update_continuous_backups(
                    TableName=pid, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})

        elif rtype == "AWS::S3::BucketPolicy" and pid is None:
            # Not applied: moto's S3 does evaluate bucket policies, and the
            # template's deny-unless-aws:SecureTransport would reject every
            # request to the plain-HTTP local endpoint.
            skipped.append(logical_id)

        elif rtype == "AWS::SQS::QueuePolicy" and pid is None:
            policy = json.dumps(resolve(props["PolicyDocument"]))
            for queue_url in resolve(props["Queues"]):
                aws("sqs").set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": policy})

        elif rtype == "AWS::CloudWatch::Alarm" and pid is None:
            alarm = resolve(props)
            keys = ("AlarmName", "AlarmDescription", "Namespace", "MetricName", "Dimensions", "Statistic",
                    "ExtendedStatistic", "Period", "EvaluationPeriods", "DatapointsToAlarm", "Threshold",
                    "ComparisonOperator", "TreatMissingData", "AlarmActions", "OKActions",
                    "InsufficientDataActions", "Unit", "ActionsEnabled")
            api = {k: alarm[k] for k in keys if k in alarm}
            for k in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
                if k in api:
                    api[k] = int(api[k])
            if "Threshold" in api:
                api["Threshold"] = float(api["Threshold"])
            api.setdefault("AlarmName", f"{resolve.refs['AWS::StackName']}-{logical_id}")
            aws("cloudwatch").put_metric_alarm(**api)
            resources[logical_id]["physical_id"] = api["AlarmName"]
    if skipped:
        log(f"not applied locally (moto would deny plain-HTTP requests): {', '.join(skipped)}")
    return notifications


def create_http_apis(aws: Aws, sam: dict[str, Any], template_resources: dict[str, Any],
                     resources: dict[str, dict[str, Any]], functions: dict[str, dict[str, Any]],
                     stack_name: str, resolve: Any) -> dict[str, Any]:
    """Create the template's HTTP APIs (AWS::ApiGatewayV2::Api, which moto's
    CloudFormation skips) through moto's API Gateway v2 API: the API, one Lambda proxy
    integration and route per `HttpApi` event of the SAM functions, and the `$default`
    stage with the template's throttling. moto does not invoke the functions behind it:
    the manifest records each route's function, and the local runner serves them."""
    gw = aws("apigatewayv2")
    apis: dict[str, Any] = {}
    for lid, r in template_resources.items():
        if r["Type"] != "AWS::ApiGatewayV2::Api" or resources[lid]["physical_id"]:
            continue
        api = gw.create_api(Name=f"{stack_name}-{lid}", ProtocolType="HTTP")
        api_id = api["ApiId"]
        routes: dict[str, str] = {}
        for flid, fr in (sam.get("Resources") or {}).items():
            if fr.get("Type") != "AWS::Serverless::Function":
                continue
            for event in ((fr.get("Properties") or {}).get("Events") or {}).values():
                props = event.get("Properties") or {}
                api_ref = props.get("ApiId")
                if event.get("Type") != "HttpApi" or not (isinstance(api_ref, dict) and api_ref.get("Ref") == lid):
                    continue
                route_key = f"{props['Method'].upper()} {props['Path']}"
                integration = gw.create_integration(
                    ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=functions[flid]["arn"],
                    PayloadFormatVersion=str(props.get("PayloadFormatVersion", "2.0")))
                gw.create_route(ApiId=api_id, RouteKey=route_key, Target=f"integrations/{integration['IntegrationId']}")
                routes[route_key] = flid
        if not routes:
            raise StackError(f"HTTP API {lid} has no route: no function has an HttpApi event on it")
        # SAM moves the throttling to the stage it generates: read it from the HttpApi.
        sam_props = ((sam.get("Resources") or {}).get(lid) or {}).get("Properties") or {}
        settings = resolve(sam_props.get("DefaultRouteSettings") or {})
        stage_settings = {k: v for k, v in {
            "ThrottlingBurstLimit": settings.get("ThrottlingBurstLimit"),
            "ThrottlingRateLimit": settings.get("ThrottlingRateLimit"),
        }.items() if v is not None}
        gw.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True,
                        DefaultRouteSettings={k: (float(v) if k == "ThrottlingRateLimit" else int(v)) for k, v in stage_settings.items()})
        resources[lid]["physical_id"] = api_id
        apis[lid] = {"api_id": api_id, "endpoint": api.get("ApiEndpoint"), "routes": dict(sorted(routes.items()))}
    return dict(sorted(apis.items()))


def create_secrets(aws: Aws, template_resources: dict[str, Any], resources: dict[str, dict[str, Any]],
                   resolve: Resolver) -> None:
    """Create the template's AWS::SecretsManager::Secret resources through the API.

    moto 5.2's CloudFormation skips them (their Ref resolves to ""): create each one
    with its Name, Description and SecretString, or a value generated per its
    GenerateSecretString (length, punctuation), and record its ARN as the physical id,
    which is what Ref returns for a secret.
    """
    import secrets
    import string

    sm = aws("secretsmanager")
    for logical_id, resource in template_resources.items():
        if resource["Type"] != "AWS::SecretsManager::Secret" or resources[logical_id]["physical_id"]:
            continue
        props = resolve(resource.get("Properties") or {})
        name = props.get("Name") or f"{resolve.refs['AWS::StackName']}-{logical_id}"
        value = props.get("SecretString")
        if value is None:
            gen = props.get("GenerateSecretString") or {}
            alphabet = string.ascii_letters + string.digits
            if str(gen.get("ExcludePunctuation", "false")).lower() != "true":
                alphabet += "!#$%&()*+,-./:;<=>?@[]^_{|}~"
            value = "".join(secrets.choice(alphabet) for _ in range(int(gen.get("PasswordLength", 32))))
        try:
            arn = sm.create_secret(Name=name, Description=props.get("Description", ""), SecretString=value)["ARN"]
        except Exception as e:  # noqa: BLE001
            if not is_not_found(e, "ResourceExistsException"):
                raise
            arn = sm.describe_secret(SecretId=name)["ARN"]
        resources[logical_id]["physical_id"] = arn


def parse_params(pairs: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise StackError(f"--param expects Key=Value, got {pair!r}")
        params[key] = value
    return params


def effective_params(declared: dict[str, Any], given: dict[str, str]) -> dict[str, str]:
    """Defaults + overrides, checked like CloudFormation would (moto does not check)."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise StackError(f"unknown template parameter(s): {', '.join(unknown)} "
                         f"(declared: {', '.join(sorted(declared))})")
    params: dict[str, str] = {}
    for name, spec in declared.items():
        if name in given:
            value = given[name]
        elif "Default" in spec:
            value = str(spec["Default"])
        else:
            raise StackError(f"parameter {name} has no default: pass --param {name}=...")
        problems = []
        if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
            problems.append(f"must match {spec['AllowedPattern']}")
        if "MinLength" in spec and len(value) < int(spec["MinLength"]):
            problems.append(f"must be at least {spec['MinLength']} characters")
        if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
            problems.append(f"must be at most {spec['MaxLength']} characters")
        if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
            problems.append(f"must be one of {spec['AllowedValues']}")
        if problems:
            hint = f" ({spec['ConstraintDescription']})" if "ConstraintDescription" in spec else ""
            raise StackError(f"parameter {name}={value!r} {' and '.join(problems)}{hint}")
        params[name] = value
    return params


def deploy(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    endpoint = args.endpoint.rstrip("/")
    region = args.region
    stage = args.stage
    stack_name = args.stack_name or f"ariane-{stage}"

    sam = load_template(Path(args.template))
    params = parse_params(args.param)
    if "Stage" in params and params["Stage"] != stage:
        raise StackError("--param Stage=... disagrees with --stage")
    params["Stage"] = stage
    params = effective_params(sam.get("Parameters") or {}, params)

    local_sam, binaries = prepare_for_local(sam)
    cfn_template = substitute_definitions(translate(local_sam, region))

    aws = Aws(endpoint, region)
    account_id = check_endpoint(aws)
    log(f"moto at {endpoint} (account {account_id}, region {region})")

    upload_stubs(aws, sorted(binaries))
    if stack_status(aws, stack_name) is not None:
        log(f"stack {stack_name} exists: deleting it first")
        delete_stack(aws, stack_name)
    # Event source mappings stay out of moto: moto attaches a mapping to its queue and,
    # on every SendMessage, "receives" the queue's messages to run the function in Docker
    # (absent), which inflates ApproximateReceiveCount and drifts messages to the DLQ even
    # after the mapping is deleted. The local runner plays them instead, from the
    # definitions recorded below.
    deployed_template = dict(cfn_template)
    deployed_template["Resources"] = {
        lid: r for lid, r in cfn_template["Resources"].items() if r["Type"] != "AWS::Lambda::EventSourceMapping"
    }
    log(f"creating stack {stack_name} ({len(deployed_template['Resources'])} resources; "
        f"{len(cfn_template['Resources']) - len(deployed_template['Resources'])} event source mappings run locally)")
    create_stack(aws, stack_name, deployed_template, params)

    cfn = aws("cloudformation")
    template_resources = cfn_template["Resources"]
    # moto lists resource types its CloudFormation skips (policies, alarms) as
    # entries without a logical id: take the type from the template and leave
    # the physical id null until reconcile_ignored() creates what it can.
    resources: dict[str, dict[str, Any]] = {
        lid: {"type": r["Type"], "physical_id": None} for lid, r in template_resources.items()
    }
    for r in cfn.describe_stack_resources(StackName=stack_name)["StackResources"]:
        if r.get("LogicalResourceId") in resources:
            resources[r["LogicalResourceId"]]["physical_id"] = r.get("PhysicalResourceId") or None
    stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}

    # --- queues ------------------------------------------------------------
    sqs = aws("sqs")
    queues: dict[str, dict[str, Any]] = {}
    queue_arns: dict[str, str] = {}
    for logical_id, res in resources.items():
        if res["type"] != "AWS::SQS::Queue":
            continue
        name = res["physical_id"].rstrip("/").rsplit("/", 1)[-1]
        # Ask for the URL through our endpoint: moto builds it from the request host.
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        redrive = json.loads(attrs["RedrivePolicy"]) if attrs.get("RedrivePolicy") else {}
        queue_arns[logical_id] = attrs["QueueArn"]
        queues[logical_id] = {
            "url": url,
            "arn": attrs["QueueArn"],
            "visibility_timeout_s": int(attrs["VisibilityTimeout"]),
            "dlq_arn": redrive.get("deadLetterTargetArn"),
            "dlq_url": None,
            "max_receive_count": int(redrive["maxReceiveCount"]) if "maxReceiveCount" in redrive else None,
        }
    url_by_arn = {q["arn"]: q["url"] for q in queues.values()}
    lid_by_queue_arn = {q["arn"]: lid for lid, q in queues.items()}
    for q in queues.values():
        if q["dlq_arn"]:
            q["dlq_url"] = url_by_arn.get(q["dlq_arn"]) or sqs.get_queue_url(
                QueueName=q["dlq_arn"].rsplit(":", 1)[1])["QueueUrl"]

    # moto's CloudFormation names queues https://sqs.<region>.amazonaws.com/...;
    # botocore accepts that against the endpoint, but other SDKs may route by
    # the URL's host. Outputs and env vars get the endpoint-based URL instead.
    physical_to_url = {resources[lid]["physical_id"]: q["url"] for lid, q in queues.items()}
    outputs = {k: physical_to_url.get(v, v) for k, v in outputs.items()}
    # Also inside composite values, like the router's CHANNEL_QUEUE_URLS
    # ("pos=<url>,ecommerce=<url>,..."): a URL is replaced only as a whole item
    # (followed by a separator or the end), longest first, so that
    # .../ariane-dev-ingest-pos never matches inside .../ariane-dev-ingest-pos-dlq.
    url_pattern = re.compile("|".join(
        re.escape(pid) + r"(?=$|[,;\s])" for pid in sorted(physical_to_url, key=len, reverse=True)
    )) if physical_to_url else None

    def endpoint_urls(value: str) -> str:
        if url_pattern is None or not isinstance(value, str):
            return value
        return url_pattern.sub(lambda m: physical_to_url[m.group(0)], value)

    resolve = Resolver(aws, account_id, stack_name, params, resources, queue_arns)

    # --- secrets: moto's CloudFormation skips AWS::SecretsManager::Secret ----------
    create_secrets(aws, template_resources, resources, resolve)
    for key, output in (cfn_template.get("Outputs") or {}).items():
        if outputs.get(key, "") == "":
            try:
                outputs[key] = str(resolve(output["Value"]))
            except StackError:
                pass

    # --- functions ---------------------------------------------------------
    lam = aws("lambda")
    functions: dict[str, dict[str, Any]] = {}
    lid_by_function_arn: dict[str, str] = {}
    for logical_id, binary in binaries.items():
        res = resources.get(logical_id)
        if not res or res["type"] != "AWS::Lambda::Function":
            raise StackError(f"function {logical_id} is not in the deployed stack")
        conf = lam.get_function_configuration(FunctionName=res["physical_id"])
        # Verify moto's resolution of every variable against our own.
        declared_env = (template_resources[logical_id]["Properties"].get("Environment") or {}).get("Variables") or {}
        env = dict((conf.get("Environment") or {}).get("Variables") or {})
        for key, raw in declared_env.items():
            try:
                value = str(resolve(raw))
            except StackError as e:
                if key in env and not unresolved(env[key]):
                    continue  # moto managed an intrinsic our resolver does not know: trust it
                raise StackError(f"{logical_id} env {key}: unresolved by moto and {e}") from None
            if key not in env or unresolved(env[key]) or (env[key] == "" and value != ""):
                log(f"warning: {logical_id} env {key} left unresolved by moto ({env.get(key)!r}); using {value!r}")
                env[key] = value
            elif env[key] != value:
                raise StackError(f"{logical_id} env {key}: moto has {env[key]!r}, the template resolves to {value!r}")
        env = {k: endpoint_urls(v) for k, v in env.items()}
        template_props = template_resources[logical_id]["Properties"]
        # moto 5.2 drops EphemeralStorage (its CloudFormation does not pass it on and
        # UpdateFunctionConfiguration ignores it: every function reports 512 MB), so
        # the manifest records the template's value. Locally it has no effect anyway:
        # functions run in the runner's process and use the host's temp directory.
        ephemeral = resolve(template_props.get("EphemeralStorage") or {}).get("Size")
        reserved = lam.get_function_concurrency(FunctionName=conf["FunctionName"]).get("ReservedConcurrentExecutions")
        functions[logical_id] = {
            "function_name": conf["FunctionName"],
            "binary": binary,
            "arn": conf["FunctionArn"],
            "memory_mb": int(conf["MemorySize"]),
            "timeout_s": int(conf["Timeout"]),
            "ephemeral_storage_mb": int(ephemeral or (conf.get("EphemeralStorage") or {}).get("Size") or 512),
            "reserved_concurrency": int(reserved) if reserved is not None else None,
            "environment": dict(sorted(env.items())),
        }
        lid_by_function_arn[conf["FunctionArn"]] = logical_id

    def function_lid(arn: str) -> str | None:
        # Strip an alias/version qualifier: arn:aws:lambda:r:a:function:name[:qualifier]
        base = ":".join(arn.split(":")[:7])
        return lid_by_function_arn.get(base)

    # --- event source mappings: record, then delete from moto ---------------
    template_esms = {
        lid: r["Properties"] for lid, r in template_resources.items()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
    }
    event_source_mappings = []
    for esm_lid, props in template_esms.items():
        arn = resolve(props.get("EventSourceArn"))
        if arn not in lid_by_queue_arn:
            raise StackError(f"{esm_lid}: event source {arn} is not a queue of this stack")
        target = resolve(props.get("FunctionName"))
        logical_id = next(
            (lid for lid, fn in functions.items() if target in (fn["function_name"], fn["arn"]) or function_lid(str(target)) == lid),
            None,
        )
        if logical_id is None:
            raise StackError(f"{esm_lid}: function {target} is not a function of this stack")
        response_types = props.get("FunctionResponseTypes") or []
        max_concurrency = resolve((props.get("ScalingConfig") or {}).get("MaximumConcurrency"))
        event_source_mappings.append({
            "function": logical_id,
            "queue_url": url_by_arn[arn],
            "queue_arn": arn,
            "batch_size": int(props.get("BatchSize") or 10),
            "maximum_batching_window_s": int(props.get("MaximumBatchingWindowInSeconds") or 0),
            # Recorded for checks; the local runner invokes one batch at a time anyway.
            "maximum_concurrency": int(max_concurrency) if max_concurrency is not None else None,
            "report_batch_item_failures": "ReportBatchItemFailures" in response_types,
        })
    expected_mappings = len(template_esms)
    if len(event_source_mappings) != expected_mappings:
        raise StackError(f"found {len(event_source_mappings)} event source mappings in moto, "
                         f"the template defines {expected_mappings}")
    event_source_mappings.sort(key=lambda e: (e["function"], e["queue_arn"]))

    # --- state machines: moto stores them, the local runner plays them ---------
    sfn = aws("stepfunctions")
    state_machines: dict[str, dict[str, Any]] = {}
    lid_by_state_machine_arn: dict[str, str] = {}
    for logical_id, res in resources.items():
        if res["type"] != "AWS::StepFunctions::StateMachine":
            continue
        described = sfn.describe_state_machine(stateMachineArn=res["physical_id"])
        definition = described["definition"]
        if "${" in definition:
            raise StackError(f"state machine {logical_id}: unresolved substitution in its definition")
        state_machines[logical_id] = {
            "name": described["name"],
            "arn": described["stateMachineArn"],
            "definition": json.loads(definition),
        }
        lid_by_state_machine_arn[described["stateMachineArn"]] = logical_id

    # --- schedules -----------------------------------------------------------
    events = aws("events")
    schedules = []
    for logical_id, res in resources.items():
        if res["type"] != "AWS::Events::Rule":
            continue
        rule_name = res["physical_id"].rsplit("/", 1)[-1]
        rule = events.describe_rule(Name=rule_name)
        if not rule.get("ScheduleExpression"):
            continue
        for target in events.list_targets_by_rule(Rule=rule_name)["Targets"]:
            schedules.append({
                "rule_name": rule["Name"],
                "rule_arn": rule["Arn"],
                "schedule_expression": rule["ScheduleExpression"],
                "function": function_lid(target["Arn"]),
                "state_machine": lid_by_state_machine_arn.get(target["Arn"]),
                "input": target.get("Input"),
            })
    schedules.sort(key=lambda s: s["rule_name"])

    # --- what moto's CloudFormation stores but does not apply -------------------
    bucket_notifications = reconcile_ignored(aws, template_resources, resources, resolve, url_by_arn)
    http_apis = create_http_apis(aws, sam, template_resources, resources, functions, stack_name, resolve)

    manifest = {
        "endpoint": endpoint,
        "region": region,
        "account_id": account_id,
        "stack_name": stack_name,
        "stage": stage,
        "outputs": dict(sorted(outputs.items())),
        "resources": dict(sorted(resources.items())),
        "functions": functions,
        "event_source_mappings": event_source_mappings,
        "queues": dict(sorted(queues.items())),
        "schedules": schedules,
        "state_machines": dict(sorted(state_machines.items())),
        "bucket_notifications": bucket_notifications,
        "http_apis": http_apis,
    }

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(out)

    elapsed = time.monotonic() - started
    log(f"stack {stack_name}: {len(resources)} resources, deployed in {elapsed:.1f}s")
    width = max((len(lid) for lid in functions), default=0)
    for lid, fn in functions.items():
        log(f"  {lid:<{width}} {fn['function_name']} ({fn['binary']}, {fn['memory_mb']} MB, {fn['timeout_s']} s)")
    for e in event_source_mappings:
        log(f"  SQS {e['queue_arn'].rsplit(':', 1)[1]} -> {e['function']} (batch {e['batch_size']})")
    for s in schedules:
        log(f"  schedule {s['schedule_expression']} -> {s['function'] or s['state_machine']} (recorded; moto never fires it)")
    for lid, machine in state_machines.items():
        log(f"  state machine {machine['name']} ({lid}; played by the local runner)")
    for lid, api in http_apis.items():
        for route, fn in api["routes"].items():
            log(f"  HTTP {route} -> {fn} ({lid}, {api['api_id']}; served by the local runner)")
    for n in bucket_notifications:
        log(f"  s3://{n['bucket']}/{n['prefix'] or ''}* {','.join(n['events'])} -> {n['queue_arn'].rsplit(':', 1)[1]}")
    log(f"manifest written to {out}")
    return manifest


def cmd_translate(args: argparse.Namespace) -> None:
    local_sam, _ = prepare_for_local(load_template(Path(args.template)))
    text = json.dumps(translate(local_sam, args.region), indent=2) + "\n"
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        log(f"translated template written to {out}")
    else:
        sys.stdout.write(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("deploy", help="deploy the template to a moto server and write the manifest")
    p.add_argument("--endpoint", required=True, help="moto server URL, e.g. http://127.0.0.1:5123")
    p.add_argument("--stage", default="dev", help="Stage parameter (stack is ariane-<stage>)")
    p.add_argument("--region", default=DEFAULT_REGION)
    p.add_argument("--param", action="append", default=[], metavar="Key=Value",
                   help="template parameter override (repeatable)")
    p.add_argument("--out", required=True, help="manifest JSON path")
    p.add_argument("--stack-name", help="default: ariane-<stage>")
    p.add_argument("--template", default=str(DEFAULT_TEMPLATE))

    t = sub.add_parser("translate", help="print the CloudFormation JSON the local stack deploys (offline SAM "
                                         "transform; CodeUri -> stub zips, Retain -> Delete)")
    t.add_argument("--out", help="write to this file instead of stdout")
    t.add_argument("--region", default=DEFAULT_REGION)
    t.add_argument("--template", default=str(DEFAULT_TEMPLATE))

    args = parser.parse_args(argv)
    try:
        if args.command == "deploy":
            deploy(args)
        else:
            cmd_translate(args)
    except StackError as e:
        print(f"stack.py: error: {e}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as e:
        print(f"stack.py: error: {e}; run scripts/bootstrap.sh and use .venv/bin/python", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(e, (BotoCoreError, ClientError)):
            print(f"stack.py: error: AWS call to {getattr(args, 'endpoint', '?')} failed: {e}", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
