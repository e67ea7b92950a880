"""Finding plugin entry points, with an on-disk index that is never stale and is only
trusted when nobody else could have written it.

Scanning every installed distribution with :mod:`importlib.metadata` reads and parses
a file per distribution on every start.  The index remembers the result of that scan
together with a fingerprint of everything that can change it, and is used only while
the fingerprint still matches:

* the interpreter (``sys.executable``, its version), the group and ``sys.path``, in
  order — a checksum of these names the index file, and the names themselves are
  part of the fingerprint;
* for each ``sys.path`` entry: each ``*.dist-info`` / ``*.egg-info`` in it, by name, and
  its ``entry_points.txt`` by size, ``st_mtime_ns``, ``st_ctime_ns`` and inode (a
  dist-info directory's own too, so a file added to it counts); a zip file on
  ``sys.path`` likewise.  ``st_ctime_ns`` is there because ``cp -p``, ``touch -r`` or
  ``rsync --inplace -t`` can rewrite a file in place with its size and old mtime: the
  kernel sets the ctime of every change to now, and nobody can set it back.

The fingerprint is stored whole (a list of names and numbers) and compared whole, not
as a digest.  A file changed twice within one tick of the filesystem clock could keep
all of those, so (as git does with its index) nothing is indexed while any
fingerprinted file was modified or changed less than :data:`RACY_SECONDS` ago: such a
scan is used but not remembered.

**What the index trusts.**  Whoever can write the index decides what ``load()``
imports, so it is read only when nobody but the current user could have written it,
and even then it is checked before use:

* the folder (``$TOCSIN_CACHE_DIR``, else ``$XDG_CACHE_HOME/tocsin``, else
  ``~/.cache/tocsin``; a relative ``TOCSIN_CACHE_DIR`` is refused, a relative
  ``XDG_CACHE_HOME`` ignored, as the XDG specification says) is created 0700, and
  any missing parent too, whatever the umask; an index file is created 0600;
* the folder and the index file must be owned by the current (effective) user and not
  writable by group or others, or the index is neither read nor written (a warning
  under the ``tocsin.plugins`` logger says why, and :func:`cache_problems` returns
  it for ``tocsin doctor``);
* the file is opened with ``O_NOFOLLOW`` and ``O_NONBLOCK`` relative to the opened
  folder, and used only if ``fstat`` says it is a regular file of at most
  :data:`MAX_INDEX_BYTES` (so a symbolic link to ``/dev/zero``, a FIFO or a huge
  file costs nothing but a scan);
* it is JSON (parsing untrusted JSON is safe; ``marshal``, the format before, is not
  meant for untrusted bytes), and every part of it is checked: the format number,
  the group, the fingerprint, and each entry — a plugin name, an entry-point value
  (``module`` or ``module:object``, dotted identifiers, optional ``[extras]``) and a
  distribution whose metadata folder the fingerprint lists under the ``sys.path``
  entry it names.  Anything else discards the index (it is rebuilt).

Those checks stop other users and damaged files.  They do not stop the current user:
anyone who can write files as you can already make Python run their code (a ``.pth``
file in your site-packages does), so the index does not try to.  On a platform
without POSIX file ownership and ``openat`` (Windows), there is no index: every start
scans.

Checking the fingerprint costs a directory listing per path entry and two ``stat``
calls per distribution (relative to the open directory), which is far cheaper than
opening and parsing the files.  The index is written atomically (a :mod:`tempfile`
file, then :func:`os.replace`), rebuilt when unreadable, and old index files are
removed: an index in use has its mtime set to now when it is read, at most once every
:data:`TOUCH_SECONDS`, and one untouched for :data:`MAX_INDEX_AGE_SECONDS` goes.  Only
files named as this module names them, owned by the current user and regular, are
ever removed.  ``TOCSIN_NO_CACHE=1`` bypasses the index entirely.

A scan (when the index does not match) is :func:`importlib.metadata.distributions` over
``sys.path``, first distribution of a name wins, as ``entry_points()`` does.  A scan
that found a distribution the fingerprint does not cover (one that does not live in a
metadata folder of a ``sys.path`` entry) is not remembered, since no fingerprint
would notice it change.

Startup cost matters here: :mod:`json` (1 ms) and :mod:`zlib` (0.1 ms) are imported
only when an index is read or written, :mod:`tempfile` only when one is written, and
none of them by ``import tocsin``.  The index file is named by :func:`zlib.crc32`
rather than :mod:`hashlib`, which would add 2.5 ms to every warm ``load()`` (see
:func:`_index_name`).
"""

from __future__ import annotations

import logging
import os
import re
import stat
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tocsin._errors import PluginConfigError
from tocsin._switches import env_switch

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

__all__ = ["Discovery", "PluginEntry", "cache_dir", "cache_problems", "discover"]

logger = logging.getLogger("tocsin.plugins")

ENV_NO_CACHE = "TOCSIN_NO_CACHE"
ENV_CACHE_DIR = "TOCSIN_CACHE_DIR"

#: Bump when the index file layout changes; older files are then ignored and cleaned.
INDEX_FORMAT = 4
#: Index files unused for this long are removed when a new one is written.
MAX_INDEX_AGE_SECONDS = 30 * 24 * 3600
#: The group of receivers declared in metadata is the plugin group's name and this.
RECEIVERS_SUFFIX = ".receivers"
#: At most this many index files are kept (one per interpreter, sys.path and group).
MAX_INDEX_FILES = 32
#: A larger file is not read.  An index takes about 130 bytes per distribution on the
#: path, and some 150 more (plus 30 per entry point) for each that declares a plugin
#: (measured: 300 plugins among 385 distributions made 94 KB), so 16 MiB would hold
#: about 50,000 plugin distributions: far beyond any real environment, and still
#: little memory to parse.
MAX_INDEX_BYTES = 16 * 1024 * 1024
#: Files modified (or changed) this recently are not trusted to show a later change
#: in their stat.
RACY_SECONDS = 2
#: An index file is marked as used (its mtime set to now) at most this often.
TOUCH_SECONDS = 24 * 3600

_SUFFIXES = (".dist-info", ".egg-info")
#: The files this module creates, and so the only ones :func:`_clean` may remove:
#: indexes (16 hex digits before format 3, 8 since) and temporary files (tempfile's
#: names since format 3, ``.tmp-`` and 16 hex digits before).
_INDEX_NAME = r"entry-points-(?:[0-9a-f]{8}|[0-9a-f]{16})\.idx"
_TEMPORARY_PREFIX = ".entry-points-"
_TEMPORARY_SUFFIX = ".tmp"
_TEMPORARY_NAME = r"\.entry-points-[a-z0-9_]{8}\.tmp|\.tmp-[0-9a-f]{16}"
#: An entry-point value as ``EntryPoint.load()`` reads it, with identifiers for names.
_VALUE = re.compile(
    r"(?P<module>[^\W\d]\w*(?:\.[^\W\d]\w*)*)\s*"
    r"(?::\s*(?P<attribute>[^\W\d]\w*(?:\.[^\W\d]\w*)*)\s*)?"
    r"(?:\[[^\[\]]*\]\s*)?"
)

_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
#: Whether the index can be kept safely here: file owners, and calls relative to an
#: open folder (so a folder checked is the folder used).
_SUPPORTED = (
    hasattr(os, "geteuid")
    and bool(_O_DIRECTORY and _O_NOFOLLOW)
    and {os.open, os.stat, os.unlink, os.rename} <= os.supports_dir_fd
    and {os.scandir, os.utime} <= os.supports_fd
)


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
        """The module the value names (extras, as in ``mod:obj [fast]``, left out)."""
        return _split_value(self.value)[0]

    @property
    def attribute(self) -> str | None:
        """The dotted object path after ``:``, or None for a module plugin."""
        return _split_value(self.value)[1]


def _split_value(value: str) -> tuple[str, str | None]:
    """(module, attribute) of an entry-point value, as ``EntryPoint.load()`` reads it."""
    match = _VALUE.fullmatch(value.strip())
    if match is not None:
        return match["module"], match["attribute"]
    module, _, attribute = value.partition(":")  # not well-formed: import reports it
    return module.strip(), attribute.strip() or None


@dataclass(frozen=True)
class Discovery:
    """What a scan found: entries by name, and the name clashes it resolved."""

    entries: tuple[PluginEntry, ...]  # one per name, sorted by name
    #: (kept, ignored) pairs: the same plugin name from two distributions.
    clashes: tuple[tuple[PluginEntry, PluginEntry], ...]
    from_cache: bool
    #: Why the index could not be used (or kept) this time, in words; see cache_problems().
    cache_problems: tuple[str, ...] = ()
    #: The entry points of ``<group>.receivers`` (receivers declared in metadata, see
    #: tocsin._declared), found by the same scan and kept in the same index.
    declared: tuple[PluginEntry, ...] = ()


# -- discovery ------------------------------------------------------------------------


def cache_dir() -> str:
    """Where index files live: $TOCSIN_CACHE_DIR, else $XDG_CACHE_HOME/tocsin, else
    ~/.cache/tocsin.

    A relative ``TOCSIN_CACHE_DIR`` is a :class:`~tocsin.PluginConfigError` (it would
    put the index wherever the process happens to start); a relative
    ``XDG_CACHE_HOME`` is ignored, as the XDG Base Directory specification says.
    """
    folder = _locate()
    if folder is None:
        raise PluginConfigError(_NO_HOME)
    return folder


_NO_HOME = (
    "The plugin index has no folder: the home folder is not an absolute path (is HOME "
    f"set?). Set {ENV_CACHE_DIR} to an absolute path, or {ENV_NO_CACHE}=1."
)


def _locate() -> str | None:
    """:func:`cache_dir`, or None when the home folder is not absolute."""
    explicit = os.environ.get(ENV_CACHE_DIR, "")
    if explicit:
        if not os.path.isabs(explicit):
            raise PluginConfigError(
                f"Environment variable {ENV_CACHE_DIR}={explicit!r} is a relative path; the "
                f"plugin index would go wherever the process is started. Give an absolute "
                f"path, or unset it to use $XDG_CACHE_HOME/tocsin or ~/.cache/tocsin."
            )
        return explicit
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # unset, empty or relative: "invalid and should be ignored"
        home = os.path.expanduser("~")
        if not os.path.isabs(home):
            return None
        base = os.path.join(home, ".cache")
    return os.path.join(base, "tocsin")


def discover(group: str, *, use_cache: bool = True, path: Sequence[str] | None = None) -> Discovery:
    """Return the entry points of *group* visible on *path* (default ``sys.path``).

    The first distribution of a name on the path wins (a distribution seen twice is
    counted once); a plugin name declared by two different distributions keeps the
    first and reports the clash.
    """
    search_path = list(sys.path if path is None else path)
    if env_switch(ENV_NO_CACHE):  # read even with use_cache=False: a bad value is an error
        use_cache = False
    if not use_cache or not _SUPPORTED:
        (found, declared), _ = _scan(group, search_path, None)
        entries, clashes = _resolve(found)
        return Discovery(entries, clashes, False, (), tuple(declared))
    folder = _locate()
    key = "\0".join([sys.executable, sys.version, group, *search_path])
    fingerprint = _fingerprint(key, search_path)
    name = _index_name(key)
    problems: list[_Problem] = []
    raw: tuple[list[PluginEntry], list[PluginEntry]] | None = None
    if folder is None:
        problems.append(_Problem(logging.INFO, _NO_HOME))
    else:
        raw, problem = _read_index(folder, name, group, fingerprint)
        if problem is not None:
            problems.append(problem)
    from_cache = raw is not None
    if raw is None:
        raw, document = _scan(group, search_path, fingerprint)
        racy = time.time_ns() - fingerprint.youngest_ns <= RACY_SECONDS * 1_000_000_000
        if folder is not None and document is not None and not racy:
            # Also over an index that was damaged, or not a regular file: the new one
            # replaces it.  An unsafe folder is refused again, and said once.
            problem = _write_index(folder, name, document, group, fingerprint)
            if problem is not None and all(p.reason != problem.reason for p in problems):
                problems.append(problem)
    for problem in problems:
        logger.log(problem.level, "%s", problem.reason)
    entries, clashes = _resolve(raw[0])
    reasons = tuple(p.reason for p in problems)
    return Discovery(entries, clashes, from_cache, reasons, tuple(raw[1]))


def cache_problems(group: str, path: Sequence[str] | None = None) -> list[str]:
    """Why the entry-point index of *group* on *path* (default ``sys.path``) cannot
    be used right now, one sentence each (what is wrong and what to do); empty when
    it can, or when it is switched off.

    It only looks: nothing is written, rebuilt or removed.  An index that is merely
    out of date (the next ``load()`` rebuilds it) or not written yet is not a problem.
    """
    try:
        if env_switch(ENV_NO_CACHE) or not _SUPPORTED:
            return []
        folder = _locate()
    except PluginConfigError as error:
        return [str(error)]
    if folder is None:
        return [_NO_HOME]
    search_path = list(sys.path if path is None else path)
    key = "\0".join([sys.executable, sys.version, group, *search_path])
    fingerprint = _fingerprint(key, search_path)
    _, problem = _read_index(folder, _index_name(key), group, fingerprint, touch=False)
    if problem is not None:
        return [problem.reason]
    if os.path.isdir(folder) and not os.access(folder, os.W_OK | os.X_OK):
        return [
            f"Cannot write the plugin index in {folder} (no write permission): every "
            f"start scans all installed distributions. Make the folder yours, or set "
            f"{ENV_CACHE_DIR} to a folder of your own."
        ]
    return []


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


def _scan(
    group: str, search_path: list[str], fingerprint: _Fingerprint | None
) -> tuple[tuple[list[PluginEntry], list[PluginEntry]], dict[str, Any] | None]:
    """Ask importlib.metadata, in sys.path order; distributions deduplicated by name.

    With a *fingerprint*, also return the index document to remember the result by,
    or None when some distribution found is not one the fingerprint covers.
    """
    from importlib.metadata import distributions

    found: list[PluginEntry] = []
    declared: list[PluginEntry] = []
    receivers = group + RECEIVERS_SUFFIX
    seen: set[str] = set()
    rows: list[list[Any]] | None = [] if fingerprint is not None else None
    entry_rows: list[list[Any]] = []
    declared_rows: list[list[Any]] = []
    # One path entry at a time (importlib.metadata goes through them in this order
    # too), so that each distribution is known by the entry it was found in.
    for position, entry in enumerate(search_path):
        for dist in distributions(path=[entry]):
            taken = _take(dist, (group, receivers), seen)
            if taken is _NAMELESS:
                # Warned about; not remembered, so that every load() warns until the
                # install is repaired (an index would skip it silently).
                rows = None
                continue
            if taken is None:
                continue
            name, points = taken
            location = _location(dist)
            for point in points:
                made = PluginEntry(point.name, point.value, name, dist.version, location)
                (declared if point.group == receivers else found).append(made)
            if rows is None or fingerprint is None:
                continue
            folder = getattr(getattr(dist, "_path", None), "name", None)
            if not isinstance(folder, str) or not fingerprint.lists(position, folder):
                logger.debug(
                    "Not indexing the scan: the distribution at %s is not in a metadata "
                    "folder the index fingerprint covers.",
                    location,
                )
                rows = None
                continue
            number = len(rows)
            rows.append([name, dist.version, position, folder, location])
            for point in points:
                row = [point.name, point.value, number]
                (declared_rows if point.group == receivers else entry_rows).append(row)
    if rows is None:
        return (found, declared), None
    document = {
        "format": INDEX_FORMAT,
        "group": group,
        "fingerprint": fingerprint.parts if fingerprint is not None else [],
        "distributions": rows,
        "entries": entry_rows,
        "declared": declared_rows,
    }
    return (found, declared), document


#: What _take() answers for a distribution without a name that declares entry points.
_NAMELESS: Any = ("", ())


def _take(dist: Any, groups: tuple[str, ...], seen: set[str]) -> tuple[str, Any] | None:
    """The name and the entry points in *groups* of one importlib.metadata Distribution;
    None for one already seen (by normalized name), unreadable, or without any;
    :data:`_NAMELESS` (warned about) for one without a name that declares some."""
    try:
        name = dist.metadata.get("Name") or ""  # [] warns on 3.12+ for a missing key
        normalized = _normalize(name)
        if not normalized:
            return _NAMELESS if _report_nameless(dist, groups) else None
        if normalized in seen:
            return None
        seen.add(normalized)
        points = [point for point in dist.entry_points if point.group in groups]
    except Exception as error:  # one unreadable distribution must not hide the others
        logger.warning(
            "Skipping the distribution at %s: its metadata cannot be read (%s).",
            _location(dist),
            error,
        )
        return None
    if not points:
        return None
    return name, points


def _report_nameless(dist: Any, groups: tuple[str, ...]) -> bool:
    """A distribution whose METADATA has no ``Name`` (a broken or half-written install)
    is skipped; when it declares entry points of these groups, a warning says so,
    naming its folder (and True is returned)."""
    points = sorted(f"{p.name} = {p.value}" for p in dist.entry_points if p.group in groups)
    if points:
        logger.warning(
            "Skipping the distribution at %s: its METADATA has no Name, so its entry "
            "points in %s (%s) are not loaded. Reinstall it (pip install --force-reinstall) "
            "or remove that folder.",
            _location(dist),
            " and ".join(repr(g) for g in groups),
            "; ".join(points),
        )
    return bool(points)


def _location(dist: Any) -> str:
    return str(getattr(dist, "_path", "") or dist.locate_file(""))


def _normalize(name: str) -> str:
    """PEP 503: runs of ``-``, ``_`` and ``.`` are one ``-``; case does not count."""
    parts = name.replace("_", "-").replace(".", "-").lower().split("-")
    return "-".join(part for part in parts if part)


# -- the fingerprint --------------------------------------------------------------------


class _Fingerprint:
    """Everything on the path that could change which entry points exist."""

    __slots__ = ("folders", "parts", "youngest_ns")

    def __init__(
        self, parts: list[str | int], youngest_ns: int, folders: list[frozenset[str] | None]
    ) -> None:
        #: The key, then per path entry ``"P" + entry`` and, per metadata folder,
        #: ``"D" + name`` and the stat of the folder and of its entry_points.txt, each
        #: ``size, mtime_ns, ctime_ns, inode`` or ``-1`` when missing.
        self.parts = parts
        #: The newest mtime or ctime among the files it covers.
        self.youngest_ns = youngest_ns
        #: Per path entry: the metadata folder names in it, or None for an archive
        #: (whose members the archive's own stat covers).
        self.folders = folders

    def lists(self, position: int, folder: str) -> bool:
        """Whether metadata folder *folder* of path entry number *position* is covered."""
        if not 0 <= position < len(self.folders):
            return False
        names = self.folders[position]
        if names is None:  # in an archive: a top-level metadata folder
            return "/" not in folder and folder.lower().endswith(_SUFFIXES)
        return folder in names


def _fingerprint(key: str, search_path: list[str]) -> _Fingerprint:
    """Everything on the path that could change which entry points exist."""
    parts: list[str | int] = [key]
    folders: list[frozenset[str] | None] = []
    add = parts.append
    youngest = 0
    by_fd = os.stat in os.supports_dir_fd and os.listdir in os.supports_fd
    flags = os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC
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
            folders.append(None)
            try:
                st = os.stat(entry)
            except OSError:
                add(-1)
            else:
                youngest = max(youngest, st.st_mtime_ns, st.st_ctime_ns)
                parts += (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
            continue
        except OSError:
            folders.append(frozenset())
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
            folders.append(frozenset(names))
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
                        mtime, ctime = st.st_mtime_ns, st.st_ctime_ns
                        if mtime > youngest:
                            youngest = mtime
                        if ctime > youngest:
                            youngest = ctime
                        parts += (st.st_size, mtime, ctime, st.st_ino)
        finally:
            if fd >= 0:
                os.close(fd)
    return _Fingerprint(parts, youngest, folders)


# -- the index file -------------------------------------------------------------------


class _Problem:
    """Why the index was not used or kept: logged at *level*, and shown by doctor."""

    __slots__ = ("level", "reason")

    def __init__(self, level: int, reason: str) -> None:
        self.level = level
        self.reason = reason


class _Invalid(Exception):
    """The index document is not one this module would have written."""


def _index_name(key: str) -> str:
    """The index file for *key* (interpreter, group, path).

    The name only spreads index files apart: the key itself is part of the
    fingerprint and compared whole, so two keys whose names collide never share an
    index (they take turns rebuilding it).  So a 32-bit checksum will do, and
    :func:`zlib.crc32` is one: :mod:`hashlib` would cost 2.3-2.7 ms of every warm
    ``load()`` loading OpenSSL (``-X importtime``), against 0.13 ms for :mod:`zlib`.
    """
    import zlib

    return f"entry-points-{zlib.crc32(key.encode('utf-8', 'surrogatepass')):08x}.idx"


def _unsafe(st: os.stat_result, path: str, what: str) -> str | None:
    """Why an index file or folder with this stat cannot be trusted, if it cannot."""
    user = os.geteuid()
    if st.st_uid != user:
        return (
            f"Ignoring the plugin index {what} {path}: it is owned by uid {st.st_uid}, not "
            f"by you (uid {user}), and whoever writes the index chooses what load() "
            f"imports. Remove it, or set {ENV_CACHE_DIR} to a folder of your own."
        )
    if st.st_mode & 0o022:
        who = {0o020: "its group", 0o002: "others", 0o022: "its group and others"}
        return (
            f"Ignoring the plugin index {what} {path}: it is writable by "
            f"{who[st.st_mode & 0o022]} (mode {stat.S_IMODE(st.st_mode):04o}), and whoever "
            f"writes the index chooses what load() imports. Run: chmod go-w {path}"
        )
    return None


def _open_folder(folder: str) -> tuple[int, _Problem | None]:
    """An open descriptor of the index folder (-1 if it does not exist or cannot be
    used), checked: a directory of the current user's that nobody else can write."""
    try:
        fd = os.open(folder, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
    except FileNotFoundError:
        return -1, None
    except OSError as error:
        return -1, _Problem(
            logging.INFO,
            f"Cannot open the plugin index folder {folder} ({error}); going on without "
            f"the index. Set {ENV_CACHE_DIR} to a folder of your own.",
        )
    reason = _unsafe(os.fstat(fd), folder, "folder")
    if reason is not None:
        os.close(fd)
        return -1, _Problem(logging.WARNING, reason)
    return fd, None


def _read_index(
    folder: str, name: str, group: str, fingerprint: _Fingerprint, *, touch: bool = True
) -> tuple[tuple[list[PluginEntry], list[PluginEntry]] | None, _Problem | None]:
    """The entries (and declared receivers) the index *name* in *folder* remembers,
    if it can be trusted and still matches; otherwise None, and why when that is not
    just "out of date"."""
    path = os.path.join(folder, name)
    dir_fd, problem = _open_folder(folder)
    if dir_fd < 0:
        return None, problem
    try:
        data, problem = _read_file(dir_fd, name, path, touch=touch)
    finally:
        os.close(dir_fd)
    if data is None:
        return None, problem
    try:
        import json

        document = json.loads(data)
        return _entries_from(document, group, fingerprint), None
    except Exception as error:  # not JSON, nested too deep, not what we write: rebuild
        return None, _Problem(
            logging.INFO, f"Ignoring unreadable plugin index {path} ({error}); rebuilding it."
        )


def _read_file(
    dir_fd: int, name: str, path: str, *, touch: bool
) -> tuple[bytes | None, _Problem | None]:
    """The bytes of index file *name*: a regular file of the user's, never too big."""
    flags = os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        return None, None
    except OSError as error:
        try:
            is_link = stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
        except OSError:
            is_link = False
        why = "it is a symbolic link, and only a regular file is read" if is_link else error
        return None, _Problem(
            logging.WARNING if is_link else logging.INFO,
            f"Ignoring the plugin index {path}: {why}. Remove it; it will be rebuilt.",
        )
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, _Problem(
                logging.WARNING,
                f"Ignoring the plugin index {path}: it is not a regular file (mode "
                f"{st.st_mode:o}). Remove it; it will be rebuilt.",
            )
        reason = _unsafe(st, path, "file")
        if reason is not None:
            return None, _Problem(logging.WARNING, reason)
        if st.st_size > MAX_INDEX_BYTES:
            return None, _too_big(path)
        chunks = []
        size = 0
        while size <= MAX_INDEX_BYTES:
            chunk = os.read(fd, max(st.st_size + 1 - size, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_INDEX_BYTES:  # it grew since fstat
            return None, _too_big(path)
        if touch and time.time() - st.st_mtime > TOUCH_SECONDS:
            os.utime(fd)  # recently used: kept by _clean
    except OSError as error:
        return None, _Problem(
            logging.INFO, f"Ignoring unreadable plugin index {path} ({error}); rebuilding it."
        )
    finally:
        os.close(fd)
    return b"".join(chunks), None


def _too_big(path: str) -> _Problem:
    return _Problem(
        logging.WARNING,
        f"Ignoring the plugin index {path}: it is larger than {MAX_INDEX_BYTES} bytes, "
        f"which no index of this module's comes near. Remove it; it will be rebuilt.",
    )


def _entries_from(
    document: Any, group: str, fingerprint: _Fingerprint
) -> tuple[list[PluginEntry], list[PluginEntry]] | None:
    """The entries of an index *document*, each checked; None when the document is
    out of date (another format, another fingerprint), :class:`_Invalid` when it is
    not one this module writes."""
    if not isinstance(document, dict) or type(document.get("format")) is not int:
        raise _Invalid("not a tocsin plugin index")
    if document["format"] != INDEX_FORMAT:
        return None
    keys = {"format", "group", "fingerprint", "distributions", "entries", "declared"}
    if set(document) != keys:
        raise _Invalid(f"unexpected keys {sorted(document)}")
    if document["fingerprint"] != fingerprint.parts:
        return None
    if document["group"] != group:
        raise _Invalid(f"an index of group {document['group']!r}, not {group!r}")
    distributions = document["distributions"]
    if type(distributions) is not list:
        raise _Invalid("distributions must be a list")
    # Run on every warm start for every plugin: the checks are inline, and cost about
    # 0.2 ms for 300 plugins beyond making their PluginEntry (timeit, 0.4 ms in all).
    known: list[tuple[str, str, str]] = []
    lists = fingerprint.lists
    for row in distributions:
        if type(row) is not list or len(row) != 5:
            raise _Invalid(f"malformed distribution {row!r}")
        name, version, position, folder, location = row
        if not (_is_text(name) and type(version) is str and type(location) is str):
            raise _Invalid(f"malformed distribution {row!r}")
        if type(position) is not int or type(folder) is not str or not lists(position, folder):
            raise _Invalid(f"distribution {name!r} is not in a folder the fingerprint lists")
        known.append((name, version, location))
    return _rows(document["entries"], known), _rows(document["declared"], known)


def _rows(entries: Any, known: list[tuple[str, str, str]]) -> list[PluginEntry]:
    """The checked entries of one list of an index document."""
    if type(entries) is not list:
        raise _Invalid("entries must be a list")
    found = []
    well_formed = _VALUE.fullmatch
    count = len(known)
    for row in entries:
        if type(row) is not list or len(row) != 3:
            raise _Invalid(f"malformed entry {row!r}")
        name, value, number = row
        if not (type(name) is str and name and name.isprintable() and name.strip() == name):
            raise _Invalid(f"malformed plugin name {name!r}")
        if "=" in name:
            raise _Invalid(f"malformed plugin name {name!r}")
        if type(value) is not str or well_formed(value) is None:
            raise _Invalid(f"malformed entry-point value {value!r}")
        if type(number) is not int or not 0 <= number < count:
            raise _Invalid(f"entry {name!r} names no distribution of the index")
        distribution, version, location = known[number]
        found.append(PluginEntry(name, value, distribution, version, location))
    return found


def _is_text(value: object) -> bool:
    """A non-empty, printable string without surrounding spaces (a name)."""
    return type(value) is str and value != "" and value.strip() == value and value.isprintable()


def _write_index(
    folder: str, name: str, document: dict[str, Any], group: str, fingerprint: _Fingerprint
) -> _Problem | None:
    """Write *document* as index *name* in *folder* (created 0700 if missing), atomically,
    as a 0600 file; then clean the folder.  Why not, if it could not be written."""
    import json
    import tempfile

    try:
        _entries_from(document, group, fingerprint)  # what would be read back
    except _Invalid as error:
        logger.debug("Not indexing the scan: %s.", error)
        return None
    data = json.dumps(document, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    if len(data) > MAX_INDEX_BYTES:
        logger.debug("Not indexing the scan: %d bytes is over the limit.", len(data))
        return None
    try:
        _make_folder(folder)
        dir_fd, problem = _open_folder(folder)
        if dir_fd < 0:
            return problem
        try:
            handle, temporary = tempfile.mkstemp(
                prefix=_TEMPORARY_PREFIX, suffix=_TEMPORARY_SUFFIX, dir=folder
            )
            temporary = os.path.basename(temporary)
            try:
                with os.fdopen(handle, "wb") as out:
                    os.fchmod(out.fileno(), 0o600)  # mkstemp's mode, less the umask
                    out.write(data)
                os.rename(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                os.unlink(temporary, dir_fd=dir_fd)
                raise
            _clean(dir_fd, keep=name)
        finally:
            os.close(dir_fd)
    except OSError as error:
        return _Problem(
            logging.INFO,
            f"Cannot write plugin index {os.path.join(folder, name)} ({error}); going on "
            f"without it.",
        )
    return None


def _make_folder(folder: str) -> None:
    """Create *folder* and any missing parent 0700, whatever the umask (the XDG Base
    Directory specification asks the same of ``~/.cache``)."""
    missing = []
    current = folder
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        fd = os.open(path, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC)
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) != 0o700:  # a umask such as 0o177
                os.fchmod(fd, 0o700)
        finally:
            os.close(fd)


def _clean(dir_fd: int, keep: str) -> None:
    """Remove index files unused for long (or beyond the newest few), and temporary
    files a crashed writer left behind: only files named as this module names them,
    regular, and owned by the current user; anything else in the folder is left alone."""
    now = time.time()
    user = os.geteuid()
    indexes: list[tuple[float, str]] = []
    try:
        with os.scandir(dir_fd) as listing:
            for item in listing:
                name = item.name
                index = re.fullmatch(_INDEX_NAME, name) is not None
                if name == keep or not (index or re.fullmatch(_TEMPORARY_NAME, name)):
                    continue
                try:
                    st = item.stat(follow_symlinks=False)
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode) or st.st_uid != user:
                    continue
                if index:
                    indexes.append((st.st_mtime, name))
                elif now - st.st_mtime > 3600:
                    _unlink(dir_fd, name)
    except OSError:
        return
    indexes.sort(reverse=True)  # newest first
    for position, (mtime, name) in enumerate(indexes):
        if position >= MAX_INDEX_FILES - 1 or now - mtime > MAX_INDEX_AGE_SECONDS:
            _unlink(dir_fd, name)


def _unlink(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass
