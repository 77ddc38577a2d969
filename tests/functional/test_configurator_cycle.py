"""A configurator cycle on in-process moto (S3 + Cloud Map) with the fish.service.local mesh.

Validation is parse-level only here; the real envoy checks every node of this mesh in
tests/integration/test_envoy_validate.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

from configurator.cycle import Configurator, Retention
from configurator.discovery import CloudMapDiscovery, make_cloudmap_client
from configurator.mesh import eds_file_name
from configurator.render import TemplateLibrary
from configurator.validate import EnvoyValidator
from shared.aws import CONFIGURATOR
from shared.models import VersionIndex
from shared.s3_store import S3BundleStore
from tests.bundles import files_by_node
from tests.cloudmap import (
    FISH,
    CloudMapService,
    Task,
    create_namespace,
    fish_mesh,
    register,
    update_settings,
)
from tests.conftest import BUCKET
from tests.faults import FailingCloudMap, RequestCounter, no_retry_backoff


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    """Moto S3 with the bucket, and Cloud Map with the fish mesh registered."""
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        cloudmap = boto3.client("servicediscovery")
        ns_id = create_namespace(cloudmap)
        ids = {svc.name: register(cloudmap, ns_id, svc) for svc in fish_mesh()}
        yield {"s3": s3, "cloudmap": cloudmap, "ns_id": ns_id, "ids": ids}


def make_configurator(aws: dict[str, Any], cloudmap: Any = None) -> Configurator:
    return Configurator(
        namespaces=[FISH],
        store=S3BundleStore(aws["s3"], BUCKET, "mesh"),
        discovery=CloudMapDiscovery(cloudmap or aws["cloudmap"]),
        templates=TemplateLibrary.from_dir(),
        validator=EnvoyValidator(None),
        retention=Retention(keep=5),
    )


def published(configurator: Configurator) -> tuple[VersionIndex, dict[str, dict[str, Any]]]:
    """The current index and every node's parsed files."""
    read = configurator.store.read_manifest()
    assert read is not None
    index = configurator.store.get_index(read.manifest.version, read.manifest.index_sha256)
    parsed = {
        node: {
            name: yaml.safe_load(configurator.store.get_object(e.sha256))
            for name, e in files.items()
        }
        for node, files in files_by_node(index).items()
    }
    return index, parsed


def routes_of(lds: dict[str, Any]) -> list[dict[str, Any]]:
    (listener,) = lds["resources"]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return list(hcm["route_config"]["virtual_hosts"][0]["routes"])


def summarize(route: dict[str, Any]) -> tuple[str, Any]:
    """(path, target): target is a cluster, {cluster: weight}, or the direct response status."""
    path = route["match"].get("prefix") or route["match"]["path"]
    if "direct_response" in route:
        return path, route["direct_response"]["status"]
    action = route["route"]
    if "cluster" in action:
        return path, action["cluster"]
    return path, {c["name"]: c["weight"] for c in action["weighted_clusters"]["clusters"]}


SIDECAR_ROUTES = [
    ("/ping", 200),
    ("/v1/items:batch", "ocean/main"),
    ("/salmon/menu", "salmon/blue"),
    ("/tuna/admin", "tuna/blue"),
    ("/tuna/fin", "tuna/green"),
    ("/salmon", "salmon/blue"),
    ("/trout", 503),
    ("/tuna", {"tuna/blue": 90, "tuna/green": 10}),
    ("/ok", "pike/blue"),
    ("/cod", None),  # placeholder removed below: cod's only route was rejected
    ("/", "ocean/main"),
]
SIDECAR_ROUTES = [r for r in SIDECAR_ROUTES if r[0] != "/cod"]
# Private paths stay on the gateway only to be refused: /tuna/admin would match /tuna otherwise.
GATEWAY_ROUTES = [
    (path, 404 if path in ("/tuna/admin", "/salmon") else target) for path, target in SIDECAR_ROUTES
]


def test_fish_mesh_renders_the_expected_routes_and_clusters(aws: dict[str, Any]) -> None:
    """Sidecars route every path, the gateway refuses private ones; weights, order, clusters."""
    configurator = make_configurator(aws)
    report = configurator.run_cycle()
    assert report.outcome == "published", report.error
    index, parsed = published(configurator)

    sidecars = {
        f"{FISH}/{s}"
        for s in (
            "tuna/blue",
            "tuna/green",
            "salmon/blue",
            "ocean/main",
            "trout/blue",
            "cod/blue",
            "pike/blue",
        )
    }
    assert set(index.nodes) == sidecars | {f"{FISH}/gateway"}
    for node in sidecars:
        assert [summarize(r) for r in routes_of(parsed[node]["lds.yaml"])] == SIDECAR_ROUTES
    gateway = parsed[f"{FISH}/gateway"]
    assert [summarize(r) for r in routes_of(gateway["lds.yaml"])] == GATEWAY_ROUTES

    clusters = {c["name"]: c for c in gateway["cds.yaml"]["resources"]}
    assert set(clusters) == {n.removeprefix(f"{FISH}/") for n in sidecars}
    # Endpoints travel in one file per cluster (file-based EDS), named in the cluster.
    assignments = {
        name: gateway[
            c["eds_cluster_config"]["eds_config"]["path_config_source"]["path"].rsplit("/", 1)[-1]
        ]["resources"][0]
        for name, c in clusters.items()
    }
    assert all(a["cluster_name"] == name for name, a in assignments.items())
    endpoints = {
        name: [
            (
                e["endpoint"]["address"]["socket_address"]["address"],
                e["endpoint"]["address"]["socket_address"]["port_value"],
            )
            for group in a["endpoints"]
            for e in group["lb_endpoints"]
        ]
        for name, a in assignments.items()
    }
    assert endpoints["tuna/blue"] == [("10.0.1.1", 32769), ("10.0.1.2", 32768)]  # unhealthy out
    assert endpoints["trout/blue"] == [] and endpoints["pike/blue"] == []
    assert "typed_extension_protocol_options" in clusters["salmon/blue"]
    assert "typed_extension_protocol_options" not in clusters["tuna/blue"]
    listener = gateway["lds.yaml"]["resources"][0]
    assert listener["address"]["socket_address"]["port_value"] == "${NJ_LISTENER_PORT}"
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["access_log"][0]["name"] == "envoy.access_loggers.stdout"
    assert index.summary.service_colors == 7 and index.summary.endpoints == 6


def test_fish_mesh_records_every_rejected_item(aws: dict[str, Any]) -> None:
    """Broken and hostile input is dropped and recorded with where, what and why."""
    configurator = make_configurator(aws)
    report = configurator.run_cycle()
    index, _ = published(configurator)
    assert index.summary.problems == report.problems
    found = {(p.where, p.item) for p in report.problems}
    assert found == {
        (f"{FISH}/cod-blue", "attribute '/cod' = 'ten'"),
        (f"{FISH}/eel", "attribute 'COLOR'"),
        (f"{FISH}/tuna-blue-copy", "SERVICE=tuna COLOR=blue"),
        (f"{FISH}/hostile-name", "attribute 'SERVICE'"),
        (f"{FISH}/hostile-paths", "attribute '/a\"b: {c}'"),
        (f"{FISH}/hostile-paths", "attribute '/{{x}}'"),
        (f"{FISH}/hostile-paths", "attribute '/ok2' = '-1'"),
        (f"{FISH}/hostile-paths", "instance 'task-0'"),
        (f"{FISH}/hostile-paths", "instance 'task-1'"),
        (f"{FISH}/hostile-paths", "instance 'task-2'"),
    }
    reasons = {p.item: p.reason for p in report.problems}
    assert "integer from 0 to" in reasons["attribute '/cod' = 'ten'"]
    assert "missing" in reasons["attribute 'COLOR'"]
    assert "duplicate of Cloud Map service 'tuna-blue'" in reasons["SERVICE=tuna COLOR=blue"]
    assert "999.1.1.1" in reasons["instance 'task-0'"]
    assert "70000" in reasons["instance 'task-1'"]


def test_second_cycle_without_change_writes_nothing(aws: dict[str, Any]) -> None:
    """An unchanged mesh costs reads only: zero S3 writes, same version."""
    configurator = make_configurator(aws)
    first = configurator.run_cycle()
    counter = RequestCounter(aws["s3"])
    second = configurator.run_cycle()
    assert (second.outcome, second.version) == ("unchanged", first.version)
    assert counter.writes() == 0 and counter.calls["PutObject"] == 0
    assert second.calls == first.calls == 1 + 1 + len(fish_mesh())  # namespaces, services, each


def test_a_cycle_reports_where_its_seconds_went_stage_by_stage(aws: dict[str, Any]) -> None:
    """cycle.done carries one <stage>_seconds field per stage the cycle ran, in pipeline order
    (garbage collection only after a publish); together they are the cycle's seconds."""
    configurator = make_configurator(aws)
    first, second = configurator.run_cycle(), configurator.run_cycle()
    assert (first.outcome, second.outcome) == ("published", "unchanged")
    assert list(first.stages) == ["read", "scan", "build", "publish", "gc"]
    assert list(second.stages) == ["read", "scan", "build", "publish"]
    for report in (first, second):
        fields = report.log_fields()
        assert {
            f"{stage}_seconds": s for stage, s in report.stages.items()
        }.items() <= fields.items()
        assert all(s >= 0 for s in report.stages.values())
        assert sum(report.stages.values()) <= report.seconds + 0.001 * len(report.stages)


def test_a_change_uploads_only_new_files(aws: dict[str, Any]) -> None:
    """Shifting weights publishes a child version and uploads only the files that changed."""
    configurator = make_configurator(aws)
    first = configurator.run_cycle()
    update_settings(
        aws["cloudmap"],
        aws["ids"]["tuna-green"],
        {"SERVICE": "tuna", "COLOR": "green", "/tuna": "90", "/tuna/fin": "1"},
    )
    counter = RequestCounter(aws["s3"])
    second = configurator.run_cycle()
    assert second.outcome == "published" and second.version != first.version
    index, parsed = published(configurator)
    assert index.parent == first.version
    tuna = dict(summarize(r) for r in routes_of(parsed[f"{FISH}/gateway"]["lds.yaml"]))["/tuna"]
    assert tuna == {"tuna/blue": 90, "tuna/green": 90}
    # Two new lds.yaml files (sidecar + gateway); cds.yaml unchanged: 2 objects + index + manifest.
    assert second.uploaded == 2 and counter.calls["PutObject"] == 4
    assert len(second.changed_nodes) == 8


def test_cloud_map_failure_on_one_service_publishes_nothing(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service that cannot be read after botocore's retries fails the cycle; the manifest
    stays; every HTTP attempt is counted once (3 attempts = 3 of the cycle's calls)."""
    no_retry_backoff(monkeypatch)
    healthy = make_configurator(aws)
    first = healthy.run_cycle()
    cloudmap = make_cloudmap_client()
    cloudmap.deregister_instance(ServiceId=aws["ids"]["trout-blue"], InstanceId="service-settings")
    failing = FailingCloudMap(cloudmap, "salmon-blue")
    configurator = make_configurator(aws, cloudmap)
    counter = RequestCounter(aws["s3"])
    report = configurator.run_cycle()
    assert report.outcome == "failed"
    assert "DiscoverInstances" in report.error and "ThrottlingException" in report.error
    assert failing.failures == CONFIGURATOR.attempts == 3  # botocore's bounded retries, no more
    assert report.calls >= failing.failures  # a failed cycle still counts what it cost
    assert counter.writes() == 0
    read = configurator.store.read_manifest()
    assert read is not None and read.manifest.version == first.version


def test_unhealthy_everywhere_keeps_an_empty_cluster(aws: dict[str, Any]) -> None:
    """A service-color whose tasks are all unhealthy keeps its cluster, with no endpoints."""
    cloudmap = aws["cloudmap"]
    register(
        cloudmap,
        aws["ns_id"],
        CloudMapService(
            "sick-blue",
            {"SERVICE": "sick", "COLOR": "blue", "/sick": "1"},
            [Task("10.0.8.1", "80", healthy=False)],
        ),
    )
    configurator = make_configurator(aws)
    assert configurator.run_cycle().outcome == "published"
    _, parsed = published(configurator)
    gateway = parsed[f"{FISH}/gateway"]
    clusters = {c["name"]: c for c in gateway["cds.yaml"]["resources"]}
    assert clusters["sick/blue"]["type"] == "EDS"
    (assignment,) = gateway[eds_file_name("sick/blue")]["resources"]
    assert assignment["cluster_name"] == "sick/blue" and assignment["endpoints"] == []
