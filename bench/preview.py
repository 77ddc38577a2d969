"""``nightjar render --mesh M --out D`` on a synthetic mesh: CPU of the whole process.

The command runs in a fresh interpreter that reports its own ``RUSAGE_SELF`` as it exits, so
interpreter start-up, imports, reading the mesh file, the build and writing the output count;
Envoy's validate runs (child processes) are reported apart, as ``RUSAGE_CHILDREN``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from sandbox.synthetic import synthetic_mesh

_RUNNER = """
import atexit, json, resource, sys
def report():
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    sys.stderr.write("BENCH " + json.dumps({"cpu": me.ru_utime + me.ru_stime,
        "children_cpu": kids.ru_utime + kids.ru_stime, "rss_kib": me.ru_maxrss}) + "\\n")
atexit.register(report)
from nightjar_cli.cli import main
sys.argv = ["nightjar", *sys.argv[1:]]
main()
"""


def mesh_file(services: int, endpoints: int, path: Path) -> None:
    """Write the synthetic mesh in the mesh-file shape (docs/cli.md), as block-style YAML or,
    for a ``.json`` path, as JSON."""
    raw = synthetic_mesh(services, 1, endpoints).scan(["bench0.local"]).namespaces
    doc = {
        "namespaces": [
            {
                "name": ns.name,
                "services": [
                    {
                        "name": svc.name,
                        "instances": [
                            {"id": i.id, "attributes": i.attributes, "health": i.health}
                            for i in svc.instances
                        ],
                    }
                    for svc in ns.services
                ],
            }
            for ns in raw
        ]
    }
    path.write_text(json.dumps(doc) if path.suffix == ".json" else yaml.safe_dump(doc))


def measure(services: int = 1000, endpoints: int = 5, suffix: str = ".yaml") -> dict[str, Any]:
    """One ``nightjar render`` of ``services`` service-colors x ``endpoints``."""
    with tempfile.TemporaryDirectory(prefix="nightjar-bench-render-") as tmp:
        mesh = Path(tmp) / f"mesh{suffix}"
        mesh_file(services, endpoints, mesh)
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _RUNNER, "render", "--mesh", str(mesh), "--out", f"{tmp}/out"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        wall = time.perf_counter() - started
        files = sum(1 for p in Path(tmp, "out").rglob("*") if p.is_file())
    if done.returncode != 0:
        raise RuntimeError(f"nightjar render failed: {done.stderr[-2000:]}")
    line = next(ln for ln in done.stderr.splitlines() if ln.startswith("BENCH "))
    got = json.loads(line.removeprefix("BENCH "))
    return {
        "command": f"nightjar render --mesh M{suffix} --out D",
        "service_colors": services,
        "endpoints_per_service_color": endpoints,
        "process_cpu_s": round(got["cpu"], 3),
        "envoy_validate_cpu_s": round(got["children_cpu"], 3),
        "wall_s": round(wall, 3),
        "peak_rss_mib": round(got["rss_kib"] / 1024, 1),
        "files_on_disk": files,
    }


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    print(json.dumps([measure(size, suffix=suffix) for suffix in (".yaml", ".json")]))
