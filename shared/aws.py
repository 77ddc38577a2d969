"""Building boto3 clients from the standard AWS environment, at the entry points only."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError

from shared.errors import AwsSetupError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def make_client(service: str, config: Config) -> Any:
    """A boto3 client from the environment.

    botocore reads ``AWS_DEFAULT_REGION``; ECS and most tooling set ``AWS_REGION``, so that is
    honoured first. ``AWS_ENDPOINT_URL`` and the credentials chain work as usual.
    """
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
    factory: Any = boto3.client  # typed per literal service name; ours is a parameter
    try:
        return factory(service, region_name=region, config=config)
    except BotoCoreError as err:
        raise AwsSetupError(
            f"cannot create the {service} client: {err} (set AWS_REGION; see the README)"
        ) from err


def make_s3_client(max_attempts: int = 5) -> S3Client:
    """An S3 client configured only by the environment (AWS_REGION, AWS_ENDPOINT_URL, ...).

    Callers with their own backoff (the fetcher's poll loop) pass fewer attempts, so a failing
    S3 is reported quickly instead of inside botocore's retries.
    """
    config = Config(
        retries={"max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=5,
        read_timeout=20,
    )
    client: S3Client = make_client("s3", config)
    return client


def make_kms_client() -> Any:
    """A KMS client from the environment (signing and ``kms:Verify`` of bundles)."""
    config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5)
    return make_client("kms", config)
