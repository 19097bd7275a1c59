import logging
import os
import shutil
import threading
import zipfile

import numpy as np
import pytest
import torch

from vj.engine.transitions import cache as transition_cache
from vj.engine.transitions.cache import FORMAT, TransitionCache, cache_key, default_cache_dir, fingerprint

RELEASE = "1.0"


def entry(seed, n=1000):
    """Arrays of a typical entry, the same for the same seed."""
    rng = np.random.default_rng(seed)
    return {"latents": rng.standard_normal((n,)).astype(np.float32), "steps": np.arange(seed + 3)}


def assert_same(got, want):
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].dtype == want[name].dtype
        np.testing.assert_array_equal(got[name], want[name])


def key(i):
    return cache_key(RELEASE, entry=i)


def test_default_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "vj" / "transitions"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "vj" / "transitions"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "vj" / "transitions"


def test_cache_key_changes_with_every_part():
    parts = dict(
        prompt="neon city",
        seed=7,
        strength=0.5,
        fixed=True,
        lora=None,
        prompts=[("a", 1.0), ("b", 0.25)],
        options={"mode": "slerp", "steps": 4},
        latents=torch.arange(6, dtype=torch.float32),
    )
    base = cache_key(RELEASE, **parts)
    assert len(base) == 64 and base == cache_key(RELEASE, **dict(reversed(list(parts.items()))))
    changed = [
        dict(parts, strength=0.5 + 1e-9),
        dict(parts, seed=8),
        dict(parts, prompt="neon city!"),
        dict(parts, fixed=False),
        dict(parts, lora="x"),
        dict(parts, prompts=[("a", 1.0), ("b", 0.26)]),
        dict(parts, options={"mode": "slerp", "steps": 5}),
        dict(parts, latents=torch.tensor([0.0, 1, 2, 3, 4, 6])),
        dict(parts, extra=1),
    ]
    keys = {cache_key(RELEASE, **p) for p in changed}
    assert base not in keys and len(keys) == len(changed)
    assert cache_key("999.0", **parts) != base


def test_cache_key_keeps_types_apart():
    assert len({cache_key(RELEASE, x=v) for v in (1, 1.0, "1.0", True, None, [1], {"float": "1.0"})}) == 7
    assert cache_key(RELEASE, x=np.float64(0.1)) == cache_key(RELEASE, x=0.1)


@pytest.mark.parametrize("bad", [{1, 2}, object(), [1, b"bytes"], {1: "x"}])
def test_cache_key_refuses_unsupported_types(bad):
    with pytest.raises(TypeError, match="part 'scene"):
        cache_key(RELEASE, scene=bad)


def test_fingerprint():
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    assert fingerprint(t) == fingerprint(t.clone()) == fingerprint(t.T.contiguous().T)
    assert fingerprint(t.requires_grad_()) == fingerprint(t.detach().clone())
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert fingerprint(a) == fingerprint(a.copy()) == fingerprint(np.asfortranarray(a))
    one_changed = a.copy()
    one_changed[2, 3] += 1
    others = [a.astype(np.float64), a.reshape(4, 3), one_changed]
    assert len({fingerprint(x) for x in [a, *others]}) == 4

    b = torch.linspace(-1, 1, 8, dtype=torch.bfloat16)
    assert fingerprint(b) == fingerprint(b.clone())
    b2 = b.clone()
    b2[3] = 5
    assert len({fingerprint(b), fingerprint(b2), fingerprint(b.view(torch.int16))}) == 3
    with pytest.raises(TypeError):
        fingerprint([1, 2])


def test_round_trip_memory_then_disk(tmp_path):
    cache = TransitionCache(tmp_path)
    assert cache.get(key(1)) is None and cache.misses == 1
    cache.put(key(1), entry(1))
    assert_same(cache.get(key(1)), entry(1))
    assert cache.memory_hits == 1 and cache.disk_hits == 0
    size = (tmp_path / f"{key(1)}.npz").stat().st_size
    assert cache.disk_used == size
    assert [p.name for p in tmp_path.iterdir()] == [f"{key(1)}.npz"]  # no temp files left

    fresh = TransitionCache(tmp_path)
    assert fresh.disk_used == size
    assert_same(fresh.get(key(1)), entry(1))
    assert (fresh.disk_hits, fresh.memory_hits, fresh.misses) == (1, 0, 0)
    assert_same(fresh.get(key(1)), entry(1))  # now held in memory
    assert (fresh.disk_hits, fresh.memory_hits) == (1, 1)


def test_odd_names_and_dtypes_round_trip(tmp_path):
    arrays = {
        "file": np.float16([1, 2]),
        "allow_pickle": np.array(3.5),
        "a.npy": np.zeros((0, 3)),
        "flags": np.array([True, False]),
        "pair": np.zeros(2, dtype=[("x", "<i4"), ("y", "<f8")]),
    }
    TransitionCache(tmp_path).put("odd", arrays)
    assert_same(TransitionCache(tmp_path).get("odd"), arrays)


def test_memory_only_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache = TransitionCache(False)
    cache.put(key(1), entry(1))
    assert_same(cache.get(key(1)), entry(1))
    assert list(tmp_path.iterdir()) == [] and cache.disk_used == 0


def test_memory_cap_evicts_least_recently_used(tmp_path):
    size = sum(a.nbytes for a in entry(0).values())  # entries 0..2 have nearly the same size
    cache = TransitionCache(False, memory_bytes=3 * size + 100)
    for i in range(3):
        cache.put(key(i), entry(i))
    assert cache.get(key(0)) is not None  # 0 is now the most recently used; 1 the least
    cache.put(key(3), entry(3))
    assert cache.evicted_memory == 1 and cache.get(key(1)) is None
    assert all(cache.get(key(i)) is not None for i in (0, 2, 3))
    assert cache.memory_used == sum(a.nbytes for i in (0, 2, 3) for a in entry(i).values())
    assert cache.memory_used <= cache.memory_bytes


def test_entry_larger_than_memory_goes_to_disk_only(tmp_path):
    cache = TransitionCache(tmp_path, memory_bytes=1000)
    small = {"x": np.arange(10)}
    cache.put("small", small)
    cache.put(key(1), entry(1))
    assert cache.memory_used == 80 and cache.evicted_memory == 0  # the small entry stays
    assert_same(cache.get(key(1)), entry(1))
    assert_same(cache.get("small"), small)
    assert (cache.disk_hits, cache.memory_hits, cache.memory_used) == (1, 1, 80)


def test_disk_cap_deletes_oldest_files_first(tmp_path):
    (tmp_path / "notes.txt").write_bytes(b"x" * 100_000)  # not an entry: neither counted nor deleted
    TransitionCache(tmp_path).put(key(0), entry(0))
    size = (tmp_path / f"{key(0)}.npz").stat().st_size
    cache = TransitionCache(tmp_path, disk_bytes=int(3.5 * size))
    cache.put(key(1), entry(0))
    cache.put(key(2), entry(0))
    for i, mtime in [(0, 1000), (1, 3000), (2, 2000)]:  # oldest first: 0, 2, 1
        os.utime(tmp_path / f"{key(i)}.npz", (mtime, mtime))

    def files():
        return {p.name for p in tmp_path.glob("*.npz")}

    cache.put(key(3), entry(0))
    assert files() == {f"{key(i)}.npz" for i in (1, 2, 3)} and cache.evicted_disk == 1
    assert TransitionCache(tmp_path).get(key(2)) is not None  # a disk hit makes 2 recently used
    cache.put(key(4), entry(0))
    assert files() == {f"{key(i)}.npz" for i in (2, 3, 4)} and cache.evicted_disk == 2
    assert cache.disk_used == 3 * size <= cache.disk_bytes
    assert (tmp_path / "notes.txt").exists()


def test_disk_cap_deletes_an_entry_that_alone_is_too_big(tmp_path):
    cache = TransitionCache(tmp_path, disk_bytes=1000)
    cache.put(key(1), entry(1))
    assert list(tmp_path.glob("*.npz")) == [] and cache.disk_used == 0 and cache.evicted_disk == 1
    assert_same(cache.get(key(1)), entry(1))  # still in memory


def truncate(path, other):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def random_bytes(path, other):
    path.write_bytes(np.random.default_rng(0).bytes(5000))


def another_keys_file(path, other):
    shutil.copyfile(other, path)


def altered_arrays(path, other):
    with np.load(path) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["latents"][0] += 1
    np.savez(path, **arrays)  # the old header, whose checksum no longer matches


def other_format(path, other):
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    with np.load(path) as npz:
        meta = npz[transition_cache.META].tobytes().replace(b'"format": 1', b'"format": 0')
    assert FORMAT == 1 and b'"format": 0' in meta
    with open(path, "wb") as file, zipfile.ZipFile(file, "w") as zf:
        for name, data in members.items():
            if name != f"{transition_cache.META}.npy":
                zf.writestr(name, data)
        with zf.open(f"{transition_cache.META}.npy", "w") as member:
            np.lib.format.write_array(member, np.frombuffer(meta, np.uint8))


@pytest.mark.parametrize("damage", [truncate, random_bytes, another_keys_file, altered_arrays, other_format])
def test_corrupt_entries_are_dropped(tmp_path, damage):
    TransitionCache(tmp_path).put(key(1), entry(1))
    TransitionCache(tmp_path).put(key(2), entry(2))
    path, other = tmp_path / f"{key(1)}.npz", tmp_path / f"{key(2)}.npz"
    damage(path, other)

    cache = TransitionCache(tmp_path)
    assert cache.get(key(1)) is None
    assert (cache.corrupt, cache.misses, cache.disk_hits) == (1, 1, 0)
    assert not path.exists() and cache.disk_used == other.stat().st_size
    assert_same(cache.get(key(2)), entry(2))


@pytest.mark.parametrize("breaks", ["before", "after"])
def test_unusable_folder_falls_back_to_memory(tmp_path, caplog, breaks):
    folder = tmp_path / "file" / "cache"

    def warnings():
        return [r for r in caplog.records if r.levelno == logging.WARNING]

    with caplog.at_level(logging.WARNING, logger="vj.engine.transitions.cache"):
        if breaks == "before":
            (tmp_path / "file").write_text("a regular file, not a folder")
        cache = TransitionCache(folder)
        if breaks == "after":
            (tmp_path / "file").write_text("a regular file, not a folder")
        assert cache.get(key(1)) is None
        assert len(warnings()) == 1 and "memory only" in warnings()[0].getMessage()
        cache.put(key(1), entry(1))
        cache.put(key(2), entry(2))
        assert cache.get(key(3)) is None
    assert_same(cache.get(key(1)), entry(1))
    assert_same(cache.get(key(2)), entry(2))
    assert len(warnings()) == 1
    assert cache.disk_used == 0


def test_unwritable_folder_on_put(tmp_path, caplog):
    cache = TransitionCache(tmp_path / "cache")
    (tmp_path / "cache").write_text("in the way")  # mkdir on the first put fails
    with caplog.at_level(logging.WARNING, logger="vj.engine.transitions.cache"):
        cache.put(key(1), entry(1))
        cache.put(key(2), entry(2))
    assert len(caplog.records) == 1 and "memory only" in caplog.records[0].getMessage()
    assert_same(cache.get(key(1)), entry(1))


def test_returned_arrays_are_read_only(tmp_path):
    arrays = entry(1)
    cache = TransitionCache(tmp_path)
    cache.put(key(1), arrays)
    arrays["latents"][0] = 42  # the caller's own arrays stay theirs
    from_memory = cache.get(key(1))
    from_disk = TransitionCache(tmp_path).get(key(1))
    for got in (from_memory, from_disk):
        assert not got["latents"].flags.writeable
        with pytest.raises(ValueError):
            got["latents"][0] = 1
        assert_same(got, entry(1))
    from_memory.clear()  # a returned dict is the caller's too
    assert_same(cache.get(key(1)), entry(1))


def test_bad_keys_and_names_are_refused(tmp_path):
    cache = TransitionCache(tmp_path)
    for bad in ["../x", "", "a.b", None]:
        with pytest.raises(ValueError):
            cache.put(bad, entry(1))
    with pytest.raises(ValueError):
        cache.put("k", {transition_cache.META: np.zeros(1)})
    with pytest.raises(ValueError):
        cache.put("k", {"x": np.array([object()])})
    assert list(tmp_path.iterdir()) == []


def test_threads_share_a_cache(tmp_path):
    size = sum(a.nbytes for a in entry(0, n=200).values())
    cache = TransitionCache(tmp_path, memory_bytes=4 * size, disk_bytes=6 * 2000)
    wanted = {key(i): entry(i, n=200) for i in range(12)}
    start, errors = threading.Barrier(6), []

    def work(t):
        try:
            start.wait()
            for round in range(30):
                for i in (t, 6 + round % 6):  # one key of its own, the others shared
                    cache.put(key(i), wanted[key(i)])
                    got = cache.get(key((i + round) % 12))
                    if got is not None:
                        assert_same(got, wanted[key((i + round) % 12)])
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert cache.corrupt == 0 and cache.memory_used <= cache.memory_bytes
    assert cache.disk_used == sum(p.stat().st_size for p in tmp_path.glob("*.npz")) <= cache.disk_bytes
    assert cache.memory_hits + cache.disk_hits + cache.misses == 6 * 30 * 2
