"""Exceptions of the shared package. Every failure of the bundle store is a ``StoreError``."""

from __future__ import annotations


class NightjarError(Exception):
    """Base of every error nightjar raises on purpose."""


class AwsSetupError(NightjarError):
    """A client could not be built from the environment (no region, bad endpoint...)."""


class EndpointBindError(NightjarError):
    """The metrics/health endpoint cannot listen (its port is taken by another process)."""


class SettingsError(NightjarError):
    """A process cannot start with the settings it was given; the message names the setting."""


class StoreError(NightjarError):
    """A bundle-store operation failed.

    Keeps the S3 operation, bucket, key and error code so logs and CLI messages can say exactly
    what failed; the botocore error, when there is one, is kept as ``__cause__``.
    """

    def __init__(
        self, message: str, *, operation: str = "", bucket: str = "", key: str = "", code: str = ""
    ) -> None:
        super().__init__(message)
        self.operation = operation
        self.bucket = bucket
        self.key = key
        self.code = code


class ObjectMissingError(StoreError):
    """A key that should exist (object, index) is not in the store."""


class ManifestConflictError(StoreError):
    """The manifest changed since it was read: another writer won the conditional swap."""


class VersionExistsError(StoreError):
    """A version index with this id is already stored; indexes are immutable."""


class DigestMismatchError(StoreError):
    """Downloaded bytes do not hash to the sha256 they were published under."""


class InvalidBundleError(StoreError):
    """Stored JSON (manifest or index) does not parse or breaks the bundle format rules."""


class PreconditionFailedError(StoreError):
    """A store primitive's write condition did not hold (S3 412/409); the swap logic maps it."""


class SignatureError(NightjarError):
    """A version's signature is missing, malformed, or does not verify with the trusted key."""


class VerificationUnavailableError(SignatureError):
    """The verifier could not be asked (kms:Verify failed to answer); try again later."""
