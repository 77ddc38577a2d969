"""Issue 12.6 at the store: versions signed with a KMS key verify; anything else is refused.

In-process moto KMS (ECC_NIST_P256, ECDSA_SHA_256, RAW messages, which moto and AWS treat alike).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from shared.errors import ObjectMissingError, SignatureError
from shared.memory_store import MemoryBundleStore
from shared.signing import (
    KmsSigner,
    KmsVerifier,
    PublicKeyVerifier,
    Verifier,
    check_signature,
    sign_version,
)
from tests.bundles import store_version

NODE = "fish.service.local/gateway"


@pytest.fixture
def kms() -> Iterator[tuple[Any, str]]:
    """A moto KMS client and the id of an asymmetric signing key."""
    with mock_aws():
        client = boto3.client("kms", region_name="us-east-1")
        key = client.create_key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256")
        yield client, key["KeyMetadata"]["KeyId"]


def _pem(client: Any, key_id: str) -> bytes:
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_der_public_key,
    )

    der = client.get_public_key(KeyId=key_id)["PublicKey"]
    return load_der_public_key(der).public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize("how", ["pem", "kms"])
def test_a_signed_version_verifies_and_survives_the_store(kms: tuple[Any, str], how: str) -> None:
    """Sign, store, read back, verify: with the PEM public key and with kms:Verify alike."""
    client, key_id = kms
    store = MemoryBundleStore()
    index, ref = store_version(store, {NODE: {"lds.yaml": b"1"}})
    store.put_signature(sign_version(KmsSigner(client, key_id), index.version, ref.sha256))
    verifier: Verifier = (
        PublicKeyVerifier(_pem(client, key_id)) if how == "pem" else KmsVerifier(client, key_id)
    )
    check_signature(verifier, store.get_signature(index.version), index.version, ref.sha256)


def test_a_consistent_rewrite_by_a_bucket_writer_is_refused(kms: tuple[Any, str]) -> None:
    """New index + a signature copied from another version, or signed by another key: refused."""
    client, key_id = kms
    other_key = client.create_key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256")
    store = MemoryBundleStore()
    good, good_ref = store_version(store, {NODE: {"lds.yaml": b"good"}})
    evil, evil_ref = store_version(store, {NODE: {"lds.yaml": b"evil"}})
    verifier = PublicKeyVerifier(_pem(client, key_id))
    copied = sign_version(KmsSigner(client, key_id), good.version, good_ref.sha256)
    with pytest.raises(SignatureError, match="names"):
        check_signature(verifier, copied, evil.version, evil_ref.sha256)
    forged = sign_version(
        KmsSigner(client, other_key["KeyMetadata"]["KeyId"]), evil.version, evil_ref.sha256
    )
    with pytest.raises(SignatureError, match="does not verify"):
        check_signature(verifier, forged, evil.version, evil_ref.sha256)
    with pytest.raises(SignatureError, match="does not verify"):
        check_signature(KmsVerifier(client, key_id), forged, evil.version, evil_ref.sha256)
    with pytest.raises(ObjectMissingError):
        store.get_signature(evil.version)  # never signed at all


def test_a_public_key_of_the_wrong_kind_is_a_clear_error() -> None:
    """An RSA key given as NJ_VERIFY_KEY is refused with the accepted kind named."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(SignatureError, match="ECC_NIST_P256"):
        PublicKeyVerifier(pem)
