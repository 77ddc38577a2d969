"""The fetcher's poll/download/release steps on a real directory: in-process moto or the memory
store for the bundles, a fake proxy (or none) for Envoy."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from envoy_fetcher.cli import main
from envoy_fetcher.envoy import Proxy, bootstrap, write_bootstrap
from envoy_fetcher.errors import ReleaseError
from envoy_fetcher.poll import Fetcher
from envoy_fetcher.release import ReleaseDir
from envoy_fetcher.settings import FetcherSettings
from shared.digest import sha256_hex
from shared.memory_store import MemoryBundleStore
from shared.models import VersionIndex
from shared.s3_store import S3BundleStore
from shared.store import BundleStore
from tests.bundles import later, manifest_for, store_version
from tests.conftest import BUCKET
from tests.envoy_files import cds, lds, peer_lds
from tests.fakes import FakeProxy
from tests.faults import RequestCounter, tamper, with_unchecked_file

NODE = "fish.service.local/gateway"
OTHER = "fish.service.local/tuna/blue"


def publish(store: BundleStore, minute: int, files: dict[str, dict[str, bytes]]) -> str:
    index, ref = store_version(store, files, later(minute))
    read = store.read_manifest()
    store.swap_manifest(manifest_for(index, ref), read.etag if read else None)
    return index.version


def bundle(backend: str, extra: dict[str, bytes] | None = None) -> dict[str, dict[str, bytes]]:
    files = {"lds.yaml": lds({"/": backend}), "cds.yaml": cds({backend: 9000}), **(extra or {})}
    return {NODE: files, OTHER: {"lds.yaml": b"other", "cds.yaml": b"other"}}


def fetcher(
    store: BundleStore, tmp_path: Path, proxy: Proxy | None = None, **overrides: object
) -> Fetcher:
    settings = FetcherSettings(
        node=NODE,
        bucket=BUCKET,
        prefix="mesh/prod",
        config_dir=tmp_path / "cfg",
        listener_port=15001,
        listener_address="127.0.0.1",
        **overrides,  # type: ignore[arg-type]
    )
    return Fetcher.from_dir(settings, store, proxy)


def test_applies_a_version_with_task_values_filled(s3_store: S3BundleStore, tmp_path: Path) -> None:
    """The node's files land in releases/<v>, current points there, placeholders filled."""
    version = publish(s3_store, 1, bundle("blue"))
    f = fetcher(s3_store, tmp_path)
    step = f.poll_once()
    assert (step.result, step.version) == ("applied", version)
    current = tmp_path / "cfg" / "current"
    assert os.readlink(current) == f"releases/{version}"
    listener = json.loads((current / "lds.yaml").read_text())["resources"][0]
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15001}
    assert (current / "cds.yaml").read_bytes() == cds({"blue": 9000})
    assert f.state.applied_version == version


def test_idle_polls_are_one_request_each_and_write_nothing(
    s3_store: S3BundleStore, tmp_path: Path
) -> None:
    """Steady state: exactly one conditional GET per poll, no disk writes (only the mtime of
    the empty ``polled`` heartbeat moves, which is what ``health`` reads)."""
    publish(s3_store, 1, bundle("blue"))
    f = fetcher(s3_store, tmp_path)
    f.poll_once()
    assert f.poll_once().result == "not_modified"  # the first 304 is recorded, once
    assert f.state.last_poll == "not_modified"
    heartbeat = tmp_path / "cfg" / "polled"
    files = [p for p in (tmp_path / "cfg").rglob("*") if p != heartbeat]
    snapshot = {p: p.stat().st_mtime_ns for p in files}
    beat = heartbeat.stat().st_mtime_ns
    counter = RequestCounter(s3_store.client)
    for _ in range(5):
        assert f.poll_once().result == "not_modified"
    assert dict(counter.calls) == {"GetObject": 5}
    assert all(params.get("IfNoneMatch") for _, params in counter.params)
    assert {p: p.stat().st_mtime_ns for p in files} == snapshot
    assert [p for p in (tmp_path / "cfg").rglob("*") if p != heartbeat] == files
    assert heartbeat.stat().st_size == 0 and heartbeat.stat().st_mtime_ns >= beat


def test_downloads_only_objects_not_on_disk(s3_store: S3BundleStore, tmp_path: Path) -> None:
    """A new version that changes one file downloads one object."""
    publish(s3_store, 1, bundle("blue"))
    f = fetcher(s3_store, tmp_path)
    f.poll_once()
    files = bundle("blue")
    files[NODE]["lds.yaml"] = lds({"/": "blue", "/new": "blue"})
    publish(s3_store, 2, files)
    counter = RequestCounter(s3_store.client)
    assert f.poll_once().result == "applied"
    object_gets = [p for op, p in counter.params if op == "GetObject" and "/objects/" in p["Key"]]
    assert len(object_gets) == 1


def test_identical_node_files_record_the_version_without_a_new_release(
    s3_store: S3BundleStore, tmp_path: Path
) -> None:
    """Another node changed: this node's release stays, the version is recorded."""
    first = publish(s3_store, 1, bundle("blue"))
    f = fetcher(s3_store, tmp_path)
    f.poll_once()
    files = bundle("blue")
    files[OTHER]["lds.yaml"] = b"changed elsewhere"
    second = publish(s3_store, 2, files)
    step = f.poll_once()
    assert (step.result, step.version) == ("unchanged", second)
    assert f.release.current() == first and f.release.versions() == [first]
    assert (f.state.applied_version, f.state.release) == (second, first)


@pytest.mark.parametrize("fault", ["object", "index", "node", "oversized", "missing", "hostile"])
def test_bad_versions_are_not_applied_and_current_stays(
    s3_store: S3BundleStore, tmp_path: Path, fault: str
) -> None:
    """Tampered, missing or oversized object; tampered or hostile index; no node: not applied."""
    good = publish(s3_store, 1, bundle("blue"))
    f = fetcher(s3_store, tmp_path, max_object_bytes=4096)
    f.poll_once()
    before = {p.name: p.read_bytes() for p in (tmp_path / "cfg" / "current").iterdir()}
    files = bundle("green")
    if fault == "node":
        del files[NODE]
    if fault == "oversized":
        files[NODE]["big.txt"] = b"x" * 5000
    bad = publish(s3_store, 2, files)
    index = s3_store.get_index(bad)
    if fault == "object":
        digest = index.files_of(NODE)["lds.yaml"].sha256
        tamper(s3_store.client, BUCKET, f"mesh/prod/objects/{digest}", b"evil")
    if fault == "index":
        tamper(
            s3_store.client,
            BUCKET,
            f"mesh/prod/versions/{bad}.json",
            index.model_dump_json().replace("green", "evil").encode(),
        )
    if fault == "missing":
        digest = index.files_of(NODE)["cds.yaml"].sha256
        s3_store.client.delete_object(Bucket=BUCKET, Key=f"mesh/prod/objects/{digest}")
    if fault == "hostile":  # a consistent manifest + index naming a path outside the release
        hostile = index.model_dump_json().replace('"lds.yaml"', '"../../lds.yaml"').encode()
        tamper(s3_store.client, BUCKET, f"mesh/prod/versions/{bad}.json", hostile)
        read = s3_store.read_manifest()
        assert read is not None
        manifest = read.manifest.model_copy(update={"index_sha256": sha256_hex(hostile)})
        s3_store.swap_manifest(manifest, read.etag)
    step = f.poll_once()
    assert step.result == "error" and step.version == bad
    expected = {
        "object": "altered",
        "index": "altered",
        "node": "not in version",
        "oversized": "over NJ_MAX_OBJECT_BYTES",
        "missing": "NoSuchKey",
        "hostile": "not allowed",
    }[fault]
    assert expected in step.detail
    assert f.release.current() == good
    after = {p.name: p.read_bytes() for p in (tmp_path / "cfg" / "current").iterdir()}
    assert after == before and f.state.applied_version == good
    assert bad in (f.state.last_error or "")


def test_keeps_the_last_three_releases(s3_store: S3BundleStore, tmp_path: Path) -> None:
    """Older releases and their cached objects are removed."""
    f = fetcher(s3_store, tmp_path)
    versions = []
    for minute in range(1, 6):
        versions.append(publish(s3_store, minute, bundle(f"backend{minute}")))
        assert f.poll_once().result == "applied"
    assert f.release.versions() == versions[-3:]
    cached = {p.name for p in (tmp_path / "cfg" / "objects").iterdir()}
    assert sha256_hex(cds({"backend1": 9000})) not in cached
    assert sha256_hex(cds({"backend5": 9000})) in cached
    digests = sorted(p.name for p in (tmp_path / "cfg" / "releases").glob(".*.digests"))
    assert digests == [f".{v}.digests" for v in versions[-3:]]


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, Any]]:
    """The bound fields of every ``name`` log line."""
    return [getattr(r, "nj_fields", {}) for r in caplog.records if r.getMessage() == name]


class HostileIndexStore(MemoryBundleStore):
    """Serves an index for ``hostile`` versions with a file name staging must refuse."""

    def __init__(self) -> None:
        super().__init__()
        self.hostile: set[str] = set()

    def get_index(self, version: str, sha256: str | None = None) -> VersionIndex:
        index = super().get_index(version, sha256)
        if version in self.hostile:
            return with_unchecked_file(index, NODE, ".hidden")  # type: ignore[no-any-return]
        return index


def test_a_swap_envoy_accepts_is_confirmed_and_logged_with_node_and_version(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With a running proxy the swap is confirmed; release.applied carries node and version,
    and how much of its seconds went from the swap to the proxy's verdict."""
    caplog.set_level(logging.INFO)
    store, proxy = MemoryBundleStore(), FakeProxy(alive=True)
    version = publish(store, 1, bundle("blue"))
    assert fetcher(store, tmp_path, proxy).poll_once().result == "applied"
    (applied,) = events(caplog, "release.applied")
    assert (applied["node"], applied["version"], applied["confirm"]) == (NODE, version, "accepted")
    assert applied["changed_files"] == ["cds.yaml", "lds.yaml"] and applied["downloaded"] == 2
    assert 0 <= applied["confirm_seconds"] <= applied["seconds"]
    assert proxy.swaps == 1


def test_a_version_envoy_rejects_is_rolled_back_and_never_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Rejected: current goes back, the version is marked bad and skipped even after a restart;
    the next good version applies."""
    store, proxy = MemoryBundleStore(), FakeProxy(alive=True, verdicts=["accepted", "rejected"])
    good = publish(store, 1, bundle("blue"))
    f = fetcher(store, tmp_path, proxy)
    f.poll_once()
    bad = publish(store, 2, bundle("green"))
    step = f.poll_once()
    assert (step.result, step.version) == ("rejected", bad)
    assert f.release.current() == good and f.state.applied_version == good
    assert bad in f.state.bad_versions and "rolled back to" in (f.state.last_error or "")
    assert (events(caplog, "release.rolled_back")[0]["version"], proxy.swaps) == (bad, 2)
    assert f.poll_once().result == "not_modified"
    restarted = fetcher(store, tmp_path, proxy)
    assert restarted.poll_once().result == "rejected" and proxy.swaps == 2
    newer = publish(store, 3, bundle("red"))
    assert (restarted.poll_once().result, restarted.release.current()) == ("applied", newer)


def test_a_file_name_staging_refuses_is_an_error_and_the_next_version_applies(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A name that slipped past the index checks stops at staging (ReleaseError): the step is
    an error, nothing is half-staged, current stays, and polling goes on."""
    store = HostileIndexStore()
    good = publish(store, 1, bundle("blue"))
    f = fetcher(store, tmp_path, FakeProxy(alive=True))
    f.poll_once()
    hostile = publish(store, 2, bundle("green"))
    store.hostile = {hostile}
    step = f.poll_once()
    assert (step.result, step.version) == ("error", hostile)
    assert "not a plain file name" in step.detail
    (failed,) = events(caplog, "release.failed")
    assert (failed["node"], failed["version"]) == (NODE, hostile)
    assert f.release.current() == good and f.release.versions() == [good]
    assert not list((tmp_path / "cfg" / "releases").glob(".stage-*"))
    newer = publish(store, 3, bundle("red"))
    assert (f.poll_once().result, f.release.current()) == ("applied", newer)


def test_rejected_bundles_are_logged_with_node_and_version(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """release.rejected names the node, the version and the key at fault."""
    store = MemoryBundleStore()
    files = bundle("blue")
    del files[NODE]
    version = publish(store, 1, files)
    assert fetcher(store, tmp_path).poll_once().result == "error"
    (rejected,) = events(caplog, "release.rejected")
    assert (rejected["node"], rejected["version"]) == (NODE, version)


def test_an_unreachable_store_is_a_poll_error_recorded_once(
    s3_store: S3BundleStore, tmp_path: Path
) -> None:
    """A failing manifest read is an error step with the reason in state.json."""
    s3_store.client.delete_bucket(Bucket=BUCKET)
    f = fetcher(s3_store, tmp_path)
    step = f.poll_once()
    assert step.result == "error" and f.state.last_poll == "error"
    assert (f.state.last_error or "").startswith("poll: ")
    saved = json.loads((tmp_path / "cfg" / "state.json").read_text())
    assert saved["last_poll"] == "error"


def test_bootstrap_file_is_written_into_the_config_dir(tmp_path: Path) -> None:
    """bootstrap.json holds the node's bootstrap, written atomically next to current."""
    path = write_bootstrap(NODE, tmp_path, 9901)
    assert path == tmp_path / "bootstrap.json"
    assert json.loads(path.read_text()) == bootstrap(NODE, tmp_path, 9901)


def test_release_dir_refuses_bad_names_and_unstaged_swaps(tmp_path: Path) -> None:
    """Staging checks the version id and every file name; swapping needs a staged release."""
    release = ReleaseDir(tmp_path)
    release.ensure()
    with pytest.raises(ReleaseError, match="not a version id"):
        release.stage("../evil", {"lds.yaml": b""}, {})
    with pytest.raises(ReleaseError, match="is not staged"):
        release.swap("20261101T120000000000Z-0123abcd")
    assert release.current() is None and release.digests(None) == {}


def test_once_and_status_commands(s3_store: S3BundleStore, tmp_path: Path) -> None:
    """once exits 0 when the release is in place; status shows it, also as JSON."""
    runner = CliRunner()
    args = [
        "--bucket",
        BUCKET,
        "--prefix",
        "mesh/prod",
        "--node",
        NODE,
        "--config-dir",
        str(tmp_path / "cfg"),
    ]
    missing = runner.invoke(main, ["once", *args])
    assert missing.exit_code == 1 and "run the configurator first" in missing.output
    version = publish(s3_store, 1, bundle("blue"))
    result = runner.invoke(main, ["once", *args])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"applied {version}")
    again = runner.invoke(main, ["once", *args])
    assert again.exit_code == 0 and again.stdout.startswith(f"unchanged {version}")
    status = runner.invoke(main, ["status", "--config-dir", str(tmp_path / "cfg"), "--json"])
    data = json.loads(status.stdout)
    assert (data["applied_version"], data["node"], data["bad_versions"]) == (version, NODE, {})
    human = runner.invoke(main, ["status", "--config-dir", str(tmp_path / "cfg")])
    assert ["applied", "version", version] in [line.split() for line in human.stdout.splitlines()]
    nowhere = runner.invoke(main, ["status", "--config-dir", str(tmp_path / "nope")])
    assert nowhere.exit_code == 1 and "no fetcher state" in nowhere.output


def test_usage_errors_name_the_setting(tmp_path: Path) -> None:
    """Missing node, a malformed one, or no bucket: exit 2 with the variable to set."""
    runner = CliRunner()
    no_node = runner.invoke(main, ["once", "--bucket", BUCKET, "--config-dir", str(tmp_path)])
    assert no_node.exit_code == 2 and "NJ_NODE" in no_node.output
    bad = runner.invoke(main, ["once", "--bucket", BUCKET, "--node", "../etc"])
    assert bad.exit_code == 2 and "NJ_NODE" in bad.output
    no_bucket = runner.invoke(main, ["run", "--node", NODE, "--config-dir", str(tmp_path)])
    assert no_bucket.exit_code == 2 and "NJ_BUCKET" in no_bucket.output


def test_run_without_an_envoy_binary_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run with NJ_ENVOY_BIN pointing nowhere: exit 1 naming NJ_ENVOY_BIN and --no-envoy."""
    monkeypatch.setenv("NJ_ENVOY_BIN", str(tmp_path / "no-envoy-here"))
    args = ["run", "--bucket", BUCKET, "--node", NODE, "--config-dir", str(tmp_path / "cfg")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "NJ_ENVOY_BIN" in result.output and "--no-envoy" in result.output


@pytest.mark.parametrize(
    ("port", "setting"), [(15001, "NJ_LISTENER_PORT"), (9901, "NJ_ADMIN_PORT")]
)
def test_a_peer_listener_on_the_task_listener_or_admin_port_is_a_rejected_release(
    tmp_path: Path, port: int, setting: str
) -> None:
    """A version whose PEERS listener needs this task's listener (15001) or admin (9901) port is
    rejected for good with a sentence naming the listener, the port and the setting: the
    current release keeps serving, the version is not retried, health reports it."""
    store = MemoryBundleStore()
    good = publish(store, 1, bundle("blue"))
    proxy = FakeProxy()
    f = fetcher(store, tmp_path, proxy)
    assert f.poll_once().result == "applied"
    files = bundle("blue")
    files[NODE]["lds.yaml"] = peer_lds({"/": "blue"}, port)
    bad = publish(store, 2, files)
    step = f.poll_once()
    assert (step.result, step.version) == ("rejected", bad)
    assert step.detail == (
        f"lds.yaml puts listener 'peer:ocean.service.local' on port {port}, which is this task's"
        f" {setting}: change that PEERS port in Cloud Map or {setting}"
    )
    assert f.serving() == good and f.state.bad_versions[bad] == step.detail
    swaps = proxy.swaps
    assert f.state.last_release == "rejected"
    assert f.poll_once().result == "not_modified"  # never retried
    assert proxy.swaps == swaps  # Envoy never saw the version
    files[NODE]["lds.yaml"] = peer_lds({"/": "blue"}, 9101)  # a free port: applied
    fixed = publish(store, 3, files)
    assert (f.poll_once().result, f.serving()) == ("applied", fixed)


def test_a_dark_start_on_a_port_conflict_serves_the_parent_version(tmp_path: Path) -> None:
    """No release on disk and the current version needs the admin port: the fetcher serves the
    newest version of its parent chain without the conflict, and says why."""
    store = MemoryBundleStore()
    good = publish(store, 1, bundle("blue"))
    files = bundle("blue")
    files[NODE]["lds.yaml"] = peer_lds({"/": "blue"}, 9901)
    index, ref = store_version(store, files, later(2), parent=good)
    read = store.read_manifest()
    store.swap_manifest(manifest_for(index, ref), read.etag if read else None)
    f = fetcher(store, tmp_path)
    step = f.poll_once()
    assert (step.result, step.version, f.serving()) == ("rejected", index.version, good)
    assert "NJ_ADMIN_PORT" in step.detail and f"serving the older version {good}" in step.detail
