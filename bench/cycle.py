"""Configurator cycle cost for one mesh size: cold, unchanged, and one cycle per change type.

Runs in its own process (``python -m bench.cycle SERVICES NAMESPACES``; the suite starts one
per size) so peak RSS belongs to that size. The real pipeline runs (conventions, mesh, chevron,
``envoy --mode validate``) on an in-memory store and a static discovery source: it measures our
code and Envoy, not S3 or Cloud Map latency. CPU is this process's (all its threads); Envoy's
validate runs are child processes, reported apart as wall seconds.

Each row carries its lower bound, measured in the same process: JSON-parsing and sha256-hashing
every distinct file of the version the cycle leaves current (the files converted to JSON
beforehand). ``cpu_over_bound`` is the row's CPU over that bound.
"""

from __future__ import annotations

import hashlib
import json
import resource
import sys
import time
from dataclasses import dataclass
from typing import Any

import yaml

from configurator.cycle import Configurator
from configurator.discovery import StaticDiscovery
from configurator.render import TemplateLibrary
from configurator.validate import EnvoyValidator
from sandbox.synthetic import CHANGES, namespace_names, synthetic_mesh
from shared.envoy_bin import find_envoy
from shared.memory_store import MemoryBundleStore
from shared.models import NodeFiles, VersionIndex, sidecar_node_id
from shared.store import OBJECTS_DIR

ENDPOINTS = 5
WATCHED = ("svc5", "blue")  # the sidecar whose downloads are reported (not touched by changes)


class CountingStore(MemoryBundleStore):
    """A memory store that counts PUT requests and their bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.puts = 0
        self.put_bytes = 0
        self.object_bytes = 0

    def _put(
        self, key: str, data: bytes, *, if_match: str | None = None, if_absent: bool = False
    ) -> str:
        self.puts += 1
        self.put_bytes += len(data)
        if key.startswith(self.prefix + OBJECTS_DIR) or key.startswith(OBJECTS_DIR):
            self.object_bytes += len(data)
        return super()._put(key, data, if_match=if_match, if_absent=if_absent)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Run:
    """One measured cycle."""

    kind: str
    outcome: str
    cpu_s: float
    wall_s: float
    envoy_runs: int
    envoy_s: float
    s3_puts: int
    s3_put_bytes: int
    objects_uploaded_bytes: int
    version: str


class Bench:
    """A configurator over a counting store, measured one cycle at a time."""

    def __init__(self, services: int, namespaces: int) -> None:
        self.services, self.namespaces = services, namespaces
        self.store = CountingStore()
        self.validator = EnvoyValidator(find_envoy())
        self.cfg = Configurator(
            namespaces=namespace_names(namespaces),
            store=self.store,
            discovery=self.mesh(None),
            templates=TemplateLibrary.from_dir(),
            validator=self.validator,
        )

    def mesh(self, change: str | None) -> StaticDiscovery:
        return synthetic_mesh(self.services, self.namespaces, ENDPOINTS, change)

    def cycle(self, kind: str, change: str | None) -> Run:
        self.cfg.discovery = self.mesh(change)
        store, validator = self.store, self.validator
        puts, put_bytes, obj = store.puts, store.put_bytes, store.object_bytes
        runs, envoy_s = validator.envoy_runs, validator.envoy_seconds
        cpu, wall = cpu_seconds(), time.perf_counter()
        report = self.cfg.run_cycle()
        cpu, wall = cpu_seconds() - cpu, time.perf_counter() - wall
        return Run(
            kind,
            report.outcome,
            cpu,
            wall,
            validator.envoy_runs - runs,
            validator.envoy_seconds - envoy_s,
            store.puts - puts,
            store.put_bytes - put_bytes,
            store.object_bytes - obj,
            report.version or "",
        )

    def index(self, version: str) -> tuple[VersionIndex, int]:
        read = self.store.read_manifest()
        assert read is not None and read.manifest.version == version
        index, ref = self.store.read_index_ref(version)
        return index, len(self.store._read(ref.key))

    def lower_bound(self, version: str) -> tuple[float, int]:
        """Seconds to JSON-parse and sha256 every distinct file of ``version``, and their bytes."""
        index, _ = self.index(version)
        texts = []
        for digest in sorted(index.digests()):
            doc = yaml.load(self.store.get_object(digest), Loader=yaml.CSafeLoader)
            texts.append(json.dumps(doc).encode())
        best = float("inf")
        for _ in range(3):
            started = time.process_time()
            for text in texts:
                json.loads(text)
                hashlib.sha256(text).hexdigest()
            best = min(best, time.process_time() - started)
        return best, sum(len(t) for t in texts)


def fetcher_bytes(before: VersionIndex, after: VersionIndex, index_bytes: int) -> tuple[int, int]:
    """What the watched sidecar downloads for a new version (index + changed files), and the
    least it could (its changed files)."""
    node = sidecar_node_id(namespace_names(1)[0], *WATCHED)
    old: NodeFiles = before.files_of(node) or {}
    new: NodeFiles = after.files_of(node) or {}
    changed = sum(e.size for name, e in new.items() if old.get(name) != e)
    return index_bytes + changed, changed


def measure(services: int, namespaces: int, repeats: int) -> list[dict[str, Any]]:
    """Every row of one size: best of ``repeats`` per measured cycle."""
    best: dict[str, dict[str, Any]] = {}
    for _ in range(repeats):
        bench = Bench(services, namespaces)
        runs = [bench.cycle("cold", None), bench.cycle("unchanged", None)]
        baseline = runs[0].version
        bound, bound_bytes = bench.lower_bound(baseline)
        base_index, _ = bench.index(baseline)
        rows = [_row(run, bound) for run in runs]
        for change in CHANGES:
            run = bench.cycle(f"changed:{change}", change)
            index, index_bytes = bench.index(run.version)
            row = _row(run, bound)
            got, least = fetcher_bytes(base_index, index, index_bytes)
            row.update(
                fetcher_download_bytes=got,
                fetcher_min_bytes=least,
                min_upload_bytes=run.objects_uploaded_bytes,
            )
            rows.append(row)
            back = bench.cycle("revert", None)  # not reported: returns to the baseline
            base_index, _ = bench.index(back.version)
        for row in rows:
            key = row["cycle"]
            if key not in best or row["cpu_s"] < best[key]["cpu_s"]:
                best[key] = row
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for row in best.values():
        row.update(
            service_colors=services,
            namespaces=namespaces,
            bound_s=round(bound, 4),
            bound_bytes=bound_bytes,
            peak_rss_mib=round(peak, 1),
        )
        row["cpu_over_bound"] = round(row["cpu_s"] / bound, 1) if bound else None
    return list(best.values())


def _row(run: Run, bound: float) -> dict[str, Any]:
    return {
        "cycle": run.kind,
        "outcome": run.outcome,
        "cpu_s": round(run.cpu_s, 4),
        "wall_s": round(run.wall_s, 4),
        "envoy_runs": run.envoy_runs,
        "envoy_validate_s": round(run.envoy_s, 3),
        "s3_puts": run.s3_puts,
        "s3_put_bytes": run.s3_put_bytes,
    }


def main(argv: list[str]) -> int:
    services, namespaces = int(argv[0]), int(argv[1])
    repeats = int(argv[2]) if len(argv) > 2 else 3
    print(json.dumps(measure(services, namespaces, repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
