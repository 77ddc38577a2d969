"""Wire-model rules: what a reader may assume about every id, name and timestamp."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.digest import sha256_hex
from shared.models import (
    FileEntry,
    Manifest,
    VersionIndex,
    gateway_node_id,
    new_version_id,
    node_kind,
    parse_index,
    sidecar_node_id,
    version_created,
)
from tests.bundles import GEN, T0

ENTRY = {"sha256": sha256_hex(b"x"), "size": 1}


def index_with(node: str, file_name: str) -> VersionIndex:
    return VersionIndex.model_validate(
        {
            "version": new_version_id(T0, "ab" * 32),
            "created": T0,
            "nodes": {node: {"files": {file_name: ENTRY}}},
        }
    )


@given(st.text(min_size=1, max_size=40))
def test_any_accepted_file_name_stays_inside_its_directory(name: str) -> None:
    """Whatever string an index carries, an accepted file name is one plain path component."""
    try:
        index_with("ns/gateway", name)
    except ValidationError:
        return
    path = PurePosixPath("/release") / name
    assert path.parent == PurePosixPath("/release")
    assert name not in {".", ".."} and "/" not in name and "\\" not in name and "\0" not in name


@given(st.text(max_size=60))
def test_any_accepted_node_id_has_the_documented_shape(node: str) -> None:
    """An accepted node id is <ns>/<service>/<color> or <ns>/gateway with safe parts."""
    try:
        index_with(node, "lds.yaml")
    except ValidationError:
        return
    parts = node.split("/")
    assert len(parts) in (2, 3)
    assert len(parts) == 3 or parts[1] == "gateway"
    assert all(p and p[0].isalnum() and p not in {".", ".."} for p in parts)


@pytest.mark.parametrize("bad", ["", "lds yaml", "a\nb", "é.yaml", ".", "..", "a/b", "a\\b"])
def test_bad_file_names_are_rejected_with_the_rule(bad: str) -> None:
    """The error names the bad file name and the allowed form."""
    with pytest.raises(ValidationError, match="file name .* is not allowed"):
        index_with("ns/gateway", bad)


def test_node_ids_and_kinds() -> None:
    """Sidecar and gateway ids are built and classified consistently."""
    assert sidecar_node_id("fish.service.local", "tuna", "blue") == "fish.service.local/tuna/blue"
    assert gateway_node_id("fish.service.local") == "fish.service.local/gateway"
    assert node_kind("fish.service.local/gateway") == "gateway"
    assert node_kind("fish.service.local/tuna/blue") == "sidecar"


def test_version_ids_sort_by_creation_time_and_encode_it() -> None:
    """Version ids sort like their creation times and decode back to them."""
    times = [T0 + timedelta(microseconds=n) for n in (0, 1, 999_999, 10**6, 86400 * 10**6)]
    ids = [new_version_id(t, sha256_hex(str(t).encode())) for t in times]
    assert sorted(ids) == ids and len(set(ids)) == len(ids)
    assert [version_created(v) for v in ids] == times
    other_zone = T0.astimezone(timezone(timedelta(hours=5)))
    assert new_version_id(other_zone, "ab" * 32) == new_version_id(T0, "ab" * 32)


def test_same_instant_different_content_gives_different_ids() -> None:
    """Two versions created in the same microsecond differ by their content digest."""
    assert new_version_id(T0, sha256_hex(b"a")) != new_version_id(T0, sha256_hex(b"b"))


def test_manifest_index_key_must_match_its_version() -> None:
    """A manifest cannot point at an index other than its own version's."""
    version = new_version_id(T0, "cd" * 32)
    fields = {"version": version, "index_sha256": "0" * 64, "created": T0, "generator": GEN}
    assert Manifest(index_key=f"versions/{version}.json", **fields).frozen is False  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="index_key"):
        Manifest(index_key="../../secret.json", **fields)  # type: ignore[arg-type]


def test_naive_timestamps_are_rejected_and_aware_ones_normalised() -> None:
    """Timestamps carry a zone and are stored in UTC."""
    with pytest.raises(ValidationError, match="time zone"):
        index_with_created(datetime(2026, 1, 1))
    created = index_with_created(datetime(2026, 1, 1, 5, tzinfo=timezone(timedelta(hours=5))))
    assert created == datetime(2026, 1, 1, tzinfo=UTC)


def index_with_created(created: datetime) -> datetime:
    index = VersionIndex(version=new_version_id(T0, "ab" * 32), created=created, nodes={})
    return index.created


def test_strict_types_refuse_coercion() -> None:
    """A size given as a string is refused rather than coerced."""
    with pytest.raises(ValidationError):
        FileEntry.model_validate({"sha256": "a" * 64, "size": "12"})
    with pytest.raises(ValidationError, match="sha256"):
        FileEntry.model_validate({"sha256": "A" * 64, "size": 12})


def test_unsupported_schema_version_is_rejected() -> None:
    """A reader refuses an index of a schema it does not know."""
    raw = index_with("ns/gateway", "lds.yaml").model_dump(mode="json")
    raw["schema_version"] = 3
    with pytest.raises(ValidationError, match="schema_version"):
        VersionIndex.model_validate_json(__import__("json").dumps(raw))


SET_ID = "0" * 32


def test_a_file_name_in_a_file_set_follows_the_same_rule() -> None:
    """A shared file set cannot smuggle a path either: its names are checked like a node's."""
    with pytest.raises(ValidationError, match="file name .* is not allowed"):
        VersionIndex.model_validate(
            {
                "version": new_version_id(T0, "ab" * 32),
                "created": T0,
                "file_sets": {SET_ID: {"../x": ENTRY}},
                "nodes": {"ns/gateway": {"sets": (SET_ID,)}},
            }
        )


def test_a_node_naming_an_unknown_set_or_one_file_twice_is_refused() -> None:
    """Every set a node names is in the index, and no file name comes from two places."""
    base = {"version": new_version_id(T0, "ab" * 32), "created": T0}
    with pytest.raises(ValidationError, match="names file set"):
        VersionIndex.model_validate({**base, "nodes": {"ns/gateway": {"sets": (SET_ID,)}}})
    twice = {
        **base,
        "file_sets": {SET_ID: {"lds.yaml": ENTRY}},
        "nodes": {"ns/gateway": {"sets": (SET_ID,), "files": {"lds.yaml": ENTRY}}},
    }
    with pytest.raises(ValidationError, match="twice"):
        VersionIndex.model_validate(twice)


def test_a_schema_1_node_shape_is_never_read_as_a_node_without_files() -> None:
    """A schema 2 index holding a node in the old shape (file name -> entry) is refused."""
    with pytest.raises(ValidationError, match="Extra inputs"):
        VersionIndex.model_validate(
            {
                "version": new_version_id(T0, "ab" * 32),
                "created": T0,
                "nodes": {"ns/gateway": {"lds.yaml": ENTRY}},
            }
        )


def test_schema_1_indexes_read_as_nodes_with_their_own_files() -> None:
    """An index an older configurator wrote still serves its nodes (a rollback target)."""
    import json

    old = {
        "schema_version": 1,
        "version": new_version_id(T0, "ab" * 32),
        "created": T0.isoformat(),
        "nodes": {"ns/gateway": {"lds.yaml": ENTRY, "cds.yaml": ENTRY}},
    }
    index = parse_index(json.dumps(old).encode())
    assert index.schema_version == 2
    assert index.files_of("ns/gateway") == {
        "lds.yaml": FileEntry.model_validate(ENTRY),
        "cds.yaml": FileEntry.model_validate(ENTRY),
    }
    assert index.digests() == {ENTRY["sha256"]}


def test_files_of_resolves_sets_then_own_files() -> None:
    """A node's files are the union of its sets' and its own; sizes and digests cover both."""
    other = {"sha256": sha256_hex(b"yy"), "size": 2}
    index = VersionIndex.model_validate(
        {
            "version": new_version_id(T0, "ab" * 32),
            "created": T0,
            "file_sets": {SET_ID: {"eds-1.yaml": other}},
            "nodes": {"ns/gateway": {"sets": (SET_ID,), "files": {"lds.yaml": ENTRY}}},
        }
    )
    assert sorted(index.files_of("ns/gateway") or {}) == ["eds-1.yaml", "lds.yaml"]
    assert index.files_of("ns/absent") is None
    assert index.sizes() == {ENTRY["sha256"]: 1, other["sha256"]: 2}
