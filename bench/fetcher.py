"""The fetcher's footprint and Envoy's apply time, measured on real processes.

- ``idle``: ``nightjar-fetcher run --no-envoy`` against a moto server holding a published
  bundle: VmRSS / VmHWM after the bundle is applied and a few idle polls, and CPU per idle
  poll (process CPU time over a window / manifest GETs moto served in it).
- ``apply``: a real Envoy on the fetcher's bootstrap, fed by the fetcher's own poll, download
  and release code from an in-memory store holding two versions of a mesh of N service-colors
  (a sidecar node: N clusters, each with its endpoint file). Time from the swap of ``current``
  to Envoy's admin counters showing the new listeners and clusters taken (what the fetcher
  waits for), per N; and the cold start (Envoy booting on a release until it took it).

Run: ``make bench-fetcher`` (``python -m bench.fetcher``); ``run()`` returns the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.loopback import (
    BIN,
    Command,
    aws_env,
    client,
    cpu_seconds,
    envoy_version,
    moto_process,
    proc_status,
)
from bench.tables import percentile, save, table
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
from envoy_fetcher.envoy import (
    AdminClient,
    EnvoyCommand,
    EnvoyProcess,
    Verdict,
    judge,
    write_bootstrap,
)
from envoy_fetcher.poll import Fetcher
from envoy_fetcher.settings import FetcherSettings
from sandbox.cloudmap import CloudMapService, Task, create_namespace, register
from sandbox.moto import free_port
from shared.envoy_bin import find_envoy
from shared.memory_store import MemoryBundleStore
from shared.models import Manifest
from shared.s3_store import S3BundleStore

NAMESPACE = "fetcher.bench.local"
BUCKET = "fetcher-bench"
IDLE_INTERVAL = 0.2  # seconds between polls while measuring CPU per poll
IDLE_WINDOW = 20.0  # seconds of idle polling measured
CLUSTERS = (10, 100, 1000)
SWAPS = 6  # swaps measured per size (alternating between two versions)
LAYOUTS = ("eds-files", "inline")  # endpoint files per cluster (default) or inlined in cds.yaml
# The documented override (docs/templates.md) that inlines endpoints: STATIC clusters with
# their load_assignment in cds.yaml, and an eds.yaml that renders nothing (no endpoint files).
INLINE_CDS = """\
{{#has_clusters}}
resources:
{{#clusters}}
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: {{{cluster_name}}}
  type: STATIC
  connect_timeout: {{{connect_timeout}}}
  lb_policy: {{{lb_policy}}}
  load_assignment:
    cluster_name: {{{cluster_name}}}
    endpoints:
    - lb_endpoints:
      {{#endpoints}}
      - endpoint: {address: {socket_address: {address: {{{host}}}, port_value: {{port}}}}}
      {{/endpoints}}
{{/clusters}}
{{/has_clusters}}
{{^has_clusters}}
resources: []
{{/has_clusters}}
"""
INOTIFY_MARGIN = 16  # inotify instances left for the machine's other processes
TARGET_RSS_MIB = 50.0


# -- idle footprint -----------------------------------------------------------------------------
def publish_small_mesh(endpoint: str, services: int) -> None:
    """``services`` service-colors in Cloud Map, one configurator cycle published to S3."""
    s3 = client("s3", endpoint)
    s3.create_bucket(Bucket=BUCKET)
    cloudmap = client("servicediscovery", endpoint)
    ns_id = create_namespace(cloudmap, NAMESPACE)
    for n in range(services):
        attrs = {"SERVICE": f"svc{n}", "COLOR": "blue", f"/svc{n}": "1"}
        tasks = [Task("127.0.0.1", str(9000 + k)) for k in range(3)]
        register(cloudmap, ns_id, CloudMapService(f"svc{n}-blue", attrs, tasks))
    configurator = Configurator(
        namespaces=[NAMESPACE],
        store=S3BundleStore(s3, BUCKET, "nightjar"),
        discovery=CloudMapDiscovery(cloudmap),
        templates=TemplateLibrary.from_dir(),
        validator=EnvoyValidator(find_envoy()),
    )
    report = configurator.run_cycle()
    if report.outcome != "published":
        raise RuntimeError(f"the bench mesh did not publish: {report}")


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")


def idle(services: int = 10) -> dict[str, Any]:
    """Footprint of ``nightjar-fetcher run --no-envoy`` polling an unchanged manifest."""
    with tempfile.TemporaryDirectory(prefix="nj-fetcher-") as tmp, moto_process(Path(tmp)) as moto:
        workdir = Path(tmp)
        publish_small_mesh(moto.url, services)
        fetcher = Command(
            [str(BIN / "nightjar-fetcher"), "run", "--no-envoy"],
            {
                **aws_env(moto.url),
                "NJ_BUCKET": BUCKET,
                "NJ_NODE": f"{NAMESPACE}/svc0/blue",
                "NJ_CONFIG_DIR": str(workdir / "fetcher"),
                "NJ_POLL_INTERVAL": str(IDLE_INTERVAL),
                "NJ_POLL_JITTER": "0",
            },
            workdir / "fetcher.log",
        )
        gets = f"GET /{BUCKET}/nightjar/manifest.json"
        fetcher.start()
        try:
            wait_until(lambda: bool(fetcher.events("release.applied")), 60, "the first apply")
            time.sleep(10 * IDLE_INTERVAL)  # a few idle polls
            memory = proc_status(fetcher.pid)
            cpu0, polls0 = cpu_seconds(fetcher.pid), moto.requests(gets)
            time.sleep(IDLE_WINDOW)
            cpu1, polls1 = cpu_seconds(fetcher.pid), moto.requests(gets)
            after = proc_status(fetcher.pid)
        finally:
            fetcher.stop()
    polls = polls1 - polls0
    return {
        "bench": "fetcher idle",
        "services": services,
        "rss_mib": round(memory["VmRSS"] / 1024, 1),
        "rss_anon_mib": round(memory["RssAnon"] / 1024, 1),
        "rss_file_mib": round(memory["RssFile"] / 1024, 1),
        "hwm_mib": round(memory["VmHWM"] / 1024, 1),
        "rss_after_window_mib": round(after["VmRSS"] / 1024, 1),
        "polls": polls,
        "cpu_ms_per_poll": round(1000 * (cpu1 - cpu0) / polls, 2) if polls else None,
        "cpu_s_per_day_at_10s": round((cpu1 - cpu0) / polls * 8640, 1) if polls else None,
    }


# -- Envoy apply time ---------------------------------------------------------------------------
def sidecar_mesh(services: int, variant: int) -> StaticDiscovery:
    """``services`` service-colors of 1 endpoint; ``variant`` changes svc0's path (a route)."""
    raw = []
    for n in range(services):
        path = f"/svc{n}" if n else f"/svc0/v{variant}"
        settings = RawInstance(
            "service-settings", {"SERVICE": f"svc{n}", "COLOR": "blue", path: "1"}
        )
        task = RawInstance(
            "t0", {"AWS_INSTANCE_IPV4": f"10.{n // 250}.{n % 250}.1", "AWS_INSTANCE_PORT": "8080"}
        )
        raw.append(RawService(f"s{n}", f"svc{n}-blue", (settings, task)))
    return StaticDiscovery([RawNamespace("ns", NAMESPACE, tuple(raw))])


class StopwatchEnvoy(EnvoyProcess):
    """The real supervised Envoy, whose swap confirmation also records how long it took,
    reading the admin counters every few milliseconds."""

    every = 0.005

    def __init__(self, command: EnvoyCommand, admin: AdminClient) -> None:
        super().__init__(command, admin)
        self.client = admin
        self.swap_seconds: list[float] = []
        self.start_seconds: list[float] = []

    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, ready_timeout: float) -> Verdict:
        started = time.perf_counter()
        verdict = super().start(ready_timeout)
        self.start_seconds.append(time.perf_counter() - started)
        return verdict

    def confirm_swap(self, swap: Callable[[], None], timeout: float) -> Verdict:
        if self.proc is None:
            return super().confirm_swap(swap, timeout)
        before = self.client.counters()
        started = time.perf_counter()
        swap()
        deadline = started + timeout
        while time.perf_counter() < deadline:
            verdict = judge(before, self.client.counters())
            if verdict is not None:
                self.swap_seconds.append(time.perf_counter() - started)
                return verdict
            time.sleep(self.every)
        return "timeout"


def inotify_budget() -> tuple[int, int]:
    """(fs.inotify.max_user_instances, instances this user's processes hold now): every file
    Envoy watches (LDS, CDS, one endpoint file per cluster) takes one instance of that budget."""
    limit = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    held = 0
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if fd.lstat().st_uid == os.getuid() and os.readlink(fd) == "anon_inode:inotify":
                held += 1
        except OSError:
            continue
    return limit, held


def apply(clusters: int, layout: str = "eds-files", swaps: int = SWAPS) -> dict[str, Any]:
    """Swap between two versions of an N-cluster sidecar ``swaps`` times under a real Envoy."""
    row: dict[str, Any] = {"bench": "envoy apply", "clusters": clusters, "layout": layout}
    limit, held = inotify_budget()
    needed = 2 + (clusters if layout == "eds-files" else 0)
    if held + needed + INOTIFY_MARGIN > limit:
        why = f"needs {needed} inotify instances; {held} of {limit} held (max_user_instances)"
        return {**row, "skipped": why}
    binary = find_envoy()
    assert binary is not None
    with tempfile.TemporaryDirectory(prefix="nj-apply-") as tmp:
        store, versions = publish_two_versions(clusters, binary, layout, Path(tmp))
        settings = FetcherSettings(
            node=f"{NAMESPACE}/svc0/blue",
            bucket=BUCKET,
            config_dir=Path(tmp) / "fetcher",
            listener_port=free_port(),
            admin_port=free_port(),
        )
        settings.config_dir.mkdir()
        admin = AdminClient(settings.admin_port)
        boot = write_bootstrap(settings.node, settings.config_dir, settings.admin_port)
        envoy = StopwatchEnvoy(EnvoyCommand(str(binary), boot, "error"), admin)
        fetcher = Fetcher.from_dir(settings, store, envoy)
        try:
            _timed_poll(fetcher)  # Envoy boots on the newest version
            polls = []
            for n in range(swaps):
                point_manifest_at(store, versions[n % 2])
                polls.append(_timed_poll(fetcher))
            listed = count_clusters(admin)
            envoy_rss = proc_status(envoy.pid())["VmRSS"]
        finally:
            envoy.stop(0)
    return {
        **row,
        "clusters_in_envoy": listed,
        "cold_start_s": round(envoy.start_seconds[0], 3),
        "swap_to_taken_p50_s": round(percentile(envoy.swap_seconds, 50), 3),
        "swap_to_taken_max_s": round(max(envoy.swap_seconds), 3),
        "poll_apply_p50_s": round(percentile(polls, 50), 3),
        "swaps": len(envoy.swap_seconds),
        "envoy_rss_mib": round(envoy_rss / 1024, 1),
    }


def publish_two_versions(
    clusters: int, binary: Path, layout: str, workdir: Path
) -> tuple[MemoryBundleStore, list[str]]:
    """A memory store holding two versions of the mesh (svc0's route differs); their ids."""
    overrides = None
    if layout == "inline":
        overrides = workdir / "templates"
        (overrides / NAMESPACE).mkdir(parents=True)
        (overrides / NAMESPACE / "cds.yaml").write_text(INLINE_CDS)
        (overrides / NAMESPACE / "eds.yaml").write_text("\n")
    store = MemoryBundleStore()
    configurator = Configurator(
        namespaces=[NAMESPACE],
        store=store,
        discovery=sidecar_mesh(clusters, 1),
        templates=TemplateLibrary.from_dir(overrides),
        validator=EnvoyValidator(binary),
    )
    versions = []
    for variant in (1, 2):
        configurator.discovery = sidecar_mesh(clusters, variant)
        report = configurator.run_cycle()
        if report.outcome != "published" or report.version is None:
            raise RuntimeError(f"mesh of {clusters} did not publish: {report}")
        versions.append(report.version)
    return store, versions


def _timed_poll(fetcher: Fetcher) -> float:
    started = time.perf_counter()
    step = fetcher.poll_once()
    if step.result != "applied":
        raise RuntimeError(f"the bench version was not applied: {step}")
    return time.perf_counter() - started


def point_manifest_at(store: MemoryBundleStore, version: str) -> None:
    """Re-point the manifest at a stored version (what ``nightjar rollback`` does)."""
    index, ref = store.read_index_ref(version)
    read = store.read_manifest()
    assert read is not None
    manifest = Manifest(
        version=version,
        index_key=ref.key,
        index_sha256=ref.sha256,
        created=index.created,
        generator=read.manifest.generator,
    )
    store.swap_manifest(manifest, read.etag)


def count_clusters(admin: AdminClient) -> int:
    """Clusters Envoy has (``/clusters?format=json``)."""
    dump = json.loads(admin._request("/clusters?format=json"))  # noqa: SLF001 (bench only)
    return len(dump.get("cluster_statuses", []))


def run(clusters: tuple[int, ...] = CLUSTERS) -> list[dict[str, Any]]:
    """Every row of this benchmark (``make bench`` can call it); saves them as JSON."""
    rows = [idle()]
    rows += [apply(n, layout) for n in clusters for layout in LAYOUTS]
    save("fetcher", {"rows": rows, "envoy": envoy_version()})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clusters", type=int, nargs="*", default=list(CLUSTERS), help="sizes to apply"
    )
    parser.add_argument("--idle-only", action="store_true", help="only the idle footprint")
    args = parser.parse_args(argv)
    if find_envoy() is None:
        print("no envoy binary: run 'make install' first", file=sys.stderr)
        return 1
    rows = run(()) if args.idle_only else run(tuple(args.clusters))
    idle_rows = [r for r in rows if r["bench"] == "fetcher idle"]
    apply_rows = [r for r in rows if r["bench"] == "envoy apply"]
    print(table(idle_rows))
    if apply_rows:
        print()
        print(table(apply_rows))
    rss = idle_rows[0]["rss_mib"]
    verdict = "meets" if rss <= TARGET_RSS_MIB else "misses"
    print(
        f"\nidle RSS {rss} MiB {verdict} the {TARGET_RSS_MIB:g} MiB target; saved to bench-results/"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
