"""Finding plugin entry points, with an on-disk index that is never stale.

Scanning every installed distribution with :mod:`importlib.metadata` reads and parses
a file per distribution on every start.  The index remembers the result of that scan
together with a fingerprint of everything that can change it, and is used only while
the fingerprint still matches:

* the interpreter (``sys.executable``, its version), the group and ``sys.path``, in
  order — a checksum of these names the index file, and the names themselves are part
  of the fingerprint;
* for each ``sys.path`` entry: each ``*.dist-info`` / ``*.egg-info`` in it, by name, and
  its ``entry_points.txt`` by size, ``st_mtime_ns`` and inode (a dist-info directory's
  own too, so a file added to it counts); a zip file on ``sys.path`` likewise.

The fingerprint is stored whole (a list of names and numbers) and compared whole, not
as a digest.  A file changed twice within one tick of the filesystem clock could keep
its size and mtime, so (as git does with its index) nothing is indexed while any
fingerprinted file is younger than :data:`RACY_SECONDS`: such a scan is used but not
remembered.

Checking the fingerprint costs a directory listing per path entry and two ``stat``
calls per distribution (relative to the open directory), which is far cheaper than
opening and parsing the files.  The index is written atomically (temporary file, then
:func:`os.replace`), rebuilt when unreadable, and old index files are removed: an
index in use has its mtime set to now when it is read, at most once every
:data:`TOUCH_SECONDS`, and one untouched for :data:`MAX_INDEX_AGE_SECONDS` goes.
``TOCSIN_NO_CACHE=1`` bypasses the index entirely.

A scan (when the index does not match) is :func:`importlib.metadata.distributions` over
``sys.path``, first distribution of a name wins, as ``entry_points()`` does.

Startup cost matters here: this module imports nothing beyond what Python itself has
loaded at startup (no hashlib, pathlib, dataclasses, logging, tempfile).
"""

from __future__ import annotations

import logging
import marshal
import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

__all__ = ["Discovery", "PluginEntry", "cache_dir", "discover"]

logger = logging.getLogger("tocsin.discovery")

#: Bump when the index file layout changes; older files are then ignored and cleaned.
INDEX_FORMAT = 2
#: Index files unused for this long are removed when a new one is written.
MAX_INDEX_AGE_SECONDS = 30 * 24 * 3600
#: At most this many index files are kept (one per interpreter, sys.path and group).
MAX_INDEX_FILES = 32
#: Files modified this recently are not trusted to show a later change in their stat.
RACY_SECONDS = 2
#: An index file is marked as used (its mtime set to now) at most this often.
TOUCH_SECONDS = 24 * 3600

_SUFFIXES = (".dist-info", ".egg-info")


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


# -- discovery ------------------------------------------------------------------------


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
        key = "\0".join([sys.executable, sys.version, group, *search_path])
        index_file = _index_file(key)
        fingerprint, youngest_ns = _fingerprint(key, search_path)
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
    entries = tuple([kept[name] for name in sorted(kept)])
    return entries, tuple(clashes)


# -- the scan -------------------------------------------------------------------------


def _scan(group: str, search_path: list[str]) -> list[PluginEntry]:
    """Ask importlib.metadata, in sys.path order; distributions deduplicated by name."""
    from importlib.metadata import distributions

    found: list[PluginEntry] = []
    seen: set[str] = set()
    for dist in distributions(path=search_path):
        _take(dist, group, found, seen)
    return found


def _take(dist: Any, group: str, found: list[PluginEntry], seen: set[str]) -> None:
    """Read one importlib.metadata Distribution into *found*."""
    try:
        name = dist.metadata["Name"] or ""
        normalized = _normalize(name)
        if not normalized or normalized in seen:
            return
        seen.add(normalized)
        points = dist.entry_points.select(group=group)
    except Exception as error:  # one unreadable distribution must not hide the others
        logger.warning(
            "Skipping the distribution at %s: its metadata cannot be read (%s).",
            _location(dist),
            error,
        )
        return
    if not points:
        return
    location = _location(dist)
    for point in points:
        found.append(PluginEntry(point.name, point.value, name, dist.version, location))


def _location(dist: Any) -> str:
    return str(getattr(dist, "_path", "") or dist.locate_file(""))


def _normalize(name: str) -> str:
    """PEP 503: runs of ``-``, ``_`` and ``.`` are one ``-``; case does not count."""
    parts = name.replace("_", "-").replace(".", "-").lower().split("-")
    return "-".join(part for part in parts if part)


# -- the index ------------------------------------------------------------------------


def _index_file(key: str) -> str:
    """The index file for *key* (interpreter, group, path), named by a 64-bit checksum;
    the key itself is part of the fingerprint, so two keys can never share an index."""
    number = int.from_bytes(key.encode("utf-8", "surrogatepass"), "big")
    digest = number % 0xFFFFFFFFFFFFFFC5  # the largest prime below 2**64
    return os.path.join(cache_dir(), f"entry-points-{digest:016x}.idx")


def _fingerprint(key: str, search_path: list[str]) -> tuple[list[str | int], int]:
    """Everything on the path that could change which entry points exist, as a flat
    list (the key; then per path entry ``"P" + entry`` and, per metadata folder,
    ``"D" + name`` and the stat of the folder and of its entry_points.txt, each
    ``size, mtime_ns, inode`` or ``-1`` when missing), and the newest modification time
    among the files it covers."""
    parts: list[str | int] = [key]
    add = parts.append
    youngest = 0
    by_fd = os.stat in os.supports_dir_fd and os.listdir in os.supports_fd
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    suffixes = _SUFFIXES
    for entry in search_path:
        add("P" + entry)
        base = entry or "."
        fd = -1
        try:
            if by_fd:
                fd = os.open(base, flags)
                names = os.listdir(fd)
            else:
                names = os.listdir(base)
        except NotADirectoryError:
            # A zip file on sys.path.
            try:
                st = os.stat(entry)
            except OSError:
                add(-1)
            else:
                youngest = max(youngest, st.st_mtime_ns)
                parts += (st.st_size, st.st_mtime_ns, st.st_ino)
            continue
        except OSError:
            continue  # missing or unreadable: importlib.metadata sees nothing there either
        try:
            egg = base.lower().endswith(".egg")
            names = sorted(
                n
                for n in names
                if n.endswith(suffixes)
                or n.lower().endswith(suffixes)
                or (egg and n.lower() == "egg-info")
            )
            for name in names:
                add("D" + name)
                if fd >= 0:
                    where, points, dir_fd = name, name + "/entry_points.txt", fd
                else:
                    where = os.path.join(base, name)
                    points, dir_fd = os.path.join(where, "entry_points.txt"), None
                for path in (where, points):
                    try:
                        st = os.stat(path, dir_fd=dir_fd)
                    except OSError:
                        add(-1)
                    else:
                        mtime = st.st_mtime_ns
                        if mtime > youngest:
                            youngest = mtime
                        parts += (st.st_size, mtime, st.st_ino)
        finally:
            if fd >= 0:
                os.close(fd)
    return parts, youngest


def _read_index(index_file: str, fingerprint: list[str | int]) -> list[PluginEntry] | None:
    try:
        fd = os.open(index_file, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        return None
    except OSError as error:
        _log_unreadable(index_file, error)
        return None
    try:
        st = os.fstat(fd)
        chunks = []
        while True:
            chunk = os.read(fd, max(st.st_size, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
    except OSError as error:
        _log_unreadable(index_file, error)
        return None
    finally:
        os.close(fd)
    try:
        fmt, stored_fingerprint, rows = marshal.loads(b"".join(chunks))
        if fmt != INDEX_FORMAT:
            return None
        if stored_fingerprint != fingerprint:
            return None
        entries = [PluginEntry(*row) for row in rows]
    except Exception as error:  # corrupt, truncated, from another format: rebuild
        _log_unreadable(index_file, error)
        return None
    if time.time() - st.st_mtime > TOUCH_SECONDS:
        try:
            os.utime(index_file)  # recently used: kept by _clean
        except OSError:
            pass
    return entries


def _log_unreadable(index_file: str, error: BaseException) -> None:
    logger.info(
        "Ignoring unreadable plugin index %s (%s); rebuilding it.",
        index_file,
        error,
    )


def _write_index(index_file: str, fingerprint: list[str | int], entries: list[PluginEntry]) -> None:
    directory = os.path.dirname(index_file)
    rows = [(e.name, e.value, e.distribution, e.version, e.location) for e in entries]
    try:
        os.makedirs(directory, exist_ok=True)
        temporary, handle = _temporary_file(directory)
        try:
            with os.fdopen(handle, "wb") as out:
                marshal.dump((INDEX_FORMAT, fingerprint, rows), out)
            os.replace(temporary, index_file)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError as error:
        logger.info(
            "Cannot write plugin index %s (%s); going on without it.",
            index_file,
            error,
        )
        return
    _clean(directory, keep=index_file)


def _temporary_file(directory: str) -> tuple[str, int]:
    """A new, private ``.tmp-*`` file in *directory* (tempfile.mkstemp, without
    importing tempfile): its path and an open descriptor."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        path = os.path.join(directory, f".tmp-{os.urandom(8).hex()}")
        try:
            return path, os.open(path, flags, 0o600)
        except FileExistsError:
            continue
    raise FileExistsError(f"No usable temporary file name in {directory}")


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
