"""The demo: Cloud Map + S3 + CloudWatch on a local moto server, real backends, the
configurator, a fetcher-supervised Envoy gateway, real HTTP through it, a call from a second
mesh through that gateway (PEERS), and a progressive blue -> green rollout (``nightjar shift``)
watched by a probe.

Everything listens on 127.0.0.1 and is torn down on exit, failure or Ctrl-C. ``run_demo``
returns 0 when every step behaved as expected; the integration test calls it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TextIO

import boto3
from botocore.config import Config

from sandbox import cloudmap
from sandbox.backends import Backend, Behaviour
from sandbox.cloudwatch import create_alarm
from sandbox.moto import free_port, moto_server
from shared.s3_store import S3BundleStore

BIN = Path(sys.executable).parent
BUCKET = "nightjar-demo"
GATEWAY = f"{cloudmap.FISH}/gateway"
REEF = "reef.service.local"  # the second mesh: its coral sidecar reaches fish (PEERS)
CORAL = f"{REEF}/coral/main"
REQUESTS = 400
COLORS = ("tuna-blue", "tuna-green")
STEPS = 11
CANARY = {"x-canary": "1"}
SHIFT_STEPS = "25,50,75,100"
SHIFT_EVERY = 7  # seconds per step: green reaches 100 % about 21 s after the start
ALARM = "tuna-green-5xx"


class DemoFailed(Exception):
    """A step did not behave as expected."""


def tuna_settings(color: str, weight: int) -> dict[str, str]:
    settings = {"SERVICE": "tuna", "COLOR": color, "/tuna": str(weight)}
    if color == "blue":
        settings["[private]/tuna/admin"] = "1"
    else:
        settings["[header:x-canary=1]/tuna"] = "1"  # testers reach green whatever its weight
    return settings


class Demo:
    """One demo run; ``out`` receives the narrative."""

    def __init__(self, out: TextIO, workdir: Path) -> None:
        self.out = out
        self.workdir = workdir
        self.step_no = 0
        self.env: dict[str, str] = {}
        self.listener_port = free_port()
        self.admin_port = free_port()
        self.coral_port, self.coral_admin, self.peer_port = free_port(), free_port(), free_port()
        self.backends: dict[str, Backend] = {}
        self.ids: dict[str, str] = {}
        self.cloudmap: Any = None

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def step(self, text: str) -> None:
        self.step_no += 1
        self.say(f"\n[{self.step_no}/{STEPS}] {text}")

    # -- infrastructure ---------------------------------------------------------------------
    @contextmanager
    def moto(self) -> Iterator[str]:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request lines
        with moto_server() as url:
            yield url

    def aws_env(self, endpoint: str) -> None:
        self.env = {
            **os.environ,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": "demo",
            "AWS_REGION": "us-east-1",
            "NJ_BUCKET": BUCKET,
            "NJ_LOG_FORMAT": "json",
        }
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
            self.env.pop(name, None)

    def client(self, service: str) -> Any:
        config = Config(inject_host_prefix=False) if service == "servicediscovery" else None
        factory: Any = boto3.client
        return factory(
            service,
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="demo",
            aws_secret_access_key="demo",
            config=config,
        )

    def run_cli(self, *argv: str, check: bool = True) -> str:
        done = subprocess.run(
            [str(BIN / argv[0]), *argv[1:]],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and done.returncode != 0:
            raise DemoFailed(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-500:]}")
        return done.stdout

    @contextmanager
    def fetcher(
        self, node: str = GATEWAY, ports: tuple[int, int] | None = None
    ) -> Iterator[subprocess.Popen[bytes]]:
        listener, admin = ports or (self.listener_port, self.admin_port)
        name = node.split("/", 1)[1].replace("/", "-")
        env = {
            **self.env,
            "NJ_NODE": node,
            "NJ_CONFIG_DIR": str(self.workdir / name),
            "NJ_LISTENER_PORT": str(listener),
            "NJ_LISTENER_ADDRESS": "127.0.0.1",
            "NJ_ADMIN_PORT": str(admin),
            "NJ_POLL_INTERVAL": "0.5",
            "NJ_DRAIN_SECONDS": "0.2",
            "NJ_ENVOY_LOG_LEVEL": "error",
        }
        log = "fetcher.log" if node == GATEWAY else f"{name}.log"
        with self.background("nightjar-fetcher", env, log, stop_seconds=20) as proc:
            yield proc

    @contextmanager
    def configurator_loop(self) -> Iterator[subprocess.Popen[bytes]]:
        """``nightjar-configurator run`` with 1 s cycles, in the background."""
        served = f"{cloudmap.FISH},{REEF}"  # as configure(): a peer must be served
        env = {**self.env, "NJ_NAMESPACES": served, "NJ_INTERVAL": "1"}
        with self.background("nightjar-configurator", env, "configurator.log", 30) as proc:
            yield proc

    @contextmanager
    def background(
        self, command: str, env: dict[str, str], log_name: str, stop_seconds: float
    ) -> Iterator[subprocess.Popen[bytes]]:
        """``<command> run`` in its own session, logging to ``log_name``; SIGTERM on exit, and
        SIGKILL to its whole group if it is not gone within ``stop_seconds``."""
        log = (self.workdir / log_name).open("wb")
        proc = subprocess.Popen(
            [str(BIN / command), "run"], env=env, stdout=log, stderr=log, start_new_session=True
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=stop_seconds)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            log.close()

    # -- HTTP through Envoy -----------------------------------------------------------------
    def get(
        self, path: str, headers: dict[str, str] | None = None, port: int | None = None
    ) -> tuple[int, str]:
        url = f"http://127.0.0.1:{port or self.listener_port}{path}"
        return self.fetch(urllib.request.Request(url, headers=headers or {}), {})

    @staticmethod
    def fetch(request: urllib.request.Request, proxies: dict[str, str]) -> tuple[int, str]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies))
        try:
            with opener.open(request, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, ""

    def via_coral(self, url: str) -> tuple[int, str]:
        """``url`` fetched with coral's sidecar as the HTTP proxy (what HTTP_PROXY does)."""
        proxy = {"http": f"http://127.0.0.1:{self.coral_port}"}
        return self.fetch(urllib.request.Request(url), proxy)

    def wait_for(self, check: Callable[[], bool], timeout: float, what: str) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                if check():
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.1)
        raise DemoFailed(f"timed out after {timeout:.0f}s waiting for {what}")

    def split(
        self,
        n: int = REQUESTS,
        path: str = "/tuna",
        headers: dict[str, str] | None = None,
        port: int | None = None,
    ) -> Counter[str]:
        seen: Counter[str] = Counter()
        for _ in range(n):
            status, body = self.get(path, headers, port)
            seen[body if status == 200 else f"HTTP {status}"] += 1
        return seen

    def show_split(self, seen: Counter[str], weights: dict[str, int]) -> None:
        total = sum(weights.values())
        self.say(f"    {'color':<12}{'configured':>12}{'observed':>12}")
        for color in COLORS:
            configured = 100 * weights[color] / total
            observed = 100 * seen[color] / sum(seen.values())
            self.say(f"    {color:<12}{configured:>11.0f}%{observed:>11.1f}%")
        other = {k: v for k, v in seen.items() if k not in COLORS}
        if other:
            raise DemoFailed(f"unexpected answers: {other}")

    # -- the story --------------------------------------------------------------------------
    def register_mesh(self) -> None:
        self.cloudmap = self.client("servicediscovery")
        self.client("s3").create_bucket(Bucket=BUCKET)
        ns_id = cloudmap.create_namespace(self.cloudmap)
        for name in ("tuna-blue", "tuna-green", "salmon-blue"):
            self.backends[name] = Backend(name, Behaviour(one_write=True))  # quick probes
        weights = {"tuna-blue": 90, "tuna-green": 10}
        for name in COLORS:
            color = name.split("-")[1]
            service = cloudmap.CloudMapService(
                name,
                tuna_settings(color, weights[name]),
                [cloudmap.Task("127.0.0.1", str(self.backends[name].port))],
            )
            self.ids[name] = cloudmap.register(self.cloudmap, ns_id, service)
        salmon = cloudmap.CloudMapService(
            "salmon-blue",
            {"SERVICE": "salmon", "COLOR": "blue", "/salmon": "1"},
            [cloudmap.Task("127.0.0.1", str(self.backends["salmon-blue"].port))],
        )
        self.ids["salmon-blue"] = cloudmap.register(self.cloudmap, ns_id, salmon)
        # one backend failing every other request, reached on two paths: with and without retries
        self.backends["flaky"] = flaky = Backend("flaky", Behaviour(fail_every=2))
        for name, settings in (
            (
                "flaky-blue",
                {"SERVICE": "flaky", "COLOR": "blue", "/flaky": "1", "RETRIES": "2 on=5xx"},
            ),
            ("raw-blue", {"SERVICE": "raw", "COLOR": "blue", "/raw": "1"}),
        ):
            service = cloudmap.CloudMapService(
                name, settings, [cloudmap.Task("127.0.0.1", str(flaky.port))]
            )
            self.ids[name] = cloudmap.register(self.cloudmap, ns_id, service)
        self.say("    tuna-blue   /tuna=90  [private]/tuna/admin=1")
        self.say("    tuna-green  /tuna=10  [header:x-canary=1]/tuna=1")
        self.say("    salmon-blue /salmon=1")
        self.say("    flaky-blue  /flaky=1  RETRIES='2 on=5xx'   (a backend failing every other")
        self.say("    raw-blue    /raw=1                        request, behind both paths)")
        self.register_reef(ns_id)

    def register_reef(self, fish_id: str) -> None:
        """fish's gateway service (its one task: the demo's gateway Envoy) and a second mesh,
        reef, whose coral sidecar reaches fish through that gateway on its own port."""
        gateway = cloudmap.CloudMapService(
            "fish-gateway",
            {"GATEWAY": "yes"},
            [cloudmap.Task("127.0.0.1", str(self.listener_port))],
        )
        cloudmap.register(self.cloudmap, fish_id, gateway)
        peers = f"{cloudmap.FISH}:{self.peer_port}"
        coral = {"SERVICE": "coral", "COLOR": "main", "/coral": "1", "PEERS": peers}
        reef_id = cloudmap.create_namespace(self.cloudmap, REEF)
        cloudmap.register(self.cloudmap, reef_id, cloudmap.CloudMapService("coral-main", coral))
        self.say("    fish-gateway GATEWAY=yes                  (the gateway's task)")
        self.say(f"    {REEF}: coral-main  PEERS={peers}")

    def configure(self) -> str:
        """One configurator cycle serving both meshes (a peer must be served by it)."""
        namespaces = ("--namespace", cloudmap.FISH, "--namespace", REEF)
        return self.run_cli("nightjar-configurator", "once", *namespaces)

    def cross_mesh(self) -> None:
        """coral's peer port and its own listener (as HTTP proxy) reach fish's public paths
        through fish's gateway; fish's private path stays refused."""
        port = self.peer_port
        self.wait_for(lambda: self.get("/tuna", port=port)[0] == 200, 60, "coral's peer listener")
        seen = self.split(100, port=port)
        self.say(f"    127.0.0.1:{port}/tuna (coral's peer port) x 100   -> {dict(seen)}")
        status, body = self.via_coral(f"http://tuna.{cloudmap.FISH}/tuna")
        self.say(f"    HTTP_PROXY=coral, GET http://tuna.{cloudmap.FISH}/tuna -> {status} {body}")
        private, _ = self.get("/tuna/admin", port=port)
        self.say(f"    private path /tuna/admin from reef: HTTP {private}")
        if set(seen) - set(COLORS) or status != 200 or body not in COLORS or private != 404:
            raise DemoFailed(f"cross-mesh calls misbehaved: {dict(seen)}, {status}, {private}")

    def create_alarm(self) -> None:
        create_alarm(self.client("cloudwatch"), ALARM, "OK")

    def tuna_shift(self) -> Any:
        """The tuna shift's state in the current version (None before the first)."""
        store = S3BundleStore(self.client("s3"), BUCKET, "nightjar")
        read = store.read_manifest()
        if read is None:
            return None
        return store.get_index(read.manifest.version).shifts.get(f"{cloudmap.FISH}/tuna")

    def watch_shift(self) -> float:
        """Probe /tuna every ~2 s, printing observed vs configured, until green has it all."""
        started = time.monotonic()
        steps_seen: set[int] = set()
        self.say(f"    {'time':>6}  {'green observed':>15}  configured")
        while time.monotonic() - started < 90:
            seen = self.split(200)
            state = self.tuna_shift()
            elapsed = time.monotonic() - started
            green = 100 * seen["tuna-green"] / sum(seen.values())
            if state is None or state.percent is None:
                said = "declared weights (90/10)"
            else:
                step = f"step {state.step + 1}/{len(state.steps)}"
                said = f"{state.verdict}, {step}: green {state.percent}%"
                steps_seen.add(state.step)
            self.say(f"    {elapsed:5.1f}s  {green:14.1f}%  {said}")
            if set(seen) - set(COLORS):
                raise DemoFailed(f"unexpected answers during the shift: {dict(seen)}")
            if state is not None and state.verdict == "completed" and green == 100:
                if len(steps_seen) < 3:
                    raise DemoFailed(f"the probe saw only steps {sorted(steps_seen)}")
                return elapsed
            if state is not None and state.verdict == "aborted":
                raise DemoFailed(f"the shift aborted: {state.abort_reason}")
            time.sleep(1.5)
        raise DemoFailed("the shift did not complete within 90 s")

    def close_backends(self) -> None:
        for backend in self.backends.values():
            backend.close()

    def run(self) -> None:
        with ExitStack() as stack:
            self.step("starting a moto server on 127.0.0.1 (S3 + Cloud Map)")
            endpoint = stack.enter_context(self.moto())
            self.aws_env(endpoint)
            self.say(f"    {endpoint}")
            self.step(f"registering {cloudmap.FISH} in Cloud Map, with real HTTP backends")
            stack.callback(self.close_backends)
            self.register_mesh()

            self.step("running one configurator cycle")
            self.say("    " + self.configure().strip())
            v1 = self.run_cli("nightjar", "status", "--json")

            self.step("starting nightjar-fetcher (gateway node) with a real Envoy")
            stack.enter_context(self.fetcher())
            coral = (self.coral_port, self.coral_admin)
            stack.enter_context(self.fetcher(CORAL, coral))  # starts meanwhile, for step 6
            took = self.wait_for(lambda: self.get("/ping")[0] == 200, 60, "Envoy to serve /ping")
            self.say(f"    Envoy answers on 127.0.0.1:{self.listener_port} after {took:.1f}s")

            self.step(f"{REQUESTS} requests to /tuna through the gateway")
            seen = self.split()
            self.show_split(seen, {"tuna-blue": 90, "tuna-green": 10})
            if not 0.80 <= seen["tuna-blue"] / REQUESTS <= 0.97:
                raise DemoFailed(f"blue got {seen['tuna-blue']}/{REQUESTS}, expected about 90%")
            status, _ = self.get("/tuna/admin")
            self.say(f"    private path /tuna/admin through the gateway: HTTP {status}")
            if status != 404:
                raise DemoFailed(f"/tuna/admin answered {status}; it must not be routed")

            self.step("header-routed canary: requests carrying x-canary: 1")
            canary = self.split(100, headers=CANARY)
            self.say(f"    with x-canary: 1    -> {dict(canary)}")
            if canary != Counter({"tuna-green": 100}):
                raise DemoFailed(f"canary requests reached {dict(canary)}, expected green only")

            self.step(f"another mesh: {REEF}'s coral sidecar calls fish through its gateway")
            self.cross_mesh()

            self.step("retries masking a backend that fails every other request")
            raw, retried = self.split(200, "/raw"), self.split(200, "/flaky")
            for label, seen in (
                ("/raw   (no RETRIES)", raw),
                ("/flaky (RETRIES=2 on=5xx)", retried),
            ):
                self.say(f"    {label:<27}-> {seen['flaky']} x 200, {seen['HTTP 503']} x 503")
            if retried["flaky"] < 198 or raw["HTTP 503"] < 60:
                raise DemoFailed(f"retries did not mask the failures: {raw} vs {retried}")

            self.step(
                f"progressive delivery: tuna blue -> green in steps of {SHIFT_STEPS} %, every"
                f" {SHIFT_EVERY}s, aborted if CloudWatch alarm {ALARM} fires"
            )
            self.create_alarm()
            start = ["shift", "start", "tuna", "--to", "green", "--steps", SHIFT_STEPS]
            start += ["--every", f"{SHIFT_EVERY}s", "--alarm", ALARM, "--namespace", cloudmap.FISH]
            self.say(f"    $ nightjar {' '.join(start)}")
            for line in self.run_cli("nightjar", *start).splitlines():
                self.say(f"      {line}")
            self.say("    nightjar-configurator run (1 s cycles) moves the weights; the probe:")
            stack.enter_context(self.configurator_loop())
            took = self.watch_shift()
            self.say(f"    green serves all of /tuna {took:.1f}s after the shift started")

            self.step("nightjar shift status, then finish: the final weights become the declared")
            for shift_argv in (
                ("shift", "status"),
                ("shift", "finish", "tuna", "--namespace", cloudmap.FISH),
            ):
                self.say(f"    $ nightjar {' '.join(shift_argv)}")
                for line in self.run_cli("nightjar", *shift_argv).splitlines():
                    self.say(f"      {line}")
            current = json.loads(self.run_cli("nightjar", "status", "--json"))["version"]
            time.sleep(2.5)  # two more configurator cycles
            after = json.loads(self.run_cli("nightjar", "status", "--json"))["version"]
            if after != current:
                raise DemoFailed(f"a version was published after finish: {after}")
            self.say(f"    the next cycles published nothing: still {after}")
            seen = self.split()
            self.show_split(seen, {"tuna-blue": 0, "tuna-green": 100})
            if seen["tuna-green"] != REQUESTS:
                raise DemoFailed(f"green got {seen['tuna-green']}/{REQUESTS}, expected all")

            self.step("what operators see: nightjar status, versions, diff")
            first = json.loads(v1)["version"]
            for argv in (("status",), ("versions",), ("diff", first, "--node", GATEWAY)):
                self.say(f"    $ nightjar {' '.join(argv)}")
                for line in self.run_cli("nightjar", *argv).splitlines():
                    self.say(f"      {line}")
        self.say("\ndemo finished: every step behaved as expected; everything is torn down.")


def run_demo(out: TextIO = sys.stdout) -> int:
    """Run the demo; 0 on success, 1 when a step failed, 130 on Ctrl-C."""
    with tempfile.TemporaryDirectory(prefix="nightjar-demo-") as tmp:
        demo = Demo(out, Path(tmp))
        try:
            demo.run()
            return 0
        except DemoFailed as err:
            demo.say(f"\ndemo FAILED: {err}")
            log = Path(tmp) / "fetcher.log"
            if log.exists():
                demo.say(
                    "last fetcher log lines:\n" + "\n".join(log.read_text().splitlines()[-15:])
                )
            return 1
        except KeyboardInterrupt:
            demo.say("\ninterrupted; everything is torn down.")
            return 130
