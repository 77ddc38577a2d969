"""Traffic policy keys, header routes and the route-level merge rule, as documented."""

from __future__ import annotations

import pytest

from configurator.conventions import (
    Endpoint,
    NamespaceModel,
    RouteDecl,
    ServiceColor,
    parse_header_route_key,
    read_service,
)
from configurator.discovery import RawInstance, RawService
from configurator.mesh import build_nodes, eds_file_name, merge_routes
from configurator.policies import (
    DEFAULT_POLICIES,
    Fault,
    HealthCheck,
    Limits,
    Outlier,
    Policies,
    RateLimit,
    Retries,
    RoutePolicy,
    format_duration,
    parse_policy,
)
from shared.models import FILE_NAME_RE, Problem


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("TIMEOUT", "300ms", 300),
        ("TIMEOUT", "15s", 15_000),
        ("TIMEOUT", "0", 0),
        ("RETRIES", "2", Retries(2, ("gateway-error", "connect-failure", "refused-stream"))),
        ("RETRIES", "2 on=5xx", Retries(2, ("5xx",))),
        ("RETRIES", "3  on=5xx,reset per-try=1s", Retries(3, ("5xx", "reset"), 1000)),
        ("HEALTH_CHECK", "/health", HealthCheck("/health")),
        (
            "HEALTH_CHECK",
            "/health interval=1s timeout=500ms healthy=3 unhealthy=2",
            HealthCheck("/health", 1000, 500, 3, 2),
        ),
        ("OUTLIER", "5xx=3", Outlier(consecutive_5xx=3)),
        ("OUTLIER", "interval=1s eject=10s max=20%", Outlier(5, 1000, 10_000, 20)),
        ("LIMITS", "requests=1 pending=1", Limits(requests=1, pending=1)),
        ("LIMITS", "connections=10 retries=0", Limits(connections=10, retries=0)),
        ("LB", "least-request", "LEAST_REQUEST"),
        ("CONNECT_TIMEOUT", "250ms", 250),
        ("FAULT", "abort=503@100%", Fault(abort_status=503, abort_percent=100)),
        ("FAULT", "delay=200ms@5% abort=500@1%", Fault(200, 5, 500, 1)),
        ("RATE_LIMIT", "5/s", RateLimit(5, 1000)),
        ("RATE_LIMIT", "100/m", RateLimit(100, 60_000)),
    ],
)
def test_policy_values_in_every_documented_form(key: str, value: str, expected: object) -> None:
    """Each key's documented forms parse to the values the templates receive."""
    parsed = parse_policy(key, value)
    assert isinstance(parsed, tuple) and parsed[0] == expected


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("TIMEOUT", "300"),
        ("TIMEOUT", "1.5s"),
        ("TIMEOUT", "-1s"),
        ("TIMEOUT", "3601s"),
        ("RETRIES", "11"),
        ("RETRIES", "2 on=teapot"),
        ("RETRIES", "2 on=5xx,5xx"),
        ("RETRIES", "2 per-try=0s"),
        ("RETRIES", "2 on=5xx on=reset"),
        ("HEALTH_CHECK", "health"),
        ("HEALTH_CHECK", "/health every=1s"),
        ("HEALTH_CHECK", "/health healthy=0"),
        ("OUTLIER", ""),
        ("OUTLIER", "max=101%"),
        ("OUTLIER", "5xx=0"),
        ("LIMITS", "requests=0"),
        ("LIMITS", "requests"),
        ("LB", "ROUND_ROBIN"),
        ("CONNECT_TIMEOUT", "0"),
        ("FAULT", "abort=503"),
        ("FAULT", "abort=600@1%"),
        ("FAULT", "delay=1s@200%"),
        ("RATE_LIMIT", "5/h"),
        ("RATE_LIMIT", "0/s"),
        ("TIMEOUT", "１s"),
        ("TIMEOUT", "3s\x00"),
    ],
)
def test_bad_values_say_key_value_and_form(key: str, value: str) -> None:
    """A value outside its form is refused with the accepted form and what happens instead."""
    reason = parse_policy(key, value)
    assert isinstance(reason, str)
    assert "accepted form:" in reason and f"the {key} policy is dropped" in reason


def settings_service(attributes: dict[str, str]) -> tuple[ServiceColor | None, list[Problem]]:
    problems: list[Problem] = []
    raw = RawService(
        "srv-1",
        "tuna-blue",
        (
            RawInstance("service-settings", {"SERVICE": "tuna", "COLOR": "blue", **attributes}),
            RawInstance("t1", {"AWS_INSTANCE_IPV4": "10.0.0.1", "AWS_INSTANCE_PORT": "80"}),
        ),
    )
    return read_service("ns", raw, problems), problems


def test_a_bad_policy_drops_only_that_policy() -> None:
    """TIMEOUT=soon is reported naming the key and value; the color keeps routes and RETRIES."""
    found, problems = settings_service({"/tuna": "1", "TIMEOUT": "soon", "RETRIES": "1"})
    assert found is not None and found.routes == (RouteDecl("/tuna", False, 1),)
    assert found.policies.route.timeout_ms == 15_000  # the default
    assert found.policies.route.retries.num == 1
    (problem,) = problems
    assert problem.item == "attribute 'TIMEOUT' = 'soon'"
    assert "<int>ms or <int>s" in problem.reason


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("[header:x-canary=1]/tuna", ("/tuna", False, ("x-canary", "1"))),
        ("[header:X-Canary=a,b]]/tuna", ("/tuna", False, ("x-canary", "a,b]"))),
        ("[private,header:x=y]/tuna/admin", ("/tuna/admin", True, ("x", "y"))),
        ("[public,header:x=y]*", ("*", False, ("x", "y"))),
        ("[header:x=y]/", ("*", False, ("x", "y"))),
        ("[header:x y=1]/tuna", None),
        ("[header:x=has space]/tuna", None),
        ("[header:x=]/tuna", None),
        ("[header:x=1]tuna", None),
        ("[secret,header:x=1]/tuna", None),
    ],
)
def test_header_route_keys(key: str, expected: object) -> None:
    """Header route keys: RFC 7230 token names (lower-cased), printable values, a path."""
    assert parse_header_route_key(key) == expected


def test_malformed_header_route_key_is_reported() -> None:
    """A header route key outside its form drops that route and says the accepted form."""
    found, problems = settings_service({"[header:bad name=1]/tuna": "1", "/tuna": "1"})
    assert found is not None and len(found.routes) == 1
    assert "header route keys are" in problems[0].reason


def color(name: str, weight: int, policy: RoutePolicy, *extra: RouteDecl) -> ServiceColor:
    return ServiceColor(
        "tuna",
        name,
        False,
        (RouteDecl("/tuna", False, weight), *extra),
        (Endpoint("10.0.0.1", 80),),
        Policies(route=policy),
    )


def test_header_routes_come_before_the_same_path() -> None:
    """[header:x=1]/tuna is matched before /tuna, after longer prefixes."""
    canary = RouteDecl("/tuna", False, 1, ("x-canary", "1"))
    ns = NamespaceModel(
        "ns",
        (
            color("blue", 100, RoutePolicy(), RouteDecl("/tuna/fin", False, 1)),
            color("green", 0, RoutePolicy(), canary),
        ),
    )
    routes = merge_routes(ns, [])
    assert [(r.path, r.header) for r in routes] == [
        ("/tuna/fin", None),
        ("/tuna", ("x-canary", "1")),
        ("/tuna", None),
    ]
    assert routes[1].weights == (("tuna/green", 1),)


def test_largest_weight_decides_a_route_policy_and_disagreement_is_a_problem() -> None:
    """Colors disagreeing on TIMEOUT: the heaviest color's value applies, the rest is reported."""
    fast = RoutePolicy(timeout_ms=300, texts=(("TIMEOUT", "300ms"),))
    ns = NamespaceModel("ns", (color("blue", 90, RoutePolicy()), color("green", 10, fast)))
    problems: list[Problem] = []
    (route,) = merge_routes(ns, problems)
    assert route.policy.timeout_ms == 15_000
    (problem,) = problems
    assert problem.item == "route '/tuna' TIMEOUT"
    assert "tuna/blue: (default), tuna/green: 300ms" in problem.reason
    assert "tuna/blue's value applies" in problem.reason


def test_weight_ties_are_decided_by_cluster_name() -> None:
    """Equal weights: the first cluster name in order wins."""
    fast = RoutePolicy(timeout_ms=300)
    ns = NamespaceModel("ns", (color("green", 5, RoutePolicy()), color("blue", 5, fast)))
    (route,) = merge_routes(ns, [])
    assert route.policy.timeout_ms == 300  # tuna/blue sorts before tuna/green


def test_contexts_carry_policies_endpoint_files_and_nightjar_mesh_names() -> None:
    """Route and cluster contexts hold the parsed policy values and nightjar-mesh's names."""
    policy = Policies(
        RoutePolicy(
            retries=Retries(2, ("5xx",), 250),
            fault=Fault(delay_ms=200, delay_percent=100),
            rate_limit=RateLimit(5, 1000),
        ),
        DEFAULT_POLICIES.cluster,
    )
    sc = ServiceColor("tuna", "blue", False, (RouteDecl("/tuna", False, 1),), (), policy)
    gateway = build_nodes(NamespaceModel("ns", (sc,)), [])[0].context
    listener = gateway["listeners"][0]
    route = listener["routes"][0]
    assert (route["retry_on"], route["num_retries"], route["per_try_timeout"]) == (
        '"5xx"',
        2,
        '"0.250s"',
    )
    assert route["has_fault_delay"] and route["fault_delay"] == '"0.200s"'
    assert route["rate_limit_tokens"] == 5 and route["has_per_filter_config"]
    assert listener["uses_fault_filter"] and listener["uses_rate_limit_filter"]
    assert route["has_one_cluster"] and route["path_is_prefix"]
    cluster = gateway["clusters"][0]
    assert cluster["eds_file"] == eds_file_name("tuna/blue")
    assert FILE_NAME_RE.match(cluster["eds_file"])
    assert cluster["lb_policy"] == '"ROUND_ROBIN"' and cluster["connect_timeout"] == '"2.000s"'
    assert gateway["network_name"] == '"ns"' and gateway["service_member"] == '"ns/gateway"'


def test_durations_are_protobuf_json_durations() -> None:
    """Envoy reads durations as seconds with a fraction."""
    assert [format_duration(ms) for ms in (0, 1, 300, 15_000)] == [
        "0.000s",
        "0.001s",
        "0.300s",
        "15.000s",
    ]
