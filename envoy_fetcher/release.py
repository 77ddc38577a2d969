"""Release directories: stage verified files, swap ``current`` atomically, keep the last few.

Layout under the config dir::

    objects/<sha256>             verified published bytes (``ObjectCache``, in cache.py)
    releases/<version>/          the node's files with per-task values filled in
    releases/.<version>.digests  ``<file name> <sha256>`` lines: what that release was built from
    current -> releases/<v>      what Envoy reads; replaced by create-temp-link + rename
    state.json                   what the fetcher applied and saw (``nightjar-fetcher status``)
    polled                       empty; its mtime is the last poll that reached the store

A release directory only ever appears complete, with its digests file already in place. Every
write is temp file + fsync + rename in the target directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from envoy_fetcher.errors import ReleaseError
from shared.models import FILE_NAME_RE, VERSION_ID_RE

FILE_MODE = 0o644  # an Envoy in another container (another uid) reads what the fetcher writes
DIR_MODE = 0o755


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, never a part."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_names(version: str, names: list[str]) -> None:
    if not VERSION_ID_RE.match(version):
        raise ReleaseError(f"{version!r} is not a version id")
    for name in names:
        if not FILE_NAME_RE.match(name):
            raise ReleaseError(f"{version}: {name!r} is not a plain file name")


class ReleaseDir:
    """One node's releases, their digests and the ``current`` link in ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.releases = root / "releases"
        self.current_link = root / "current"
        self.state_path = root / "state.json"
        self.heartbeat_path = root / "polled"

    def ensure(self) -> None:
        self.releases.mkdir(parents=True, exist_ok=True)

    # -- reading ----------------------------------------------------------------------------
    def current(self) -> str | None:
        """The version ``current`` points to, or None."""
        try:
            target = os.readlink(self.current_link)
        except OSError:
            return None
        name = Path(target).name
        return name if VERSION_ID_RE.match(name) and (self.releases / name).is_dir() else None

    def versions(self) -> list[str]:
        """Staged release versions, oldest first."""
        return sorted(p.name for p in self.releases.iterdir() if VERSION_ID_RE.match(p.name))

    def digests(self, version: str | None) -> dict[str, str]:
        """File name -> published sha256 of a staged release (empty when unknown)."""
        if version is None:
            return {}
        try:
            lines = self._digests_path(version).read_text().splitlines()
        except OSError:
            return {}
        return dict(line.split(" ", 1) for line in lines if " " in line)

    def referenced(self) -> set[str]:
        """Every object digest a staged release was built from (what the cache must keep)."""
        return {d for version in self.versions() for d in self.digests(version).values()}

    # -- writing ----------------------------------------------------------------------------
    def stage(self, version: str, files: dict[str, bytes], digests: dict[str, str]) -> Path:
        """Write a complete ``releases/<version>`` (replacing a stale one) and its digests."""
        _check_names(version, list(files))
        tmp = Path(tempfile.mkdtemp(dir=self.releases, prefix=f".stage-{version}-"))
        tmp.chmod(DIR_MODE)  # mkdtemp makes 0700
        try:
            for name, data in files.items():
                write_atomic(tmp / name, data)
            _fsync_dir(tmp)
            lines = "".join(f"{name} {digest}\n" for name, digest in sorted(digests.items()))
            write_atomic(self._digests_path(version), lines.encode())
            final = self.releases / version
            if final.exists():
                shutil.rmtree(final)
            os.rename(tmp, final)
            _fsync_dir(self.releases)
            return final
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def swap(self, version: str) -> None:
        """Point ``current`` at ``releases/<version>`` in one rename (Envoy sees the move)."""
        if not (self.releases / version).is_dir():
            raise ReleaseError(f"release {version} is not staged")
        tmp = self.root / f".current-{os.getpid()}-{version}"
        tmp.unlink(missing_ok=True)
        os.symlink(Path("releases") / version, tmp)
        os.replace(tmp, self.current_link)
        _fsync_dir(self.root)

    def prune(self, keep: int, protect: set[str]) -> list[str]:
        """Remove all but the newest ``keep`` releases (never one in ``protect``)."""
        versions = self.versions()
        doomed = [v for v in versions[: max(0, len(versions) - keep)] if v not in protect]
        for version in doomed:
            shutil.rmtree(self.releases / version, ignore_errors=True)
        for leftover in self.releases.glob(".stage-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        kept = set(self.versions())
        for path in self.releases.glob(".*.digests"):
            if path.name[1 : -len(".digests")] not in kept:
                path.unlink(missing_ok=True)
        return doomed

    def _digests_path(self, version: str) -> Path:
        return self.releases / f".{version}.digests"
