"""The Cloud Map conventions: every attribute form, and nothing unvalidated gets through."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from configurator.conventions import (
    PATH_FORM,
    Endpoint,
    RouteDecl,
    parse_endpoint,
    parse_route_key,
    parse_weight,
    read_service,
)
from configurator.discovery import RawInstance, RawService
from shared.models import NAME_RE, Problem


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("/tuna", ("/tuna", False)),
        ("[public]/tuna", ("/tuna", False)),
        ("?/tuna", ("/tuna", True)),
        ("[private]/tuna", ("/tuna", True)),
        ("*", ("*", False)),
        ("?*", ("*", True)),
        ("/", ("*", False)),
        ("SERVICE_X", None),
        ("tuna", None),
    ],
)
def test_route_keys(key: str, expected: tuple[str, bool] | None) -> None:
    """Visibility prefixes and the catch-all are read as documented."""
    assert parse_route_key(key) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),
        ("90", 90),
        (" 10 ", 10),
        ("1000000", 1000000),
        ("1000001", None),
        ("-1", None),
        ("1.5", None),
        ("ten", None),
        ("", None),
        ("１", None),
        ("0x10", None),
    ],
)
def test_weights(value: str, expected: int | None) -> None:
    """Weights are plain decimal integers 0..1000000."""
    assert parse_weight(value) == expected


@pytest.mark.parametrize(
    ("ip", "port", "ok"),
    [
        ("10.0.0.1", "80", True),
        ("10.0.0.1", "65535", True),
        ("10.0.0.1", "0", False),
        ("10.0.0.1", "65536", False),
        ("10.0.0.01", "80", False),
        ("::1", "80", False),
        ("0.0.0.0", "80", False),
        ("10.0.0.1", "", False),
        ("", "80", False),
        ("1.2.3", "80", False),
    ],
)
def test_endpoints(ip: str, port: str, ok: bool) -> None:
    """Endpoints need a dotted IPv4 address and a port 1..65535."""
    got = parse_endpoint({"AWS_INSTANCE_IPV4": ip, "AWS_INSTANCE_PORT": port})
    assert isinstance(got, Endpoint) is ok


def settings(**attributes: str) -> RawService:
    return RawService("srv-1", "svc", (RawInstance("service-settings", attributes),))


def test_http2_values_and_unknown_flags() -> None:
    """HTTP2 accepts the documented spellings in any case; anything else is a problem."""
    for value, expected in [("YES", True), ("http2", True), ("Active", True), ("no", False)]:
        problems: list[Problem] = []
        sc = read_service("ns", settings(SERVICE="a", COLOR="b", HTTP2=value), problems)
        assert sc is not None and sc.http2 is expected and not problems
    problems = []
    sc = read_service("ns", settings(SERVICE="a", COLOR="b", HTTP2="ture"), problems)
    assert sc is not None and sc.http2 is False
    assert problems[0].item == "attribute 'HTTP2' = 'ture'"


def test_a_service_without_settings_is_not_part_of_the_mesh() -> None:
    """Only services holding a service-settings instance are service-colors."""
    problems: list[Problem] = []
    raw = RawService("srv", "x", (RawInstance("task-1", {"AWS_INSTANCE_IPV4": "10.0.0.1"}),))
    assert read_service("ns", raw, problems) is None and problems == []


def test_unknown_attributes_are_reported_and_aws_ones_ignored() -> None:
    """Typos are visible as problems; AWS_* attributes are silently ignored."""
    problems: list[Problem] = []
    sc = read_service(
        "ns",
        settings(SERVICE="a", COLOR="b", AWS_INIT_HEALTH_STATUS="HEALTHY", ROUTES="/x"),
        problems,
    )
    assert sc is not None and [p.item for p in problems] == ["attribute 'ROUTES'"]


attribute_text = st.text(st.characters(codec="utf-8"), max_size=30)


@given(
    st.dictionaries(attribute_text, attribute_text, max_size=8),
    st.lists(st.tuples(attribute_text, attribute_text, st.booleans()), max_size=4),
)
def test_no_unvalidated_value_leaves_the_conventions(
    attributes: dict[str, str], tasks: list[tuple[str, str, bool]]
) -> None:
    """Whatever Cloud Map holds, read_service never raises and emits only documented forms."""
    instances = [RawInstance("service-settings", {"SERVICE": "s", "COLOR": "c", **attributes})]
    instances += [
        RawInstance(
            f"t{i}",
            {"AWS_INSTANCE_IPV4": ip, "AWS_INSTANCE_PORT": port},
            "HEALTHY" if up else "UNHEALTHY",
        )
        for i, (ip, port, up) in enumerate(tasks)
    ]
    problems: list[Problem] = []
    sc = read_service("ns", RawService("srv", "svc", tuple(instances)), problems)
    if sc is None:
        assert problems
        return
    assert NAME_RE.match(sc.service) and NAME_RE.match(sc.color)
    for route in sc.routes:
        assert isinstance(route, RouteDecl)
        assert route.path == "*" or PATH_FORM.match(route.path)
        assert 0 <= route.weight <= 1_000_000
    for endpoint in sc.endpoints:
        assert endpoint.host.count(".") == 3 and 1 <= endpoint.port <= 65535
