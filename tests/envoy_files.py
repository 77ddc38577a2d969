"""Hand-written Envoy v3 file-xDS documents for fetcher tests (no configurator involved)."""

from __future__ import annotations

import json

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
HCM = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager"
)
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def lds(routes: dict[str, str]) -> bytes:
    """One listener on the per-task placeholders routing prefix -> cluster."""
    listener = {
        "@type": LISTENER,
        "name": "ingress",
        "address": {"socket_address": {"address": "${NJ_LISTENER_ADDRESS}", "port_value": 0}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": HCM,
                            "stat_prefix": "ingress",
                            "route_config": {
                                "validate_clusters": False,
                                "virtual_hosts": [
                                    {
                                        "name": "all",
                                        "domains": ["*"],
                                        "routes": [
                                            {
                                                "match": {"prefix": prefix},
                                                "route": {"cluster": cluster},
                                            }
                                            for prefix, cluster in routes.items()
                                        ],
                                    }
                                ],
                            },
                            "http_filters": [
                                {
                                    "name": "envoy.filters.http.router",
                                    "typed_config": {"@type": ROUTER},
                                }
                            ],
                        },
                    }
                ]
            }
        ],
    }
    text = json.dumps({"resources": [listener]}, indent=1)
    return text.replace('"port_value": 0', '"port_value": ${NJ_LISTENER_PORT}').encode()


def cds(ports: dict[str, int]) -> bytes:
    """One static cluster per name, each with one loopback endpoint."""
    clusters = [
        {
            "@type": CLUSTER,
            "name": name,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {
                                "endpoint": {
                                    "address": {
                                        "socket_address": {
                                            "address": "127.0.0.1",
                                            "port_value": port,
                                        }
                                    }
                                }
                            }
                        ]
                    }
                ],
            },
        }
        for name, port in ports.items()
    ]
    return json.dumps({"resources": clusters}, indent=1).encode()


def rejected_lds() -> bytes:
    """Parses as YAML, but Envoy refuses it (unknown field)."""
    return json.dumps(
        {"resources": [{"@type": LISTENER, "name": "ingress", "no_such_field": 1}]}
    ).encode()


def peer_lds(routes: dict[str, str], peer_port: int) -> bytes:
    """``lds(routes)`` plus a peer listener (``PEERS``) on the literal port ``peer_port``."""
    doc = json.loads(lds(routes).decode().replace("${NJ_LISTENER_PORT}", "0"))
    peer = json.loads(json.dumps(doc["resources"][0]))
    peer["name"] = "peer:ocean.service.local"
    peer["address"]["socket_address"]["port_value"] = peer_port
    doc["resources"].append(peer)
    text = json.dumps(doc, indent=1).replace('"port_value": 0', '"port_value": ${NJ_LISTENER_PORT}')
    return text.encode()
