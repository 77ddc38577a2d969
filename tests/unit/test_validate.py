"""Parse-level validation of rendered files (no Envoy binary involved)."""

from __future__ import annotations

from configurator.validate import EnvoyValidator, parse_files

GOOD_CDS = b"resources: []\n"
GOOD_LDS = b"resources: []\n"


def test_parse_level_errors_name_the_file() -> None:
    """Unparseable files, missing files and wrong resource types are named."""
    _, errors = parse_files({"lds.yaml": b"resources: [\n", "extra.json": b"{nope"})
    assert any(e.startswith("lds.yaml does not parse") for e in errors)
    assert any(e.startswith("extra.json does not parse") for e in errors)
    assert "cds.yaml is missing; every node needs it" in errors
    _, errors = parse_files({"lds.yaml": b"resources:\n- {name: x}\n", "cds.yaml": GOOD_CDS})
    assert errors == [
        "lds.yaml resource #0 is not a Listener "
        "(@type type.googleapis.com/envoy.config.listener.v3.Listener)"
    ]


def test_without_envoy_parse_checks_still_run() -> None:
    """No envoy binary: parse-level checks decide, and the verdict says Envoy did not check."""
    no_envoy = EnvoyValidator(None)
    assert no_envoy.validate({"lds.yaml": GOOD_LDS, "cds.yaml": GOOD_CDS}).checked_by_envoy is False
    assert not no_envoy.validate({"lds.yaml": b"[", "cds.yaml": GOOD_CDS}).ok
