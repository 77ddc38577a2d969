"""Configurator cycle cost by mesh size: cold, unchanged, one change; ratios within one run.

Uses the real pipeline (conventions, mesh, chevron, envoy --mode validate) on an in-memory store
and a static discovery source, so it measures our code and Envoy, not S3 or Cloud Map latency.
Ratios compare runs made minutes apart on the same machine; absolute seconds are noisy.
"""

from __future__ import annotations

import json
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from configurator.cycle import Configurator
from configurator.discovery import RawInstance, RawNamespace, RawService, StaticDiscovery
from configurator.render import TemplateLibrary
from configurator.validate import EnvoyValidator
from shared.envoy_bin import find_envoy
from shared.memory_store import MemoryBundleStore

SIZES = (10, 100, 400)
REPEATS = 3


def mesh(services: int, variant: int = 0) -> StaticDiscovery:
    raw = []
    for n in range(services):
        path = f"/svc{n}" if n or variant == 0 else f"/svc0/v{variant}"
        attrs = {"SERVICE": f"svc{n}", "COLOR": "blue", path: "1"}
        tasks = tuple(
            RawInstance(
                f"t{k}",
                {
                    "AWS_INSTANCE_IPV4": f"10.{n // 250}.{n % 250}.{k + 1}",
                    "AWS_INSTANCE_PORT": "8080",
                },
            )
            for k in range(3)
        )
        raw.append(
            RawService(f"s{n}", f"svc{n}-blue", (RawInstance("service-settings", attrs), *tasks))
        )
    return StaticDiscovery([RawNamespace("ns", "bench.local", tuple(raw))])


def timed(configurator: Configurator) -> tuple[float, str]:
    started = time.perf_counter()
    report = configurator.run_cycle()
    return time.perf_counter() - started, report.outcome


def fresh(services: int) -> tuple[Configurator, EnvoyValidator]:
    validator = EnvoyValidator(find_envoy())
    configurator = Configurator(
        namespaces=["bench.local"],
        store=MemoryBundleStore(),
        discovery=mesh(services),
        templates=TemplateLibrary.from_dir(),
        validator=validator,
    )
    return configurator, validator


def peak_mib(services: int) -> float:
    """Peak Python heap of one cold cycle (traced separately: tracing slows the timed runs)."""
    cfg, _ = fresh(services)
    tracemalloc.start()
    cfg.run_cycle()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return round(peak / 2**20, 1)


def measure(services: int) -> dict[str, Any]:
    best: dict[str, float] = {}
    runs = 0
    for attempt in range(REPEATS):
        cfg, validator = fresh(services)
        cold, outcome = timed(cfg)
        assert outcome == "published"
        warm, outcome = timed(cfg)
        assert outcome == "unchanged"
        cfg.discovery = mesh(services, variant=attempt + 1)  # one service's path changes
        change, outcome = timed(cfg)
        assert outcome == "published"
        for key, value in (("cold", cold), ("unchanged", warm), ("one_change", change)):
            best[key] = min(best.get(key, value), value)
        runs = validator.envoy_runs
    return {
        "service_colors": services,
        "nodes": services + 1,
        "cold_s": round(best["cold"], 4),
        "unchanged_s": round(best["unchanged"], 4),
        "one_change_s": round(best["one_change"], 4),
        "unchanged_over_cold": round(best["unchanged"] / best["cold"], 3),
        "envoy_runs_3_cycles": runs,
        "peak_mib_cold": peak_mib(services),
    }


def main() -> int:
    if find_envoy() is None:
        print("no envoy binary: run 'make install' first", file=sys.stderr)
        return 1
    rows = [measure(n) for n in SIZES]
    columns = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(str(row[c]).ljust(w) for c, w in zip(columns, widths, strict=True)))
    out = Path("bench-results")
    out.mkdir(exist_ok=True)
    path = out / "configurator-cycle.json"
    path.write_text(json.dumps({"repeats": REPEATS, "rows": rows}, indent=2))
    print(f"\nbest of {REPEATS}; saved to {path}")
    return 0


sys.exit(main())
