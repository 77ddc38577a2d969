"""Signed bundles (opt-in): the configurator signs each version, fetchers verify before use.

What is signed is a short RAW message naming the version and the sha256 of its index bytes. The
index names every file's sha256 and every read verifies bytes against those, so one signature
covers the whole version. The signature lives beside the index (``signatures/<version>.json``),
so an operator's rollback to a retained version keeps a valid signature without the key.

Keys are KMS asymmetric keys of spec ``ECC_NIST_P256`` signing with ``ECDSA_SHA_256``. Fetchers
verify either locally with the public key (PEM, no AWS call; needs the ``cryptography`` package)
or through ``kms:Verify`` with the key id. Threat model: docs/security.md.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict

from shared.errors import SignatureError, VerificationUnavailableError

ALGORITHM: Literal["ECDSA_SHA_256"] = "ECDSA_SHA_256"
_DOMAIN = "nightjar-index-signature-v1"


def signed_message(version: str, index_sha256: str) -> bytes:
    """The exact bytes that are signed for one version."""
    return f"{_DOMAIN}\n{version}\n{index_sha256}\n".encode()


class VersionSignature(BaseModel):
    """``signatures/<version>.json``: who signed which version index, and the signature."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    schema_version: Literal[1] = 1
    version: str
    index_sha256: str
    key_id: str
    algorithm: Literal["ECDSA_SHA_256"] = ALGORITHM
    signature: str  # base64 of the DER-encoded ECDSA signature

    def raw(self) -> bytes:
        try:
            return base64.b64decode(self.signature, validate=True)
        except ValueError as err:
            raise SignatureError(f"signature of {self.version} is not base64") from err


class Signer(Protocol):
    """Signs messages with one key."""

    key_id: str

    def sign(self, message: bytes) -> bytes: ...


class Verifier(Protocol):
    """Tells whether a signature over a message is valid for one key."""

    def verify(self, message: bytes, signature: bytes) -> bool: ...


class KmsSigner:
    """``kms:Sign`` with an asymmetric KMS key (RAW message, ECDSA_SHA_256)."""

    def __init__(self, client: Any, key_id: str) -> None:
        self.client = client
        self.key_id = key_id

    def sign(self, message: bytes) -> bytes:
        try:
            answer = self.client.sign(
                KeyId=self.key_id, Message=message, MessageType="RAW", SigningAlgorithm=ALGORITHM
            )
        except (ClientError, BotoCoreError) as err:
            raise SignatureError(f"kms:Sign with {self.key_id} failed: {err}") from err
        return bytes(answer["Signature"])


class KmsVerifier:
    """``kms:Verify`` with the key id (one AWS call per new version)."""

    def __init__(self, client: Any, key_id: str) -> None:
        self.client = client
        self.key_id = key_id

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            answer = self.client.verify(
                KeyId=self.key_id,
                Message=message,
                MessageType="RAW",
                Signature=signature,
                SigningAlgorithm=ALGORITHM,
            )
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") == "KMSInvalidSignatureException":
                return False
            raise VerificationUnavailableError(
                f"kms:Verify with {self.key_id} failed: {err}"
            ) from err
        except BotoCoreError as err:
            raise VerificationUnavailableError(
                f"kms:Verify with {self.key_id} failed: {err}"
            ) from err
        return bool(answer.get("SignatureValid"))


class PublicKeyVerifier:
    """Local verification with the key's public half (PEM, as ``kms get-public-key`` gives)."""

    def __init__(self, pem: bytes) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        try:
            key = load_pem_public_key(pem)
        except ValueError as err:
            raise SignatureError(f"NJ_VERIFY_KEY is not a PEM public key: {err}") from err
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise SignatureError("NJ_VERIFY_KEY must be an ECC_NIST_P256 public key (PEM)")
        self._key = key

    def verify(self, message: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        try:
            self._key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


def load_verifier(spec: str, kms_client: Callable[[], Any]) -> Verifier:
    """The verifier ``NJ_VERIFY_KEY`` names: PEM text, a path to a PEM file, or a KMS key id or
    ARN (then ``kms_client()`` is called for the client ``kms:Verify`` goes through)."""
    text = spec.strip()
    if text.startswith("-----BEGIN"):
        return PublicKeyVerifier(text.encode())
    if text.startswith(("/", ".")) or text.endswith(".pem") or Path(text).is_file():
        try:
            return PublicKeyVerifier(Path(text).read_bytes())
        except OSError as err:
            raise SignatureError(f"NJ_VERIFY_KEY: cannot read public key {text}: {err}") from err
    return KmsVerifier(kms_client(), text)


def sign_version(signer: Signer, version: str, index_sha256: str) -> VersionSignature:
    """The signature document of one version."""
    raw = signer.sign(signed_message(version, index_sha256))
    return VersionSignature(
        version=version,
        index_sha256=index_sha256,
        key_id=signer.key_id,
        signature=base64.b64encode(raw).decode(),
    )


def check_signature(
    verifier: Verifier, doc: VersionSignature, version: str, index_sha256: str
) -> None:
    """SignatureError unless ``doc`` is a valid signature of exactly this version and index."""
    if (doc.version, doc.index_sha256) != (version, index_sha256):
        raise SignatureError(
            f"signature names {doc.version}/{doc.index_sha256[:12]}, "
            f"not {version}/{index_sha256[:12]}; refusing the version"
        )
    if not verifier.verify(signed_message(version, index_sha256), doc.raw()):
        raise SignatureError(
            f"signature of {version} does not verify with the configured key; refusing it"
        )
