"""Building boto3 clients from the standard AWS environment, at the entry points only."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


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
    return boto3.client("s3", config=config)
