"""``nightjar import-appmesh`` end to end: live App Mesh (moto), describe-* directories and
CloudFormation templates in; a plan, CloudFormation, or Cloud Map registrations (moto) out."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result
from moto import mock_aws

from nightjar_cli.appmesh_sources import load_template
from nightjar_cli.cli import main
from tests.appmesh_fixtures import (
    HOST,
    MESH,
    NAMESPACE,
    colorteller,
    create_in_moto,
    register_replaces_attributes,
    serve_virtual_services,
)

EXAMPLE = Path(__file__).parents[2] / "examples" / "appmesh-demo.yaml"
# A node whose namespace names a pseudo parameter: not resolvable from the template.
REGIONAL_NODE = """
  RegionalNode:
    Type: AWS::AppMesh::VirtualNode
    Properties:
      MeshName: !Ref MeshName
      VirtualNodeName: regional
      Spec:
        ServiceDiscovery:
          AWSCloudMap: {NamespaceName: !Sub "${AWS::Region}.local", ServiceName: regional}
"""
TEMPLATE = EXAMPLE.read_text() + REGIONAL_NODE


def nj(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def describe_dir(tmp_path: Path) -> Path:
    """The demo as the files 'aws appmesh describe-* > x.json' would leave."""
    for kind, items in colorteller().items():
        for n, item in enumerate(items):
            (tmp_path / f"{kind}-{n}.json").write_text(json.dumps({kind: item}))
    (tmp_path / "mesh.json").write_text(json.dumps({"mesh": {"meshName": MESH}}))
    return tmp_path


def plan_json(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """In-process moto, RegisterInstance replacing attributes as AWS does; yields Cloud Map."""
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    register_replaces_attributes(monkeypatch)
    with mock_aws():
        yield boto3.client("servicediscovery", region_name="us-east-1")


def test_cloudformation_input_plans_like_the_describe_outputs(tmp_path: Path) -> None:
    """A YAML template with !Ref/!GetAtt/!Sub resolved from its parameters and resources gives
    the same settings as the describe-* directory; a value naming AWS::Region is reported."""
    template = tmp_path / "mesh.yaml"
    template.write_text(TEMPLATE)
    from_cfn = plan_json(nj("import-appmesh", "--from", str(template), "--json"))
    (tmp_path / "d").mkdir()
    from_dir = plan_json(
        nj("import-appmesh", "--from", str(describe_dir(tmp_path / "d")), "--json")
    )
    assert from_cfn["settings"] == from_dir["settings"]
    unresolved = [x for x in from_cfn["losses"] if x["feature"] == "unresolved value"]
    assert [x["resource"] for x in unresolved] == ["AWS::AppMesh::VirtualNode RegionalNode"]
    assert "AWS::Region" in unresolved[0]["lost"]


def test_json_templates_are_read_too(tmp_path: Path) -> None:
    """A JSON template (long-form intrinsics: Ref, Fn::GetAtt, Fn::Sub) plans the same."""
    yaml_template = tmp_path / "mesh.yaml"
    yaml_template.write_text(TEMPLATE)
    json_template = tmp_path / "mesh.json"
    json_template.write_text(json.dumps(load_template(yaml_template)))
    assert '"Fn::GetAtt"' in json_template.read_text()
    from_json = plan_json(nj("import-appmesh", "--from", str(json_template), "--json"))
    from_yaml = plan_json(nj("import-appmesh", "--from", str(yaml_template), "--json"))
    assert from_json == from_yaml


def test_yaml_without_pyyaml_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From the base install (no PyYAML) a YAML template is refused with the install hint."""
    template = tmp_path / "mesh.yaml"
    template.write_text(TEMPLATE)
    monkeypatch.setitem(sys.modules, "yaml", None)
    result = nj("import-appmesh", "--from", str(template))
    assert result.exit_code == 1
    assert "pip install 'nightjar-mesh[configurator]'" in result.output


def test_table_output_and_strict_exit(tmp_path: Path) -> None:
    """The human plan lists every attribute and every loss; --strict exits 3 when anything
    is lost."""
    source = str(describe_dir(tmp_path))
    result = nj("import-appmesh", "--from", source)
    assert result.exit_code == 0, result.output
    assert "colorteller-white" in result.output and "[private]/admin" in result.output
    assert "backends allow-list" in result.output
    strict = nj("import-appmesh", "--from", source, "--strict")
    assert strict.exit_code == 3
    assert "cannot be expressed (--strict)" in strict.output


def test_cloudformation_output_is_service_discovery_instances(tmp_path: Path) -> None:
    """--format cloudformation: one AWS::ServiceDiscovery::Instance per service-settings, its
    ServiceId a parameter, attributes including the AWS-required anchor values."""
    result = nj(
        "import-appmesh", "--from", str(describe_dir(tmp_path)), "--format", "cloudformation"
    )
    assert result.exit_code == 0, result.output
    template = json.loads(result.stdout)
    white = template["Resources"]["ColortellerWhiteSettings"]
    assert white["Type"] == "AWS::ServiceDiscovery::Instance"
    assert white["Properties"]["ServiceId"] == {"Ref": "ColortellerWhiteServiceId"}
    assert white["Properties"]["InstanceId"] == "service-settings"
    attributes = white["Properties"]["InstanceAttributes"]
    assert attributes["AWS_INSTANCE_IPV4"] == "127.0.0.1" and attributes["HOSTS"] == HOST
    assert set(template["Parameters"]) == {
        "ColorgatewayServiceId",
        "ColortellerBlueServiceId",
        "ColortellerWhiteServiceId",
    }


def cloud_map(client: Any, names: list[str]) -> dict[str, str]:
    client.create_private_dns_namespace(Name=NAMESPACE, Vpc="vpc-1")
    ns_id = next(n["Id"] for n in client.list_namespaces()["Namespaces"] if n["Name"] == NAMESPACE)
    return {n: client.create_service(Name=n, NamespaceId=ns_id)["Service"]["Id"] for n in names}


def settings_of(client: Any, service_id: str) -> dict[str, str]:
    found = client.get_instance(ServiceId=service_id, InstanceId="service-settings")
    return dict(found["Instance"]["Attributes"])


def test_live_mesh_apply_is_a_dry_run_first_then_registers_and_refuses_to_overwrite(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--mesh reads moto's App Mesh (virtual services from fixtures); --apply --dry-run writes
    nothing; --apply registers; a second run is unchanged; a differing instance is refused
    without --force and replaced with it; each outcome is printed."""
    mesh = colorteller()
    appmesh = boto3.client("appmesh", region_name="us-east-1")
    create_in_moto(appmesh, mesh)

    serve_virtual_services(monkeypatch, mesh["virtualService"])
    ids = cloud_map(aws, ["colorteller-white", "colorteller-blue", "colorgateway"])

    dry = plan_json(nj("import-appmesh", "--mesh", MESH, "--apply", "--dry-run", "--json"))
    assert {c["action"] for c in dry["changes"]} == {"created"}
    assert aws.list_instances(ServiceId=ids["colorteller-white"])["Instances"] == []

    applied = nj("import-appmesh", "--mesh", MESH, "--apply")
    assert applied.exit_code == 0, applied.output
    assert "registered" in applied.output
    white = settings_of(aws, ids["colorteller-white"])
    assert white["SERVICE"] == "colorteller" and white["/color"] == "2"
    assert white["AWS_INSTANCE_IPV4"] == "127.0.0.1"

    again = plan_json(nj("import-appmesh", "--mesh", MESH, "--apply", "--json"))
    assert {c["action"] for c in again["changes"]} == {"unchanged"}

    aws.register_instance(
        ServiceId=ids["colorteller-blue"],
        InstanceId="service-settings",
        Attributes={"AWS_INSTANCE_IPV4": "127.0.0.1", "SERVICE": "colorteller", "COLOR": "x"},
    )
    refused = nj("import-appmesh", "--mesh", MESH, "--apply")
    assert refused.exit_code == 1 and "refused" in refused.output
    assert settings_of(aws, ids["colorteller-blue"])["COLOR"] == "x"
    forced = nj("import-appmesh", "--mesh", MESH, "--apply", "--force")
    assert forced.exit_code == 0, forced.output
    assert settings_of(aws, ids["colorteller-blue"]) == {
        "AWS_INSTANCE_IPV4": "127.0.0.1",
        "AWS_INSTANCE_PORT": "1",
        **next(s for s in again["settings"] if s["virtual_node"] == "colorteller-blue")[
            "attributes"
        ],
    }


def test_apply_reports_a_missing_cloud_map_service(aws: Any, tmp_path: Path) -> None:
    """A virtual node whose Cloud Map service does not exist is not written: exit 1."""
    cloud_map(aws, ["colorteller-white", "colorteller-blue"])
    result = nj("import-appmesh", "--from", str(describe_dir(tmp_path)), "--apply")
    assert result.exit_code == 1
    assert "missing" in result.output and "colorgateway" in result.output


def test_strict_applies_nothing_when_something_is_lost(aws: Any, tmp_path: Path) -> None:
    """--strict --apply with a loss: exit 3 and Cloud Map untouched."""
    ids = cloud_map(aws, ["colorteller-white", "colorteller-blue", "colorgateway"])
    result = nj("import-appmesh", "--from", str(describe_dir(tmp_path)), "--apply", "--strict")
    assert result.exit_code == 3
    assert aws.list_instances(ServiceId=ids["colorteller-white"])["Instances"] == []


def test_no_source_is_a_usage_error() -> None:
    """Neither --mesh nor --from: exit 2 with what to give."""
    result = nj("import-appmesh")
    assert result.exit_code == 2 and "--mesh NAME" in result.output
