"""Files identified by their content: a SHA-256 digest, computed once per version of a file.

A file's *identity* is a dict ``{"path", "size", "mtime_ns", "ctime_ns", "device", "inode", "sha256"}``.
Outputs are tied to the digests of the files that made them (the input, the model, its weights, labels
and mask), never to names, sizes or modification times alone: a file copied over another with its
mtime restored (``touch -r``) has other content, so another digest.

Hashing is cached by the file's (device, inode, size, mtime_ns, ctime_ns): a rewrite of the file
changes its ctime, which no user tool can set back, so a cached digest is never stale. The cache
learns the identities recorded in an output folder's manifests, so a rerun hashes nothing that is
unchanged since it was recorded.

Imports only the standard library.
"""
from __future__ import annotations

import hashlib
import os
import stat
import threading
from typing import Iterable

#: bytes read at a time while hashing (hashlib releases the GIL for each chunk)
_CHUNK = 1 << 20
_KEYS = ("device", "inode", "size", "mtime_ns", "ctime_ns")


def _stat_key(stat: os.stat_result) -> tuple[int, int, int, int, int]:
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file's bytes.

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class DigestCache:
    """Digests of files by (device, inode, size, mtime_ns, ctime_ns); safe to share between threads."""

    def __init__(self) -> None:
        self._digests: dict[tuple, str] = {}
        self._lock = threading.Lock()

    def identity(self, path: str | os.PathLike) -> dict | None:
        """The identity of a regular file as it is now (hashed unless cached); None when it is not a
        readable regular file."""
        try:
            before = os.stat(path)
        except (OSError, ValueError):
            return None
        if not stat.S_ISREG(before.st_mode):
            return None
        key = _stat_key(before)
        with self._lock:
            digest = self._digests.get(key)
        if digest is None:
            try:
                digest = sha256_of(path)
                after = os.stat(path)
            except OSError:
                return None
            if _stat_key(after) == key:  # not changed while it was read: safe to remember
                with self._lock:
                    self._digests[key] = digest
        return {"path": os.path.realpath(path), **dict(zip(_KEYS, key)), "sha256": digest}

    def digest(self, path: str | os.PathLike | None) -> str | None:
        """'sha256:HEX' of a file, or None for no name or no such regular file."""
        if not path:
            return None
        identity = self.identity(path)
        return f"sha256:{identity['sha256']}" if identity else None

    def learn(self, identities: Iterable) -> None:
        """Remember the digests of recorded identities (others, and malformed entries, are ignored: a
        manifest is read back as it is found)."""
        found = {}
        for identity in identities:
            if not isinstance(identity, dict):
                continue
            key = tuple(identity.get(name) for name in _KEYS)
            digest = identity.get("sha256")
            if all(type(value) is int for value in key) and isinstance(digest, str) and len(digest) == 64:
                found[key] = digest
        with self._lock:
            self._digests.update(found)

    def learn_records(self, records: Iterable[dict]) -> None:
        """Remember the identities that manifest records carry: an input record's ``source`` and a
        start record's ``files``."""
        identities = []
        for record in records:
            identities.append(record.get("source"))
            files = record.get("files") if record.get("event") == "start" else None
            if isinstance(files, list):
                identities.extend(files)
        self.learn(identities)


#: the process's cache (the CLI, the API and the folder run share it)
DIGESTS = DigestCache()


def same_content(recorded: dict | None, current: dict | None) -> bool:
    """True when two identities name files with the same bytes (same digest and size)."""
    return bool(recorded and current and isinstance(recorded, dict) and recorded.get("sha256") == current["sha256"]
                and recorded.get("size") == current["size"])
