"""Cycle rules on the in-memory store: failure policy, frozen manifests, races, caches, preview.

Validation here is parse-level only (no envoy binary); runs of the real envoy are integration
tests (tests/integration/test_envoy_validate.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from configurator.cycle import Configurator
from configurator.discovery import RawInstance, RawNamespace, RawService, StaticDiscovery
from configurator.preview import render_mesh
from configurator.render import TemplateLibrary
from configurator.validate import EnvoyValidator
from shared.memory_store import MemoryBundleStore
from shared.models import Manifest
from tests.bundles import files_by_node
from tests.faults import LosingManifestRaces


def raw_mesh(path: str = "/t", *extra: RawService) -> list[RawNamespace]:
    settings = RawInstance("service-settings", {"SERVICE": "tuna", "COLOR": "blue", path: "1"})
    task = RawInstance("t1", {"AWS_INSTANCE_IPV4": "10.0.0.1", "AWS_INSTANCE_PORT": "80"})
    return [RawNamespace("ns-1", "fish", (RawService("s", "tuna", (settings, task)), *extra))]


def configurator(
    store: MemoryBundleStore,
    tmp_path: Path,
    path: str = "/t",
    discovery: StaticDiscovery | None = None,
    validator: EnvoyValidator | None = None,
) -> Configurator:
    return Configurator(
        namespaces=["fish"],
        store=store,
        discovery=discovery or StaticDiscovery(raw_mesh(path)),
        templates=TemplateLibrary.from_dir(tmp_path),
        validator=validator or EnvoyValidator(None),
    )


def test_a_node_failing_validation_keeps_its_previous_files(tmp_path: Path) -> None:
    """A bad override for one node: that node keeps its last files, others still update."""
    store = MemoryBundleStore()
    first = configurator(store, tmp_path).run_cycle()
    (tmp_path / "fish" / "tuna" / "blue").mkdir(parents=True)
    (tmp_path / "fish" / "tuna" / "blue" / "cds.yaml").write_text("resources: [\n")
    before = store.get_index(first.version or "").nodes
    second = configurator(store, tmp_path, path="/t2").run_cycle()
    assert second.outcome == "published"
    after = store.get_index(second.version or "").nodes
    assert after["fish/tuna/blue"] == before["fish/tuna/blue"]
    assert after["fish/gateway"] != before["fish/gateway"]
    (problem,) = [p for p in second.problems if p.where == "fish/tuna/blue"]
    assert "previous files kept" in problem.reason and "cds.yaml does not parse" in problem.reason
    assert second.failed_nodes == ["fish/tuna/blue"]


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
    races = LosingManifestRaces(store, losses=1)
    report = cfg.run_cycle()
    assert report.outcome == "published" and len(races.attempts) == 2
    assert store.get_index(report.version or "").parent == first.version


def test_a_conflict_twice_fails_without_publishing(tmp_path: Path) -> None:
    """Two lost races in one cycle: the cycle fails; nothing half-published is visible."""
    store = MemoryBundleStore()
    first = configurator(store, tmp_path).run_cycle()
    LosingManifestRaces(store, losses=2)
    report = configurator(store, tmp_path, path="/t4").run_cycle()
    assert report.outcome == "failed" and "lost the race" in report.error
    read = store.read_manifest()
    assert read is not None and read.manifest.version == first.version


def test_unchanged_inputs_are_not_rendered_or_validated_again(tmp_path: Path) -> None:
    """The render cache is keyed by context + templates; validation by file digest."""
    validator = EnvoyValidator(None)
    cfg = configurator(MemoryBundleStore(), tmp_path, validator=validator)
    cfg.run_cycle()
    checks, renders = validator.checks, cfg.renders.renders
    assert cfg.run_cycle().outcome == "unchanged"
    assert (validator.checks, cfg.renders.renders) == (checks, renders)


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


def test_sidecars_share_one_render_unless_templates_use_node_fields(tmp_path: Path) -> None:
    """Default templates: one render per file for all sidecars (the gateway shares the cluster
    and endpoint files); a node_id template: correct per node, the other files reused."""
    store = MemoryBundleStore()
    cfg = configurator(store, tmp_path, discovery=many_sidecars(30))
    report = cfg.run_cycle()
    assert report.outcome == "published"
    assert cfg.renders.renders == 2 + 1 + 30  # two lds (gateway, sidecars), one cds, 30 eds
    index = store.get_index(report.version or "")
    sidecar_lds = {
        f["lds.yaml"].sha256 for n, f in files_by_node(index).items() if n != "fish/gateway"
    }
    assert len(sidecar_lds) == 1

    (tmp_path / "fish").mkdir()
    (tmp_path / "fish" / "who.json").write_text('{"node": {{{node_id}}}, "svc": {{{service}}}}')
    renders = cfg.renders.renders
    report = cfg.run_cycle()
    assert report.outcome == "published"
    assert cfg.renders.renders - renders == 31  # who.json for each node, nothing else
    index = store.get_index(report.version or "")
    for n in (0, 29):
        entry = index.files_of(f"fish/svc{n}/blue")["who.json"]
        assert (
            store.get_object(entry.sha256)
            == f'{{"node": "fish/svc{n}/blue", "svc": "svc{n}"}}'.encode()
        )


def test_preview_renders_exactly_what_a_cycle_publishes(tmp_path: Path) -> None:
    """render_mesh runs the cycle's path without a store: same nodes, same bytes, same problems."""
    eel = RawService("e", "eel", (RawInstance("service-settings", {"SERVICE": "eel"}),))
    raw = raw_mesh("/t", eel)
    store = MemoryBundleStore()
    cfg = configurator(store, tmp_path, discovery=StaticDiscovery(raw))
    report = cfg.run_cycle()
    index = store.get_index(report.version or "")
    published = {
        node: {name: store.get_object(e.sha256) for name, e in files.items()}
        for node, files in files_by_node(index).items()
    }
    preview = render_mesh(raw, TemplateLibrary.from_dir(tmp_path), EnvoyValidator(None))
    previewed = {node: preview.files_of(node) for node in preview.node_ids}
    assert previewed == published and set(published) == {"fish/gateway", "fish/tuna/blue"}
    assert preview.problems == report.problems and len(report.problems) == 1


def test_a_failing_node_is_logged_once_with_its_node_bound(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The problem of a node whose files fail carries ``node``; it is not logged again."""
    (tmp_path / "fish" / "gateway").mkdir(parents=True)
    (tmp_path / "fish" / "gateway" / "lds.yaml").write_text("resources: [\n")
    cfg = configurator(MemoryBundleStore(), tmp_path)
    with caplog.at_level(logging.WARNING, logger="configurator.cycle"):
        cfg.run_cycle()
        cfg.run_cycle()
    fields = [getattr(r, "nj_fields", {}) for r in caplog.records if r.msg == "input.problem"]
    assert [f.get("node") for f in fields] == ["fish/gateway"]
