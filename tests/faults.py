"""Fault injection and request counting, shared by every test that needs them."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from shared.errors import ManifestConflictError, PreconditionFailedError, StoreError
from shared.memory_store import MemoryBundleStore

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class RequestCounter:
    """Counts the API calls a boto3 client makes, with their parameters."""

    def __init__(self, client: Any) -> None:
        self.calls: Counter[str] = Counter()
        self.params: list[tuple[str, dict[str, Any]]] = []
        client.meta.events.register("before-parameter-build", self._seen)

    def _seen(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.calls[model.name] += 1
        self.params.append((model.name, params))

    def reset(self) -> None:
        self.calls.clear()
        self.params.clear()

    def writes(self) -> int:
        """Requests that change the store."""
        return sum(n for op, n in self.calls.items() if op in {"PutObject", "DeleteObjects"})


def tamper(client: S3Client, bucket: str, key: str, data: bytes = b"tampered") -> None:
    """Overwrite ``key`` behind the store's back, as a corrupting actor would."""
    client.put_object(Bucket=bucket, Key=key, Body=data)


class FailingCloudMap:
    """Makes Cloud Map answer DiscoverInstances for one service with an error at the HTTP
    layer (a throttled API), so botocore's own retries run and every attempt is counted."""

    def __init__(self, client: Any, service_name: str, code: str = "ThrottlingException") -> None:
        self.service_name = service_name
        self.code = code
        self.failures = 0
        client.meta.events.register_first(
            "before-send.servicediscovery.DiscoverInstances", self._answer
        )

    def _answer(self, request: Any, **_: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        if json.loads(request.body or b"{}").get("ServiceName") != self.service_name:
            return None
        self.failures += 1
        body = json.dumps({"__type": self.code, "message": "Rate exceeded"}).encode()
        headers = {"x-amzn-ErrorType": self.code, "Content-Type": "application/x-amz-json-1.1"}
        return AWSResponse(request.url, 400, headers, _Raw(body))


class _Raw:
    """The raw body botocore reads from a response."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


def no_retry_backoff(monkeypatch: Any) -> None:
    """botocore's standard-mode retries without their backoff sleeps (throttling waits ~1-3 s)."""
    from botocore.retries.standard import ExponentialBackoff

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)


def with_unchecked_file(index: Any, node: str, name: str) -> Any:
    """``index`` with one more file for ``node``, named ``name`` without validation: what a
    reader that skipped the model's checks would hand the fetcher's staging step."""
    entry = index.nodes[node]
    extra = next(iter(index.files_of(node).values()))
    files = {**entry.files, name: extra}
    changed = type(entry).model_construct(sets=entry.sets, files=files)
    fields = {**dict(index), "nodes": {**index.nodes, node: changed}}
    return type(index).model_construct(**fields)


class LosingManifestRaces:
    """Wraps a store's ``swap_manifest`` so the first ``losses`` swaps lose to another writer."""

    def __init__(self, store: Any, losses: int) -> None:
        self._swap = store.swap_manifest
        self.losses = losses
        self.attempts: list[str | None] = []
        store.swap_manifest = self.swap_manifest

    def swap_manifest(self, manifest: Any, expected_etag: str | None) -> str:
        self.attempts.append(expected_etag)
        if len(self.attempts) <= self.losses:
            raise ManifestConflictError("lost the race")
        return str(self._swap(manifest, expected_etag))


class LostAnswerStore(MemoryBundleStore):
    """A memory store whose chosen writes land but whose answer is lost (a dropped connection).

    ``lose`` holds key prefixes; a ``_put`` to such a key stores the bytes, then raises the
    StoreError a client sees when the response never arrives, or ``PreconditionFailedError``
    (``as_retry=True``) as when botocore's retry of that PUT finds its own first attempt.
    """

    def __init__(self, lose: tuple[str, ...], as_retry: bool = False) -> None:
        super().__init__()
        self.lose = lose
        self.as_retry = as_retry

    def _put(
        self, key: str, data: bytes, *, if_match: str | None = None, if_absent: bool = False
    ) -> str:
        etag = super()._put(key, data, if_match=if_match, if_absent=if_absent)
        if key.startswith(self.lose):
            if self.as_retry:
                raise PreconditionFailedError("retried PUT found its own write", key=key)
            raise StoreError("connection dropped before the answer", key=key, operation="PutObject")
        return etag


class ErrorS3:
    """An AWS endpoint on 127.0.0.1 that answers every request with one error (``code``),
    or (``code="hang"``) accepts connections and never answers; ``accepted`` is set then."""

    STATUS = {
        "NoSuchBucket": 404,
        "NoSuchKey": 404,
        "InvalidAccessKeyId": 403,
        "ServiceUnavailable": 503,
    }

    def __init__(self, code: str) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.code = code
        self.requests = 0
        self.accepted = threading.Event()
        fault = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                fault.requests += 1
                fault.accepted.set()
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if fault.code == "hang":
                    fault.release.wait(30)
                    return
                body = (
                    f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{fault.code}</Code>"
                    f"<Message>{fault.code}</Message></Error>"
                ).encode()
                self.send_response(fault.STATUS.get(fault.code, 400))
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_PUT = do_POST = do_GET  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.release = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ErrorS3:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class PausingBeforeIndex:
    """Wraps a store's ``put_index`` so ``hook`` runs first: a publisher paused after its object
    writes and before its index write (where a concurrent GC used to strike)."""

    def __init__(self, store: Any, hook: Any) -> None:
        self._put_index = store.put_index
        self.hook = hook
        self.paused = 0
        store.put_index = self.put_index

    def put_index(self, index: Any) -> Any:
        self.paused += 1
        self.hook()
        return self._put_index(index)


class ExplodingValidator:
    """A node validator that raises an unexpected error for files containing ``marker``."""

    def __init__(self, inner: Any, marker: bytes) -> None:
        self.inner = inner
        self.marker = marker

    def submit(self, files: dict[str, bytes], key: str | None = None) -> Any:
        if any(self.marker in data for data in files.values()):
            raise RuntimeError("validator crashed")
        return self.inner.submit(files, key)


def die_at_s3_write(kill_at: int, after: bool) -> None:
    """In a subprocess: ``os._exit(137)`` at the ``kill_at``-th S3 write of the bundle store,
    before it is sent or after its answer arrived (``after``), like kill -9 at that moment."""
    import os

    from shared.s3_store import S3BundleStore

    count = {"writes": 0}
    put, delete = S3BundleStore._put, S3BundleStore._delete

    def dying(real: Any) -> Any:
        def write(self: Any, *args: Any, **kwargs: Any) -> Any:
            count["writes"] += 1
            if count["writes"] == kill_at and not after:
                os._exit(137)
            result = real(self, *args, **kwargs)
            if count["writes"] == kill_at:
                os._exit(137)
            return result

        return write

    S3BundleStore._put = dying(put)  # type: ignore[method-assign]
    S3BundleStore._delete = dying(delete)  # type: ignore[method-assign]


def run_dying() -> None:
    """``nightjar-configurator`` that dies at the S3 write named by ``NIGHTJAR_TEST_KILL_AT``
    (``<k>``, or ``<k>+`` for after it landed). The crash trial runs it as
    ``python -c "from tests.faults import run_dying; run_dying()" once ...``."""
    import os

    from configurator.cli import main

    spec = os.environ.get("NIGHTJAR_TEST_KILL_AT", "")
    if spec:
        die_at_s3_write(int(spec.rstrip("+")), spec.endswith("+"))
    main()
