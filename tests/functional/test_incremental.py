"""Incremental publishing: a change renders and uploads only what depends on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from configurator.cycle import Configurator
from configurator.mesh import eds_file_name
from configurator.render import TemplateLibrary
from configurator.validate import EnvoyValidator
from sandbox.synthetic import namespace_names, synthetic_mesh
from shared.memory_store import MemoryBundleStore
from tests.bundles import files_by_node

SERVICES = 40


def settle(change: str | None = None) -> tuple[Configurator, MemoryBundleStore, str]:
    """A configurator that published the baseline mesh (and its version)."""
    store = MemoryBundleStore()
    cfg = Configurator(
        namespaces=namespace_names(1),
        store=store,
        discovery=synthetic_mesh(SERVICES),
        templates=TemplateLibrary.from_dir(),
        validator=EnvoyValidator(None),
    )
    report = cfg.run_cycle()
    assert report.outcome == "published" and report.version
    return cfg, store, report.version


def changed_files(store: MemoryBundleStore, old: str, new: str) -> set[str]:
    """File names whose bytes differ, over every node, between two versions."""
    before, after = files_by_node(store.get_index(old)), files_by_node(store.get_index(new))
    return {
        name
        for node in before.keys() | after.keys()
        for name in before.get(node, {}).keys() | after.get(node, {}).keys()
        if before.get(node, {}).get(name) != after.get(node, {}).get(name)
    }


@pytest.mark.parametrize(("change", "cluster"), [("endpoint_added", 2), ("health_flip", 3)])
def test_an_endpoint_only_change_uploads_one_endpoint_file(change: str, cluster: int) -> None:
    """A task added or turning unhealthy changes one cluster's endpoint file and nothing else:
    one object uploaded, no listener or cluster file, one render."""
    cfg, store, first = settle()
    renders = cfg.renders.renders
    cfg.discovery = synthetic_mesh(SERVICES, change=change)
    report = cfg.run_cycle()
    assert report.outcome == "published" and report.version
    assert report.uploaded == 1
    assert changed_files(store, first, report.version) == {eds_file_name(f"svc{cluster}/blue")}
    assert cfg.renders.renders - renders == 1


@pytest.mark.parametrize("change", ["weight", "path"])
def test_a_route_change_uploads_and_renders_only_listener_files(change: str) -> None:
    """A weight or a new path changes the listener files (the sidecars' shared one and the
    gateway's) and no cluster or endpoint file: two renders, two uploads."""
    cfg, store, first = settle()
    renders = cfg.renders.renders
    cfg.discovery = synthetic_mesh(SERVICES, change=change)
    report = cfg.run_cycle()
    assert report.outcome == "published" and report.version
    assert changed_files(store, first, report.version) == {"lds.yaml"}
    assert (report.uploaded, cfg.renders.renders - renders) == (2, 2)


def test_an_unchanged_namespace_is_not_rendered_again_while_another_changes() -> None:
    """Two namespaces, a change in the first: the second renders nothing."""
    store = MemoryBundleStore()
    cfg = Configurator(
        namespaces=namespace_names(2),
        store=store,
        discovery=synthetic_mesh(SERVICES, namespaces=2),
        templates=TemplateLibrary.from_dir(),
        validator=EnvoyValidator(None),
    )
    first = cfg.run_cycle()
    assert first.outcome == "published"
    renders = cfg.renders.renders
    cfg.discovery = synthetic_mesh(SERVICES, namespaces=2, change="weight")
    report = cfg.run_cycle()
    assert report.outcome == "published"
    assert all(n.startswith(namespace_names(1)[0]) for n in report.changed_nodes)
    assert cfg.renders.renders - renders == 2


def test_a_template_named_like_an_endpoint_file_is_a_problem_not_a_broken_index(
    tmp_path: Path,
) -> None:
    """A node cannot carry one file name twice: a template clashing with an endpoint file's
    name fails that node (with a problem naming the file), never the index."""
    clash = eds_file_name("svc2/blue")
    (tmp_path / namespace_names(1)[0]).mkdir()
    (tmp_path / namespace_names(1)[0] / clash).write_text("x: 1\n")
    cfg = Configurator(
        namespaces=namespace_names(1),
        store=MemoryBundleStore(),
        discovery=synthetic_mesh(SERVICES),
        templates=TemplateLibrary.from_dir(tmp_path),
        validator=EnvoyValidator(None),
    )
    report = cfg.run_cycle()
    assert report.outcome == "published" and len(report.failed_nodes) == SERVICES + 1
    assert all(clash in p.reason for p in report.problems if p.item == "rendered files")
