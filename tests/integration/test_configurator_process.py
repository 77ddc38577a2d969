"""``nightjar-configurator run`` as a real process against moto's HTTP server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3

from configurator.discovery import make_cloudmap_client
from shared.s3_store import S3BundleStore
from tests.cloudmap import FISH, create_namespace, fish_mesh, register
from tests.integration.conftest import free_port
from tests.prometheus import scrape, value
from tests.waiting import wait_for

BIN = Path(sys.executable).parent


def test_run_publishes_serves_metrics_and_stops_on_sigterm(moto_endpoint: str) -> None:
    """The loop publishes through AWS_ENDPOINT_URL, exposes metrics, exits 0 on SIGTERM."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="mesh")
    cloudmap = make_cloudmap_client()
    ns_id = create_namespace(cloudmap)
    for service in fish_mesh():
        register(cloudmap, ns_id, service)
    metrics_port = free_port()
    env = {
        **os.environ,
        "NJ_BUCKET": "mesh",
        "NJ_NAMESPACES": FISH,
        "NJ_INTERVAL": "0.2",
        "NJ_METRICS_PORT": str(metrics_port),
        "NJ_LOG_FORMAT": "json",
    }
    proc = subprocess.Popen(
        [BIN / "nightjar-configurator", "run"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        store = S3BundleStore(s3, "mesh", "nightjar")
        wait_for(lambda: store.read_manifest() is not None)
        cycles = "nightjar_configurator_cycles_total"

        def two_cycles() -> bool:
            return value(scrape(metrics_port), cycles, outcome="unchanged") >= 1

        wait_for(two_cycles)
        samples = scrape(metrics_port)
        assert value(samples, cycles, outcome="published") == 1
        assert value(samples, "nightjar_configurator_published_versions_total") == 1
        calls = value(samples, "nightjar_configurator_cloudmap_calls_last_cycle")
        assert calls == 2 + len(fish_mesh())
        assert value(samples, "nightjar_configurator_problems") == 10
        last = value(samples, "nightjar_configurator_last_success_timestamp_seconds")
        assert abs(last - time.time()) < 5
        assert value(samples, "nightjar_configurator_cycle_seconds_count") >= 2
        healthz = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/healthz", timeout=5)
        assert healthz.status == 200 and b"last good cycle" in healthz.read()
        health = subprocess.run(
            [BIN / "nightjar-configurator", "health"], env=env, capture_output=True, text=True
        )
        assert health.returncode == 0 and health.stdout.startswith("healthy"), health.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    cycles = [e for e in events if e["event"] == "cycle.done"]
    assert cycles[0]["outcome"] == "published" and cycles[0]["changed_nodes"] == 8
    assert {"version", "problems", "calls", "seconds"} <= cycles[0].keys()
    assert events[-1]["event"] == "configurator.stopped"
