"""``make bench``: the configurator cycle suite, the offline preview, Cloud Map requests, the
fetcher's idle footprint and Envoy's apply time (``bench.fetcher``).

Each mesh size runs in its own process (``bench.cycle``) so its peak RSS is its own; rows are
the best of ``REPEATS`` runs (one run at 5000). Every row carries the ratio of its CPU to a lower
bound measured in the same process (JSON parse + sha256 of the version's files). Results are
printed as tables and saved to ``bench-results/bench.json``; docs/performance.md explains them.
``python -m bench --quick`` runs the small sizes only.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

from bench import cloudmap_calls, fetcher, preview
from bench.tables import save, table
from shared.envoy_bin import find_envoy

SIZES = ((10, 1), (100, 1), (1000, 1), (1000, 10), (5000, 1))
QUICK = ((10, 1), (100, 1))
REPEATS = 3


def cycle_rows(services: int, namespaces: int) -> list[dict[str, Any]]:
    repeats = 1 if services >= 5000 else REPEATS
    done = subprocess.run(
        [sys.executable, "-m", "bench.cycle", str(services), str(namespaces), str(repeats)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.cycle {services} {namespaces} failed: {done.stderr[-3000:]}")
    rows: list[dict[str, Any]] = json.loads(done.stdout.splitlines()[-1])
    calls = cloudmap_calls.scan_requests(services, namespaces)
    for row in rows:
        row["cloud_map_requests"] = calls
    return rows


def exponents(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """How each cycle's CPU grows with size: the slope of log(cpu) over log(size), fitted by
    least squares over the one-namespace sizes of 100 and more."""
    fits = []
    for kind in sorted({r["cycle"] for r in rows}):
        points = [
            (math.log(r["service_colors"]), math.log(r["cpu_s"]))
            for r in rows
            if r["cycle"] == kind
            and r["namespaces"] == 1
            and r["service_colors"] >= 100
            and r["cpu_s"] > 0
        ]
        if len(points) < 2:
            continue
        mx = sum(x for x, _ in points) / len(points)
        my = sum(y for _, y in points) / len(points)
        slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
        fits.append({"cycle": kind, "exponent": round(slope, 2), "sizes": len(points)})
    return fits


CYCLE_COLUMNS = [
    "service_colors",
    "namespaces",
    "cycle",
    "cpu_s",
    "wall_s",
    "envoy_runs",
    "envoy_validate_s",
    "bound_s",
    "cpu_over_bound",
    "peak_rss_mib",
    "cloud_map_requests",
    "s3_puts",
    "s3_put_bytes",
]
BYTES_COLUMNS = [
    "service_colors",
    "namespaces",
    "cycle",
    "s3_put_bytes",
    "min_upload_bytes",
    "fetcher_download_bytes",
    "fetcher_min_bytes",
]


def main(argv: list[str]) -> int:
    if find_envoy() is None:
        print("no envoy binary: run 'make install' first", file=sys.stderr)
        return 1
    sizes = QUICK if "--quick" in argv else SIZES
    rows: list[dict[str, Any]] = []
    for services, namespaces in sizes:
        print(f"... {services} service-colors in {namespaces} namespace(s)", file=sys.stderr)
        rows += cycle_rows(services, namespaces)
    print("configurator cycle (CPU of the configurator process; Envoy validate apart)")
    print(table(rows, CYCLE_COLUMNS))
    print("\nbytes per change (uploads include the index and manifest; min = changed files)")
    print(table([r for r in rows if "fetcher_min_bytes" in r], BYTES_COLUMNS))
    fits = exponents(rows)
    print("\ngrowth: cpu ~ size^exponent\n" + table(fits, ["cycle", "exponent", "sizes"]))
    size = 100 if "--quick" in argv else 1000
    print(f"... nightjar render at {size}", file=sys.stderr)
    renders = [preview.measure(size, suffix=s) for s in (".yaml", ".json")]
    print("\noffline preview (whole process)")
    print(table(renders, list(renders[0])))
    print("... fetcher footprint and Envoy apply", file=sys.stderr)
    footprint = fetcher.run(fetcher.CLUSTERS[:2] if "--quick" in argv else fetcher.CLUSTERS)
    for bench in ("fetcher idle", "envoy apply"):
        print(f"\n{bench}")
        print(table([r for r in footprint if r["bench"] == bench]))
    result = {"cycle": rows, "growth": fits, "preview": renders, "fetcher": footprint}
    print(f"\nsaved to {save('bench', result)}")
    return 0


sys.exit(main(sys.argv[1:]))
