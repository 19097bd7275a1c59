"""Cache of precomputed scene transitions (latent-blending trees), in memory and on disk.

Transitions are expensive to compute and are reused by live shows and renders. Entries are keyed by
`cache_key` of everything that changes the result. Disk problems never reach callers: the cache logs
a warning once and goes on in memory only.
"""

import collections
import contextlib
import hashlib
import io
import json
import logging
import os
import pathlib
import re
import sys
import tempfile
import threading
import time
import zipfile

import numpy as np

FORMAT = 1  # bump when the stored layout changes: older files then read as corrupt and are replaced
META = "__meta__"  # reserved array name of an entry file's JSON header
STALE_TEMP_S = 3600  # temp files this old were left by a crashed writer

log = logging.getLogger(__name__)


def default_cache_dir():
    """Where transitions are cached by default: under $XDG_CACHE_HOME, else ~/.cache."""
    base = os.environ.get("XDG_CACHE_HOME")
    root = pathlib.Path(base) if base else pathlib.Path.home() / ".cache"
    return root / "vj" / "transitions"


def _is_tensor(x):
    # without torch imported, nothing can be a tensor: don't import it just to check
    return "torch" in sys.modules and isinstance(x, sys.modules["torch"].Tensor)


def fingerprint(x):
    """A stable sha256 hex digest of a tensor's or array's dtype, shape and values."""
    if isinstance(x, np.ndarray):
        data = np.ascontiguousarray(x).reshape(-1).view(np.uint8)
    elif _is_tensor(x):
        import torch

        # bytes through a uint8 view: bfloat16 (and float8) have no numpy dtype
        data = x.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()
    else:
        raise TypeError(f"fingerprint needs a torch tensor or numpy array, not {type(x).__name__}")
    digest = hashlib.sha256(f"{x.dtype}|{tuple(x.shape)}|".encode())
    digest.update(data)
    return digest.hexdigest()


def _canonical(value, where):
    """`value` as JSON, tagged so that different types never meet (0.1 vs "0.1", a dict vs a tag)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return {"float": float.__repr__(value)}  # float.__repr__: np.float64's own repr differs
    if isinstance(value, (tuple, list)):
        return [_canonical(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"cache_key part {where!r} has a dict key that is not a string")
        return {"dict": {k: _canonical(item, f"{where}[{k!r}]") for k, item in value.items()}}
    if isinstance(value, np.ndarray) or _is_tensor(value):
        return {"array": fingerprint(value)}
    raise TypeError(f"cache_key part {where!r} has unsupported type {type(value).__name__}")


def cache_key(release, /, **parts):
    """A stable sha256 hex key of everything that changes a cached result, plus `release` (the version of the
    code that computes it, which the caller passes: vj's `__version__`) and FORMAT, so that a new release or
    layout never reuses old entries."""
    canonical = {name: _canonical(value, name) for name, value in parts.items()}
    payload = {"format": FORMAT, "version": str(release), "parts": canonical}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _checksum(arrays):
    """sha256 over the arrays' names, dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        arr = arrays[name]
        digest.update(json.dumps([name, np.lib.format.dtype_to_descr(arr.dtype), arr.shape]).encode())
        digest.update(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))
    return digest.hexdigest()


def _encode(file, key, arrays):
    """Write an entry as .npz: the arrays plus a JSON header tying them to `key` and FORMAT."""
    meta = json.dumps({"key": key, "format": FORMAT, "checksum": _checksum(arrays)}).encode()
    # zipfile directly, not np.savez: its own parameters (file, allow_pickle) clash with array names
    with zipfile.ZipFile(file, "w") as zf:
        for name, arr in {**arrays, META: np.frombuffer(meta, np.uint8)}.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


def _decode(data, key):
    """The read-only arrays in an entry file's bytes; raises if they are not a valid entry for `key`."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    meta = json.loads(arrays.pop(META).tobytes().decode())
    for field, want in (("format", FORMAT), ("key", key), ("checksum", _checksum(arrays))):
        if meta[field] != want:
            raise ValueError(f"header {field} {meta[field]!r} is not {want!r}")
    for arr in arrays.values():
        arr.setflags(write=False)
    return arrays


def _frozen_copies(arrays):
    """Read-only C-contiguous copies, so neither the caller nor another caller can change the cache."""
    copies = {}
    for name, value in arrays.items():
        arr = np.array(value, order="C")
        if not isinstance(name, str) or name == META or arr.dtype.hasobject:
            raise ValueError(f"cannot store array {name!r} of dtype {arr.dtype}")
        arr.setflags(write=False)
        copies[name] = arr
    return copies


def _check_key(key):
    # keys become file names: keep them to safe characters (cache_key gives hex)
    if not isinstance(key, str) or not re.fullmatch(r"[0-9A-Za-z_-]+", key):
        raise ValueError(f"bad cache key {key!r}: use cache_key()")


def _same_file(path, stat):
    """Whether `path` is still the file that `stat` describes (not replaced by a put since)."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino, now.st_mtime_ns) == (stat.st_dev, stat.st_ino, stat.st_mtime_ns)


def _entries(folder):
    """The entry files in `folder` as (mtime_ns, name, size); removes stale temp files on the way."""
    entries = []
    with os.scandir(folder) as found:
        for entry in found:
            with contextlib.suppress(FileNotFoundError):  # deleted by another process meanwhile
                if entry.name.endswith(".npz") and entry.is_file():
                    stat = entry.stat()
                    entries.append((stat.st_mtime_ns, entry.name, stat.st_size))
                elif entry.name.startswith(".") and entry.name.endswith(".tmp"):
                    if time.time() - entry.stat().st_mtime > STALE_TEMP_S:
                        with contextlib.suppress(OSError):
                            os.unlink(entry.path)
    return entries


class TransitionCache:
    """Arrays by key: an LRU in memory capped by bytes, over one `<key>.npz` file per entry on disk,
    also capped (least recently used files go first). Thread-safe; a disk failure leaves it memory-only.
    """

    def __init__(self, folder=None, memory_bytes=512 * 2**20, disk_bytes=2 * 2**30):
        if folder is None:
            folder = default_cache_dir()
        self.folder = None if folder is False else pathlib.Path(folder)
        self.memory_bytes, self.disk_bytes = memory_bytes, disk_bytes
        self.memory_hits = self.disk_hits = self.misses = self.corrupt = 0
        self.evicted_memory = self.evicted_disk = 0
        self.memory_used = self.disk_used = 0
        self._memory = collections.OrderedDict()  # key -> (arrays, nbytes), least recently used first
        self._lock = threading.Lock()
        if self.folder is not None:
            try:
                self.disk_used = sum(size for _, _, size in _entries(self.folder))
            except FileNotFoundError:
                pass  # created on the first put
            except OSError as exc:
                self._disable(exc)

    def get(self, key):
        """The read-only arrays stored under `key`, or None."""
        _check_key(key)
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                self.memory_hits += 1
                return dict(self._memory[key][0])
            folder = self.folder
        arrays = self._read(folder / f"{key}.npz", key) if folder is not None else None
        with self._lock:
            if arrays is None:
                self.misses += 1
                return None
            self.disk_hits += 1
            if key not in self._memory:  # a put since the read has the newer arrays
                self._remember(key, arrays)
        return dict(arrays)

    def put(self, key, arrays):
        """Store copies of `arrays` under `key`, in memory and on disk."""
        _check_key(key)
        arrays = _frozen_copies(arrays)
        with self._lock:
            self._remember(key, arrays)
            folder = self.folder
        if folder is not None:
            self._write(folder, key, arrays)

    def _remember(self, key, arrays):
        """Hold an entry in memory, evicting least recently used ones beyond memory_bytes (lock held)."""
        if key in self._memory:
            self.memory_used -= self._memory.pop(key)[1]
        size = sum(arr.nbytes for arr in arrays.values())
        if size > self.memory_bytes:
            return  # it would evict everything and still not fit
        self._memory[key] = (arrays, size)
        self.memory_used += size
        while self.memory_used > self.memory_bytes:
            self.memory_used -= self._memory.popitem(last=False)[1][1]
            self.evicted_memory += 1

    def _read(self, path, key):
        """An entry's arrays from disk, or None if missing or corrupt (a corrupt file is deleted)."""
        try:
            with open(path, "rb") as file:
                stat = os.fstat(file.fileno())
                data = file.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._disable(exc)
            return None
        try:
            arrays = _decode(data, key)
        except Exception as exc:  # a damaged or foreign file can raise almost anything
            log.info("dropping corrupt transition cache entry %s: %s", path, exc)
            try:
                with self._lock:
                    self.corrupt += 1
                    if _same_file(path, stat):  # not a valid entry put there since the read
                        self._unlink(path, stat.st_size)
            except OSError as exc:
                self._disable(exc)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used, for the disk cap
        return arrays

    def _write(self, folder, key, arrays):
        """Write an entry atomically (temp file, then rename) and trim the folder to disk_bytes."""
        tmp = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as file:
                _encode(file, key, arrays)
            path = folder / f"{key}.npz"
            with self._lock:
                size = os.stat(tmp).st_size
                with contextlib.suppress(FileNotFoundError):
                    size -= os.stat(path).st_size
                os.replace(tmp, path)
                tmp = None
                self.disk_used += size
                if self.disk_used > self.disk_bytes:
                    self._trim(folder, path.name)
        except OSError as exc:
            self._disable(exc)
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def _trim(self, folder, keep):
        """Delete the least recently used entry files until the folder fits disk_bytes (lock held);
        the file just written (`keep`) goes last, so it stays unless it alone is over the cap."""
        entries = sorted(_entries(folder))
        entries.sort(key=lambda entry: entry[1] == keep)  # stable: others stay oldest first
        self.disk_used = sum(size for _, _, size in entries)
        for _, name, size in entries:
            if self.disk_used <= self.disk_bytes:
                break
            self._unlink(folder / name, size)
            self.evicted_disk += 1

    def _unlink(self, path, size):
        """Delete an entry file, keeping disk_used in step (lock held)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.disk_used -= size

    def _disable(self, exc):
        """Go on in memory only after a disk failure, with one warning."""
        with self._lock:
            if self.folder is not None:
                log.warning("transition cache folder %s is unusable (%s): caching in memory only", self.folder, exc)
                self.folder = None
