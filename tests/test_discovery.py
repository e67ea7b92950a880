"""Entry-point discovery: order, name clashes, duplicates, and the on-disk index.

"Next start" behaviour is tested in fresh interpreters (``scenario``), with the plugin
directories on PYTHONPATH and the index in a temporary TOCSIN_CACHE_DIR.
"""

from __future__ import annotations

import contextlib
import json
import marshal
import os
import random
import shutil
import stat
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from plugin_helpers import (
    ALL_NAMES,
    BROKEN_NAMES,
    DISTRIBUTIONS,
    GROUP,
    age,
    index_files,
    write_dist_info,
    write_module,
)
from tocsin import PluginConfigError, _discovery
from tocsin._discovery import Discovery, PluginEntry, cache_dir, cache_problems, discover

NOTE = """
import tt_host
tt_host.note("import {module}")
"""

#: Run in a fresh interpreter: what discovery finds, and whether the index served it.
PROBE = """
pm = PluginManager(GROUP, autoload=False)
pm.load()
found = pm.last_discovery
out["from_cache"] = found.from_cache
out["names"] = [e.name for e in found.entries]
out["values"] = {e.name: e.value for e in found.entries}
"""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """In-process discovery with its index in a temporary directory."""
    monkeypatch.delenv("TOCSIN_NO_CACHE", raising=False)
    folder = tmp_path / "index-cache"
    monkeypatch.setenv("TOCSIN_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def site(plugin_site: Path, tmp_path: Path) -> Path:
    """A private copy of the pip-built plugins, to change at will."""
    return Path(shutil.copytree(plugin_site, tmp_path / "site"))


def plugin(root: Path, dist: str, version: str, points: dict[str, str]) -> Path:
    """A hand-written distribution: dist-info plus one noting module per entry point."""
    write_dist_info(root, dist, version, points)
    for value in points.values():
        module = value.partition(":")[0]
        if not (root / f"{module}.py").exists():
            write_module(root, module, NOTE.format(module=module))
    return root


def entry_points_file(site: Path, dist: str) -> Path:
    [folder] = site.glob(f"{dist.replace('-', '_')}-*.dist-info")
    return folder / "entry_points.txt"


# -- what is found, and in which order -------------------------------------------------


def test_real_distributions_are_found_with_their_metadata(scenario: Any) -> None:
    result = scenario(
        """
        pm = PluginManager(GROUP, autoload=False)
        out["loaded"] = pm.load()
        out["entries"] = [
            [e.name, e.value, e.distribution, e.version, os.path.basename(e.location)]
            for e in pm.last_discovery.entries
        ]
        out["clashes"] = len(pm.last_discovery.clashes)
        """
    )
    expected = sorted(
        [name, value, dist, version, f"{dist.replace('-', '_')}-{version}.dist-info"]
        for dist, (version, points, _) in DISTRIBUTIONS.items()
        for name, value in points.items()
    )
    assert result["entries"] == expected
    assert [e[0] for e in result["entries"]] == ALL_NAMES
    assert result["clashes"] == 0
    assert result["loaded"] == []
    assert result["imported"] == []  # autoload=False imports nothing


def test_many_plugins_load_in_entry_point_name_order(scenario: Any, tmp_path: Path) -> None:
    rng = random.Random(20240601)
    dirs = [tmp_path / f"dir{i}" for i in range(3)]
    module_of: dict[str, str] = {}
    for number in range(150):
        points = {}
        for extra in range(2 if number % 10 == 0 else 1):  # some declare two plugins
            name = "".join(rng.choice("abcdefghij-") for _ in range(6)).strip("-") or "x"
            name = f"{name}-{number}-{extra}"
            points[name] = module_of[name] = f"tt_many_{number}_{extra}"
        plugin(rng.choice(dirs), f"tt-many-{number}", "1.0", points)
    code = """
        import tt_host
        pm = PluginManager(GROUP)
        out["loaded"] = pm.load()
        out["listed"] = list(pm)
        out["events"] = [e for e in tt_host.events if "tt_many_" in e]
        """
    result = scenario(code, path=[*dirs, scenario.site])
    ours = sorted(module_of)
    assert len(ours) == 165
    assert [n for n in result["loaded"] if n in module_of] == ours
    assert [n for n in result["listed"] if n in module_of] == ours
    assert result["events"] == [f"import {module_of[name]}" for name in ours]
    assert len(result["warnings"]) == len(BROKEN_NAMES)  # the pip-built broken ones only
    # The same with the directories the other way round: the order is by name only.
    again = scenario(code, path=[*reversed(dirs), scenario.site])
    assert again["loaded"] == result["loaded"]
    assert again["events"] == result["events"]


# -- one name, two distributions; one distribution, seen twice --------------------------

CLASH = """
import tt_host
pm = PluginManager(GROUP)
out["loaded"] = pm.load()
out["again"] = pm.load()
out["kept"] = [pm["dup"].distribution, pm["dup"].version]
out["clashes"] = [[k.distribution, i.distribution] for k, i in pm.last_discovery.clashes]
out["events"] = [e for e in tt_host.events if e.startswith("import tt_dup")]
"""


@pytest.fixture
def two_claims(tmp_path: Path) -> tuple[Path, Path]:
    one = plugin(tmp_path / "one", "tt-dup-one", "1.0", {"dup": "tt_dup_one"})
    two = plugin(tmp_path / "two", "tt-dup-two", "2.0", {"dup": "tt_dup_two"})
    return one, two


@pytest.mark.parametrize("first", [0, 1])
def test_one_name_from_two_distributions_keeps_the_first_on_sys_path(
    scenario: Any, two_claims: tuple[Path, Path], first: int
) -> None:
    path = [two_claims[first], two_claims[1 - first], scenario.site]
    kept, other = [("tt-dup-one", "1.0"), ("tt-dup-two", "2.0")][:: 1 if first == 0 else -1]
    result = scenario(CLASH, path=path)
    assert "dup" in result["loaded"]
    assert result["again"] == []
    assert result["kept"] == list(kept)
    assert result["clashes"] == [[kept[0], other[0]]]
    assert result["events"] == [f"import tt_{kept[0][3:].replace('-', '_')}"]
    clash = [w for w in result["warnings"] if "declared by two distributions" in w]
    assert len(clash) == 1  # reported once, though load() ran twice
    message = clash[0]
    assert f"{kept[0]} {kept[1]}" in message
    assert f"{other[0]} {other[1]}" in message
    assert f"Using {kept[0]}, the first on sys.path" in message
    assert str(path[0]) in message
    assert str(path[1]) in message
    assert any(log[1] == "DEBUG" and log[2] == message for log in result["logs"])


def test_a_hand_written_distribution_claiming_a_pip_built_plugins_name(
    scenario: Any, tmp_path: Path
) -> None:
    fork = plugin(tmp_path / "fork", "tt-alpha-fork", "9.9", {"alpha": "tt_alpha_fork"})
    result = scenario(
        """
        pm = PluginManager(GROUP, allowed=["alpha"])
        pm.load()
        out["alpha"] = [pm["alpha"].distribution, pm["alpha"].entry_point]
        """,
        path=[scenario.site, fork],
    )
    assert result["alpha"] == ["tt-alpha", "tt_alpha.receivers"]
    assert "tt_alpha_fork" not in result["imported"]
    [warning] = result["warnings"]
    assert "tt-alpha 1.0.0" in warning
    assert "tt-alpha-fork 9.9" in warning


@pytest.mark.parametrize("how", ["same-directory-twice", "copied", "renamed-spelling"])
def test_one_distribution_seen_twice_is_counted_once(
    scenario: Any, two_claims: tuple[Path, Path], tmp_path: Path, how: str
) -> None:
    one = two_claims[0]
    if how == "same-directory-twice":
        second = one
    elif how == "copied":
        second = Path(shutil.copytree(one, tmp_path / "copy"))
    else:  # the same project name, spelled another way (PEP 503 normalization)
        second = plugin(tmp_path / "spelled", "TT__Dup..One", "1.1", {"dup": "tt_dup_one"})
    result = scenario(CLASH, path=[one, second, scenario.site])
    assert result["kept"] == ["tt-dup-one", "1.0"]
    assert result["clashes"] == []
    assert not [w for w in result["warnings"] if "two distributions" in w]
    assert result["events"] == ["import tt_dup_one"]


def test_discover_resolves_in_path_order(cache: Path, two_claims: tuple[Path, Path]) -> None:
    one, two = two_claims
    plugin(two, "tt-solo", "3", {"solo": "tt_solo"})
    found = discover(GROUP, path=[str(one), str(two)])
    assert isinstance(found, Discovery)
    assert [(e.name, e.distribution) for e in found.entries] == [
        ("dup", "tt-dup-one"),
        ("solo", "tt-solo"),
    ]
    [(kept, ignored)] = found.clashes
    assert (kept.distribution, ignored.distribution) == ("tt-dup-one", "tt-dup-two")
    assert kept.location == str(one / "tt_dup_one-1.0.dist-info")
    reverse = discover(GROUP, path=[str(two), str(one)])
    assert [e.distribution for e in reverse.entries] == ["tt-dup-two", "tt-solo"]


def test_entry_point_values_name_a_module_or_an_object_in_it() -> None:
    entry = PluginEntry("x", "pkg.mod : holder.plugin", "d", "1", "/")
    assert (entry.module, entry.attribute) == ("pkg.mod", "holder.plugin")
    entry = PluginEntry("x", "pkg.mod", "d", "1", "/")
    assert (entry.module, entry.attribute) == ("pkg.mod", None)


def test_a_dotted_attribute_entry_point_is_loaded(scenario: Any, tmp_path: Path) -> None:
    nested = tmp_path / "nested"
    write_dist_info(nested, "tt-nested", "1", {"nested": "tt_nested:holder.plugin"})
    write_module(
        nested,
        "tt_nested",
        """
        import types
        import tocsin
        import tt_host

        class Plugin:
            @tocsin.receiver(tt_host.ping)
            def on_ping(self, sender, **kwargs):
                return "nested"

        holder = types.SimpleNamespace(plugin=Plugin())
        """,
    )
    result = scenario(
        """
        import tt_host
        pm = PluginManager(GROUP, allowed=["nested"])
        out["loaded"] = pm.load()
        out["ping"] = fired(tt_host.ping)
        """,
        path=[nested, scenario.site],
    )
    assert result["loaded"] == ["nested"]
    assert result["ping"] == ["nested"]


# -- the on-disk index --------------------------------------------------------------------


def settle(*roots: Path) -> None:
    """Wait until nothing under *roots* changed in the last RACY_SECONDS.

    ``age()`` sets mtimes back, but setting them is itself a change: the ctime (which
    nobody can set back) is now, and the index does not trust a file changed less
    than RACY_SECONDS ago, whichever of its times says so.
    """
    newest = max(os.lstat(p).st_ctime for root in roots for p in [root, *root.rglob("*")])
    delay = newest + _discovery.RACY_SECONDS + 0.05 - time.time()
    if delay > 0:
        time.sleep(delay)


def aged(*roots: Path) -> None:
    """Every metadata file of *roots* old, and settled: the next scan is remembered."""
    for root in roots:
        age(root)
    settle(*roots)


def test_the_index_is_written_once_files_are_old_enough_then_used(
    scenario: Any, site: Path
) -> None:
    os.utime(entry_points_file(site, "tt-alpha"))  # just installed
    first = scenario(PROBE, path=[site])
    assert first["names"] == ALL_NAMES
    assert not first["from_cache"]
    assert index_files(scenario.cache) == []  # a racy file: the scan is not remembered
    aged(site)
    second = scenario(PROBE, path=[site])
    assert not second["from_cache"]
    assert len(index_files(scenario.cache)) == 1
    third = scenario(PROBE, path=[site])
    assert third["from_cache"]
    assert third["names"] == ALL_NAMES
    assert third["values"] == second["values"]
    assert not list(scenario.cache.glob(".entry-points-*"))  # written atomically


def test_rewriting_entry_points_in_place_is_seen_on_the_next_start(
    scenario: Any, site: Path
) -> None:
    when = age(site, 7200)
    settle(site)
    scenario(PROBE, path=[site])
    assert scenario(PROBE, path=[site])["from_cache"]
    target = entry_points_file(site, "tt-alpha")
    before = target.stat()
    text = target.read_bytes()
    assert b"alpha = " in text
    with target.open("r+b") as handle:  # same file, same size, new content
        handle.write(text.replace(b"alpha = ", b"alphz = "))
        handle.truncate()
    os.utime(target, (when + 1, when + 1))  # and an mtime that is old, but not the same
    after = target.stat()
    assert (after.st_ino, after.st_size) == (before.st_ino, before.st_size)
    result = scenario(PROBE, path=[site])
    assert not result["from_cache"]
    assert "alphz" in result["names"]
    assert "alpha" not in result["names"]
    settle(site)
    scenario(PROBE, path=[site])
    cached = scenario(PROBE, path=[site])
    assert cached["from_cache"]
    assert cached["names"] == result["names"]
    # And a rewrite that leaves the file young is seen (and not remembered) too.
    with target.open("r+b") as handle:
        handle.write(text)
    fresh = scenario(PROBE, path=[site])
    assert "alpha" in fresh["names"]
    assert not fresh["from_cache"]


def test_a_rewrite_that_restores_size_inode_and_mtime_is_seen_by_its_ctime(
    cache: Path, tmp_path: Path
) -> None:
    """``cp -p`` over an existing file: same inode (opened with O_TRUNC), same size,
    and the mtime of the source, which here is the old mtime of the target."""
    root = plugin(tmp_path / "p", "tt-some", "1", {"some": "tt_some"})
    aged(root)
    assert not discover(GROUP, path=[str(root)]).from_cache
    assert discover(GROUP, path=[str(root)]).from_cache
    target = root / "tt_some-1.dist-info" / "entry_points.txt"
    before = target.stat()
    source = tmp_path / "entry_points.txt"
    source.write_bytes(target.read_bytes().replace(b"some = ", b"emos = "))
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    subprocess.run(["cp", "-p", str(source), str(target)], check=True)
    after = target.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert after.st_ctime_ns != before.st_ctime_ns
    found = discover(GROUP, path=[str(root)])
    assert not found.from_cache
    assert [e.name for e in found.entries] == ["emos"]
    settle(root)
    assert [e.name for e in discover(GROUP, path=[str(root)]).entries] == ["emos"]
    cached = discover(GROUP, path=[str(root)])
    assert cached.from_cache
    assert [e.name for e in cached.entries] == ["emos"]


def test_distributions_added_or_removed_are_seen_on_the_next_start(
    scenario: Any, site: Path, tmp_path: Path
) -> None:
    aged(site)
    scenario(PROBE, path=[site])
    assert scenario(PROBE, path=[site])["from_cache"]
    plugin(site, "tt-newcomer", "1", {"newcomer": "tt_newcomer"})
    aged(site)  # even with old timestamps, a new dist-info name changes the fingerprint
    added = scenario(PROBE, path=[site])
    assert "newcomer" in added["names"]
    assert not added["from_cache"]
    shutil.rmtree(next(site.glob("tt_gamma-*.dist-info")))
    removed = scenario(PROBE, path=[site])
    assert "gamma" not in removed["names"]
    assert "newcomer" in removed["names"]
    # A dist-info that gains an entry_points.txt.
    quiet = site / "tt_quiet-1.dist-info"
    quiet.mkdir()
    (quiet / "METADATA").write_text("Metadata-Version: 2.1\nName: tt-quiet\nVersion: 1\n")
    aged(site)
    assert "quiet" not in scenario(PROBE, path=[site])["names"]
    (quiet / "entry_points.txt").write_text(f"[{GROUP}]\nquiet = tt_quiet\n")
    age(site)
    assert "quiet" in scenario(PROBE, path=[site])["names"]


def test_each_sys_path_has_its_own_index(scenario: Any, site: Path, tmp_path: Path) -> None:
    other = plugin(tmp_path / "other", "tt-other", "1", {"other": "tt_other"})
    aged(site, other)
    assert "other" not in scenario(PROBE, path=[site])["names"]
    assert "other" in scenario(PROBE, path=[site, other])["names"]
    assert len(index_files(scenario.cache)) == 2
    assert scenario(PROBE, path=[site])["from_cache"]
    assert "other" not in scenario(PROBE, path=[site])["names"]


def test_a_corrupt_index_is_rebuilt_on_the_next_start(scenario: Any, site: Path) -> None:
    aged(site)
    scenario(PROBE, path=[site])
    [index] = index_files(scenario.cache)
    good = index.read_bytes()
    index.write_bytes(b"\x00garbage\xff" * 10)
    result = scenario(PROBE, path=[site])
    assert result["names"] == ALL_NAMES
    assert not result["from_cache"]
    assert any(
        log[0] == "tocsin.plugins" and "Ignoring unreadable plugin index" in log[2]
        for log in result["logs"]
    )
    assert json.loads(index.read_bytes())["format"] == _discovery.INDEX_FORMAT
    assert index.read_bytes() == good
    assert scenario(PROBE, path=[site])["from_cache"]


@pytest.fixture(scope="module")
def some_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plugin folder (tt-some) aged and settled once, for the in-process tests that
    do not change it: each has its own index folder (``cache``)."""
    root = tmp_path_factory.mktemp("some") / "p"
    plugin(root, "tt-some", "1", {"some": "tt_some"})
    aged(root)
    return root


def _valid(cache: Path) -> bytes:
    [index] = index_files(cache)
    return index.read_bytes()


def _edit(good: bytes, change: Any) -> bytes:
    """The index *good* with *change* applied to its parsed document."""
    document = json.loads(good)
    change(document)
    return json.dumps(document).encode()


def _set(key: str, value: Any) -> Any:
    return lambda d: d.__setitem__(key, value)


DAMAGE = {
    "empty": lambda good: b"",
    "truncated": lambda good: good[: len(good) // 2],
    "garbage": lambda good: b"\x00garbage\xff" * 10,
    "random-bytes": lambda good: random.Random(14).randbytes(5000),
    "deeply-nested": lambda good: b"[" * 200_000 + b"]" * 200_000,
    "huge-number": lambda good: b"1" * 100_000,
    "not-utf8": lambda good: good.replace(b'"format"', b'"f\xffrmat"'),
    "marshal": lambda good: marshal.dumps((2, ["fingerprint"], [("a", "b", "c", "d", "e")])),
    "a-list": lambda good: b"[1, 2, 3]",
    "other-format": lambda good: _edit(good, _set("format", _discovery.INDEX_FORMAT + 1)),
    "format-as-text": lambda good: _edit(good, _set("format", str(_discovery.INDEX_FORMAT))),
    "extra-key": lambda good: _edit(good, _set("extra", 1)),
    "other-group": lambda good: _edit(good, _set("group", "other.group")),
    "fingerprint-as-text": lambda good: _edit(good, _set("fingerprint", "same")),
    "entries-not-a-list": lambda good: _edit(good, _set("entries", {"some": "tt_some"})),
    "short-entry": lambda good: _edit(good, _set("entries", [["some", "tt_some"]])),
    "entry-of-no-distribution": lambda good: _edit(good, _set("entries", [["some", "m", 7]])),
    "entry-number-as-bool": lambda good: _edit(good, _set("entries", [["some", "m", False]])),
    "empty-plugin-name": lambda good: _edit(good, _set("entries", [["", "tt_some", 0]])),
    "plugin-name-with-equals": lambda good: _edit(good, _set("entries", [["a=b", "m", 0]])),
    "plugin-name-with-newline": lambda good: _edit(good, _set("entries", [["a\nb", "m", 0]])),
    "value-not-a-module": lambda good: _edit(good, _set("entries", [["s", "os; import x", 0]])),
    "value-relative": lambda good: _edit(good, _set("entries", [["s", ".tt_some", 0]])),
    "value-not-text": lambda good: _edit(good, _set("entries", [["s", ["tt_some"], 0]])),
    "distribution-elsewhere": lambda good: _edit(
        good, lambda d: d["distributions"][0].__setitem__(3, "tt_evil-6.6.6.dist-info")
    ),
    "distribution-on-no-path-entry": lambda good: _edit(
        good, lambda d: d["distributions"][0].__setitem__(2, 5)
    ),
    "distribution-without-name": lambda good: _edit(
        good, lambda d: d["distributions"][0].__setitem__(0, "")
    ),
    "distribution-version-as-number": lambda good: _edit(
        good, lambda d: d["distributions"][0].__setitem__(1, 1)
    ),
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_every_kind_of_damaged_index_is_rebuilt(some_root: Path, cache: Path, damage: Any) -> None:
    root = some_root
    assert not discover(GROUP, path=[str(root)]).from_cache
    good = _valid(cache)
    [index] = index_files(cache)
    index.write_bytes(damage(good))
    found = discover(GROUP, path=[str(root)])
    assert not found.from_cache
    assert [e.name for e in found.entries] == ["some"]
    assert _valid(cache) == good
    assert discover(GROUP, path=[str(root)]).from_cache


def _poison(cache: Path) -> bytes:
    """Rename the index's first entry "poison", keeping everything else: an edit as the
    index's owner would make, which (by design) is trusted."""
    [index] = index_files(cache)
    index.write_bytes(_edit(index.read_bytes(), lambda d: d["entries"][0].__setitem__(0, "poison")))
    return index.read_bytes()


def test_tocsin_no_cache_bypasses_the_index(scenario: Any, site: Path) -> None:
    aged(site)
    scenario(PROBE, path=[site])
    poisoned = _poison(scenario.cache)
    # While the fingerprint matches, the index is trusted: that is what it is for...
    trusted = scenario(PROBE, path=[site])
    assert trusted["from_cache"]
    assert "poison" in trusted["names"]
    for off in ("0", "false", "No", " off ", ""):
        assert "poison" in scenario(PROBE, path=[site], env={"TOCSIN_NO_CACHE": off})["names"]
    # ...and TOCSIN_NO_CACHE=1 (or true, yes, on) neither reads nor writes it.
    [index] = index_files(scenario.cache)
    stamp = index.stat().st_mtime_ns
    for on in ("1", "true", "YES", " on "):
        bypassed = scenario(PROBE, path=[site], env={"TOCSIN_NO_CACHE": on})
        assert bypassed["names"] == ALL_NAMES
        assert not bypassed["from_cache"]
    assert index.read_bytes() == poisoned
    assert index.stat().st_mtime_ns == stamp
    shutil.rmtree(scenario.cache)
    scenario(PROBE, path=[site], env={"TOCSIN_NO_CACHE": "1"})
    assert index_files(scenario.cache) == []


@pytest.mark.parametrize("word", ["maybe", "2", "disabled", "y", "nope", "true!"])
def test_tocsin_no_cache_with_an_unknown_word_is_an_error(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, word: str
) -> None:
    monkeypatch.setenv("TOCSIN_NO_CACHE", word)
    with pytest.raises(PluginConfigError, match=f"TOCSIN_NO_CACHE={word!r}") as raised:
        discover(GROUP, path=[str(tmp_path)])
    assert "true, yes, on (for 1)" in str(raised.value)
    with pytest.raises(PluginConfigError, match="TOCSIN_NO_CACHE"):
        discover(GROUP, path=[str(tmp_path)], use_cache=False)


def test_use_cache_false_bypasses_the_index(some_root: Path, cache: Path) -> None:
    from tocsin import PluginManager

    root = some_root
    discover(GROUP, path=[str(root)])
    _poison(cache)
    assert [e.name for e in discover(GROUP, path=[str(root)]).entries] == ["poison"]
    assert [e.name for e in discover(GROUP, path=[str(root)], use_cache=False).entries] == ["some"]
    pm = PluginManager(GROUP, use_cache=False, autoload=False)
    pm.load()
    assert pm.last_discovery is not None
    assert not pm.last_discovery.from_cache


# -- what the index trusts ---------------------------------------------------------------


@pytest.fixture
def indexed(some_root: Path, cache: Path) -> Path:
    """A plugin folder whose index has been written (and used once)."""
    root = some_root
    assert not discover(GROUP, path=[str(root)]).from_cache
    assert discover(GROUP, path=[str(root)]).from_cache
    return root


def _the_index(cache: Path) -> Path:
    [index] = index_files(cache)
    return index


def _discover_in_time(root: Path, seconds: float = 10.0) -> Discovery:
    """discover(), which must return within *seconds* (a blocked open of a FIFO, or a
    read of /dev/zero, would not)."""
    results: list[Discovery] = []
    thread = threading.Thread(
        target=lambda: results.append(discover(GROUP, path=[str(root)])), daemon=True
    )
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"discover() did not return within {seconds} s")
    return results[0]


def _warned(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(
        r.name == "tocsin.plugins" and r.levelname == "WARNING" and text in r.getMessage()
        for r in caplog.records
    )


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077, 0o177])
def test_the_folders_and_the_index_are_private_whatever_the_umask(
    some_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mask: int
) -> None:
    home = tmp_path / "home"
    folder = home / ".cache" / "tocsin"
    monkeypatch.delenv("TOCSIN_CACHE_DIR", raising=False)
    monkeypatch.delenv("TOCSIN_NO_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(home))
    root = some_root
    previous = os.umask(mask)
    try:
        discover(GROUP, path=[str(root)])
    finally:
        os.umask(previous)
    for made in (home, home / ".cache", folder):  # every folder it had to create
        assert stat.S_IMODE(made.stat().st_mode) == 0o700, made
    index = _the_index(folder)
    assert stat.S_IMODE(index.stat().st_mode) == 0o600
    assert discover(GROUP, path=[str(root)]).from_cache


def test_a_fifo_at_the_index_path_does_not_block(
    cache: Path, indexed: Path, caplog: pytest.LogCaptureFixture
) -> None:
    index = _the_index(cache)
    index.unlink()
    os.mkfifo(index, 0o600)
    try:
        found = _discover_in_time(indexed)
    finally:
        if stat.S_ISFIFO(index.lstat().st_mode):  # let a reader stuck in open() go
            with contextlib.suppress(OSError):
                os.close(os.open(index, os.O_WRONLY | os.O_NONBLOCK))
    assert not found.from_cache
    assert [e.name for e in found.entries] == ["some"]
    assert _warned(caplog, "not a regular file")
    assert any("not a regular file" in p for p in found.cache_problems)
    # The FIFO was replaced by a new index.
    assert stat.S_ISREG(index.lstat().st_mode)
    assert discover(GROUP, path=[str(indexed)]).from_cache


@pytest.mark.parametrize("target", ["/dev/zero", "a-valid-index"])
def test_a_symbolic_link_at_the_index_path_is_not_followed(
    cache: Path, indexed: Path, caplog: pytest.LogCaptureFixture, target: str
) -> None:
    index = _the_index(cache)
    if target == "a-valid-index":  # even a link to a good index of the user's own
        copy = cache / "elsewhere.json"
        shutil.copy2(index, copy)
        target = str(copy)
    index.unlink()
    index.symlink_to(target)
    found = _discover_in_time(indexed)
    assert not found.from_cache
    assert [e.name for e in found.entries] == ["some"]
    assert _warned(caplog, "it is a symbolic link")
    assert stat.S_ISREG(index.lstat().st_mode)  # the link was replaced, its target kept
    assert os.path.exists(target)
    assert discover(GROUP, path=[str(indexed)]).from_cache


def test_an_oversized_index_is_not_read(
    cache: Path, indexed: Path, caplog: pytest.LogCaptureFixture
) -> None:
    index = _the_index(cache)
    index.unlink()
    with index.open("wb") as out:  # sparse: a large file that costs no disk
        out.truncate(_discovery.MAX_INDEX_BYTES + 1)
    index.chmod(0o600)
    started = time.perf_counter()
    found = _discover_in_time(indexed)
    assert time.perf_counter() - started < 5
    assert not found.from_cache
    assert _warned(caplog, f"larger than {_discovery.MAX_INDEX_BYTES} bytes")
    assert index.stat().st_size < 10_000  # rebuilt
    assert discover(GROUP, path=[str(indexed)]).from_cache


def _nobody() -> int:
    import pwd

    return pwd.getpwnam("nobody").pw_uid


needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="giving a file to another user (nobody) needs root",
)


@needs_root
def test_an_index_written_by_another_user_is_ignored(
    cache: Path, indexed: Path, caplog: pytest.LogCaptureFixture
) -> None:
    index = _the_index(cache)
    # What another user would write: a well-formed index, fingerprint and all, with a
    # plugin of their choosing (the standard library's `this`) on a real distribution.
    forged = _edit(index.read_bytes(), lambda d: d["entries"].append(["zen", "this", 0]))
    index.write_bytes(forged)
    os.chown(index, _nobody(), -1)
    problems = cache_problems(GROUP, path=[str(indexed)])
    assert len(problems) == 1
    assert f"owned by uid {_nobody()}, not by you (uid 0)" in problems[0]
    found = discover(GROUP, path=[str(indexed)])
    assert not found.from_cache
    assert [e.name for e in found.entries] == ["some"]
    assert _warned(caplog, f"owned by uid {_nobody()}")
    assert found.cache_problems == tuple(problems)
    # The folder is the user's own: the index there is replaced by a trusted one.
    assert index.stat().st_uid == 0
    assert discover(GROUP, path=[str(indexed)]).from_cache
    assert cache_problems(GROUP, path=[str(indexed)]) == []


@needs_root
def test_an_index_folder_of_another_user_is_neither_read_nor_written(
    cache: Path, indexed: Path, caplog: pytest.LogCaptureFixture
) -> None:
    index = _the_index(cache)
    index.write_bytes(_edit(index.read_bytes(), lambda d: d["entries"].append(["zen", "this", 0])))
    os.chown(index, _nobody(), -1)
    os.chown(cache, _nobody(), -1)
    forged = index.read_bytes()
    for _ in range(2):
        found = discover(GROUP, path=[str(indexed)])
        assert not found.from_cache
        assert [e.name for e in found.entries] == ["some"]
    assert _warned(caplog, f"plugin index folder {cache}: it is owned by uid {_nobody()}")
    assert index.read_bytes() == forged  # not rewritten...
    assert index.stat().st_uid == _nobody()
    assert [p.name for p in cache.iterdir()] == [index.name]  # ...nor cleaned, nor added to
    [problem] = cache_problems(GROUP, path=[str(indexed)])
    assert f"folder {cache}" in problem


@pytest.mark.parametrize(
    ("what", "mode", "who"),
    [
        ("file", 0o620, "its group"),
        ("file", 0o602, "others"),
        ("folder", 0o770, "its group"),
        ("folder", 0o707, "others"),
        ("folder", 0o777, "its group and others"),
    ],
)
def test_an_index_or_folder_others_can_write_is_ignored(
    cache: Path,
    indexed: Path,
    caplog: pytest.LogCaptureFixture,
    what: str,
    mode: int,
    who: str,
) -> None:
    index = _the_index(cache)
    _poison(cache)  # so that using it would show
    target = index if what == "file" else cache
    target.chmod(mode)
    before = index.read_bytes()
    found = discover(GROUP, path=[str(indexed)])
    assert not found.from_cache
    assert [e.name for e in found.entries] == ["some"]
    message = f"plugin index {what} {target}: it is writable by {who} (mode {mode:04o})"
    assert _warned(caplog, message)
    assert f"chmod go-w {target}" in found.cache_problems[0]
    if what == "folder":  # nothing is written into a folder others can write
        assert index.read_bytes() == before
        assert cache_problems(GROUP, path=[str(indexed)]) == list(found.cache_problems)
    else:  # the user's own folder: the file is replaced by a private one
        assert stat.S_IMODE(index.stat().st_mode) == 0o600
        assert discover(GROUP, path=[str(indexed)]).from_cache


FORGED = {
    # A distribution no sys.path entry has: a made-up metadata folder.
    "made-up-distribution": lambda d: (
        d["distributions"].append(["tt-evil", "6.6.6", 0, "tt_evil-6.6.6.dist-info", "/nowhere"]),
        d["entries"].append(["zen", "this", len(d["distributions"]) - 1]),
    ),
    # A real metadata folder, but under a path entry that does not exist.
    "distribution-on-another-path-entry": lambda d: (
        d["distributions"].append([*d["distributions"][0][:2], 9, *d["distributions"][0][3:]]),
        d["entries"].append(["zen", "this", len(d["distributions"]) - 1]),
    ),
    # An entry that points at no distribution of the index.
    "no-distribution": lambda d: d["entries"].append(["zen", "this", 99]),
    # A value that is not an entry point (what an import statement would make of it).
    "value-with-code": lambda d: d["entries"].append(["zen", "os;import this", 0]),
}


@pytest.mark.parametrize("forge", FORGED.values(), ids=FORGED.keys())
def test_a_forged_index_naming_a_module_no_distribution_declares_is_ignored(
    scenario: Any, site: Path, forge: Any
) -> None:
    aged(site)
    scenario(PROBE, path=[site])
    [index] = index_files(scenario.cache)
    index.write_bytes(_edit(index.read_bytes(), forge))
    result = scenario(
        """
        pm = PluginManager(GROUP, allowed=["zen", "alpha"])
        out["loaded"] = pm.load()
        out["from_cache"] = pm.last_discovery.from_cache
        out["listed"] = list(pm)
        out["this"] = "this" in sys.modules
        """,
        path=[site],
    )
    assert result["this"] is False
    assert result["loaded"] == ["alpha"]
    assert "zen" not in result["listed"]
    assert not result["from_cache"]
    assert any("Ignoring unreadable plugin index" in log[2] for log in result["logs"])
    assert all(row[0] != "zen" for row in json.loads(index.read_bytes())["entries"])


def test_a_distribution_the_fingerprint_does_not_cover_is_never_indexed(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finder that finds distributions somewhere other than sys.path entries (as
    some import hooks do): no fingerprint would see them change, so no index."""
    from importlib.metadata import PathDistribution

    root = plugin(tmp_path / "p", "tt-some", "1", {"some": "tt_some"})
    hidden = write_dist_info(tmp_path / "hidden", "tt-hidden", "1", {"hidden": "tt_hidden"})
    aged(root, tmp_path / "hidden")

    class Finder:
        @staticmethod
        def find_spec(*args: Any) -> None:
            return None

        @staticmethod
        def find_distributions(context: Any) -> list[PathDistribution]:
            return [PathDistribution(hidden)] if str(root) in context.path else []

    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, Finder()])
    for _ in range(2):
        found = discover(GROUP, path=[str(root)])
        assert [e.name for e in found.entries] == ["hidden", "some"]
        assert not found.from_cache
    assert index_files(cache) == []


def _make(cache: Path, name: str, *, days: float = 0, content: bytes = b"x") -> Path:
    path = cache / name
    path.write_bytes(content)
    when = time.time() - days * 24 * 3600
    os.utime(path, (when, when))
    return path


def test_old_index_files_and_stale_temporary_files_are_cleaned(
    some_root: Path, cache: Path
) -> None:
    root = some_root
    cache.mkdir(mode=0o700)
    now = time.time()
    recent = []
    for number in range(40):
        path = cache / f"entry-points-{number:08x}.idx"
        path.write_bytes(b"x")
        os.utime(path, (now - 100 * (number + 1),) * 2)  # number 0 is the newest
        recent.append(path)
    ancient = _make(cache, f"entry-points-{'a' * 8}.idx", days=40)
    ancient_old_style = _make(cache, f"entry-points-{'b' * 16}.idx", days=40)
    stale_tmp = _make(cache, ".entry-points-crashed1.tmp", days=2 / 24)
    stale_old_style_tmp = _make(cache, f".tmp-{'c' * 16}", days=2 / 24)
    live_tmp = _make(cache, ".entry-points-writing1.tmp")
    unrelated = _make(cache, "README", days=400, content=b"not ours")
    lookalike = _make(cache, "entry-points-notes.idx", days=400)

    discover(GROUP, path=[str(root)])

    left = index_files(cache)
    assert len(left) == _discovery.MAX_INDEX_FILES + 1  # and the look-alike
    assert not ancient.exists()
    assert not ancient_old_style.exists()
    assert not stale_tmp.exists()
    assert not stale_old_style_tmp.exists()
    assert live_tmp.exists()
    assert unrelated.exists()
    assert lookalike.exists()
    kept_fakes = [p for p in recent if p.exists()]
    assert kept_fakes == recent[: _discovery.MAX_INDEX_FILES - 1]  # the newest ones
    assert discover(GROUP, path=[str(root)]).from_cache  # ours survived the cleaning


def test_cleaning_removes_only_the_users_own_regular_files(
    some_root: Path, cache: Path, tmp_path: Path
) -> None:
    root = some_root
    cache.mkdir(mode=0o700)
    outside = tmp_path / "outside.txt"
    outside.write_text("a file a link points to")
    link = cache / f"entry-points-{'1' * 8}.idx"
    link.symlink_to(outside)
    old = time.time() - 400 * 24 * 3600
    os.utime(link, (old, old), follow_symlinks=False)
    folder = cache / f"entry-points-{'2' * 8}.idx"
    folder.mkdir()
    os.utime(folder, (old, old))
    temporary_folder = cache / ".entry-points-folder01.tmp"
    temporary_folder.mkdir()
    os.utime(temporary_folder, (old, old))
    foreign = []
    if os.geteuid() == 0:  # another user's files with names like ours
        for name in (f"entry-points-{'3' * 8}.idx", ".entry-points-theirs01.tmp"):
            path = _make(cache, name, days=400)
            os.chown(path, _nobody(), -1)
            foreign.append(path)

    discover(GROUP, path=[str(root)])

    assert link.is_symlink()
    assert outside.read_text() == "a file a link points to"
    assert folder.is_dir()
    assert temporary_folder.is_dir()
    assert all(path.exists() for path in foreign)
    assert discover(GROUP, path=[str(root)]).from_cache


def test_concurrent_first_starts_agree_and_leave_one_valid_index(
    cache: Path, tmp_path: Path
) -> None:
    root = tmp_path / "p"
    for number in range(30):
        plugin(root, f"tt-c{number}", "1", {f"c{number:02}": f"tt_c{number}"})
    aged(root)
    results: list[Discovery] = []
    barrier = threading.Barrier(6)

    def start() -> None:
        barrier.wait()
        results.append(discover(GROUP, path=[str(root)]))

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    names = [f"c{number:02}" for number in range(30)]
    assert [[e.name for e in r.entries] for r in results] == [names] * 6
    assert len(index_files(cache)) == 1
    assert not list(cache.glob(".entry-points-*"))
    assert [e.name for e in discover(GROUP, path=[str(root)]).entries] == names
    assert discover(GROUP, path=[str(root)]).from_cache


def test_an_unwritable_cache_directory_only_costs_the_index(scenario: Any, site: Path) -> None:
    aged(site)
    blocker = scenario.tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory should be")
    env = {"TOCSIN_CACHE_DIR": str(blocker / "cache")}
    first = scenario(PROBE, path=[site], env=env)
    second = scenario(PROBE, path=[site], env=env)
    assert first["names"] == second["names"] == ALL_NAMES
    assert not second["from_cache"]
    assert any("Cannot write plugin index" in log[2] for log in first["logs"])


def test_cache_problems_is_empty_for_a_good_or_missing_index(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = plugin(tmp_path / "p", "tt-some", "1", {"some": "tt_some"})
    assert cache_problems(GROUP, path=[str(root)]) == []  # not written yet: no folder
    aged(root)
    discover(GROUP, path=[str(root)])
    assert cache_problems(GROUP, path=[str(root)]) == []
    plugin(root, "tt-more", "1", {"more": "tt_more"})
    assert cache_problems(GROUP, path=[str(root)]) == []  # out of date is not a problem
    monkeypatch.setenv("TOCSIN_NO_CACHE", "1")
    _the_index(cache).chmod(0o666)
    assert cache_problems(GROUP, path=[str(root)]) == []  # switched off: not used at all
    monkeypatch.setenv("TOCSIN_NO_CACHE", "maybe")
    [problem] = cache_problems(GROUP, path=[str(root)])
    assert "TOCSIN_NO_CACHE='maybe'" in problem


def test_a_zip_file_on_sys_path_is_fingerprinted(cache: Path, tmp_path: Path) -> None:
    archive = tmp_path / "plugins.zip"

    def build(name: str, when: float) -> None:
        with zipfile.ZipFile(archive, "w") as out:
            out.writestr("tt_zipped-1.dist-info/METADATA", "Name: tt-zipped\nVersion: 1\n")
            out.writestr("tt_zipped-1.dist-info/entry_points.txt", f"[{GROUP}]\n{name} = m\n")
        os.utime(archive, (when, when))

    when = time.time() - 3600
    build("zipped", when)
    settle(archive.parent)
    assert [e.name for e in discover(GROUP, path=[str(archive)]).entries] == ["zipped"]
    assert discover(GROUP, path=[str(archive)]).from_cache
    build("zipper", when + 60)
    found = discover(GROUP, path=[str(archive)])
    assert [e.name for e in found.entries] == ["zipper"]
    assert not found.from_cache


def test_an_undecodable_distribution_does_not_hide_the_others(
    cache: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = plugin(tmp_path / "p", "tt-good", "1", {"good": "tt_good"})
    bad = write_dist_info(root, "tt-bad", "1", {"bad": "tt_bad"})
    (bad / "entry_points.txt").write_bytes(b"[" + GROUP.encode() + b"]\nbad = \xff\xfe\n")
    with caplog.at_level("WARNING", logger="tocsin"):
        found = discover(GROUP, path=[str(root)], use_cache=False)
    assert [e.name for e in found.entries] == ["good"]
    assert any("tt_bad-1.dist-info" in r.getMessage() for r in caplog.records)


def test_where_the_index_lives(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TOCSIN_CACHE_DIR", str(tmp_path / "explicit"))
    assert cache_dir() == str(tmp_path / "explicit")
    monkeypatch.setenv("TOCSIN_CACHE_DIR", "")  # empty: as if unset
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == str(tmp_path / "xdg" / "tocsin")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == str(tmp_path / "home" / ".cache" / "tocsin")


@pytest.mark.parametrize("relative", ["cache", "./cache", "~/cache", "../x"])
def test_a_relative_tocsin_cache_dir_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, relative: str
) -> None:
    monkeypatch.delenv("TOCSIN_NO_CACHE", raising=False)
    monkeypatch.setenv("TOCSIN_CACHE_DIR", relative)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PluginConfigError, match=f"TOCSIN_CACHE_DIR={relative!r} is a relative"):
        cache_dir()
    with pytest.raises(PluginConfigError, match="TOCSIN_CACHE_DIR"):
        discover(GROUP, path=[str(tmp_path)])
    [problem] = cache_problems(GROUP, path=[str(tmp_path)])
    assert f"TOCSIN_CACHE_DIR={relative!r} is a relative path" in problem
    assert list(tmp_path.iterdir()) == []  # nothing made where the process happens to be
    # Without the index, the setting does not matter.
    assert discover(GROUP, path=[str(tmp_path)], use_cache=False).entries == ()


@pytest.mark.parametrize("relative", ["cache", "./xdg", ".cache"])
def test_a_relative_xdg_cache_home_is_ignored(
    some_root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, relative: str
) -> None:
    """The XDG Base Directory specification: a relative path in these variables is
    invalid and should be ignored."""
    monkeypatch.delenv("TOCSIN_CACHE_DIR", raising=False)
    monkeypatch.delenv("TOCSIN_NO_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", relative)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert cache_dir() == str(tmp_path / "home" / ".cache" / "tocsin")
    root = some_root
    discover(GROUP, path=[str(root)])
    assert list(work.iterdir()) == []
    assert len(index_files(tmp_path / "home" / ".cache" / "tocsin")) == 1


def test_entry_point_values_with_extras_name_their_module_and_object() -> None:
    """As EntryPoint.load() reads them: extras are not part of the object path."""
    entry = PluginEntry("x", "pkg.mod:plugin [fast]", "d", "1", "/")
    assert (entry.module, entry.attribute) == ("pkg.mod", "plugin")
    entry = PluginEntry("x", "pkg.mod [fast, slow]", "d", "1", "/")
    assert (entry.module, entry.attribute) == ("pkg.mod", None)
