"""Entry-point discovery: order, name clashes, duplicates, and the on-disk index.

"Next start" behaviour is tested in fresh interpreters (``scenario``), with the plugin
directories on PYTHONPATH and the index in a temporary TOCSIN_CACHE_DIR.
"""

from __future__ import annotations

import marshal
import os
import random
import shutil
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
from tocsin import _discovery
from tocsin._discovery import Discovery, PluginEntry, cache_dir, discover

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
    assert any(log[1] == "WARNING" and log[2] == message for log in result["logs"])


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


def test_the_index_is_written_once_files_are_old_enough_then_used(
    scenario: Any, site: Path
) -> None:
    os.utime(entry_points_file(site, "tt-alpha"))  # just installed
    first = scenario(PROBE, path=[site])
    assert first["names"] == ALL_NAMES
    assert not first["from_cache"]
    assert index_files(scenario.cache) == []  # a racy file: the scan is not remembered
    age(site)
    second = scenario(PROBE, path=[site])
    assert not second["from_cache"]
    assert len(index_files(scenario.cache)) == 1
    third = scenario(PROBE, path=[site])
    assert third["from_cache"]
    assert third["names"] == ALL_NAMES
    assert third["values"] == second["values"]
    assert not list(scenario.cache.glob(".tmp-*"))  # written atomically, nothing left


def test_rewriting_entry_points_in_place_is_seen_on_the_next_start(
    scenario: Any, site: Path
) -> None:
    when = age(site, 7200)
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
    cached = scenario(PROBE, path=[site])
    assert cached["from_cache"]
    assert cached["names"] == result["names"]
    # And a rewrite that leaves the file young is seen (and not remembered) too.
    with target.open("r+b") as handle:
        handle.write(text)
    fresh = scenario(PROBE, path=[site])
    assert "alpha" in fresh["names"]
    assert not fresh["from_cache"]


def test_distributions_added_or_removed_are_seen_on_the_next_start(
    scenario: Any, site: Path, tmp_path: Path
) -> None:
    age(site)
    scenario(PROBE, path=[site])
    assert scenario(PROBE, path=[site])["from_cache"]
    plugin(site, "tt-newcomer", "1", {"newcomer": "tt_newcomer"})
    age(site)  # even with old timestamps, a new dist-info name changes the fingerprint
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
    age(site)
    assert "quiet" not in scenario(PROBE, path=[site])["names"]
    (quiet / "entry_points.txt").write_text(f"[{GROUP}]\nquiet = tt_quiet\n")
    age(site)
    assert "quiet" in scenario(PROBE, path=[site])["names"]


def test_each_sys_path_has_its_own_index(scenario: Any, site: Path, tmp_path: Path) -> None:
    other = plugin(tmp_path / "other", "tt-other", "1", {"other": "tt_other"})
    age(site)
    age(other)
    assert "other" not in scenario(PROBE, path=[site])["names"]
    assert "other" in scenario(PROBE, path=[site, other])["names"]
    assert len(index_files(scenario.cache)) == 2
    assert scenario(PROBE, path=[site])["from_cache"]
    assert "other" not in scenario(PROBE, path=[site])["names"]


def test_a_corrupt_index_is_rebuilt_on_the_next_start(scenario: Any, site: Path) -> None:
    age(site)
    scenario(PROBE, path=[site])
    [index] = index_files(scenario.cache)
    index.write_bytes(b"\x00garbage\xff" * 10)
    result = scenario(PROBE, path=[site])
    assert result["names"] == ALL_NAMES
    assert not result["from_cache"]
    assert any("Ignoring unreadable plugin index" in log[2] for log in result["logs"])
    assert marshal.loads(index.read_bytes())[0] == _discovery.INDEX_FORMAT
    assert scenario(PROBE, path=[site])["from_cache"]


def _valid(cache: Path) -> bytes:
    [index] = index_files(cache)
    return index.read_bytes()


@pytest.mark.parametrize(
    "damage",
    [
        lambda good: b"",
        lambda good: good[: len(good) // 2],
        lambda good: marshal.dumps((1, b"fingerprint")),
        lambda good: marshal.dumps([1, 2, 3]),
        lambda good: marshal.dumps((_discovery.INDEX_FORMAT + 1, *marshal.loads(good)[1:])),
        lambda good: marshal.dumps((*marshal.loads(good)[:2], [("too", "short")])),
    ],
    ids=["empty", "truncated", "two-items", "list", "other-format", "bad-rows"],
)
def test_every_kind_of_damaged_index_is_rebuilt(cache: Path, tmp_path: Path, damage: Any) -> None:
    root = plugin(tmp_path / "p", "tt-some", "1", {"some": "tt_some"})
    age(root)
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
    """Rewrite the index with a made-up entry, keeping its fingerprint."""
    [index] = index_files(cache)
    fmt, fingerprint, _ = marshal.loads(index.read_bytes())
    row = ("poison", "tt_poison", "tt-poison", "6.6.6", "/nowhere")
    index.write_bytes(marshal.dumps((fmt, fingerprint, [row])))
    return index.read_bytes()


def test_tocsin_no_cache_bypasses_the_index(scenario: Any, site: Path) -> None:
    age(site)
    scenario(PROBE, path=[site])
    poisoned = _poison(scenario.cache)
    # While the fingerprint matches, the index is trusted: that is what it is for...
    trusted = scenario(PROBE, path=[site])
    assert trusted["from_cache"]
    assert trusted["names"] == ["poison"]
    assert scenario(PROBE, path=[site], env={"TOCSIN_NO_CACHE": "0"})["names"] == ["poison"]
    # ...and TOCSIN_NO_CACHE=1 neither reads nor writes it.
    [index] = index_files(scenario.cache)
    stamp = index.stat().st_mtime_ns
    bypassed = scenario(PROBE, path=[site], env={"TOCSIN_NO_CACHE": "1"})
    assert bypassed["names"] == ALL_NAMES
    assert not bypassed["from_cache"]
    assert index.read_bytes() == poisoned
    assert index.stat().st_mtime_ns == stamp
    shutil.rmtree(scenario.cache)
    scenario(PROBE, path=[site], env={"TOCSIN_NO_CACHE": "1"})
    assert index_files(scenario.cache) == []


def test_use_cache_false_bypasses_the_index(cache: Path, tmp_path: Path) -> None:
    from tocsin import PluginManager

    root = plugin(tmp_path / "p", "tt-some", "1", {"some": "tt_some"})
    age(root)
    discover(GROUP, path=[str(root)])
    _poison(cache)
    assert [e.name for e in discover(GROUP, path=[str(root)]).entries] == ["poison"]
    assert [e.name for e in discover(GROUP, path=[str(root)], use_cache=False).entries] == ["some"]
    pm = PluginManager(GROUP, use_cache=False, autoload=False)
    pm.load()
    assert pm.last_discovery is not None
    assert not pm.last_discovery.from_cache


def test_old_index_files_and_stale_temporary_files_are_cleaned(cache: Path, tmp_path: Path) -> None:
    root = plugin(tmp_path / "p", "tt-some", "1", {"some": "tt_some"})
    age(root)
    cache.mkdir()
    now = time.time()
    recent = []
    for number in range(40):
        path = cache / f"entry-points-fake{number:02}.idx"
        path.write_bytes(b"x")
        os.utime(path, (now - 100 * (number + 1),) * 2)  # fake00 is the newest
        recent.append(path)
    ancient = cache / "entry-points-ancient.idx"
    ancient.write_bytes(b"x")
    os.utime(ancient, (now - 40 * 24 * 3600,) * 2)
    stale_tmp = cache / ".tmp-crashed"
    stale_tmp.write_bytes(b"x")
    os.utime(stale_tmp, (now - 2 * 3600,) * 2)
    live_tmp = cache / ".tmp-writing"
    live_tmp.write_bytes(b"x")
    unrelated = cache / "README"
    unrelated.write_text("not ours")

    discover(GROUP, path=[str(root)])

    left = index_files(cache)
    assert len(left) == _discovery.MAX_INDEX_FILES
    assert not ancient.exists()
    assert not stale_tmp.exists()
    assert live_tmp.exists()
    assert unrelated.exists()
    kept_fakes = [p for p in recent if p.exists()]
    assert kept_fakes == recent[: _discovery.MAX_INDEX_FILES - 1]  # the newest ones
    assert discover(GROUP, path=[str(root)]).from_cache  # ours survived the cleaning


def test_concurrent_first_starts_agree_and_leave_one_valid_index(
    cache: Path, tmp_path: Path
) -> None:
    root = tmp_path / "p"
    for number in range(30):
        plugin(root, f"tt-c{number}", "1", {f"c{number:02}": f"tt_c{number}"})
    age(root)
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
    assert not list(cache.glob(".tmp-*"))
    assert [e.name for e in discover(GROUP, path=[str(root)]).entries] == names
    assert discover(GROUP, path=[str(root)]).from_cache


def test_an_unwritable_cache_directory_only_costs_the_index(scenario: Any, site: Path) -> None:
    age(site)
    blocker = scenario.tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory should be")
    env = {"TOCSIN_CACHE_DIR": str(blocker / "cache")}
    first = scenario(PROBE, path=[site], env=env)
    second = scenario(PROBE, path=[site], env=env)
    assert first["names"] == second["names"] == ALL_NAMES
    assert not second["from_cache"]
    assert any("Cannot write plugin index" in log[2] for log in first["logs"])


def test_a_zip_file_on_sys_path_is_fingerprinted(cache: Path, tmp_path: Path) -> None:
    archive = tmp_path / "plugins.zip"

    def build(name: str, when: float) -> None:
        with zipfile.ZipFile(archive, "w") as out:
            out.writestr("tt_zipped-1.dist-info/METADATA", "Name: tt-zipped\nVersion: 1\n")
            out.writestr("tt_zipped-1.dist-info/entry_points.txt", f"[{GROUP}]\n{name} = m\n")
        os.utime(archive, (when, when))

    when = time.time() - 3600
    build("zipped", when)
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
    monkeypatch.delenv("TOCSIN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == str(tmp_path / "xdg" / "tocsin")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == str(tmp_path / "home" / ".cache" / "tocsin")
