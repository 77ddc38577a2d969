"""``nightjar-configurator once``: exit codes and messages, on in-process moto."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws

from configurator.cli import main
from shared.models import Manifest
from shared.s3_store import S3BundleStore
from tests.cloudmap import FISH, create_namespace, fish_mesh, register
from tests.conftest import BUCKET

ARGS = ["once", "--bucket", BUCKET, "--namespace", FISH]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In-process moto with part of the fish mesh; no envoy binary (parse-level validation)."""
    monkeypatch.setenv("NJ_ENVOY_BIN", "/nonexistent/envoy")
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        cloudmap = boto3.client("servicediscovery")
        ns_id = create_namespace(cloudmap)
        for service in fish_mesh()[:3]:
            register(cloudmap, ns_id, service)
        yield


def test_once_publishes_then_reports_unchanged(aws: None) -> None:
    """First run publishes (exit 0), the second finds nothing to do (exit 0)."""
    runner = CliRunner()
    first = runner.invoke(main, ARGS)
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("published ")
    second = runner.invoke(main, ARGS)
    assert second.exit_code == 0 and second.stdout.startswith("unchanged ")


def test_once_on_a_frozen_manifest_exits_3_and_says_how_to_resume(aws: None) -> None:
    """Frozen is not an error but not a publish either: exit 3 with the way out."""
    runner = CliRunner()
    runner.invoke(main, ARGS)
    store = S3BundleStore(boto3.client("s3"), BUCKET, "nightjar")
    read = store.read_manifest()
    assert read is not None
    frozen = Manifest.model_validate({**read.manifest.model_dump(), "frozen": True})
    store.swap_manifest(frozen, read.etag)
    result = runner.invoke(main, ARGS)
    assert result.exit_code == 3 and "nightjar unfreeze" in result.output


def test_once_fails_with_a_clear_message(aws: None) -> None:
    """An unknown namespace fails the cycle: exit 1, one sentence naming it."""
    result = CliRunner().invoke(main, ["once", "--bucket", BUCKET, "--namespace", "nope.local"])
    assert result.exit_code == 1
    assert "namespace 'nope.local' not found" in result.output


def test_missing_settings_are_usage_errors(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """No bucket or no namespace: exit 2 naming the setting; bad values name the variable."""
    runner = CliRunner()
    assert "NJ_BUCKET" in runner.invoke(main, ["once", "--namespace", FISH]).output
    assert runner.invoke(main, ["once", "--bucket", BUCKET]).exit_code == 2
    monkeypatch.setenv("NJ_KEEP_VERSIONS", "0")
    result = runner.invoke(main, ARGS)
    assert result.exit_code == 2 and "NJ_KEEP_VERSIONS" in result.output


def test_namespaces_from_the_environment_are_comma_separated(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NJ_NAMESPACES=a,b names two namespaces."""
    monkeypatch.setenv("NJ_NAMESPACES", f"{FISH}, other.local")
    result = CliRunner().invoke(main, ["once", "--bucket", BUCKET])
    assert result.exit_code == 1 and "'other.local' not found" in result.output
