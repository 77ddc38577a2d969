"""The processes a benchmark runs on 127.0.0.1: a moto server of its own, and nightjar commands.

The moto server (``sandbox.moto``) runs in a child process so the benchmark's own threads (the
probe, the backends) never share its interpreter lock, and its request log (one line per
request) is kept in a file a benchmark can count. Each nightjar command runs as a real process
with ``NJ_LOG_FORMAT=json``; its stderr lines are read back as events with their timestamps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import boto3
from botocore.config import Config

from shared.envoy_bin import find_envoy

BIN = Path(sys.executable).parent
REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

# The child: serve until the benchmark closes its stdin (or dies), then stop moto.
_MOTO_CHILD = (
    "import sys\n"
    "from sandbox.moto import moto_server\n"
    "with moto_server() as url:\n"
    "    print(url, flush=True)\n"
    "    sys.stdin.read()\n"
)


@dataclass
class Moto:
    """A moto server in a child process: its URL and the file its request log goes to."""

    url: str
    log: Path

    def requests(self, needle: str) -> int:
        """How many requests so far had ``needle`` in their log line (``GET /b/k``)."""
        with self.log.open(errors="replace") as lines:
            return sum(needle in line for line in lines)


@contextmanager
def moto_process(workdir: Path) -> Iterator[Moto]:
    """Start moto in a child process for the block; always stopped (stdin closed, then kill)."""
    log = workdir / "moto.log"
    with log.open("w") as sink:
        child = subprocess.Popen(
            [sys.executable, "-c", _MOTO_CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        try:
            assert child.stdout is not None
            url = child.stdout.readline().strip()
            if not url.startswith("http://127.0.0.1:"):
                raise RuntimeError(f"moto did not start (see {log})")
            yield Moto(url, log)
        finally:
            _close(child.stdin)
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=10)


def _close(stream: IO[str] | None) -> None:
    if stream is not None:
        try:
            stream.close()
        except BrokenPipeError:
            pass


def aws_env(endpoint: str) -> dict[str, str]:
    """The environment every process gets: the moto endpoint, a region, fake credentials."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        **CREDENTIALS,
    }


def client(service: str, endpoint: str) -> Any:
    """A boto3 client of the moto server (Cloud Map without its ``data-`` host prefix)."""
    config = Config(inject_host_prefix=False) if service == "servicediscovery" else None
    factory: Any = boto3.client
    return factory(
        service,
        region_name=REGION,
        endpoint_url=endpoint,
        config=config,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


@dataclass
class Command:
    """One nightjar command as a real process; its JSON log lines are its events."""

    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        with self.log_path.open("wb") as sink:
            self.proc = subprocess.Popen(
                self.argv,
                env={**os.environ, **self.env, "NJ_LOG_FORMAT": "json"},
                stdout=sink,
                stderr=sink,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL of its process group after ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every JSON line it wrote (``name``: only those events), with ``at`` (Unix seconds)."""
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if name is None or event.get("event") == name:
                event["at"] = _unix(str(event.get("ts", "")))
                found.append(event)
        return found


def _unix(stamp: str) -> float | None:
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


@contextmanager
def running(*commands: Command) -> Iterator[None]:
    """Start the commands in order; stop them in reverse order, whatever happens."""
    started: list[Command] = []
    try:
        for command in commands:
            command.start()
            started.append(command)
        yield
    finally:
        for command in reversed(started):
            command.stop()


def envoy_version() -> str:
    """The version of the envoy binary the benchmarks run (``missing`` without one)."""
    binary = find_envoy()
    if binary is None:
        return "missing"
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip().split("version:")[-1].strip().split(" ")[0]


def proc_status(pid: int) -> dict[str, int]:
    """``VmRSS``/``VmHWM``/``RssAnon``/``RssFile`` of a process, in KiB (Linux /proc)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            values[key] = int(rest.split()[0])
    return values


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")
