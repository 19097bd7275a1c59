"""FFmpeg's network protocols (udp, srt) for the stream outputs, opened through ctypes on PyAV's own libavformat.

Why not `av.open(url, "w")`: PyAV opens the URL (`avio_open`) holding the GIL, so an SRT listener waiting for a
receiver, or a caller waiting for a listener, would freeze the engine and the window for as long as it waits.
ctypes releases the GIL around each call, and an interrupt callback lets `close` end a wait at once. PyAV muxes
into a file-like object whose `write` hands the bytes to this connection (`avio_write` then `avio_flush`).
When PyAV's libavformat cannot be found (an unusual build), `AvioConnection.available()` is False and the stream
output falls back to PyAV's own open (UDP never waits there; SRT then blocks the process while it connects)."""

import ctypes
import glob
import os

import av

AVIO_FLAG_WRITE = 2
KNOWN_AVFORMAT_MAJORS = range(58, 63)  # FFmpeg 4.x to 8.x: AVIOContext begins with the same public fields


class _AVIOContextHead(ctypes.Structure):
    """The first public fields of AVIOContext (unchanged from FFmpeg 4 to 8): enough to read `error`."""

    _fields_ = [
        ("av_class", ctypes.c_void_p),
        ("buffer", ctypes.c_void_p),
        ("buffer_size", ctypes.c_int),
        ("buf_ptr", ctypes.c_void_p),
        ("buf_end", ctypes.c_void_p),
        ("opaque", ctypes.c_void_p),
        ("read_packet", ctypes.c_void_p),
        ("write_packet", ctypes.c_void_p),
        ("seek", ctypes.c_void_p),
        ("pos", ctypes.c_int64),
        ("eof_reached", ctypes.c_int),
        ("error", ctypes.c_int),
    ]


_INTERRUPT = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)


class _InterruptCB(ctypes.Structure):
    _fields_ = [("callback", _INTERRUPT), ("opaque", ctypes.c_void_p)]


def _candidates():
    """Files that are, or link to, the libavformat PyAV loaded: PyAV's own extension modules first (dlsym
    through them finds their dependencies), then the libraries a wheel bundles beside the package."""
    import av.format

    root = os.path.dirname(av.__file__)
    yield av.format.__file__
    for folder in (root + ".libs", os.path.join(root, ".dylibs"), os.path.join(root, "..", "av.libs")):
        yield from sorted(glob.glob(os.path.join(folder, "*avformat*")))


def _load():
    want = av.library_versions.get("libavformat")
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
            version = lib.avformat_version
            for name in ("avio_open2", "avio_write", "avio_flush", "avio_closep"):
                getattr(lib, name)
        except (OSError, AttributeError):
            continue
        version.restype = ctypes.c_uint
        number = version()
        if want is not None and (number >> 16, (number >> 8) & 0xFF) != tuple(want[:2]):
            continue  # another FFmpeg than PyAV's
        if number >> 16 not in KNOWN_AVFORMAT_MAJORS:
            continue
        lib.avio_open2.argtypes = [
            ctypes.POINTER(ctypes.POINTER(_AVIOContextHead)),
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.POINTER(_InterruptCB),
            ctypes.c_void_p,
        ]
        lib.avio_open2.restype = ctypes.c_int
        lib.avio_write.argtypes = [ctypes.POINTER(_AVIOContextHead), ctypes.c_char_p, ctypes.c_int]
        lib.avio_write.restype = None
        lib.avio_flush.argtypes = [ctypes.POINTER(_AVIOContextHead)]
        lib.avio_flush.restype = None
        lib.avio_closep.argtypes = [ctypes.POINTER(ctypes.POINTER(_AVIOContextHead))]
        lib.avio_closep.restype = ctypes.c_int
        try:
            lib.av_strerror.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
            lib.av_strerror.restype = ctypes.c_int
        except AttributeError:
            pass
        return lib
    return None


_lib = None
_loaded = False


def library():
    """PyAV's libavformat through ctypes, or None."""
    global _lib, _loaded
    if not _loaded:
        _lib, _loaded = _load(), True
    return _lib


def error_text(code):
    """FFmpeg's words for a negative error code."""
    lib = library()
    if lib is not None and hasattr(lib.av_strerror, "argtypes"):
        buf = ctypes.create_string_buffer(256)
        if lib.av_strerror(code, buf, len(buf)) == 0:
            return buf.value.decode(errors="replace")
    return os.strerror(-code) if -code < 200 else f"FFmpeg error {code}"


class AvioConnection:
    """One open FFmpeg output URL (udp://, srt://). `interrupted()` is asked while a call waits: True ends it.
    Also a file-like object (write, flush) for `av.open(connection, "w", format="mpegts")`."""

    def __init__(self, url, interrupted=lambda: False):
        lib = library()
        if lib is None:
            raise OSError("PyAV's libavformat cannot be reached through ctypes")
        self._lib = lib
        self._callback = _INTERRUPT(lambda _opaque: 1 if interrupted() else 0)  # kept alive with self
        self._interrupt = _InterruptCB(self._callback, None)
        self._ctx = ctypes.POINTER(_AVIOContextHead)()
        code = lib.avio_open2(
            ctypes.byref(self._ctx), url.encode(), AVIO_FLAG_WRITE, ctypes.byref(self._interrupt), None
        )
        if code < 0:
            self._ctx = None
            raise OSError(f"cannot open: {error_text(code)}")

    @staticmethod
    def available():
        return library() is not None

    def write(self, data):
        if not self._ctx:
            raise OSError("connection closed")
        data = bytes(data)
        self._lib.avio_write(self._ctx, data, len(data))
        self._lib.avio_flush(self._ctx)
        code = self._ctx.contents.error
        if code < 0:
            raise OSError(f"send failed: {error_text(code)}")
        return len(data)

    def flush(self):
        pass

    def writable(self):
        return True

    def close(self):
        if self._ctx:
            ctx, self._ctx = self._ctx, None
            self._lib.avio_closep(ctypes.byref(ctx))
