"""AWS clients: botocore's retries only, explicit timeouts, each HTTP attempt counted once."""

from __future__ import annotations

import pytest

from configurator.discovery import CloudMapDiscovery, make_cloudmap_client
from configurator.errors import DiscoveryError
from shared.aws import CONFIGURATOR, FETCHER, make_s3_client
from tests.faults import ErrorS3


def test_every_client_has_explicit_attempts_and_timeouts() -> None:
    """S3 and Cloud Map clients carry standard-mode retries and connect/read timeouts; the
    documented worst cases (docs/configurator.md, docs/fetcher.md) follow from them."""
    for client, patience in (
        (make_s3_client(FETCHER), FETCHER),
        (make_s3_client(CONFIGURATOR), CONFIGURATOR),
        (make_cloudmap_client(), CONFIGURATOR),
    ):
        config = client.meta.config
        assert config.retries == {"total_max_attempts": patience.attempts, "mode": "standard"}
        assert (config.connect_timeout, config.read_timeout) == (
            patience.connect_timeout,
            patience.read_timeout,
        )
    assert (CONFIGURATOR.worst_case_seconds(), FETCHER.worst_case_seconds()) == (42.0, 15.0)


def test_a_failing_endpoint_is_tried_total_max_attempts_and_counted_once_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Cloud Map endpoint answering 503: botocore sends exactly total_max_attempts requests,
    nightjar adds none, and calls_made equals the requests the endpoint saw."""
    with ErrorS3("ServiceUnavailable") as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint.url)
        discovery = CloudMapDiscovery(make_cloudmap_client())
        with pytest.raises(DiscoveryError, match="ListNamespaces"):
            discovery.scan(["fish.service.local"])
    assert endpoint.requests == discovery.calls_made() == CONFIGURATOR.attempts
