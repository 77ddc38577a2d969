"""Lineage: which versions a fetcher may trust, and the older versions behind the current one.

``check_signed`` is the ``NJ_VERIFY_KEY`` gate every version passes before its index is read.
``older_versions`` walks a version's ``parent`` chain (newest first) for the dark-start
fallback: each older index is read and, with a verifier, trusted only if its own signature
verifies and its bytes match the sha256 that signature names.
"""

from __future__ import annotations

from collections.abc import Iterator

from shared.errors import NightjarError, ObjectMissingError, SignatureError
from shared.logs import get_logger
from shared.models import VersionIndex
from shared.signing import Verifier, check_signature
from shared.store import BundleStore

log = get_logger(__name__)

FALLBACK_DEPTH = 5  # older versions tried at most when Envoy rejects the current one


def check_signed(
    store: BundleStore, verifier: Verifier | None, version: str, index_sha256: str
) -> None:
    """SignatureError unless ``version`` with that index is signed by the trusted key (no-op
    without a verifier)."""
    if verifier is None:
        return
    try:
        doc = store.get_signature(version)
    except ObjectMissingError as err:
        raise SignatureError(f"{version} is not signed; refusing it") from err
    check_signature(verifier, doc, version, index_sha256)


def _older_index(store: BundleStore, verifier: Verifier | None, version: str) -> VersionIndex:
    if verifier is None:
        return store.get_index(version)
    try:
        doc = store.get_signature(version)
    except ObjectMissingError as err:
        raise SignatureError(f"{version} is not signed; refusing it") from err
    check_signature(verifier, doc, version, doc.index_sha256)
    return store.get_index(version, doc.index_sha256)


def older_versions(
    store: BundleStore,
    verifier: Verifier | None,
    parent: str | None,
    depth: int = FALLBACK_DEPTH,
) -> Iterator[VersionIndex]:
    """The indexes of ``parent``, its parent and so on (at most ``depth``), newest first. The
    walk ends at the first version that is gone (GC), unreadable or not trusted."""
    seen: set[str] = set()
    while parent is not None and len(seen) < depth and parent not in seen:
        seen.add(parent)
        try:
            index = _older_index(store, verifier, parent)
        except NightjarError as err:
            log.warning("fallback.chain_ends", version=parent, error=str(err))
            return
        yield index
        parent = index.parent
