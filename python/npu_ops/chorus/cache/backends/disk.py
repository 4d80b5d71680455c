"""``DiskBackend``: one directory, survives restarts, shared safely by processes on one host.

Layout under ``root``::

    entries/<id>.safetensors   latents (``latent.<k>``), embedding, token ids
    entries/<id>.json          metadata: key, prompt, stats, sha256 + size of the safetensors file
    version                    change counter (lets readers skip re-listing the directory)
    .lock                      flock(2) target serialising writers across threads and processes

Every file is written to a temporary name and moved into place with ``os.replace``, the blob
before its JSON, so an entry exists exactly when its JSON does and readers never see half a file.
Writers (insert, delete, stats) hold the lock for their whole read-decide-write step, which keeps
the byte budget exact across processes. A JSON or blob that fails to decode or whose checksum does
not match is reported (``CorruptEntryError`` / a warning) and removed. POSIX only (``fcntl``).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import uuid
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from ..entry import CacheEntry
from ..errors import BackendUnavailableError, CorruptEntryError
from ..eviction import choose_victims
from ..serialization import (
    EntryRecord,
    _safetensors_torch,
    entry_from_blob,
    entry_meta,
    entry_to_blob,
    meta_from_json,
    record_from_meta,
)
from .base import CacheBackend, Changes, InsertResult, warn_cache

__all__ = ["DiskBackend"]


def _io_errors_are_unavailability(method):
    """A full disk, a permission problem or a vanished mount is an outage (a miss), not a crash."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except OSError as e:
            raise BackendUnavailableError(f"cache directory {str(self.root)!r}: {type(e).__name__}: {e}") from e

    return wrapper


class DiskBackend(CacheBackend):
    """Cache entries as safetensors + JSON files in ``root`` (created if missing).

    Args:
        root: the cache directory; several processes may open the same one.
        fsync: fsync each file before it is moved into place (durable across power loss; slower).
    """

    def __init__(self, root: str | os.PathLike, *, fsync: bool = False) -> None:
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"DiskBackend: root must be a path, got {type(root).__name__}")
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"DiskBackend: root {str(self.root)!r} exists and is not a directory")
        self._dir = self.root / "entries"
        self._dir.mkdir(parents=True, exist_ok=True)
        self._fsync = bool(fsync)
        self._lock_path = self.root / ".lock"
        self._lock_path.touch(exist_ok=True)
        _safetensors_torch()  # fail now, not at the first insert, when safetensors is missing

    # -- files --------------------------------------------------------------------------------
    def _meta_path(self, eid: str) -> Path:
        return self._dir / f"{eid}.json"

    def _blob_path(self, eid: str) -> Path:
        return self._dir / f"{eid}.safetensors"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # flock locks belong to the open file description: a fresh open per call excludes other
        # threads of this process as well as other processes.
        with open(self._lock_path, "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _write_atomic(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                if self._fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def _version(self) -> int:
        try:
            return int((self.root / "version").read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _bump_version(self) -> None:  # caller holds the lock
        self._write_atomic(self.root / "version", str(self._version() + 1).encode())

    def _ids(self) -> list[str]:
        return sorted(p.name[: -len(".json")] for p in os.scandir(self._dir) if p.name.endswith(".json"))

    def _read_meta(self, eid: str) -> dict[str, Any] | None:
        try:
            text = self._meta_path(eid).read_bytes()
        except FileNotFoundError:
            return None
        meta = meta_from_json(eid, text)
        if meta.get("entry_id") != eid:
            raise CorruptEntryError(eid, f"metadata names entry {meta.get('entry_id')!r}")
        return meta

    def _unlink(self, eid: str) -> bool:  # caller holds the lock; JSON first: the entry is gone
        existed = False
        for p in (self._meta_path(eid), self._blob_path(eid)):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                existed = True
        return existed

    def _scan_locked(self) -> dict[str, dict[str, Any]]:
        """All metadata (caller holds the lock); removes corrupt entries and stray files."""
        metas = {}
        for eid in self._ids():
            try:
                meta = self._read_meta(eid)
                if meta is not None:
                    record_from_meta(meta)
                    metas[eid] = meta
            except CorruptEntryError as e:
                warn_cache(f"DiskBackend: removing {e}")
                self._unlink(eid)
        # Writers hold the lock, so under it any temp file or blob without JSON is debris of a
        # writer that died mid-way.
        for p in os.scandir(self._dir):
            stray = p.name.endswith(".tmp") or (
                p.name.endswith(".safetensors") and p.name[: -len(".safetensors")] not in metas
            )
            if stray:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(p.path)
        return metas

    # -- CacheBackend -------------------------------------------------------------------------
    @_io_errors_are_unavailability
    def insert(self, entry: CacheEntry, *, budget: int, policy: str) -> InsertResult:
        blob = entry_to_blob(entry)
        meta = entry_meta(entry, blob)
        eid = entry.entry_id
        with self._locked():
            metas = self._scan_locked()
            metas.pop(eid, None)  # replaced
            sizes = {k: int(m["nbytes"]) for k, m in metas.items()}
            stats = {k: record_from_meta(m).stats for k, m in metas.items()}
            victims = choose_victims(policy, stats, sizes, int(meta["nbytes"]), budget)
            if victims is None:
                return InsertResult(False)
            for v in victims:
                self._unlink(v)
            self._unlink(eid)
            self._write_atomic(self._blob_path(eid), blob)
            self._write_atomic(self._meta_path(eid), json.dumps(meta).encode())
            self._bump_version()
        return InsertResult(True, victims)

    @_io_errors_are_unavailability
    def get(self, entry_id: str) -> CacheEntry | None:
        meta = self._read_meta(entry_id)
        if meta is None:
            return None
        try:
            blob = self._blob_path(entry_id).read_bytes()
        except FileNotFoundError:
            # Deleted between the two reads, or a blob lost on its own: either way not servable.
            if self._meta_path(entry_id).exists():
                raise CorruptEntryError(entry_id, "safetensors file is missing") from None
            return None
        return entry_from_blob(meta, blob)

    @_io_errors_are_unavailability
    def delete(self, entry_id: str) -> bool:
        with self._locked():
            existed = self._unlink(entry_id)
            if existed:
                self._bump_version()
            return existed

    @_io_errors_are_unavailability
    def records(self) -> list[EntryRecord]:
        with self._locked():
            return [record_from_meta(m) for m in self._scan_locked().values()]

    @_io_errors_are_unavailability
    def changes(self, cursor: Any, known: Collection[str]) -> Changes:
        version = self._version()
        if cursor is not None and cursor == version:
            return Changes(version)
        present = set(self._ids())
        known = set(known)
        upserts = []
        for eid in sorted(present - known):
            try:
                meta = self._read_meta(eid)
                if meta is not None:
                    upserts.append(record_from_meta(meta))
            except CorruptEntryError as e:
                warn_cache(f"DiskBackend: removing {e}")
                self.delete(eid)
        return Changes(version, False, upserts, sorted(known - present))

    @_io_errors_are_unavailability
    def update_stats(self, entry_id: str, *, hits: int, compute_saved: float, last_used: float) -> bool:
        with self._locked():
            try:
                meta = self._read_meta(entry_id)
            except CorruptEntryError:
                return False  # found and removed by the next lookup or insert
            if meta is None:
                return False
            s = meta["stats"]
            s["hits"] = int(s["hits"]) + hits
            s["compute_saved"] = float(s["compute_saved"]) + compute_saved
            s["last_used"] = last_used
            self._write_atomic(self._meta_path(entry_id), json.dumps(meta).encode())
            return True

    @_io_errors_are_unavailability
    def total_bytes(self) -> int:
        with self._locked():
            return sum(int(m["nbytes"]) for m in self._scan_locked().values())

    @_io_errors_are_unavailability
    def count(self) -> int:
        return len(self._ids())
