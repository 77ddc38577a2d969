"""Loopback ports and an embedded moto server (S3, Cloud Map, CloudWatch, ...) for make demo
and the tests."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.server import ThreadedMotoServer
from moto.servicediscovery.responses import ServiceDiscoveryResponse


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def registration_replaces() -> Iterator[None]:
    """Make moto's Cloud Map RegisterInstance replace an existing instance of the same id, as
    AWS does. moto appends a second instance instead, and readers keep seeing the first one's
    attributes, so ``nightjar shift`` (which rewrites ``service-settings``) would write into
    the void. Patches moto's backend in this process (the embedded server included)."""
    from moto.servicediscovery import models

    backend: Any = models.ServiceDiscoveryBackend
    original = backend.register_instance

    def register_instance(self: Any, service_id: str, instance_id: str, **kw: Any) -> Any:
        service = self.get_service(service_id)
        service.instances = [i for i in service.instances if i.instance_id != instance_id]
        return original(self, service_id=service_id, instance_id=instance_id, **kw)

    backend.register_instance = register_instance
    try:
        yield
    finally:
        backend.register_instance = original


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto HTTP server on 127.0.0.1 for the block, started empty; yields its URL.

    moto keeps its backends in process-wide state, so the server is reset before use. Its
    ListServices filters by namespace (``list_services_filtered``) and Cloud Map
    re-registration replaces attributes (``registration_replaces``), as on AWS.
    """
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))
    try:
        with list_services_filtered(), registration_replaces():
            yield url
    finally:
        server.stop()


@contextmanager
def list_services_filtered() -> Iterator[None]:
    """moto's ListServices ignores ``Filters``, while AWS honours ``NAMESPACE_ID`` (and its
    answer carries no namespace id to filter on afterwards): with two namespaces, moto would
    hand each one the other's services. For the block, moto filters like AWS, in this process
    (in-process ``mock_aws`` and ``ThreadedMotoServer`` alike); nightjar's code is unchanged."""
    original = ServiceDiscoveryResponse.list_services

    def list_services(self: Any) -> str:
        filters = json.loads(self.body or "{}").get("Filters") or []
        wanted = [set(f.get("Values", [])) for f in filters if f.get("Name") == "NAMESPACE_ID"]
        found = [
            s.to_json()
            for s in self.servicediscovery_backend.list_services()
            if all(s.namespace_id in values for values in wanted)
        ]
        return json.dumps({"Services": found})

    ServiceDiscoveryResponse.list_services = list_services  # type: ignore[method-assign]
    try:
        yield
    finally:
        ServiceDiscoveryResponse.list_services = original  # type: ignore[method-assign]
