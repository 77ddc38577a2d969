"""The ``nightjar`` operator CLI against a store the real configurator published to (moto).

Offline ``render`` + ``validate`` run the real envoy: tests/integration/test_envoy_validate.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result
from moto import mock_aws

from configurator.cycle import Configurator
from configurator.discovery import CloudMapDiscovery
from configurator.render import TemplateLibrary
from configurator.validate import EnvoyValidator
from nightjar_cli.cli import main
from shared.s3_store import S3BundleStore
from tests.bundles import store_version
from tests.cloudmap import FISH, register_fish_mesh, update_settings
from tests.conftest import BUCKET


@dataclass
class Published:
    configurator: Configurator
    versions: list[str]
    cloudmap: Any
    ids: dict[str, str]

    def cycle(self) -> str:
        report = self.configurator.run_cycle()
        return report.outcome


def nj(*args: str) -> Result:
    return CliRunner().invoke(main, ["--bucket", BUCKET, *args])


@pytest.fixture
def published() -> Iterator[Published]:
    """Three versions published by the configurator: v1 fish mesh, v2 tuna 50/50, v3 +/tuna/x."""
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        cloudmap = boto3.client("servicediscovery")
        _, ids = register_fish_mesh(cloudmap, 5)
        configurator = Configurator(
            namespaces=[FISH],
            store=S3BundleStore(s3, BUCKET, "nightjar"),
            discovery=CloudMapDiscovery(cloudmap),
            templates=TemplateLibrary.from_dir(),
            validator=EnvoyValidator(None),
        )
        versions = []
        for settings in (
            None,
            {"SERVICE": "tuna", "COLOR": "green", "/tuna": "90", "/tuna/fin": "1"},
            {"SERVICE": "tuna", "COLOR": "green", "/tuna": "90", "/tuna/fin": "1", "/tuna/x": "1"},
        ):
            if settings:
                update_settings(cloudmap, ids["tuna-green"], settings)
            report = configurator.run_cycle()
            assert report.outcome == "published", report.error
            versions.append(report.version or "")
        yield Published(configurator, versions, cloudmap, ids)


def test_status(published: Published) -> None:
    """Current version, frozen flag, node and problem counts; JSON has the documented keys."""
    data = json.loads(nj("status", "--json").stdout)
    assert data["version"] == published.versions[-1]
    assert (data["frozen"], data["nodes"], data["problems"]) == (False, 6, 0)
    assert {"version", "created", "frozen", "nodes", "problems"} <= data.keys()
    human = nj("status").stdout
    assert published.versions[-1] in human and "frozen      no" in human


def test_versions_newest_first_with_changes(published: Published) -> None:
    """Every retained version, newest first, parent links and changed-node counts."""
    rows = json.loads(nj("versions", "--json").stdout)
    v1, v2, v3 = published.versions
    assert [r["version"] for r in rows] == [v3, v2, v1]
    assert [r["current"] for r in rows] == [True, False, False]
    assert [r["parent"] for r in rows] == [v2, v1, None]
    assert [r["changed_nodes"] for r in rows] == [6, 6, 6]  # every node sees every route
    assert nj("versions").stdout.splitlines()[1].startswith("*  " + v3)


def test_versions_marks_a_version_that_was_never_current(published: Published) -> None:
    """An index no manifest ever pointed at (a lost race that could not remove it) is listed
    with '!' and ever_current false; every published version is ever_current."""
    store = published.configurator.store
    index, _ = store_version(store, {f"{FISH}/gateway": {"lds.yaml": b"x", "cds.yaml": b"x"}})
    stray = index.version
    rows = {r["version"]: r for r in json.loads(nj("versions", "--json").stdout)}
    assert rows[stray]["ever_current"] is False
    assert all(rows[v]["ever_current"] for v in published.versions)
    (line,) = [x for x in nj("versions").stdout.splitlines() if stray in x]
    assert line.startswith("!  " + stray)


def test_rollback_keeps_the_version_it_leaves_as_history(published: Published) -> None:
    """rollback to v1 marks v3 (the version left) as once current, so retention counts it."""
    v1, _, v3 = published.versions
    assert nj("rollback", v1).exit_code == 0
    assert v3 in published.configurator.store.versions_ever_current()
    rows = json.loads(nj("versions", "--json").stdout)
    assert all(r["ever_current"] for r in rows)


def test_nodes_and_show(published: Published) -> None:
    """Nodes of a version with kind and file count; show prints a file exactly as published."""
    rows = json.loads(nj("nodes", "--json", "--version", published.versions[0]).stdout)
    kinds = {r["node"]: r["kind"] for r in rows}
    assert kinds[f"{FISH}/gateway"] == "gateway" and kinds[f"{FISH}/tuna/blue"] == "sidecar"
    # lds.yaml, cds.yaml and one endpoint file per cluster of the namespace
    assert len({r["files"] for r in rows}) == 1 and rows[0]["files"] > 2
    shown = nj("show", f"{FISH}/gateway", "--file", "lds.yaml").stdout
    store = published.configurator.store
    index = store.get_index(published.versions[-1])
    assert shown.encode() == store.get_object(index.files_of(f"{FISH}/gateway")["lds.yaml"].sha256)
    both = nj("show", f"{FISH}/gateway").stdout
    assert f"--- {FISH}/gateway/cds.yaml" in both and f"--- {FISH}/gateway/lds.yaml" in both


def test_diff_between_versions(published: Published) -> None:
    """The unified diff shows the weight change; --json lists changed files; V2 defaults."""
    v1, v2, _ = published.versions
    out = nj("diff", v1, v2, "--node", f"{FISH}/gateway").stdout
    assert f"--- {v1}/{FISH}/gateway/lds.yaml" in out
    assert "-                    weight: 10" in out and "+                    weight: 90" in out
    changes = json.loads(nj("diff", v2, "--json").stdout)
    assert {"node": f"{FISH}/gateway", "file": "lds.yaml", "change": "changed"} in changes
    same = nj("diff", v2, v2)
    assert same.exit_code == 0 and "no differences" in same.stdout


def test_problems(published: Published) -> None:
    """Rejected input items of a version, with reasons."""
    update_settings(
        published.cloudmap,
        published.ids["trout-blue"],
        {"SERVICE": "trout", "COLOR": "blue", "/trout": "lots"},
    )
    assert published.cycle() == "published"
    rows = json.loads(nj("problems", "--json").stdout)
    assert rows == [
        {
            "where": f"{FISH}/trout-blue",
            "item": "attribute '/trout' = 'lots'",
            "reason": "weight must be an integer from 0 to 1000000; the route is dropped",
        }
    ]
    assert "no problems" in nj("problems", "--version", published.versions[0]).stdout


def test_rollback_freezes_and_unfreeze_resumes(published: Published) -> None:
    """rollback → manifest on the old version, frozen; no publish until unfreeze."""
    v1, _, v3 = published.versions
    result = nj("rollback", v1, "--reason", "canary 5xx", "--by", "alice")
    assert result.exit_code == 0, result.output
    assert "fetchers will apply" in result.stdout and "nightjar unfreeze" in result.stdout
    data = json.loads(nj("status", "--json").stdout)
    assert (data["version"], data["frozen"], data["frozen_by"], data["frozen_reason"]) == (
        v1,
        True,
        "alice",
        "canary 5xx",
    )
    assert published.cycle() == "frozen"
    assert json.loads(nj("status", "--json").stdout)["version"] == v1
    assert nj("unfreeze").exit_code == 0
    assert published.cycle() == "published"  # Cloud Map still says v3's content
    status = json.loads(nj("status", "--json").stdout)
    assert status["frozen"] is False and status["version"] not in (v1, v3)


def test_freeze_keeps_the_version(published: Published) -> None:
    """freeze keeps the current version and stops the configurator."""
    assert nj("freeze", "--reason", "incident").exit_code == 0
    data = json.loads(nj("status", "--json").stdout)
    assert (data["version"], data["frozen"]) == (published.versions[-1], True)
    update_settings(
        published.cloudmap,
        published.ids["trout-blue"],
        {"SERVICE": "trout", "COLOR": "blue", "/trout": "5"},
    )
    assert published.cycle() == "frozen"


def test_gc_dry_run_lists_without_deleting(
    published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With keep=1 and no grace, gc --dry-run names v1 and v2 but deletes nothing."""
    monkeypatch.setenv("NJ_KEEP_VERSIONS", "1")
    monkeypatch.setenv("NJ_GRACE_SECONDS", "0")
    v1, v2, v3 = published.versions
    data = json.loads(nj("gc", "--dry-run", "--json").stdout)
    assert data["dry_run"] and sorted(data["deleted_versions"]) == [v1, v2]
    assert len(json.loads(nj("versions", "--json").stdout)) == 3
    human = nj("gc").stdout
    assert "deleted 2 version(s)" in human
    assert [r["version"] for r in json.loads(nj("versions", "--json").stdout)] == [v3]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "no/such/node"], "unknown node 'no/such/node'"),
        (["nodes", "--version", "20200101T000000000000Z-00000000"], "unknown version"),
        (["rollback", "20200101T000000000000Z-00000000"], "unknown version"),
        (["show", f"{FISH}/gateway", "--file", "nope.yaml"], "has no file 'nope.yaml'"),
        (["diff", "not-a-version"], "unknown version not-a-version"),
    ],
)
def test_errors_are_one_sentence_exit_1(
    published: Published, args: list[str], message: str
) -> None:
    """Unknown version, node or file: exit 1, a clear message, no traceback."""
    result = nj(*args)
    assert result.exit_code == 1 and message in result.output
    assert "Traceback" not in result.output


def test_store_options_work_after_the_command(published: Published) -> None:
    """``nightjar status --bucket X`` (as the usage error suggests) equals the global form."""
    after = CliRunner().invoke(main, ["status", "--json", "--bucket", BUCKET])
    assert after.exit_code == 0, after.output
    assert json.loads(after.stdout)["version"] == published.versions[-1]
    wrong = CliRunner().invoke(main, ["versions", "--bucket", BUCKET, "--prefix", "elsewhere"])
    assert wrong.exit_code == 1 and "s3://nightjar-test/elsewhere/" in wrong.output


def test_unfreeze_when_not_frozen_says_so(published: Published) -> None:
    """Unfreezing a manifest that is not frozen: exit 1, one sentence, nothing written."""
    before = published.configurator.store.read_manifest()
    result = nj("unfreeze")
    assert result.exit_code == 1
    assert (
        result.output.strip()
        == f"Error: nothing to unfreeze: {published.versions[-1]} is not frozen"
    )
    after = published.configurator.store.read_manifest()
    assert before is not None and after is not None and before.etag == after.etag


def test_no_manifest_and_no_bucket() -> None:
    """Nothing published yet → exit 1 saying so; no bucket configured → usage error, exit 2."""
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        for command in (["status"], ["versions"], ["nodes"], ["freeze"], ["problems"]):
            result = nj(*command)
            assert result.exit_code == 1, command
            assert "no manifest under s3://nightjar-test/nightjar/" in result.output, command
        missing = CliRunner().invoke(main, ["--bucket", "no-such-bucket", "status"])
        assert missing.exit_code == 1 and "NoSuchBucket" in missing.output
    no_bucket = CliRunner().invoke(main, ["status"])
    assert no_bucket.exit_code == 2 and "NJ_BUCKET" in no_bucket.output


def test_render_names_a_bad_mesh_file(tmp_path: Path) -> None:
    """A mesh file with a wrong field fails with the path to the field."""
    bad = tmp_path / "mesh.yaml"
    bad.write_text("namespaces:\n- name: x\n  services:\n  - name: s\n    instancez: []\n")
    result = CliRunner().invoke(main, ["render", "--mesh", str(bad), "--out", str(tmp_path)])
    assert result.exit_code == 1 and "namespaces.0.services.0.instancez" in result.output


@pytest.mark.parametrize(
    "command",
    [
        "status",
        "versions",
        "nodes",
        "show",
        "diff",
        "problems",
        "rollback",
        "freeze",
        "unfreeze",
        "gc",
        "render",
        "validate",
    ],
)
def test_every_command_has_help_with_an_example(command: str) -> None:
    """--help works without AWS and shows an example."""
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0 and "Example:" in result.stdout
