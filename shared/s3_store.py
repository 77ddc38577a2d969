"""``S3BundleStore``: the bundle store on one S3 bucket, under a key prefix.

The boto3 client is passed in (built by the entry point from the standard AWS environment:
``AWS_REGION``, ``AWS_ENDPOINT_URL``, the credentials chain). Every botocore ``ClientError`` is
wrapped in a ``StoreError`` that keeps the operation, bucket, key and error code.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.aws import describe_aws_error
from shared.errors import ObjectMissingError, PreconditionFailedError, StoreError
from shared.store import KeyedBundleStore, StoredKey

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_MISSING = {"NoSuchKey", "404", "NotFound"}
_PRECONDITION = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


class S3BundleStore(KeyedBundleStore):
    """Bundle store backed by ``bucket`` through an injected boto3 S3 client."""

    def __init__(self, client: S3Client, bucket: str, prefix: str = "") -> None:
        super().__init__(prefix)
        self.client = client
        self.bucket = bucket

    def location(self) -> str:
        """Where the store lives, for messages: ``s3://bucket/prefix/``."""
        return f"s3://{self.bucket}/{self._key('')}"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, err: Exception, operation: str, key: str) -> StoreError:
        code = ""
        if isinstance(err, ClientError):
            code = str(err.response.get("Error", {}).get("Code", ""))
        full = self._key(key)
        kind = ObjectMissingError if code in _MISSING else StoreError
        reason = describe_aws_error(err)
        return kind(
            f"S3 {operation} s3://{self.bucket}/{full} failed: {reason}",
            operation=operation,
            bucket=self.bucket,
            key=full,
            code=code,
        )

    def _get(self, key: str, if_none_match: str | None = None) -> tuple[bytes, str] | None:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if if_none_match:
            args["IfNoneMatch"] = if_none_match
        try:
            response = self.client.get_object(**args)
            return response["Body"].read(), response["ETag"]
        except ClientError as err:
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 304:
                return None
            raise self._error(err, "GetObject", key) from err
        except BotoCoreError as err:
            raise self._error(err, "GetObject", key) from err

    def _put(
        self, key: str, data: bytes, *, if_match: str | None = None, if_absent: bool = False
    ) -> str:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key), "Body": data}
        if if_match:
            args["IfMatch"] = if_match
        if if_absent:
            args["IfNoneMatch"] = "*"
        try:
            return str(self.client.put_object(**args)["ETag"])
        except ClientError as err:
            wrapped = self._error(err, "PutObject", key)
            if wrapped.code in _PRECONDITION:
                raise PreconditionFailedError(
                    str(wrapped),
                    operation="PutObject",
                    bucket=self.bucket,
                    key=wrapped.key,
                    code=wrapped.code,
                ) from err
            raise wrapped from err
        except BotoCoreError as err:
            raise self._error(err, "PutObject", key) from err

    def _list(self, under: str) -> Iterator[StoredKey]:
        start = len(self._key(""))
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(under)):
                for item in page.get("Contents", []):
                    yield StoredKey(item["Key"][start:], item["LastModified"], item.get("Size"))
        except (ClientError, BotoCoreError) as err:
            raise self._error(err, "ListObjectsV2", under) from err

    def _delete(self, keys: Sequence[str]) -> None:
        objects: Any = [{"Key": self._key(k)} for k in keys]
        try:
            response = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
            )
        except (ClientError, BotoCoreError) as err:
            raise self._error(err, "DeleteObjects", keys[0] if keys else "") from err
        errors = response.get("Errors", [])
        if errors:
            first = errors[0]
            raise StoreError(
                f"S3 DeleteObjects left {len(errors)} keys, first {first.get('Key')}: "
                f"{first.get('Code')}",
                operation="DeleteObjects",
                bucket=self.bucket,
                key=str(first.get("Key", "")),
                code=str(first.get("Code", "")),
            )
