"""Finding plugin entry points, with an on-disk index that is never stale.

Scanning every installed distribution with :mod:`importlib.metadata` reads and parses
a file per distribution on every start.  The index remembers the result of that scan
together with a fingerprint of everything that can change it, and is used only while
the fingerprint still matches:

* the interpreter (``sys.executable``, its version) and ``sys.path``, in order — these
  name the index file;
* for each ``sys.path`` entry: each ``*.dist-info`` / ``*.egg-info`` in it, by name, and
  its ``entry_points.txt`` by size and ``st_mtime_ns`` (a dist-info directory's own
  mtime too, so a file added to it counts); a zip file on ``sys.path`` by size and
  mtime.

A file changed twice within one tick of the filesystem clock could keep its size and
mtime, so (as git does with its index) nothing is indexed while any fingerprinted file
is younger than :data:`RACY_SECONDS`: such a scan is used but not remembered.

Checking the fingerprint costs a directory listing per path entry and a ``stat`` per
distribution, which is far cheaper than opening and parsing the files.  The index is
written atomically (temporary file, then :func:`os.replace`), rebuilt when unreadable,
and old index files are removed.  ``TOCSIN_NO_CACHE=1`` bypasses it entirely.
"""

from __future__ import annotations

import hashlib
import logging
import marshal
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Discovery", "PluginEntry", "cache_dir", "discover"]

logger = logging.getLogger("tocsin.discovery")

#: Bump when the index file layout changes; older files are then ignored and cleaned.
INDEX_FORMAT = 1
#: Index files unused for this long are removed when a new one is written.
MAX_INDEX_AGE_SECONDS = 30 * 24 * 3600
#: At most this many index files are kept (one per interpreter, sys.path and group).
MAX_INDEX_FILES = 32
#: Files modified this recently are not trusted to show a later change in their stat.
RACY_SECONDS = 2


@dataclass(frozen=True)
class PluginEntry:
    """One entry point of the plugin group, and the distribution that declares it."""

    name: str
    value: str
    distribution: str
    version: str
    location: str

    @property
    def module(self) -> str:
        return self.value.partition(":")[0].strip()

    @property
    def attribute(self) -> str | None:
        attr = self.value.partition(":")[2].strip()
        return attr or None


@dataclass(frozen=True)
class Discovery:
    """What a scan found: entries by name, and the name clashes it resolved."""

    entries: tuple[PluginEntry, ...]  # one per name, sorted by name
    #: (kept, ignored) pairs: the same plugin name from two distributions.
    clashes: tuple[tuple[PluginEntry, PluginEntry], ...]
    from_cache: bool


def cache_dir() -> str:
    """Where index files live: $TOCSIN_CACHE_DIR, else $XDG_CACHE_HOME/tocsin, else
    ~/.cache/tocsin."""
    explicit = os.environ.get("TOCSIN_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tocsin")


def discover(group: str, *, use_cache: bool = True, path: Sequence[str] | None = None) -> Discovery:
    """Return the entry points of *group* visible on *path* (default ``sys.path``).

    The first distribution of a name on the path wins (a distribution seen twice is
    counted once); a plugin name declared by two different distributions keeps the
    first and reports the clash.
    """
    search_path = list(sys.path if path is None else path)
    if use_cache and os.environ.get("TOCSIN_NO_CACHE", "") not in ("", "0"):
        use_cache = False
    raw: list[PluginEntry] | None = None
    from_cache = False
    if use_cache:
        index_file = _index_file(group, search_path)
        fingerprint, youngest_ns = _fingerprint(search_path)
        raw = _read_index(index_file, fingerprint)
        from_cache = raw is not None
        if raw is None:
            raw = _scan(group, search_path)
            if time.time_ns() - youngest_ns > RACY_SECONDS * 1_000_000_000:
                _write_index(index_file, fingerprint, raw)
    else:
        raw = _scan(group, search_path)
    entries, clashes = _resolve(raw)
    return Discovery(entries, clashes, from_cache)


def _resolve(
    raw: Iterable[PluginEntry],
) -> tuple[tuple[PluginEntry, ...], tuple[tuple[PluginEntry, PluginEntry], ...]]:
    kept: dict[str, PluginEntry] = {}
    clashes: list[tuple[PluginEntry, PluginEntry]] = []
    for entry in raw:
        first = kept.get(entry.name)
        if first is None:
            kept[entry.name] = entry
        elif first.distribution != entry.distribution:
            clashes.append((first, entry))
    entries = tuple(sorted(kept.values(), key=lambda e: e.name))
    return entries, tuple(clashes)


def _scan(group: str, search_path: list[str]) -> list[PluginEntry]:
    """Ask importlib.metadata, in sys.path order, distributions deduplicated by name."""
    from importlib.metadata import distributions

    found: list[PluginEntry] = []
    seen: set[str] = set()
    for dist in distributions(path=search_path):
        try:
            name = dist.metadata["Name"] or ""
            normalized = _normalize(name)
            if not normalized or normalized in seen:
                continue
            seen.add(normalized)
            points = dist.entry_points.select(group=group)
        except Exception as error:  # one unreadable distribution must not hide the others
            logger.warning(
                "Skipping the distribution at %s: its metadata cannot be read (%s).",
                _location(dist),
                error,
            )
            continue
        if not points:
            continue
        location = _location(dist)
        for point in points:
            found.append(PluginEntry(point.name, point.value, name, dist.version, location))
    return found


def _location(dist: Any) -> str:
    return str(getattr(dist, "_path", "") or dist.locate_file(""))


def _normalize(name: str) -> str:
    """PEP 503: runs of ``-``, ``_`` and ``.`` are one ``-``; case does not count."""
    parts = name.replace("_", "-").replace(".", "-").lower().split("-")
    return "-".join(part for part in parts if part)


def _index_file(group: str, search_path: list[str]) -> str:
    key = "\0".join([sys.executable, sys.version, group, *search_path])
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return os.path.join(cache_dir(), f"entry-points-{digest}.idx")


def _fingerprint(search_path: list[str]) -> tuple[bytes, int]:
    """A digest of everything on the path that could change which entry points exist,
    and the newest modification time among the files it covers."""
    parts: list[str] = []
    youngest = 0

    def stat_part(path: str) -> str:
        nonlocal youngest
        try:
            st = os.stat(path)
        except OSError:
            return "-"
        youngest = max(youngest, st.st_mtime_ns)
        return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"

    for entry in search_path:
        parts.append(f"P{entry}")
        try:
            with os.scandir(entry or ".") as listing:
                names = sorted(
                    e.name for e in listing if e.name.endswith((".dist-info", ".egg-info"))
                )
        except NotADirectoryError:
            parts.append(stat_part(entry))  # a zip file on sys.path
            continue
        except OSError:
            continue  # missing or unreadable: importlib.metadata sees nothing there either
        base = entry or "."
        for name in names:
            meta = os.path.join(base, name)
            parts.append(f"D{name}{stat_part(meta)}")
            parts.append(stat_part(os.path.join(meta, "entry_points.txt")))
    digest = hashlib.sha256("\n".join(parts).encode("utf-8", "surrogatepass")).digest()
    return digest, youngest


def _read_index(index_file: str, fingerprint: bytes) -> list[PluginEntry] | None:
    try:
        with open(index_file, "rb") as handle:
            data = marshal.load(handle)
        fmt, stored_fingerprint, rows = data
        if fmt != INDEX_FORMAT:
            return None
        if stored_fingerprint != fingerprint:
            return None
        entries = [PluginEntry(*row) for row in rows]
    except FileNotFoundError:
        return None
    except Exception as error:  # corrupt, truncated, from another format: rebuild
        logger.info("Ignoring unreadable plugin index %s (%s); rebuilding it.", index_file, error)
        return None
    try:
        os.utime(index_file)  # recently used: kept by _clean
    except OSError:
        pass
    return entries


def _write_index(index_file: str, fingerprint: bytes, entries: list[PluginEntry]) -> None:
    import tempfile  # here, not at the top: most starts only read the index

    directory = os.path.dirname(index_file)
    rows = [(e.name, e.value, e.distribution, e.version, e.location) for e in entries]
    try:
        os.makedirs(directory, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".tmp-", dir=directory)
        try:
            with os.fdopen(handle, "wb") as out:
                marshal.dump((INDEX_FORMAT, fingerprint, rows), out)
            os.replace(temporary, index_file)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError as error:
        logger.info("Cannot write plugin index %s (%s); going on without it.", index_file, error)
        return
    _clean(directory, keep=index_file)


def _clean(directory: str, keep: str) -> None:
    """Remove index files unused for long (or beyond the newest few), and temporary
    files a crashed writer left behind."""
    now = time.time()
    indexes: list[tuple[float, str]] = []
    try:
        with os.scandir(directory) as listing:
            for item in listing:
                try:
                    mtime = item.stat().st_mtime
                except OSError:
                    continue
                if item.name.startswith(".tmp-"):
                    if now - mtime > 3600:
                        _unlink(item.path)
                elif item.name.startswith("entry-points-") and item.path != keep:
                    indexes.append((mtime, item.path))
    except OSError:
        return
    indexes.sort(reverse=True)  # newest first
    for position, (mtime, path) in enumerate(indexes):
        if position >= MAX_INDEX_FILES - 1 or now - mtime > MAX_INDEX_AGE_SECONDS:
            _unlink(path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
