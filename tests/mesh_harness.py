"""A real mesh for integration tests: moto's HTTP server for Cloud Map and S3, the configurator
in process, and one fetcher running a real Envoy per node under test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from configurator.cycle import Configurator
from configurator.discovery import CloudMapDiscovery
from configurator.render import TemplateLibrary
from configurator.validate import EnvoyValidator
from sandbox.moto import free_port, moto_server
from shared.envoy_bin import find_envoy
from shared.s3_store import S3BundleStore
from tests.waiting import wait_for

BIN = Path(sys.executable).parent
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
REGION = "us-east-1"


@contextmanager
def moto_endpoint() -> Iterator[str]:
    """A moto HTTP server on 127.0.0.1, reset, for the duration of the block."""
    with moto_server() as endpoint:
        yield endpoint


def client(service: str, endpoint: str) -> Any:
    """A boto3 client of the moto server (Cloud Map without its ``data-`` host prefix)."""
    config = Config(inject_host_prefix=False) if service == "servicediscovery" else None
    factory: Any = boto3.client
    return factory(service, region_name=REGION, endpoint_url=endpoint, config=config, **CREDENTIALS)


def configurator(endpoint: str, namespaces: list[str], bucket: str) -> Configurator:
    """The configurator of ``namespaces``, publishing to a new ``bucket``, validating with Envoy."""
    s3 = client("s3", endpoint)
    s3.create_bucket(Bucket=bucket)
    return Configurator(
        namespaces=namespaces,
        store=S3BundleStore(s3, bucket, "nightjar"),
        discovery=CloudMapDiscovery(client("servicediscovery", endpoint)),
        templates=TemplateLibrary.from_dir(),
        validator=EnvoyValidator(find_envoy()),
    )


def publish(configurator: Configurator) -> str:
    """Run one cycle that must publish; its version."""
    report = configurator.run_cycle()
    assert report.outcome == "published", report
    assert report.version is not None
    return report.version


def process_env(endpoint: str, bucket: str) -> dict[str, str]:
    """The environment of a nightjar process (or CLI) on the moto server."""
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "NJ_BUCKET": bucket,
        "NJ_LOG_FORMAT": "json",
    }


class ConfiguratorProcess:
    """``nightjar-configurator run`` as a real process on the moto server, logging JSON."""

    def __init__(
        self, endpoint: str, bucket: str, namespaces: list[str], log: Path, interval: float = 1
    ) -> None:
        self.env = {
            **process_env(endpoint, bucket),
            "NJ_NAMESPACES": ",".join(namespaces),
            "NJ_INTERVAL": str(interval),
        }
        self.log_path = log
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.log = self.log_path.open("a")
        self.proc = subprocess.Popen(
            [str(BIN / "nightjar-configurator"), "run"],
            env=self.env,
            stdout=self.log,
            stderr=self.log,
            text=True,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL: no cycle is finished, nothing is cleaned up (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._close()

    def _close(self) -> None:
        if self.proc is not None:
            self.log.close()
            self.proc = None

    def events(self, name: str) -> list[dict[str, Any]]:
        """Every log line with event ``name``, in order (all runs into this log)."""
        lines = self.log_path.read_text().splitlines() if self.log_path.exists() else []
        found = []
        for line in lines:
            if f'"{name}"' in line and line.startswith("{"):
                event = json.loads(line)
                if event.get("event") == name:
                    found.append(event)
        return found


class EnvoyNode:
    """``nightjar-fetcher run`` for one node: it supervises a real Envoy on loopback."""

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        node: str,
        workdir: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.endpoint, self.bucket, self.node = endpoint, bucket, node
        self.workdir = workdir
        self.extra_env = env or {}  # more NJ_* settings for this fetcher
        self.port = free_port()
        self.admin_port = free_port()
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION,
            "NJ_BUCKET": self.bucket,
            "NJ_NODE": self.node,
            "NJ_CONFIG_DIR": str(self.workdir / "config"),
            "NJ_LISTENER_PORT": str(self.port),
            "NJ_LISTENER_ADDRESS": "127.0.0.1",
            "NJ_ADMIN_PORT": str(self.admin_port),
            "NJ_POLL_INTERVAL": "0.2",
            "NJ_DRAIN_SECONDS": "0",
            "NJ_LOG_FORMAT": "json",
            "NJ_ENVOY_LOG_LEVEL": "error",
            **self.extra_env,
        }
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = (self.workdir / "fetcher.log").open("w")
        self.proc = subprocess.Popen(
            [str(BIN / "nightjar-fetcher"), "run"],
            env=env,
            stderr=self.log,
            stdout=self.log,
            text=True,
            start_new_session=True,
        )

    def wait_serving(self, version: str) -> None:
        wait_for(lambda: self.serving(version), 60, f"{self.node} serving {version}")
        wait_for(self.pinged, 30, f"{self.node} answering /ping")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self.proc is not None:
            self.log.close()

    # -- what a client and an operator observe --------------------------------------------
    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, float]:
        """Status, body and seconds of one request through Envoy."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", headers=headers or {}
        )
        return self.send(urllib.request.build_opener(urllib.request.ProxyHandler({})), request)

    def get_via_proxy(self, url: str) -> tuple[int, str, float]:
        """``url`` fetched with this Envoy as the HTTP proxy (``HTTP_PROXY``, ``curl --proxy``):
        an absolute-form request line, ``Host`` from the URL."""
        proxy = urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{self.port}"})
        return self.send(urllib.request.build_opener(proxy), urllib.request.Request(url))

    @staticmethod
    def send(opener: Any, request: urllib.request.Request) -> tuple[int, str, float]:
        started = time.monotonic()
        try:
            with opener.open(request, timeout=10) as response:
                return response.status, response.read().decode(), time.monotonic() - started
        except urllib.error.HTTPError as err:
            overloaded = err.headers.get("x-envoy-overloaded") is not None
            return err.code, "overloaded" if overloaded else "", time.monotonic() - started

    def answers(self, path: str, n: int, headers: dict[str, str] | None = None) -> Counter[str]:
        """``n`` sequential requests: how often each body (200) or status (other) was seen."""
        return tally(self.get(path, headers) for _ in range(n))

    def admin(self, path: str) -> str:
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def stat(self, name: str) -> int:
        text = self.admin(f"/stats?filter=^{name}$")
        return int(text.split(": ", 1)[1]) if ": " in text else 0

    def host_flags(self, cluster: str) -> dict[int, str]:
        """Port -> health flags of every host Envoy has for ``cluster``."""
        flags = {}
        for line in self.admin("/clusters").splitlines():
            parts = line.split("::")
            if parts[0] == cluster and len(parts) == 4 and parts[2] == "health_flags":
                flags[int(parts[1].rsplit(":", 1)[1])] = parts[3]
        return flags

    def applied(self) -> list[dict[str, Any]]:
        lines = (self.workdir / "fetcher.log").read_text().splitlines()
        return [json.loads(x) for x in lines if '"release.applied"' in x]

    def pinged(self) -> bool:
        try:
            return self.get("/ping")[0] == 200
        except OSError:  # the listener is not bound yet
            return False

    def serving(self, version: str) -> bool:
        return any(a["version"] == version for a in self.applied())

    def latest(self) -> str | None:
        """The version this node applied last."""
        applied = self.applied()
        return str(applied[-1]["version"]) if applied else None


def tally(results: Iterator[tuple[int, str, float]]) -> Counter[str]:
    """How often each body (200) or status (other) was seen."""
    seen: Counter[str] = Counter()
    for status, body, _ in results:
        seen[body if status == 200 else str(status)] += 1
    return seen
