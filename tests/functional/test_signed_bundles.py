"""Issue 12.6 end to end: a configurator with NJ_SIGNING_KEY signs what it publishes, a fetcher
with NJ_VERIFY_KEY refuses a tampered-but-consistent bundle and keeps serving, and without the
key the same bundle is applied (signing is opt-in). In-process moto S3 and KMS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from configurator.cycle import Configurator, Safety
from configurator.discovery import RawInstance, RawNamespace, RawService, StaticDiscovery
from configurator.render import TemplateLibrary
from configurator.validate import EnvoyValidator
from envoy_fetcher.poll import Fetcher
from envoy_fetcher.settings import FetcherSettings
from shared.aws import make_kms_client
from shared.s3_store import S3BundleStore
from shared.signing import KmsSigner, Verifier, load_verifier
from tests.bundles import later, manifest_for, store_version
from tests.conftest import BUCKET

NODE = "fish/gateway"


def mesh() -> RawNamespace:
    settings = RawInstance("service-settings", {"SERVICE": "tuna", "COLOR": "blue", "/t": "1"})
    task = RawInstance("t1", {"AWS_INSTANCE_IPV4": "10.0.0.1", "AWS_INSTANCE_PORT": "80"})
    return RawNamespace("id-fish", "fish", (RawService("s-fish", "tuna-blue", (settings, task)),))


@pytest.fixture
def signing_key(s3_client: Any) -> str:
    """An ECC_NIST_P256 signing key in moto's KMS (inside the same mock as the bucket)."""
    kms = boto3.client("kms", region_name="us-east-1")
    return str(
        kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256")["KeyMetadata"]["KeyId"]
    )


def publish_signed(store: S3BundleStore, key_id: str, tmp_path: Path) -> str:
    cfg = Configurator(
        namespaces=["fish"],
        store=store,
        discovery=StaticDiscovery([mesh()]),
        templates=TemplateLibrary.from_dir(),
        validator=EnvoyValidator(None),
        safety=Safety(signer=KmsSigner(make_kms_client(), key_id)),
    )
    report = cfg.run_cycle()
    assert report.outcome == "published", report.error
    return str(report.version)


def fetcher(store: S3BundleStore, tmp_path: Path, verifier: Verifier | None) -> Fetcher:
    settings = FetcherSettings(node=NODE, bucket=BUCKET, config_dir=tmp_path / "cfg")
    return Fetcher.from_dir(settings, store, verifier=verifier)


def rewrite_consistently(store: S3BundleStore, real: str, same_version: bool) -> str:
    """What a bucket writer can do: new objects, a new index (under the real version's id or a
    new one) and a manifest whose sha256 matches, with the real version's signature copied."""
    signature = store.get_signature(real)
    evil = b'{"resources": []}'
    files = {NODE: {"lds.yaml": evil, "cds.yaml": evil}}
    index, _ = store_version(store, files, later(30), parent=real)
    if same_version:
        index = index.model_copy(update={"version": real})
        store.discard_index(real)  # the writer overwrites freely; the store API refuses to
    ref = store.put_index(index)
    store.put_signature(signature.model_copy(update={"version": index.version}))
    read = store.read_manifest()
    assert read is not None
    store.swap_manifest(manifest_for(index, ref), read.etag)
    return index.version


@pytest.mark.parametrize("same_version", [True, False], ids=["same-id", "new-id"])
def test_a_tampered_consistent_bundle_is_refused_with_verification_and_applied_without(
    s3_store: S3BundleStore, signing_key: str, tmp_path: Path, same_version: bool
) -> None:
    """With NJ_VERIFY_KEY the signed version applies and the rewrite is refused: a running
    fetcher keeps serving the signed release (a new id is marked bad, not retried; the same id
    is not re-read), a fresh one serves nothing; a fetcher without the key applies it."""
    real = publish_signed(s3_store, signing_key, tmp_path)
    verifier = load_verifier(signing_key, make_kms_client)
    running = fetcher(s3_store, tmp_path / "running", verifier)
    assert running.poll_once().result == "applied"
    evil = rewrite_consistently(s3_store, real, same_version)

    step = running.poll_once()
    assert step.result == ("unchanged" if same_version else "rejected")
    assert running.serving() == real
    if not same_version:
        assert "signature" in step.detail and evil in running.state.bad_versions
        assert running.poll_once().result == "not_modified"  # refused once, not retried

    fresh = fetcher(s3_store, tmp_path / "fresh", verifier)
    step = fresh.poll_once()
    assert step.result == "rejected" and "signature" in step.detail
    assert fresh.serving() is None and fresh.state.last_error

    open_door = fetcher(s3_store, tmp_path / "open", None)
    step = open_door.poll_once()
    assert (step.result, step.version) == ("applied", evil)
    assert (tmp_path / "open" / "cfg" / "current" / "lds.yaml").read_bytes() == b'{"resources": []}'


def test_a_fetcher_with_a_key_refuses_an_unsigned_version(
    s3_store: S3BundleStore, signing_key: str, tmp_path: Path
) -> None:
    """A version with no signature document at all is refused, not read."""
    index, ref = store_version(s3_store, {NODE: {"lds.yaml": b"x", "cds.yaml": b"x"}})
    s3_store.swap_manifest(manifest_for(index, ref), None)
    guarded = fetcher(s3_store, tmp_path, load_verifier(signing_key, make_kms_client))
    step = guarded.poll_once()
    assert step.result == "rejected" and "not signed" in step.detail
    assert guarded.serving() is None
