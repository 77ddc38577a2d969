"""App Mesh -> nightjar round trip with real Envoy: an App Mesh mesh in moto, imported with
``nightjar import-appmesh --apply`` into moto's Cloud Map, a configurator cycle, then real HTTP
by host name through a sidecar used as HTTP proxy (what ``HTTP_PROXY`` / ``curl --proxy`` do)
and through the gateway.

The mesh: colorteller.appmesh-demo.local routes '/' to white 2 : blue 1 and '/admin' to white;
the ingress gateway admits '/color'; echo.appmesh-demo.local (a virtual node provider) also
routes '/' and has no gateway route; 'fallback' is a nightjar service without HOSTS.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner

from nightjar_cli.cli import main
from sandbox.cloudmap import CloudMapService, Task, create_namespace, register
from tests.appmesh_fixtures import (
    HOST,
    MESH,
    NAMESPACE,
    colorteller,
    create_in_moto,
    node,
    serve_virtual_services,
    service,
)
from tests.backends import Backend
from tests.mesh_harness import EnvoyNode, client, configurator, moto_endpoint, publish, tally
from tests.waiting import wait_for

BUCKET = "appmesh"
ECHO = "echo.appmesh-demo.local"


@dataclass
class RoundTrip:
    sidecar: EnvoyNode
    gateway: EnvoyNode
    import_output: str


def demo_mesh() -> dict[str, list[dict[str, Any]]]:
    mesh = colorteller()
    mesh["virtualNode"].append(node("echo"))
    mesh["virtualService"].append(service(ECHO, {"virtualNode": {"virtualNodeName": "echo"}}))
    return mesh


def register_tasks(cloudmap: Any, backends: dict[str, Backend]) -> None:
    """The Cloud Map services ECS would create, with their tasks; 'fallback' carries its own
    service-settings (it never was in App Mesh)."""
    ns_id = create_namespace(cloudmap, NAMESPACE)
    tasks = {
        "colorteller-white": None,
        "colorteller-blue": None,
        "echo": None,
        "colorgateway": None,
        "fallback-main": {"SERVICE": "fallback", "COLOR": "main", "/": "1"},
    }
    for name, settings in tasks.items():
        running = [Task("127.0.0.1", str(backends[name].port))] if name in backends else []
        register(cloudmap, ns_id, CloudMapService(name, settings, running))


@pytest.fixture(scope="module")
def roundtrip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoundTrip]:
    workdir = tmp_path_factory.mktemp("appmesh")
    names = ["colorteller-white", "colorteller-blue", "echo", "fallback-main"]
    backends = {name: Backend(name) for name in names}
    patch = pytest.MonkeyPatch()
    nodes: list[EnvoyNode] = []
    try:
        with moto_endpoint() as endpoint:
            mesh = demo_mesh()
            create_in_moto(client("appmesh", endpoint), mesh)
            register_tasks(client("servicediscovery", endpoint), backends)
            for key, value in {
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_REGION": "us-east-1",
            }.items():
                patch.setenv(key, value)

            serve_virtual_services(patch, mesh["virtualService"])
            imported = CliRunner().invoke(main, ["import-appmesh", "--mesh", MESH, "--apply"])
            assert imported.exit_code == 0, imported.output
            version = publish(configurator(endpoint, [NAMESPACE], BUCKET))
            sidecar = EnvoyNode(endpoint, BUCKET, f"{NAMESPACE}/colorgateway/main", workdir / "s")
            gateway = EnvoyNode(endpoint, BUCKET, f"{NAMESPACE}/gateway", workdir / "g")
            nodes += [sidecar, gateway]
            for envoy in nodes:
                envoy.start()
            for envoy in nodes:
                envoy.wait_serving(version)
            yield RoundTrip(sidecar, gateway, imported.output)
    finally:
        for envoy in nodes:
            envoy.stop()
        for backend in backends.values():
            backend.close()
        patch.undo()


def test_import_applied_the_settings(roundtrip: RoundTrip) -> None:
    """--apply registered one service-settings per imported virtual node and said so."""
    assert roundtrip.import_output.count("registered") == 4, roundtrip.import_output


def test_the_split_by_host_name_matches_the_app_mesh_weights(roundtrip: RoundTrip) -> None:
    """300 requests to http://colorteller.appmesh-demo.local:9080/ through the sidecar as HTTP
    proxy: white 2 : blue 1 (binomial, ±3.5 sd), nothing else."""
    url = f"http://{HOST}:9080/"
    sidecar = roundtrip.sidecar
    wait_for(
        lambda: (
            tally(sidecar.get_via_proxy(url) for _ in range(20)).keys()
            == {"colorteller-white", "colorteller-blue"}
        ),
        30,
        "both colors healthy",
    )
    seen = tally(sidecar.get_via_proxy(url) for _ in range(300))
    assert set(seen) == {"colorteller-white", "colorteller-blue"}, seen
    assert 170 <= seen["colorteller-white"] <= 230, seen


def test_two_services_declaring_slash_are_both_reached_by_host(roundtrip: RoundTrip) -> None:
    """colorteller and echo both route '/': each host reaches its own service, with or
    without the port; a private path is reachable from a sidecar."""
    proxy = roundtrip.sidecar.get_via_proxy
    assert tally(proxy(f"http://{ECHO}/") for _ in range(10)) == {"echo": 10}
    assert tally(proxy(f"http://{ECHO}:9080/x") for _ in range(10)) == {"echo": 10}
    assert tally(proxy(f"http://{HOST}:9080/admin") for _ in range(10)) == {"colorteller-white": 10}


def test_an_unknown_host_falls_back_to_the_shared_path_space(roundtrip: RoundTrip) -> None:
    """A host no service claims is routed by the '*' virtual host: fallback's '/'."""
    proxy = roundtrip.sidecar.get_via_proxy
    assert tally(proxy("http://unknown.example:9080/") for _ in range(10)) == {"fallback-main": 10}
    assert roundtrip.sidecar.answers("/", 5) == {"fallback-main": 5}


def test_private_paths_are_refused_at_the_gateway(roundtrip: RoundTrip) -> None:
    """Through the gateway: /color (a gateway route's prefix) is served by the split; /admin,
    '/' and every path of echo (no gateway route) answer 404."""
    gateway = roundtrip.gateway
    host = {"Host": HOST}
    assert set(gateway.answers("/color", 30, host)) == {"colorteller-white", "colorteller-blue"}
    assert gateway.answers("/admin", 5, host) == {"404": 5}
    assert gateway.answers("/", 5, host) == {"404": 5}
    assert gateway.answers("/", 5, {"Host": f"{ECHO}:9080"}) == {"404": 5}
    assert gateway.answers("/", 5, {"Host": "unknown.example"}) == {"fallback-main": 5}
