"""Release directories: stage verified files, swap ``current`` atomically, keep the last few.

Layout under the config dir::

    objects/<sha256>         verified published bytes (cache: download only what is missing)
    releases/<version>/      the node's files with per-task values filled in
    current -> releases/<v>  what Envoy reads; replaced by create-temp-link + rename
    state.json               what the fetcher applied and saw (``nightjar-fetcher status``)

Every write is temp file + fsync + rename in the target directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from shared.digest import is_sha256, sha256_hex
from shared.models import FILE_NAME_RE, VERSION_ID_RE


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, never a part."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
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


class ReleaseDir:
    """The fetcher's files for one node in ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.releases = root / "releases"
        self.objects = root / "objects"
        self.current_link = root / "current"

    def ensure(self) -> None:
        for directory in (self.root, self.releases, self.objects):
            directory.mkdir(parents=True, exist_ok=True)

    # -- object cache -----------------------------------------------------------------------
    def cached_object(self, sha256: str) -> bytes | None:
        """Verified cached bytes of ``sha256``; a corrupt cache entry is removed."""
        path = self.objects / sha256
        if not is_sha256(sha256) or not path.is_file():
            return None
        data = path.read_bytes()
        if sha256_hex(data) != sha256:
            path.unlink(missing_ok=True)
            return None
        return data

    def cache_object(self, sha256: str, data: bytes) -> None:
        write_atomic(self.objects / sha256, data)

    def prune_objects(self, keep: set[str]) -> None:
        for path in self.objects.iterdir():
            if path.name not in keep:
                path.unlink(missing_ok=True)

    # -- releases ---------------------------------------------------------------------------
    def current(self) -> str | None:
        """The version ``current`` points to, or None."""
        try:
            target = os.readlink(self.current_link)
        except OSError:
            return None
        name = Path(target).name
        return name if VERSION_ID_RE.match(name) and (self.releases / name).is_dir() else None

    def stage(self, version: str, files: dict[str, bytes]) -> Path:
        """Write a complete release directory for ``version`` (replacing a stale one)."""
        if not VERSION_ID_RE.match(version):
            raise ValueError(f"{version!r} is not a version id")
        tmp = Path(tempfile.mkdtemp(dir=self.releases, prefix=f".stage-{version}-"))
        try:
            for name, data in files.items():
                if not FILE_NAME_RE.match(name):
                    raise ValueError(f"{name!r} is not a plain file name")
                write_atomic(tmp / name, data)
            _fsync_dir(tmp)
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
            raise FileNotFoundError(f"release {version} is not staged")
        tmp = self.root / f".current-{os.getpid()}-{version}"
        tmp.unlink(missing_ok=True)
        os.symlink(Path("releases") / version, tmp)
        os.replace(tmp, self.current_link)
        _fsync_dir(self.root)

    def versions(self) -> list[str]:
        """Staged release versions, oldest first."""
        return sorted(p.name for p in self.releases.iterdir() if VERSION_ID_RE.match(p.name))

    def prune(self, keep: int, protect: set[str]) -> list[str]:
        """Remove all but the newest ``keep`` releases (never one in ``protect``)."""
        versions = self.versions()
        doomed = [v for v in versions[: max(0, len(versions) - keep)] if v not in protect]
        for version in doomed:
            shutil.rmtree(self.releases / version, ignore_errors=True)
        for leftover in self.releases.glob(".stage-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        return doomed
