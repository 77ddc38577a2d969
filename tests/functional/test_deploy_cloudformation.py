"""The CloudFormation templates: lint-clean, deployable, and what they create is what we promise.

The worked example (docs/deploy.md: bundle store, the fish.service.local mesh, the
configurator, tuna blue and green, the gateway) is deployed to moto's CloudFormation
in-process, then the S3 bucket, IAM roles and ECS services are read back through the APIs.
moto's CloudFormation implements neither ``AWS::ServiceDiscovery::*``, nor
``AWS::S3::BucketPolicy``, nor ``AWS::EC2::SecurityGroupEgress``, lists a resource whose
``Condition`` is false without a logical id, and records only part of some resources'
properties: what it lacks is left out of the deployment (references to a left-out resource
stand in for fixed ids) and asserted from the templates themselves.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.api import lint
from cfnlint.decode.cfn_yaml import loads
from moto import mock_aws

from tests.aws_calls import ACCOUNT, REGION, load_policy, substitute

ROOT = Path(__file__).parents[2]
TEMPLATES = ROOT / "deploy" / "cloudformation"
NOT_IN_MOTO = ("AWS::ServiceDiscovery::", "AWS::S3::BucketPolicy", "AWS::EC2::SecurityGroupEgress")
STAND_INS = {
    "Namespace": "ns-fishfishfish",
    "Discovery": f"arn:aws:servicediscovery:{REGION}:{ACCOUNT}:service/srv-moto",
}


def template(name: str) -> dict[str, Any]:
    """A template as CloudFormation reads it (short-form tags become Fn:: forms)."""
    loaded: dict[str, Any] = json.loads(json.dumps(loads((TEMPLATES / name).read_text())))
    return loaded


def for_moto(node: Any) -> Any:
    """The template without what moto lacks; references to those resources stood in for."""
    if isinstance(node, dict):
        if node.get("Ref") in STAND_INS or (node.get("Fn::GetAtt") or [""])[0] in STAND_INS:
            return STAND_INS[node.get("Ref") or node["Fn::GetAtt"][0]]
        kept = {
            k: for_moto(v)
            for k, v in node.items()
            if not (isinstance(v, dict) and str(v.get("Type", "")).startswith(NOT_IN_MOTO))
            and not (isinstance(v, dict) and "Type" in v and "Condition" in v)
        }
        if kept.get("DependsOn") == "ServiceSettings":
            del kept["DependsOn"]
        return kept
    if isinstance(node, list):
        return [for_moto(v) for v in node]
    return node


class Account:
    """Deploys templates to moto and returns their outputs."""

    def __init__(self) -> None:
        self.cfn = boto3.client("cloudformation", region_name=REGION)

    def deploy(self, stack: str, name: str, **parameters: object) -> dict[str, str]:
        body = json.dumps(for_moto(template(name)))
        self.cfn.create_stack(
            StackName=stack,
            TemplateBody=body,
            Parameters=[
                {"ParameterKey": k, "ParameterValue": str(v)} for k, v in parameters.items()
            ],
            Capabilities=["CAPABILITY_IAM"],
        )
        (described,) = self.cfn.describe_stacks(StackName=stack)["Stacks"]
        assert described["StackStatus"] == "CREATE_COMPLETE", described.get("StackStatusReason")
        return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


@pytest.fixture(scope="module")
def example() -> Iterator[dict[str, Any]]:
    """The worked example of docs/deploy.md, deployed to moto's CloudFormation."""
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
        subnets = ",".join(s["SubnetId"] for s in ec2.describe_subnets()["Subnets"][:2])
        boto3.client("ecs", region_name=REGION).create_cluster(clusterName="mesh")
        account = Account()
        store = account.deploy("nightjar-store", "bundle-store.yaml", BucketName="fish-bundles")
        mesh = account.deploy("fish-mesh", "mesh.yaml", VpcId=vpc)
        common = {"ClusterName": "mesh", "Subnets": subnets, "BucketName": store["BucketName"]}
        account.deploy(
            "nightjar-configurator",
            "configurator.yaml",
            **common,
            VpcId=vpc,
            Image="nightjar-configurator:1",
            ConfiguratorStorePolicyArn=store["ConfiguratorStorePolicyArn"],
            Namespaces="fish.service.local",
        )
        fetcher = {
            **common,
            "FetcherImage": "nightjar-fetcher:1",
            "FetcherPolicyArn": store["FetcherPolicyArn"],
            "SecurityGroupId": mesh["SecurityGroupId"],
            "LogGroup": mesh["LogGroup"],
        }
        for color, weight in (("blue", 90), ("green", 10)):
            account.deploy(
                f"tuna-{color}",
                "sidecar.yaml",
                **fetcher,
                NamespaceId=STAND_INS["Namespace"],
                Color=color,
                Weight=weight,
            )
        gateway = account.deploy(
            "fish-gateway",
            "gateway.yaml",
            **fetcher,
            VpcId=vpc,
            LoadBalancerSubnets=subnets,
            NamespaceId=STAND_INS["Namespace"],
        )
        yield {"store": store, "gateway": gateway}


def physical(stack: str, logical: str) -> str:
    cfn = boto3.client("cloudformation", region_name=REGION)
    got = cfn.describe_stack_resource(StackName=stack, LogicalResourceId=logical)
    return str(got["StackResourceDetail"]["PhysicalResourceId"])


def ecs_task(stack: str, logical: str = "Service") -> dict[str, Any]:
    """The stack's ECS service in the cluster and its task definition, read through ECS."""
    ecs = boto3.client("ecs", region_name=REGION)
    (described,) = ecs.describe_services(cluster="mesh", services=[physical(stack, logical)])[
        "services"
    ]
    task: dict[str, Any] = ecs.describe_task_definition(taskDefinition=described["taskDefinition"])[
        "taskDefinition"
    ]
    return {"service": described, "task": task}


def managed_policy(arn: str) -> dict[str, Any]:
    iam = boto3.client("iam", region_name=REGION)
    version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]
    return dict(document["Document"])


def task_role_policies(
    example: dict[str, Any], stack: str, name: str, attached: list[str]
) -> list[dict[str, Any]]:
    """The documents of the stack's task role: the managed ones it attaches, then inline ones.

    moto records neither a task definition's role nor a role's managed policies from
    CloudFormation, so those two links are asserted on the template; the documents are read
    back from IAM.
    """
    resources = template(name)["Resources"]
    task = resources["TaskDefinition"]["Properties"]
    assert task["TaskRoleArn"] == {"Fn::GetAtt": ["TaskRole", "Arn"]}
    role = resources["TaskRole"]["Properties"]
    assert [ref["Ref"] for ref in role["ManagedPolicyArns"]] == attached
    documents = [managed_policy(example["store"][parameter]) for parameter in attached]
    iam = boto3.client("iam", region_name=REGION)
    role_name = physical(stack, "TaskRole")
    for inline in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role_name, PolicyName=inline)["PolicyDocument"]
        documents.append(document if isinstance(document, dict) else ast.literal_eval(document))
    return documents


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("environment", [])}


@pytest.mark.parametrize("name", sorted(p.name for p in TEMPLATES.glob("*.yaml")))
def test_template_is_cfn_lint_clean(name: str) -> None:
    """cfn-lint reports no error and no warning for any template."""
    matches = lint((TEMPLATES / name).read_text(), regions=[REGION])
    assert [str(m) for m in matches] == []


def test_bucket_is_encrypted_private_tls_only_and_expires_old_versions(
    example: dict[str, Any],
) -> None:
    """The deployed bucket has SSE; public access block, lifecycle and TLS-only from the template.

    moto's CloudFormation applies only a bucket's encryption and tags, so the rest is asserted
    on the template as CloudFormation reads it.
    """
    s3 = boto3.client("s3", region_name=REGION)
    bucket = example["store"]["BucketName"]
    encryption = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    (rule,) = encryption["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    resources = template("bundle-store.yaml")["Resources"]
    props = resources["Bucket"]["Properties"]
    assert set(props["PublicAccessBlockConfiguration"].values()) == {True}
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-old-versions"]["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": {"Ref": "NoncurrentDays"}
    }
    assert rules["remove-expired-delete-markers"]["ExpiredObjectDeleteMarker"] is True
    policy = resources["BucketPolicy"]["Properties"]
    (deny,) = policy["PolicyDocument"]["Statement"]
    assert policy["Bucket"] == {"Ref": "Bucket"}
    assert (deny["Effect"], deny["Principal"], deny["Action"]) == ("Deny", "*", "s3:*")
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_configurator_service_and_its_least_privilege_role(example: dict[str, Any]) -> None:
    """One task, logs to CloudWatch, a health check, exactly deploy/iam's configurator policies."""
    got = ecs_task("nightjar-configurator")
    assert got["service"]["desiredCount"] == 1
    (container,) = got["task"]["containerDefinitions"]
    assert container["logConfiguration"]["logDriver"] == "awslogs"
    assert container["healthCheck"]["command"][0] == "CMD-SHELL"
    assert env_of(container)["NJ_NAMESPACES"] == "fish.service.local"
    values = {
        "BucketName": "fish-bundles",
        "Prefix": "nightjar",
        "Namespaces": ["fish.service.local"],
    }
    values |= {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT}
    expected = [
        load_policy(ROOT / "deploy" / "iam" / name, values)
        for name in (
            "configurator-store.json",
            "configurator-cloudmap.json",
            "configurator-alarms.json",
        )
    ]
    got_policies = task_role_policies(
        example, "nightjar-configurator", "configurator.yaml", ["ConfiguratorStorePolicyArn"]
    )
    assert got_policies == expected


@pytest.mark.parametrize("color", ["blue", "green"])
def test_sidecar_task_orders_starts_and_stops_around_the_fetcher(
    example: dict[str, Any], color: str
) -> None:
    """The app waits for a HEALTHY fetcher, ports do not collide, the fetcher outlives the drain."""
    got = ecs_task(f"tuna-{color}", "EcsService")
    containers = {c["name"]: c for c in got["task"]["containerDefinitions"]}
    app, fetcher = containers["app"], containers["fetcher"]
    assert app["dependsOn"] == [{"containerName": "fetcher", "condition": "HEALTHY"}]
    fetcher_env = env_of(fetcher)
    assert fetcher_env["NJ_NODE"] == f"fish.service.local/tuna/{color}"
    assert fetcher_env["NJ_LISTENER_ADDRESS"] == "127.0.0.1"
    app_ports = {p["containerPort"] for p in app["portMappings"]}
    assert app_ports.isdisjoint(
        {int(fetcher_env["NJ_LISTENER_PORT"]), int(fetcher_env["NJ_ADMIN_PORT"])}
    )
    assert fetcher["stopTimeout"] > float(fetcher_env["NJ_DRAIN_SECONDS"])
    assert fetcher["healthCheck"]["command"][0] == "CMD-SHELL"
    assert task_role_policies(example, f"tuna-{color}", "sidecar.yaml", ["FetcherPolicyArn"]) == [
        load_policy(
            ROOT / "deploy" / "iam" / "fetcher.json",
            {"BucketName": "fish-bundles", "Prefix": "nightjar"},
        )
    ]


def test_gateway_behind_a_load_balancer_checking_ping(example: dict[str, Any]) -> None:
    """The gateway node's listener is the target group's port; health check on /ping."""
    got = ecs_task("fish-gateway")
    (fetcher,) = got["task"]["containerDefinitions"]
    assert env_of(fetcher)["NJ_NODE"] == "fish.service.local/gateway"
    assert fetcher["stopTimeout"] > float(env_of(fetcher)["NJ_DRAIN_SECONDS"])
    elb = boto3.client("elbv2", region_name=REGION)
    arn = physical("fish-gateway", "TargetGroup")
    (group,) = elb.describe_target_groups(TargetGroupArns=[arn])["TargetGroups"]
    assert (group["HealthCheckPath"], group["Port"], group["TargetType"]) == ("/ping", 8080, "ip")
    # moto keeps no load balancers on a service created by CloudFormation: the template's.
    service = template("gateway.yaml")["Resources"]["Service"]["Properties"]
    (balanced,) = service["LoadBalancers"]
    assert balanced["TargetGroupArn"] == {"Ref": "TargetGroup"}
    assert (balanced["ContainerName"], balanced["ContainerPort"]) == (
        "fetcher",
        {"Ref": "ListenerPort"},
    )
    assert fetcher["portMappings"][0]["containerPort"] == int(env_of(fetcher)["NJ_LISTENER_PORT"])
    assert example["gateway"]["Url"].startswith("http://")


def test_sidecar_registers_srv_and_a_service_settings_instance_in_cloud_map() -> None:
    """From the template (moto has no Cloud Map in CloudFormation): SRV records, the settings."""
    resources = template("sidecar.yaml")["Resources"]
    discovery = resources["Discovery"]["Properties"]
    assert discovery["DnsConfig"]["DnsRecords"] == [{"Type": "SRV", "TTL": 10}]
    settings = resources["ServiceSettings"]["Properties"]
    assert settings["InstanceId"] == "service-settings"
    assert settings["ServiceId"] == {"Ref": "Discovery"}
    attributes = settings["InstanceAttributes"]
    assert (attributes["SERVICE"], attributes["COLOR"]) == ({"Ref": "Service"}, {"Ref": "Color"})
    assert attributes["/tuna"] == {"Ref": "Weight"}
    (registry,) = resources["EcsService"]["Properties"]["ServiceRegistries"]
    assert registry == {
        "RegistryArn": {"Fn::GetAtt": ["Discovery", "Arn"]},
        "ContainerName": "app",
        "ContainerPort": {"Ref": "AppPort"},
    }
    namespace = template("mesh.yaml")["Resources"]["Namespace"]
    assert namespace["Type"] == "AWS::ServiceDiscovery::PrivateDnsNamespace"


def test_template_policies_are_the_deploy_iam_documents() -> None:
    """bundle-store.yaml's managed policies and the configurator's inline ones equal deploy/iam."""
    values: dict[str, Any] = {"Bucket": "b", "BucketName": "b", "Prefix": "p"}
    values |= {"Namespaces": ["n"], "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}

    def rendered(node: Any) -> Any:
        if isinstance(node, dict) and set(node) == {"Fn::Sub"}:
            return substitute(node["Fn::Sub"], values)
        if isinstance(node, dict) and set(node) == {"Ref"}:
            return values[node["Ref"]]
        if isinstance(node, dict):
            return {k: rendered(v) for k, v in node.items()}
        if isinstance(node, list):
            return [rendered(v) for v in node]
        return node

    store = template("bundle-store.yaml")["Resources"]
    inline = template("configurator.yaml")["Resources"]["TaskRole"]["Properties"]["Policies"]
    documents = {
        "fetcher.json": store["FetcherPolicy"]["Properties"]["PolicyDocument"],
        "configurator-store.json": store["ConfiguratorStorePolicy"]["Properties"]["PolicyDocument"],
        "operator.json": store["OperatorPolicy"]["Properties"]["PolicyDocument"],
        "configurator-cloudmap.json": inline[0]["PolicyDocument"],
        "configurator-alarms.json": inline[1]["PolicyDocument"],
    }
    # Opt-in: signed bundles, and the Cloud Map writes of 'nightjar shift' for the operators
    # who run it. No template grants them.
    optional = {
        "configurator-signing.json": ["kms:Sign"],
        "fetcher-verify.json": ["kms:Verify"],
        "operator-shift.json": [
            "servicediscovery:ListNamespaces",
            "servicediscovery:ListServices",
            "servicediscovery:GetInstance",
            "servicediscovery:RegisterInstance",
            "route53:GetHostedZone",
            "route53:ChangeResourceRecordSets",
            "route53:ListHostedZonesByName",
        ],
    }
    found = sorted(p.name for p in (ROOT / "deploy" / "iam").glob("*.json"))
    assert found == sorted([*documents, *optional])
    for name, document in documents.items():
        assert rendered(document) == load_policy(ROOT / "deploy" / "iam" / name, values), name
    for name, actions in optional.items():
        doc = json.loads((ROOT / "deploy" / "iam" / name).read_text())
        assert [a for st in doc["Statement"] for a in st["Action"]] == actions, name


def test_gateway_registers_its_tasks_as_the_mesh_gateway_service_in_cloud_map(
    example: dict[str, Any],
) -> None:
    """The gateway's ECS service registers each task (SRV, the fetcher's listener port) in a
    Cloud Map service whose service-settings say GATEWAY=yes and nothing else; a peer mesh's
    security group may reach the listener port. moto has no Cloud Map in CloudFormation and
    keeps no registries on a service it creates: the stack deploys, the rest is the template's.
    """
    assert ecs_task("fish-gateway")["service"]["desiredCount"] == 2
    resources = template("gateway.yaml")["Resources"]
    (registered,) = resources["Service"]["Properties"]["ServiceRegistries"]
    assert registered == {
        "RegistryArn": {"Fn::GetAtt": ["Discovery", "Arn"]},
        "ContainerName": "fetcher",
        "ContainerPort": {"Ref": "ListenerPort"},
    }
    discovery = resources["Discovery"]["Properties"]
    assert discovery["DnsConfig"]["DnsRecords"] == [{"Type": "SRV", "TTL": 10}]
    assert discovery["NamespaceId"] == {"Ref": "NamespaceId"}
    settings = resources["ServiceSettings"]["Properties"]
    assert (settings["InstanceId"], settings["ServiceId"]) == (
        "service-settings",
        {"Ref": "Discovery"},
    )
    attributes = settings["InstanceAttributes"]
    assert attributes["GATEWAY"] == "yes" and not {"SERVICE", "COLOR"} & set(attributes)
    peer = resources["PeerToGateway"]
    assert peer["Condition"] == "HasPeer"
    assert peer["Properties"]["SourceSecurityGroupId"] == {"Ref": "PeerSecurityGroupId"}
    assert peer["Properties"]["FromPort"] == {"Ref": "ListenerPort"}
