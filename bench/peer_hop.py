"""The cost of the extra hop of a peer listener: through the peer's gateway vs direct.

Two meshes on loopback as in tests/integration/test_many_meshes.py (moto's server, the
configurator in process, one fetcher-supervised Envoy per node): fish's shark/blue sidecar
with ``PEERS=ocean:<p1>``, shark/green with ``PEERS=ocean:<p2>:direct``, and ocean's gateway.
Each request is ocean's private ``/tuna/admin``, which the last Envoy answers itself (404):
through the gateway that is ocean's gateway, direct it is the sidecar, so the difference is
the hop (sidecar -> gateway Envoy) and nothing of a backend. Keep-alive connections,
sequential requests.

    .venv/bin/python -m bench.peer_hop [requests]
"""

from __future__ import annotations

import http.client
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sandbox.cloudmap import CloudMapService, Task, create_namespace, register
from sandbox.moto import free_port
from tests.mesh_harness import EnvoyNode, client, configurator, moto_endpoint, publish

FISH, OCEAN = "fish.service.local", "ocean.service.local"


def timings(port: int, requests: int) -> list[float]:
    """Milliseconds of each of ``requests`` sequential GETs on one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    seen = []
    for _ in range(requests):
        started = time.perf_counter()
        conn.request("GET", "/tuna/admin")
        response = conn.getresponse()
        response.read()
        assert response.status == 404, response.status
        seen.append((time.perf_counter() - started) * 1000)
    conn.close()
    return sorted(seen)


def run(requests: int, workdir: Path) -> None:
    with moto_endpoint() as endpoint:
        sidecar = EnvoyNode(endpoint, "hop", f"{FISH}/shark/blue", workdir / "s")
        gateway = EnvoyNode(endpoint, "hop", f"{OCEAN}/gateway", workdir / "g")
        through, direct = free_port(), free_port()
        cloudmap = client("servicediscovery", endpoint)
        fish, ocean = create_namespace(cloudmap, FISH), create_namespace(cloudmap, OCEAN)
        tuna = {"SERVICE": "tuna", "COLOR": "blue", "/tuna": "1", "?/tuna/admin": "1"}
        shark = {"SERVICE": "shark", "COLOR": "blue", "/shark": "1", "PEERS": f"{OCEAN}:{through}"}
        register(cloudmap, ocean, CloudMapService("tuna-blue", tuna, [Task("127.0.0.1", "9")]))
        register(
            cloudmap,
            ocean,
            CloudMapService("gw", {"GATEWAY": "yes"}, [Task("127.0.0.1", str(gateway.port))]),
        )
        register(cloudmap, fish, CloudMapService("shark-blue", shark))
        shark_direct = {**shark, "COLOR": "green", "PEERS": f"{OCEAN}:{direct}:direct"}
        register(cloudmap, fish, CloudMapService("shark-green", shark_direct))
        other = EnvoyNode(endpoint, "hop", f"{FISH}/shark/green", workdir / "d")
        version = publish(configurator(endpoint, [FISH, OCEAN], "hop"))
        nodes = [sidecar, gateway, other]
        try:
            for node in nodes:
                node.start()
            for node in nodes:
                node.wait_serving(version)
            for port in (through, direct):
                timings(port, 200)  # warm up
            print(f"{requests} sequential requests, keep-alive, loopback; milliseconds")
            for label, port in (("through the gateway", through), ("direct", direct)):
                seen = timings(port, requests)
                p90, p99 = (seen[int(len(seen) * q) - 1] for q in (0.9, 0.99))
                median = statistics.median(seen)
                print(f"  {label:<20} median {median:.3f}  p90 {p90:.3f}  p99 {p99:.3f}")
        finally:
            for node in nodes:
                node.stop()


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request lines
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory(prefix="nightjar-hop-") as tmp:
        run(requests, Path(tmp))


if __name__ == "__main__":
    main()
