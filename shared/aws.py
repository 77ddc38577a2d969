"""Building AWS clients from the standard AWS environment, at the entry points only.

Every client gets botocore's standard retry mode with an explicit ``total_max_attempts`` and
explicit connect/read timeouts, so one request blocks at most
``attempts * (connect_timeout + read_timeout)`` plus the retry backoff (docs/operations).
Nightjar never retries a request itself; ``RequestCount`` counts botocore's attempts.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
)
from botocore.loaders import create_loader

from shared.aws_models import SERVICE_MODEL, LeanModelFiles
from shared.errors import AwsSetupError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@dataclass(frozen=True)
class Patience:
    """How long one AWS request may take: attempts (the first included) and socket timeouts."""

    attempts: int = 3
    connect_timeout: float = 3.0
    read_timeout: float = 10.0

    def config(self) -> Config:
        return Config(
            retries={"total_max_attempts": self.attempts, "mode": "standard"},
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
        )

    def worst_case_seconds(self) -> float:
        """The longest one request can block: every attempt timing out, plus standard-mode
        backoff (at most 2**n seconds before attempt n + 1, capped at 20 s)."""
        backoff = sum(min(20.0, 2.0**n) for n in range(self.attempts - 1))
        return self.attempts * (self.connect_timeout + self.read_timeout) + backoff


# What botocore calls on a client by itself: S3's region redirect asks HeadBucket where a
# bucket lives, and directory buckets need CreateSession.
INTERNAL_CALLS = {"s3": ("HeadBucket", "CreateSession")}
S3_READS = ("GetObject",)  # every read of the bundle store (KeyedBundleStore._get)

CONFIGURATOR = Patience(attempts=3, connect_timeout=3.0, read_timeout=10.0)
FETCHER = Patience(attempts=2, connect_timeout=2.0, read_timeout=5.0)

HINTS = {
    "NoSuchBucket": "the bucket does not exist: check NJ_BUCKET (and AWS_REGION)",
    "InvalidAccessKeyId": "AWS does not know this access key: check AWS_ACCESS_KEY_ID or the "
    "task role",
    "SignatureDoesNotMatch": "the secret key does not match: check AWS_SECRET_ACCESS_KEY",
    "ExpiredToken": "the AWS session token expired: refresh the credentials",
    "AccessDenied": "access denied: check the IAM policy of these credentials",
    "UnrecognizedClientException": "AWS does not know these credentials: check AWS_ACCESS_KEY_ID "
    "or the task role",
}


def make_client(service: str, config: Config, operations: Collection[str] = ()) -> Any:
    """A botocore client from the environment, on a session of its own.

    botocore reads ``AWS_DEFAULT_REGION``; ECS and most tooling set ``AWS_REGION``, so that is
    honoured first. ``AWS_ENDPOINT_URL``, ``AWS_DATA_PATH`` and the credentials chain work as
    usual. boto3 is not imported (its S3 transfer manager is never used), and the session's
    data files are read lean (``shared.aws_models``): the client's model is read first, so
    only its endpoints are kept. With ``operations`` (API names, ``GetObject``) the client has
    only those methods, and those botocore itself calls on such a client (``INTERNAL_CALLS``).
    """
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
    cut = {service: {*operations, *INTERNAL_CALLS.get(service, ())}} if operations else None
    try:
        session = botocore.session.Session()
        loader = create_loader(session.get_config_variable("data_path"))
        loader.file_loader = LeanModelFiles({service}, cut)
        loader.load_service_model(service, SERVICE_MODEL)  # learns its endpoint prefix
        session.register_component("data_loader", loader)
        return session.create_client(service, region_name=region, config=config)
    except BotoCoreError as err:
        raise AwsSetupError(
            f"cannot create the {service} client: {err} (set AWS_REGION; see the README)"
        ) from err
    except ValueError as err:  # e.g. a malformed AWS_ENDPOINT_URL
        raise AwsSetupError(f"cannot create the {service} client: {err}") from err


def make_s3_client(patience: Patience = CONFIGURATOR, operations: Collection[str] = ()) -> S3Client:
    """An S3 client configured by the environment (AWS_REGION, AWS_ENDPOINT_URL, ...); with
    ``operations``, one that has only those (``S3_READS`` for a store that is only read)."""
    client: S3Client = make_client("s3", patience.config(), operations)
    return client


def describe_aws_error(err: Exception) -> str:
    """The error code (or botocore's class name) and what to check, in one sentence."""
    if isinstance(err, ClientError):
        code = str(err.response.get("Error", {}).get("Code", "")) or "error"
        hint = HINTS.get(code)
        return f"{code} ({hint})" if hint else code
    if isinstance(err, NoCredentialsError):
        return (
            "NoCredentialsError (no AWS credentials found: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or give the task a role)"
        )
    if isinstance(err, EndpointConnectionError | ConnectTimeoutError):
        return (
            f"{type(err).__name__} (cannot reach the endpoint: check AWS_REGION, "
            "AWS_ENDPOINT_URL and the network path to AWS)"
        )
    if isinstance(err, ReadTimeoutError):
        return f"{type(err).__name__} (AWS did not answer in time; retried, then gave up)"
    if isinstance(err, NoRegionError):
        return "NoRegionError (set AWS_REGION)"
    return type(err).__name__


class RequestCount:
    """Counts every HTTP request (each botocore attempt) a client sends, via its event hooks."""

    def __init__(self, client: Any, service: str) -> None:
        self.total = 0
        client.meta.events.register(f"request-created.{service}", self._created)

    def _created(self, **_: Any) -> None:
        self.total += 1


def make_kms_client(patience: Patience = CONFIGURATOR) -> Any:
    """A KMS client from the environment (signing and ``kms:Verify`` of bundles)."""
    return make_client("kms", patience.config())
