"""Building boto3 clients from the standard AWS environment, at the entry points only."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

RETRIES = Config(
    retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=20
)


def make_s3_client() -> S3Client:
    """An S3 client configured only by the environment (AWS_REGION, AWS_ENDPOINT_URL, ...)."""
    return boto3.client("s3", config=RETRIES)
