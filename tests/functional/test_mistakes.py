"""Every operator mistake of issue 10 point 6, run as the installed console scripts: the exit
code docs/cli.md documents, one ``Error:`` sentence naming the problem, never a traceback.

Log records (JSON, one object per line) may accompany the sentence; every other line counts.
AWS answers come from a loopback endpoint that returns one S3 error (tests/faults.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox.moto import free_port
from tests.faults import ErrorS3

BIN = Path(sys.executable).parent
NODE = "fish.service.local/gateway"


def closed_endpoint() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: fake credentials, a region, a config dir, no real AWS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NJ_", "AWS_"))}
    return {
        **env,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_ENDPOINT_URL": closed_endpoint(),
        "NJ_BUCKET": "mesh",
        "NJ_NODE": NODE,
        "NJ_NAMESPACES": "fish.service.local",
        "NJ_CONFIG_DIR": str(tmp_path / "cfg"),
        "NJ_LOG_FORMAT": "json",
    }


def sentence_lines(output: str) -> list[str]:
    """The lines of ``output`` that are not JSON log records."""
    lines = []
    for line in output.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            lines.append(line)
            continue
        if not isinstance(record, dict) or "event" not in record:
            lines.append(line)
    return lines


def check(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "Aborted!" not in output, output
    assert result.returncode == code, output
    (line,) = sentence_lines(output)
    for word in words:
        assert word in line, line


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / argv[0]), *argv[1:]], env=env, capture_output=True, text=True, timeout=60
    )


@dataclass(frozen=True)
class Mistake:
    """One row: the command, what is wrong in its environment, the exit code, the words."""

    name: str
    argv: list[str]
    env: dict[str, str]
    code: int
    words: tuple[str, ...]


def mistakes(where: dict[str, str]) -> list[Mistake]:
    """The table; ``where`` holds the loopback endpoints, ports and paths the rows point at."""
    no_creds = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    taken = {"NJ_METRICS_PORT": where["taken"]}
    foreign = {"NJ_METRICS_PORT": where["free"], "NJ_METRICS_HOST": "192.0.2.1"}
    prefix = "no manifest under s3://mesh/wrong/ — is NJ_PREFIX right?"
    rows = [
        Mistake("port in use", ["nightjar-configurator", "once"], taken, 1, ("already in use",)),
        Mistake("port in use", ["nightjar-fetcher", "run", "--no-envoy"], taken, 1, ("in use",)),
        Mistake(
            "foreign host", ["nightjar-configurator", "once"], foreign, 2, ("NJ_METRICS_HOST",)
        ),
        Mistake(
            "foreign host", ["nightjar-fetcher", "run", "--no-envoy"], foreign, 2, ("192.0.2.1",)
        ),
        Mistake(
            "log level",
            ["nightjar-fetcher", "once"],
            {"NJ_LOG_LEVEL": "verbose"},
            2,
            ("NJ_LOG_LEVEL",),
        ),
        Mistake(
            "log level",
            ["nightjar-configurator", "once"],
            {"NJ_LOG_LEVEL": "verbose"},
            2,
            ("'verbose'",),
        ),
        Mistake(
            "log level", ["nightjar", "status"], {"NJ_LOG_LEVEL": "verbose"}, 2, ("NJ_LOG_LEVEL",)
        ),
        Mistake(
            "quote",
            ["nightjar-fetcher", "run"],
            {"NJ_ENVOY_ARGS": '--a "b'},
            2,
            ("NJ_ENVOY_ARGS", "quot"),
        ),
        Mistake(
            "templates dir",
            ["nightjar-configurator", "once"],
            {"NJ_TEMPLATES_DIR": "/no/such/templates"},
            1,
            ("templates dir /no/such/templates does not exist",),
        ),
        Mistake(
            "config dir",
            ["nightjar-fetcher", "once"],
            {"NJ_CONFIG_DIR": where["under_file"]},
            1,
            ("cannot be created", "NJ_CONFIG_DIR"),
        ),
        Mistake(
            "config dir",
            ["nightjar-fetcher", "run"],
            {"NJ_CONFIG_DIR": where["under_file"]},
            1,
            ("cannot be created",),
        ),
        Mistake(
            "unreachable",
            ["nightjar-fetcher", "once"],
            {},
            1,
            ("EndpointConnectionError", "AWS_ENDPOINT_URL"),
        ),
        Mistake("unreachable", ["nightjar", "status"], {}, 1, ("EndpointConnectionError",)),
        Mistake(
            "no credentials",
            ["nightjar-fetcher", "once"],
            no_creds,
            1,
            ("NoCredentialsError", "AWS_ACCESS_KEY_ID"),
        ),
        Mistake("no credentials", ["nightjar", "versions"], no_creds, 1, ("NoCredentialsError",)),
        Mistake(
            "wrong prefix",
            ["nightjar-fetcher", "once"],
            {"AWS_ENDPOINT_URL": where["NoSuchKey"], "NJ_PREFIX": "wrong"},
            1,
            (prefix,),
        ),
        Mistake(
            "wrong prefix",
            ["nightjar", "status"],
            {"AWS_ENDPOINT_URL": where["NoSuchKey"], "NJ_PREFIX": "wrong"},
            1,
            (prefix,),
        ),
    ]
    for code, hint in (("NoSuchBucket", "NJ_BUCKET"), ("InvalidAccessKeyId", "AWS_ACCESS_KEY_ID")):
        for argv in (
            ["nightjar-fetcher", "once"],
            ["nightjar", "status"],
            ["nightjar-configurator", "once"],
        ):
            rows.append(Mistake(code, argv, {"AWS_ENDPOINT_URL": where[code]}, 1, (code, hint)))
    if os.geteuid() != 0:  # root may write any directory
        rows.append(
            Mistake(
                "read-only dir",
                ["nightjar-fetcher", "once"],
                {"NJ_CONFIG_DIR": where["read_only"]},
                1,
                ("not writable",),
            )
        )
    return rows


def test_every_mistake_is_one_sentence_with_its_exit_code(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    """Each row, run as a subprocess (all at once, to keep this fast): the documented exit code,
    a single non-log line naming the problem, no traceback, no 'Aborted!'."""
    (tmp_path / "file").write_text("x")
    (tmp_path / "ro").mkdir(mode=0o500)
    with socket.socket() as taken, contextlib.ExitStack() as stack:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        where = {
            "taken": str(taken.getsockname()[1]),
            "free": str(free_port()),
            "under_file": str(tmp_path / "file" / "cfg"),
            "read_only": str(tmp_path / "ro"),
        }
        for code in ("NoSuchKey", "NoSuchBucket", "InvalidAccessKeyId"):
            where[code] = stack.enter_context(ErrorS3(code)).url
        rows = mistakes(where)
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda m: run(m.argv, {**base_env, **m.env}), rows))
    for mistake, result in zip(rows, results, strict=True):
        try:
            check(result, mistake.code, *mistake.words)
        except AssertionError as err:
            raise AssertionError(f"{mistake.name}: {' '.join(mistake.argv)}: {err}") from err


@pytest.mark.parametrize("argv", [["nightjar-fetcher", "once"], ["nightjar-configurator", "once"]])
def test_ctrl_c_is_exit_130_without_aborted(base_env: dict[str, str], argv: list[str]) -> None:
    """SIGINT while the command waits on S3: exit 130 and 'interrupted', no 'Aborted!'."""
    with ErrorS3("hang") as s3:
        env = {**base_env, "AWS_ENDPOINT_URL": s3.url}
        proc = subprocess.Popen(
            [str(BIN / argv[0]), *argv[1:]],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert s3.accepted.wait(30), "the command never reached S3"
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    check(subprocess.CompletedProcess(argv, proc.returncode, out, err), 130, "interrupted")
