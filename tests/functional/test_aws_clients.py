"""AWS clients built lean (``shared.aws``, ``shared.aws_models``): botocore's own data files read
into less memory, and the very same requests on the wire as a stock botocore client."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import botocore
import botocore.session
import pytest
from botocore.awsrequest import AWSPreparedRequest
from hypothesis import given
from hypothesis import strategies as st

from configurator.discovery import make_cloudmap_client
from shared.aws import CONFIGURATOR, FETCHER, S3_READS, make_client, make_s3_client
from shared.aws_models import endpoints_of, keep_services, model_of

DATA = Path(botocore.__file__).parent / "data"
S3_MODEL = next((DATA / "s3").glob("*/service-2.json.gz"))


def endpoints_text() -> str:
    return (DATA / "endpoints.json").read_text()


def test_lean_endpoints_are_exactly_the_asked_services_of_every_partition() -> None:
    """Reading endpoints.json lean yields each partition whole but for ``services``, which holds
    exactly the services asked for, as botocore's full parse has them."""
    text = endpoints_text()
    full = json.loads(text)
    for services in ({"s3", "sts"}, {"monitoring", "no-such-service"}, set()):
        lean = endpoints_of(text, frozenset(services))
        assert lean == keep_services(full, frozenset(services))
        assert [p["partition"] for p in lean["partitions"]] == [
            p["partition"] for p in full["partitions"]
        ]
        for cut, whole in zip(lean["partitions"], full["partitions"], strict=True):
            assert {k: v for k, v in cut.items() if k != "services"} == {
                k: v for k, v in whole.items() if k != "services"
            }
            assert cut["services"] == {s: v for s, v in whole["services"].items() if s in services}
        assert {k: v for k, v in lean.items() if k != "partitions"} == {
            k: v for k, v in full.items() if k != "partitions"
        }


json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
partitions = st.lists(
    st.fixed_dictionaries(
        {"partition": st.text(), "services": st.dictionaries(st.text(), json_value, max_size=5)},
        optional={"regions": json_value, "defaults": json_value},
    ),
    max_size=3,
)


@given(
    partitions,
    st.dictionaries(st.text().filter(lambda k: k != "partitions"), json_value, max_size=3),
    st.sets(st.text(), max_size=3),
    st.sampled_from([None, 0, 1, 4]),
    st.booleans(),
)
def test_any_endpoints_file_reads_lean_as_the_full_parse_cut(
    parts: list[dict[str, Any]],
    top: dict[str, Any],
    wanted: set[str],
    indent: int | None,
    ascii_only: bool,
) -> None:
    """Whatever the JSON formatting, escapes or keys, the member-by-member read equals the
    full parse with the same services kept (names compared exactly)."""
    services = frozenset(wanted | {s for p in parts for s in list(p["services"])[:1]})
    text = json.dumps({**top, "partitions": parts}, indent=indent, ensure_ascii=ascii_only)
    assert endpoints_of(text, services) == keep_services(json.loads(text), services)


@given(json_value)
def test_an_endpoints_file_of_another_layout_is_read_whole(value: Any) -> None:
    """A file whose partitions are not a list of objects is parsed whole (nothing dropped)."""
    text = json.dumps({"partitions": value, "version": 3})
    assert endpoints_of(text, frozenset({"s3"})) == keep_services(json.loads(text), {"s3"})


def shape_refs(shape: dict[str, Any]) -> set[str]:
    refs = {shape[k]["shape"] for k in ("member", "key", "value") if k in shape}
    return refs | {m["shape"] for m in shape.get("members", {}).values()}


def test_a_cut_model_has_the_operations_and_every_shape_they_reach() -> None:
    """model_of keeps the operations asked for, as they are, and every shape they reach (input,
    output, errors, transitively), as they are; nothing else of the model changes."""
    text = gzip.decompress(S3_MODEL.read_bytes()).decode()
    full = json.loads(text)
    cut = model_of(text, frozenset({"GetObject", "HeadBucket"}))
    assert cut["operations"] == {k: full["operations"][k] for k in ("GetObject", "HeadBucket")}
    assert {k: v for k, v in cut.items() if k != "shapes" and k != "operations"} == {
        k: v for k, v in full.items() if k != "shapes" and k != "operations"
    }
    for name, shape in cut["shapes"].items():
        assert shape == full["shapes"][name]
        assert shape_refs(shape) <= cut["shapes"].keys()
    reached, todo = set(), []
    for op in cut["operations"].values():
        todo += [op[k]["shape"] for k in ("input", "output") if k in op]
        todo += [e["shape"] for e in op.get("errors", [])]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo += shape_refs(full["shapes"][name])
    assert cut["shapes"].keys() == reached and "NoSuchKey" in reached
    with pytest.raises(ValueError, match="NoSuchOperation"):
        model_of(text, frozenset({"NoSuchOperation"}))


class Sent(Exception):
    """Raised from botocore's before-send hook: the request, signed, that would have gone."""

    def __init__(self, request: AWSPreparedRequest) -> None:
        super().__init__(request.url)
        self.request = request


def sent(client: Any, call: str, **params: Any) -> AWSPreparedRequest:
    def stop(request: AWSPreparedRequest, **_: Any) -> None:
        raise Sent(request)

    client.meta.events.register_first("before-send", stop)
    with pytest.raises(Sent) as caught:
        getattr(client, call)(**params)
    return caught.value.request


def wire(request: AWSPreparedRequest) -> tuple[Any, ...]:
    """What identifies a request on the wire: method, URL, the signed scope, the headers
    (but the ones that carry the time, a random id or the user agent)."""
    authorization = request.headers["Authorization"].decode()
    scope = authorization.split("Credential=")[1].split(",")[0].split("/", 2)[2]
    varying = {"authorization", "x-amz-date", "user-agent", "amz-sdk-invocation-id"}
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower() not in varying}
    return request.method, request.url, scope, headers


def stock(service: str, config: Any) -> Any:
    """A client as botocore builds it by default (full data files, every operation)."""
    factory: Any = botocore.session.Session().create_client
    return factory(service, region_name=os.environ["AWS_REGION"], config=config)


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "cn-north-1", "us-gov-west-1"])
def test_lean_clients_send_what_stock_botocore_clients_send(
    region: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In every partition, the fetcher's read-only S3 client, the configurator's S3 client and
    the Cloud Map client sign and address each request exactly as stock botocore does."""
    monkeypatch.setenv("AWS_REGION", region)
    get = {"Bucket": "mesh-bucket", "Key": "nightjar/manifest.json", "IfNoneMatch": '"e"'}
    cases = [
        (make_s3_client(FETCHER, S3_READS), stock("s3", FETCHER.config()), "get_object", get),
        (make_s3_client(CONFIGURATOR), stock("s3", CONFIGURATOR.config()), "get_object", get),
        (
            make_s3_client(CONFIGURATOR),
            stock("s3", CONFIGURATOR.config()),
            "put_object",
            {"Bucket": "mesh-bucket", "Key": "nightjar/objects/x", "Body": b"x", "IfMatch": '"e"'},
        ),
        (
            make_cloudmap_client(),
            stock("servicediscovery", make_cloudmap_client().meta.config),
            "list_namespaces",
            {},
        ),
    ]
    for lean, full, call, params in cases:
        assert wire(sent(lean, call, **params)) == wire(sent(full, call, **params))
        assert (lean.meta.region_name, lean.meta.partition) == (
            full.meta.region_name,
            full.meta.partition,
        )


def test_the_fetchers_s3_client_has_only_the_reads_and_what_botocore_calls() -> None:
    """The fetcher's store client offers GetObject (every read of the bundle store) plus the
    calls botocore makes on its own (region redirect, directory buckets), with GetObject's
    modeled errors; writing through it is impossible."""
    client = make_s3_client(FETCHER, S3_READS)
    assert {"get_object", "head_bucket", "create_session"} <= set(dir(client))
    assert not hasattr(client, "put_object") and not hasattr(client, "delete_objects")
    assert issubclass(client.exceptions.NoSuchKey, botocore.exceptions.ClientError)


def test_a_client_for_a_service_whose_endpoint_prefix_differs_resolves_like_stock() -> None:
    """CloudWatch is ``monitoring`` in endpoints.json: its lean client still finds its endpoint
    data (kept by the model's endpointPrefix) and addresses requests as stock botocore."""
    config = CONFIGURATOR.config()
    lean, full = make_client("cloudwatch", config), stock("cloudwatch", config)
    assert wire(sent(lean, "describe_alarms")) == wire(sent(full, "describe_alarms"))
