"""Propagation: from a weight written to Cloud Map to the first request Envoy serves with it.

Everything is real and on loopback: a moto server (S3 + Cloud Map), ``nightjar-configurator
run`` and ``nightjar-fetcher run`` (supervising Envoy) as processes, two HTTP backends
(``sandbox.backends``) answering ``blue`` and ``green``. The route ``/tuna`` flips between
blue 100 / green 0 and blue 0 / green 100, and flip ``n``'s winner also declares
``/flip-<n>``, a path only the new version routes. A probe asks for that path through the
gateway Envoy every few milliseconds (a new connection each): its first answer from the winner
marks the moment the new weights are served (``total``). A second probe keeps one connection
open as long as Envoy allows (``keep_alive_total``): a pooled client's connection stays on the
listener it was accepted by, which keeps its old routes while it drains.

Each flip writes the losing color's weight 0 first, then the winning color's 100 (the moment
before that last RegisterInstance is t0), so no intermediate state can serve the winner early.
Flips start at a random phase against the two loops. The split comes from the processes'
JSON logs: ``cycle.done`` (its stage seconds) and ``release.applied`` (``seconds``,
``confirm_seconds``) of the version that served the first new answer:

- detection: t0 -> end of the Cloud Map scan that saw the change (waiting for a cycle + scan)
- render: scan end -> nodes built (render + ``envoy --mode validate``)
- publish: objects, index and the conditional manifest swap
- poll: manifest swapped -> the fetcher's poll read it (waiting for its next poll)
- apply: index, downloads, staging, up to the swap of ``current``
- envoy: swap of ``current`` -> the first request served with the new weights

Run: ``make bench-propagation`` (or ``python -m bench.propagation --changes 40 --interval 1``).
"""

from __future__ import annotations

import argparse
import http.client
import math
import random
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.loopback import BIN, Command, aws_env, client, envoy_version, moto_process, running
from bench.tables import percentile, save, table
from sandbox.backends import backends
from sandbox.cloudmap import CloudMapService, Task, create_namespace, register
from sandbox.moto import free_port
from shared.envoy_bin import find_envoy

NAMESPACE = "propagation.bench.local"
NODE = f"{NAMESPACE}/gateway"
BUCKET = "propagation-bench"
COLORS = ("blue", "green")
PROBE_EVERY = 0.005  # seconds between probe requests
ARRIVAL_TIMEOUT = 30.0
STAGES = ("detection", "render", "publish", "poll", "apply", "envoy")
TARGET_P99 = 3.0


def settings_of(color: str, weight: int, flip: int = 0) -> dict[str, str]:
    """A color's settings; the winner of flip ``n`` also declares ``/flip-<n>``: only versions
    of that flip route it (no older one has it, and it is under no other prefix), and every
    flip renders new content (the render and validate caches never answer for it)."""
    marker = {f"/flip-{flip}": "1"} if weight else {}
    return {"SERVICE": "tuna", "COLOR": color, "/tuna": str(weight), **marker}


class Probe:
    """Requests ``/tuna`` through Envoy until stopped; keeps (time answered, body) of each.

    A new connection per request by default (what a new client sees); with ``keep_alive`` one
    connection for as long as Envoy keeps it open (what a pooled client sees: a draining
    listener keeps its old routes for the connections it already has).
    """

    def __init__(self, port: int, keep_alive: bool = False) -> None:
        self.port = port
        self.keep_alive = keep_alive
        self.path = "/tuna"
        self.samples: list[tuple[float, str]] = []  # (when answered, "<path>=<body or status>")
        self.connections = 0
        self._conn: http.client.HTTPConnection | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _get(self) -> str:
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            self.connections += 1
        try:
            self._conn.request("GET", self.path)
            response = self._conn.getresponse()
            body = response.read().decode(errors="replace")
            closing = response.will_close
            return body if response.status == 200 else str(response.status)
        except (OSError, http.client.HTTPException) as err:
            closing = True
            return type(err).__name__
        finally:
            if closing or not self.keep_alive:
                self._conn.close()
                self._conn = None

    def _run(self) -> None:
        while not self._stop.is_set():
            path = self.path
            body = self._get()
            self.samples.append((time.time(), f"{path}={body}"))
            self._stop.wait(PROBE_EVERY)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def first(self, answer: str, after: float, timeout: float) -> float | None:
        """When ``answer`` (``<path>=<body>``) first came after ``after`` (waiting up to
        ``timeout``)."""
        deadline = time.monotonic() + timeout
        start = 0
        while time.monotonic() < deadline:
            samples = self.samples[start:]
            for at, seen in samples:
                if at > after and seen == answer:
                    return at
            start += len(samples)
            time.sleep(PROBE_EVERY)
        return None


@dataclass
class Mesh:
    """The Cloud Map side: the namespace's two tuna services and how to flip their weights."""

    cloudmap: Any
    service_ids: dict[str, str]

    def write(self, color: str, weight: int, flip: int = 0) -> float:
        """Replace a color's settings (moto keeps old attributes on re-register, so deregister
        first); the time just before the RegisterInstance that carries the new weight."""
        sid = self.service_ids[color]
        self.cloudmap.deregister_instance(ServiceId=sid, InstanceId="service-settings")
        attributes = {"AWS_INSTANCE_IPV4": "127.0.0.1", "AWS_INSTANCE_PORT": "1"}
        attributes.update(settings_of(color, weight, flip))
        t0 = time.time()
        self.cloudmap.register_instance(
            ServiceId=sid, InstanceId="service-settings", Attributes=attributes
        )
        return t0

    def flip_to(self, winner: str, flip: int) -> float:
        """Loser to 0, then winner to 100; t0 of the winner's write."""
        (loser,) = (c for c in COLORS if c != winner)
        self.write(loser, 0)
        return self.write(winner, 100, flip)


def register_mesh(endpoint: str, ports: dict[str, int]) -> Mesh:
    cloudmap = client("servicediscovery", endpoint)
    client("s3", endpoint).create_bucket(Bucket=BUCKET)
    ns_id = create_namespace(cloudmap, NAMESPACE)
    ids = {}
    for color in COLORS:
        service = CloudMapService(
            f"tuna-{color}",
            settings_of(color, 100 if color == "blue" else 0),
            [Task("127.0.0.1", str(ports[color]))],
        )
        ids[color] = register(cloudmap, ns_id, service)
    return Mesh(cloudmap, ids)


def commands(
    endpoint: str, workdir: Path, interval: float, listener: int, envoy_args: str = ""
) -> list[Command]:
    env = {**aws_env(endpoint), "PATH": f"{BIN}:/usr/bin:/bin", "NJ_BUCKET": BUCKET}
    configurator = Command(
        [str(BIN / "nightjar-configurator"), "run"],
        {**env, "NJ_NAMESPACES": NAMESPACE, "NJ_INTERVAL": str(interval)},
        workdir / "configurator.log",
    )
    fetcher = Command(
        [str(BIN / "nightjar-fetcher"), "run"],
        {
            **env,
            "NJ_NODE": NODE,
            "NJ_CONFIG_DIR": str(workdir / "fetcher"),
            "NJ_LISTENER_PORT": str(listener),
            "NJ_LISTENER_ADDRESS": "127.0.0.1",
            "NJ_ADMIN_PORT": str(free_port()),
            "NJ_POLL_INTERVAL": str(interval),
            "NJ_DRAIN_SECONDS": "0",
            "NJ_ENVOY_LOG_LEVEL": "error",
            "NJ_ENVOY_ARGS": envoy_args,
        },
        workdir / "fetcher.log",
    )
    return [configurator, fetcher]


@dataclass
class Flip:
    """One weight change: when it was written, when the first new answer came, and how many
    answers from the old weights came after that one (until the next flip was written)."""

    n: int
    winner: str
    t0: float
    arrived: float | None
    stale: int = 0

    @property
    def marker(self) -> str:
        """The path only this flip's winner serves (``/flip-<n>``)."""
        return f"/flip-{self.n + 1}"

    @property
    def answer(self) -> str:
        return f"{self.marker}={self.winner}"


def flips(
    mesh: Mesh, probes: tuple[Probe, ...], count: int, interval: float, seed: int
) -> Iterator[Flip]:
    """Flip ``count`` times, each after a random pause; every probe asks for the flip's marker
    path, which only the new weights' version routes (to the winner)."""
    rng = random.Random(seed)
    previous: Flip | None = None
    for n in range(count):
        time.sleep(rng.uniform(0.2, 0.2 + interval))  # a random phase against both loops
        flip = Flip(n, COLORS[(n + 1) % 2], 0.0, None)
        for probe in probes:
            probe.path = flip.marker
        flip.t0 = mesh.flip_to(flip.winner, n + 1)
        if previous is not None:
            yield _with_stale(previous, probes[0], flip.t0)
        flip.arrived = probes[0].first(flip.answer, flip.t0, ARRIVAL_TIMEOUT)
        previous = flip
        print(f"  flip {n + 1:2}/{count} to {flip.winner:5}: {_secs(flip)}", flush=True)
    if previous is not None:
        time.sleep(interval)
        yield _with_stale(previous, probes[0], time.time())


def _with_stale(flip: Flip, probe: Probe, until: float) -> Flip:
    """``flip`` with the answers from older weights the probe got after its first new one."""
    if flip.arrived is None:
        return flip
    arrived, prefix = flip.arrived, f"{flip.marker}="
    flip.stale = sum(
        arrived < at < until and seen.startswith(prefix) and seen != flip.answer
        for at, seen in list(probe.samples)
    )
    return flip


def _secs(flip: Flip) -> str:
    return "no arrival" if flip.arrived is None else f"{flip.arrived - flip.t0:.3f} s"


def split(
    flip: Flip, cycles: list[dict[str, Any]], applied: list[dict[str, Any]]
) -> dict[str, Any]:
    """The stages of one flip, from the logs of the version that served its first answer."""
    row: dict[str, Any] = {"n": flip.n, "winner": flip.winner, "t0": flip.t0}
    if flip.arrived is None:
        return {**row, "total": None}
    row.update(arrived=flip.arrived, stale_answers=flip.stale)
    row["total"] = round(flip.arrived - flip.t0, 4)
    # The release whose swap came last before the answer (its log line follows Envoy's verdict,
    # which the fetcher may see after the probe did).
    served = [a for a in applied if a["at"] - a["confirm_seconds"] <= flip.arrived]
    if not served:
        return row
    release = served[-1]
    cycle = next((c for c in cycles if c.get("version") == release["version"]), None)
    if cycle is None:
        return row
    publish_end = cycle["at"] - cycle.get("gc_seconds", 0.0)
    build_end = publish_end - cycle["publish_seconds"]
    scan_end = build_end - cycle["build_seconds"]
    applied_at = release["at"]
    apply_start = applied_at - release["seconds"]
    swapped = applied_at - release["confirm_seconds"]
    marks = [flip.t0, scan_end, build_end, publish_end, apply_start, swapped, flip.arrived]
    stages = {s: round(b - a, 4) for s, a, b in zip(STAGES, marks, marks[1:], strict=False)}
    row["version"] = release["version"]
    if min(stages.values()) < -0.002:  # the logs do not tell this flip's story: no split
        return {**row, "unsplit": stages}
    row.update(stages)
    row["cycle_seconds"] = cycle["seconds"]
    row["confirm_seconds"] = release["confirm_seconds"]
    return row


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for metric in ("total", *STAGES, "keep_alive_total"):
        values = [r[metric] for r in rows if r.get(metric) is not None]
        out.append(
            {
                "metric": metric,
                "n": len(values),
                "p50_s": round(percentile(values, 50), 3),
                "p95_s": round(percentile(values, 95), 3),
                "p99_s": round(percentile(values, 99), 3),
                "max_s": round(max(values), 3) if values else None,
                "mean_s": round(sum(values) / len(values), 3) if values else None,
            }
        )
    return out


@contextmanager
def probing(port: int) -> Iterator[tuple[Probe, Probe]]:
    """A probe with a new connection per request, and one that keeps its connection."""
    probes = Probe(port), Probe(port, keep_alive=True)
    for probe in probes:
        probe.start()
    try:
        yield probes
    finally:
        for probe in probes:
            probe.stop()


def pooled_arrivals(flips: list[Flip], pooled: Probe) -> list[float | None]:
    """For each flip, when the keep-alive probe first got the new weights (None: not before
    the next flip was written)."""
    ends = [f.t0 for f in flips[1:]] + [math.inf]
    samples = list(pooled.samples)
    return [
        next((at for at, seen in samples if f.t0 < at < end and seen == f.answer), None)
        for f, end in zip(flips, ends, strict=True)
    ]


@contextmanager
def work_dir(keep: Path | None) -> Iterator[Path]:
    """``keep`` (created, left in place: the processes' logs), else a temporary directory."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="nj-propagation-") as tmp:
        yield Path(tmp)


def measure(
    changes: int, interval: float, seed: int, keep: Path | None = None, envoy_args: str = ""
) -> dict[str, Any]:
    """Run the whole world, flip ``changes`` times, and return rows, summary and context."""
    with (
        work_dir(keep) as workdir,
        moto_process(workdir) as moto,
        backends(*COLORS) as served,
    ):
        mesh = register_mesh(moto.url, {c: b.port for c, b in served.items()})
        listener = free_port()
        configurator, fetcher = commands(moto.url, workdir, interval, listener, envoy_args)
        with running(configurator, fetcher), probing(listener) as (probe, pooled):
            if probe.first("/tuna=blue", 0.0, 120) is None:
                raise RuntimeError(f"Envoy never served blue; see {workdir}/*.log")
            started, connections = time.time(), pooled.connections
            done = list(flips(mesh, (probe, pooled), changes, interval, seed))
            elapsed = time.time() - started
            requests = {
                kind: moto.requests(needle)
                for kind, needle in (
                    ("s3_get_manifest", f"GET /{BUCKET}/nightjar/manifest.json"),
                    ("s3_get_index", f"GET /{BUCKET}/nightjar/versions/"),
                    ("s3_get_object", f"GET /{BUCKET}/nightjar/objects/"),
                    ("s3_put", f"PUT /{BUCKET}/"),
                    ("s3_list", "list-type=2"),
                    ("cloudmap", '"POST / '),
                )
            }
        cycles = configurator.events("cycle.done")
        applied = fetcher.events("release.applied")
    published = [c for c in cycles if c.get("outcome") == "published"]
    rows = [split(f, published, applied) for f in done]
    for row, at in zip(rows, pooled_arrivals(done, pooled), strict=True):
        row["keep_alive_total"] = None if at is None else round(at - row["t0"], 4)
    return {
        "changes": changes,
        "interval_s": interval,
        "seed": seed,
        "envoy_args": envoy_args,
        "envoy": envoy_version(),
        "rows": rows,
        "summary": summary(rows),
        "context": {
            "published_versions": len(published),
            # a cycle that read Cloud Map between a flip's two writes publishes one more
            "intermediate_versions": len(published) - changes - 1,
            # a stage that came out negative: the logs do not tell that flip's story
            "flips_unsplit": sum("unsplit" in r for r in rows),
            "applied_versions": len(applied),
            "cycles": len(cycles),
            "cycle_seconds_p50": round(percentile([c["seconds"] for c in cycles], 50), 3),
            "changed_cycle_seconds_p50": round(
                percentile([c["seconds"] for c in published], 50), 3
            ),
            "cloudmap_calls_per_cycle": sorted({c.get("calls", 0) for c in cycles}),
            "run_seconds": round(elapsed, 1),
            "keep_alive_connections": pooled.connections - connections,
            "keep_alive_flips_unseen": sum(r.get("keep_alive_total") is None for r in rows),
        },
        "requests_whole_run": requests,
    }


def run(changes: int = 40, interval: float = 1.0, seed: int = 13) -> list[dict[str, Any]]:
    """The summary rows (one per stage), for ``make bench``; saves the full result as JSON."""
    result = measure(changes, interval, seed)
    save(f"propagation-{interval:g}s", result)
    return [{"bench": "propagation", "interval_s": interval, **r} for r in result["summary"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=40, help="weight flips (>= 30)")
    parser.add_argument("--interval", type=float, default=1.0, help="both loops' interval (s)")
    parser.add_argument("--seed", type=int, default=13, help="seed of the flips' phases")
    parser.add_argument("--keep", type=Path, help="keep the processes' logs in this directory")
    parser.add_argument(
        "--envoy-args",
        default="",
        help="extra Envoy arguments (NJ_ENVOY_ARGS): --drain-strategy immediate",
    )
    args = parser.parse_args(argv)
    if find_envoy() is None:
        print("no envoy binary: run 'make install' first", file=sys.stderr)
        return 1
    print(f"{args.changes} weight flips, configurator and fetcher every {args.interval:g} s")
    result = measure(args.changes, args.interval, args.seed, args.keep, args.envoy_args)
    path = save(f"propagation-{args.interval:g}s", result)
    print()
    print(table(result["summary"]))
    print()
    print(table([result["context"]]))
    p99 = result["summary"][0]["p99_s"]
    verdict = "meets" if p99 <= TARGET_P99 else "misses"
    print(f"\np99 {p99:.3f} s {verdict} the {TARGET_P99:g} s target; saved to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
