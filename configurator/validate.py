"""Validate: rendered files must parse, and Envoy itself must accept the node's resources.

``lds.yaml`` and ``cds.yaml`` are file-based xDS documents; their resources are moved into the
``static_resources`` of a throwaway bootstrap and checked with ``envoy --mode validate``. A
cluster that reads its endpoints from a file of the bundle (file-based EDS) must find exactly one
ClusterLoadAssignment named like it there; the validator inlines it into a STATIC copy of the
cluster, so Envoy checks the endpoints too. Results
are cached by the digest of the files, so identical nodes (most sidecars of a namespace) are
validated once; parsed files are cached by their digest, so a cycle parses only the files that
changed. ``submit`` parses at once and runs Envoy in a worker thread, so Envoy checks of distinct
nodes run in parallel with each other and with the rest of the cycle. Without an envoy binary
only the parse-level checks run (said once in the log).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from threading import Lock
from typing import Any

import yaml

from shared.digest import sha256_hex
from shared.logs import get_logger
from shared.models import CDS_FILE, LDS_FILE
from shared.placeholders import CONFIG_DIR, fill_placeholders, task_values

log = get_logger(__name__)

RESOURCE_TYPES = {
    LDS_FILE: ("listeners", "type.googleapis.com/envoy.config.listener.v3.Listener"),
    CDS_FILE: ("clusters", "type.googleapis.com/envoy.config.cluster.v3.Cluster"),
}
# Sample ports below 1024, where no PEERS listener can be: Envoy refuses two listeners on one
# address even in validate mode, and a peer port must not fail for a task value it never meets.
SAMPLE_TASK_VALUES = task_values(
    listener_address="127.0.0.1", listener_port=1000, admin_port=1001, config_dir="/etc/nightjar"
)
ASSIGNMENT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
BUNDLE_DIR = f"{SAMPLE_TASK_VALUES[CONFIG_DIR]}/current/"
ENVOY_TIMEOUT = 60
PARSED_CACHE_BYTES = 16 << 20  # source bytes whose parsed form is kept between cycles
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_JSON_BODY = re.compile(
    r"\A(?:[ \t]*(?:#[^\n]*)?\n)*[ \t]*(\{.*\})\s*\Z", re.DOTALL
)  # libyaml when PyYAML was built with it


@dataclass(frozen=True)
class Verdict:
    """Whether a node's files passed, why not, and whether Envoy itself checked them."""

    ok: bool
    errors: tuple[str, ...] = ()
    checked_by_envoy: bool = False


def parse_document(name: str, data: bytes) -> Any:
    """One YAML or JSON file as data; ValueError (or yaml.YAMLError) when it does not parse.

    A YAML file whose content, after its leading comment lines, is one JSON object is read as
    JSON (the same data, parsed many times faster); anything else goes to the YAML parser."""
    text = data.decode()
    if name.endswith(".json"):
        return json.loads(text)
    body = _JSON_BODY.match(text)
    if body is not None:
        try:
            return json.loads(body.group(1))
        except ValueError:
            pass  # not JSON after all (YAML flow style): the YAML parser decides
    return yaml.load(text, Loader=_LOADER)


class ParsedCache:
    """Parsed documents by the digest of their (filled) bytes, least recently used dropped
    first once the bytes they came from pass ``limit``. Callers must not modify a document."""

    def __init__(self, limit: int = PARSED_CACHE_BYTES) -> None:
        self.limit = limit
        self._docs: OrderedDict[str, tuple[int, Any]] = OrderedDict()
        self._bytes = 0
        self.parses = 0

    def parse(self, name: str, data: bytes) -> Any:
        key = sha256_hex(data) + (":json" if name.endswith(".json") else ":yaml")
        if key in self._docs:
            self._docs.move_to_end(key)
            return self._docs[key][1]
        self.parses += 1
        doc = parse_document(name, data)
        self._docs[key] = (len(data), doc)
        self._bytes += len(data)
        while self._bytes > self.limit and len(self._docs) > 1:
            self._bytes -= self._docs.popitem(last=False)[1][0]
        return doc


def parse_files(
    files: dict[str, bytes], cache: ParsedCache | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Parse every YAML/JSON file; return the parsed xDS documents and the errors."""
    parsed: dict[str, Any] = {}
    errors = []
    for name, data in sorted(files.items()):
        if not name.endswith((".yaml", ".yml", ".json")):
            continue
        try:
            parsed[name] = parse_document(name, data) if cache is None else cache.parse(name, data)
        except (UnicodeDecodeError, ValueError, yaml.YAMLError) as err:
            errors.append(f"{name} does not parse: {' '.join(str(err).split())}")
    for name, (_, type_url) in RESOURCE_TYPES.items():
        if name not in files:
            errors.append(f"{name} is missing; every node needs it")
        elif name in parsed:
            errors.extend(_check_resources(name, parsed[name], type_url))
    if not errors:
        for cluster in parsed["cds.yaml"]["resources"]:
            errors.extend(_check_endpoint_file(cluster, parsed))
    return parsed, errors


def _endpoint_file(cluster: dict[str, Any]) -> str | None:
    """The bundle file a file-based EDS cluster reads (as the path names it), else None."""
    source = (cluster.get("eds_cluster_config") or {}).get("eds_config") or {}
    path = (
        (source.get("path_config_source") or {}).get("path")
        if cluster.get("type") == "EDS"
        else None
    )
    return path if isinstance(path, str) else None


def _check_endpoint_file(cluster: Any, parsed: dict[str, Any]) -> list[str]:
    path = _endpoint_file(cluster) if isinstance(cluster, dict) else None
    if path is None:
        return []
    name = path.removeprefix(BUNDLE_DIR)
    where = f"cluster {cluster.get('name')!r} reads endpoints from {path!r}"
    if name == path or "/" in name:
        return [f"{where}; endpoint files must be ${{NJ_CONFIG_DIR}}/current/<file of the bundle>"]
    if name not in parsed:
        return [f"{where}, which the node does not carry (or which does not parse)"]
    doc = parsed[name]
    resources = doc.get("resources") if isinstance(doc, dict) else None
    if not isinstance(resources, list) or len(resources) != 1 or not isinstance(resources[0], dict):
        return [f"{name} must hold exactly one ClusterLoadAssignment (Envoy reads one per file)"]
    wanted = (cluster.get("eds_cluster_config") or {}).get("service_name") or cluster.get("name")
    got = resources[0]
    if got.get("@type") != ASSIGNMENT or got.get("cluster_name") != wanted:
        return [f"{name} must be the ClusterLoadAssignment of {wanted!r} (@type {ASSIGNMENT})"]
    return []


def _inline_endpoints(cluster: dict[str, Any], parsed: dict[str, Any]) -> dict[str, Any]:
    """A STATIC copy of a file-based EDS cluster, its endpoint file inlined."""
    path = _endpoint_file(cluster)
    if path is None:
        return cluster
    assignment = parsed[path.removeprefix(BUNDLE_DIR)]["resources"][0]
    static = {k: v for k, v in cluster.items() if k not in ("eds_cluster_config", "type")}
    load = {k: v for k, v in assignment.items() if k != "@type"}
    return {**static, "type": "STATIC", "load_assignment": load}


def _check_resources(name: str, doc: Any, type_url: str) -> list[str]:
    resources = doc.get("resources") if isinstance(doc, dict) else None
    if not isinstance(resources, list):
        return [f"{name} must be a mapping with a 'resources' list"]
    bad = [
        i for i, r in enumerate(resources) if not isinstance(r, dict) or r.get("@type") != type_url
    ]
    if bad:
        return [
            f"{name} resource #{bad[0]} is not a {type_url.rsplit('.', 1)[-1]} (@type {type_url})"
        ]
    return []


def fill_sample_values(files: dict[str, bytes]) -> dict[str, bytes]:
    """The files with per-task placeholders filled by sample values (as a fetcher would)."""
    filled = dict(files)
    for name, data in files.items():
        try:
            filled[name] = fill_placeholders(data, SAMPLE_TASK_VALUES)
        except UnicodeDecodeError:
            pass  # not text: parse_files reports it
    return filled


def compose_bootstrap(parsed: dict[str, Any]) -> dict[str, Any]:
    """A bootstrap whose static_resources hold the parsed, filled listeners and clusters."""
    static: dict[str, Any] = {}
    for name, (section, _) in RESOURCE_TYPES.items():
        resources = parsed[name]["resources"]
        static[section] = [{k: v for k, v in r.items() if k != "@type"} for r in resources]
    static["clusters"] = [_inline_endpoints(c, parsed) for c in static["clusters"]]
    return {"node": {"id": "nightjar-validate", "cluster": "nightjar"}, "static_resources": static}


def _done(verdict: Verdict) -> Future[Verdict]:
    future: Future[Verdict] = Future()
    future.set_result(verdict)
    return future


class EnvoyValidator:
    """Validates node files, caching verdicts by content digest and parses by file digest."""

    def __init__(self, envoy: Path | None, workers: int | None = None) -> None:
        self.envoy = envoy
        self.workers = workers or min(4, os.cpu_count() or 1)
        self._verdicts: dict[str, Future[Verdict]] = {}
        self._parsed = ParsedCache()
        self._pool: ThreadPoolExecutor | None = None
        self._lock = Lock()
        self._said_missing = False
        self.checks = 0  # validations made (cache misses)
        self.envoy_runs = 0
        self.envoy_seconds = 0.0  # wall time of Envoy runs, summed over runs

    @property
    def parses(self) -> int:
        """Files parsed (cache misses), for tests and the bench."""
        return self._parsed.parses

    def validate(self, files: dict[str, bytes]) -> Verdict:
        """The verdict on ``files`` (waits for Envoy)."""
        return self.submit(files).result()

    def submit(self, files: dict[str, bytes], key: str | None = None) -> Future[Verdict]:
        """Start validating ``files``: parse checks now, Envoy in a worker thread.

        ``key`` identifies the content when the caller knows it (equal keys, equal files)."""
        if key is None:
            key = sha256_hex(
                json.dumps({n: sha256_hex(d) for n, d in files.items()}, sort_keys=True).encode()
            )
        if key not in self._verdicts:
            self.checks += 1
            self._verdicts[key] = self._start(files)
        return self._verdicts[key]

    def _start(self, files: dict[str, bytes]) -> Future[Verdict]:
        parsed, errors = parse_files(fill_sample_values(files), self._parsed)
        if errors:
            return _done(Verdict(False, tuple(errors)))
        if self.envoy is None:
            if not self._said_missing:
                log.warning("validate.envoy_missing", detail="no envoy binary; parse checks only")
                self._said_missing = True
            return _done(Verdict(True))
        bootstrap = json.dumps(compose_bootstrap(parsed))
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="envoy-validate")
        return self._pool.submit(self._envoy_verdict, bootstrap)

    def _envoy_verdict(self, bootstrap: str) -> Verdict:
        problem = self._run_envoy(bootstrap)
        return Verdict(problem is None, (problem,) if problem else (), checked_by_envoy=True)

    def _run_envoy(self, bootstrap: str) -> str | None:
        assert self.envoy is not None
        started = time.monotonic()
        try:
            return self._envoy_problem(bootstrap)
        finally:
            with self._lock:
                self.envoy_runs += 1
                self.envoy_seconds += time.monotonic() - started

    def _envoy_problem(self, bootstrap: str) -> str | None:
        assert self.envoy is not None
        with tempfile.TemporaryDirectory(prefix="nightjar-validate-") as tmp:
            path = Path(tmp) / "bootstrap.json"
            path.write_text(bootstrap)
            cmd = [str(self.envoy), "--mode", "validate", "-c", str(path), "--log-level", "error"]
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=ENVOY_TIMEOUT)
            except (OSError, subprocess.TimeoutExpired) as err:
                return f"envoy --mode validate could not run: {err}"
        if done.returncode == 0:
            return None
        lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
        return "envoy rejected the node: " + (" | ".join(lines[-3:]) or f"exit {done.returncode}")
