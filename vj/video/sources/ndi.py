"""NDI input through cyndilib (the optional extra `pip install 'vj[ndi]'`): `ndi:NAME` receives the NDI source
whose full name ("HOST (NAME)") or stream name is NAME, as RGBA at its highest bandwidth.

Sources are found by NDI's discovery: mDNS (on Linux through a running avahi-daemon), and by address, NDI's "extra
IPs": machines whose NDI senders the finder asks directly (port 5960), which reaches a sender on another subnet and
needs no mDNS at all. vj takes them where NDI itself does: on Linux and macOS from NDI's configuration file
`ndi-config.v1.json`, `{"ndi": {"networks": {"ips": "192.168.10.20,10.0.0.7"}}}` (comma-separated, no spaces: NDI
does not trim them), in the folder named by the environment variable NDI_CONFIG_DIR, else in ~/.ndi/; on Windows
from NDI Access Manager's "Remote Sources" (or the same file through NDI_CONFIG_DIR). Not a vj option of its own:
cyndilib's Finder (0.1.3) hands NDI no extra IPs (its NDIlib_find_create_t has p_extra_ips NULL), and NDI reads its
configuration once per process, at its first use (an NDI output made first would already have fixed it), so the
configuration is the one way that surely reaches NDI. `extra_ips()` reads it as NDI will, for the message of a
source not found.

cyndilib is imported only inside the functions here, so vj runs without the extra; a missing extra is a VideoError
saying how to add it.
"""

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from vj.video.frames import VideoError
from vj.reconnect import STALL_SECONDS
from vj.video.sources.newest import Picture
from vj.video.sources.pictures import rgb_of_array

FIND_SECONDS = 3.0  # how long an open waits for discovery to show the source
POLL_SECONDS = (0.002, 0.01)  # the frame sync is asked for a new frame 4 times a frame interval, within these
CONFIG_FILE = "ndi-config.v1.json"


def cyndilib():
    """The cyndilib modules vj uses, or VideoError when the extra is not installed (or its library will not load)."""
    try:
        from cyndilib.finder import Finder
        from cyndilib.receiver import Receiver
        from cyndilib.video_frame import VideoFrameSync
        from cyndilib.wrapper.ndi_recv import RecvBandwidth, RecvColorFormat
    except (ImportError, OSError) as exc:
        detail = "" if isinstance(exc, ModuleNotFoundError) else f" ({exc})"
        raise VideoError(f"ndi:NAME needs the NDI extra: pip install 'vj[ndi]'{detail}") from None
    return Finder, Receiver, VideoFrameSync, RecvBandwidth, RecvColorFormat


def list_ndi_sources(wait=1.0):
    """The names of the NDI sources discovery finds within `wait` seconds; VideoError without the extra."""
    Finder = cyndilib()[0]
    finder = Finder()
    finder.open()
    try:
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            finder.wait(left)  # woken at each change of the list
        return sorted(finder.get_source_names())
    finally:
        finder.close()


def config_path():
    """NDI's configuration file: in the folder NDI_CONFIG_DIR names, else in ~/.ndi/ (None on Windows, where NDI
    Access Manager keeps the settings)."""
    if folder := os.environ.get("NDI_CONFIG_DIR"):
        return Path(folder) / CONFIG_FILE
    return None if sys.platform == "win32" else Path.home() / ".ndi" / CONFIG_FILE


def extra_ips():
    """The extra IPs NDI's discovery asks, as NDI reads them from its configuration file (ndi.networks.ips, split at
    commas and not trimmed); [] without the file or the key."""
    try:
        ips = json.loads(config_path().read_text())["ndi"]["networks"]["ips"]
    except (AttributeError, OSError, ValueError, KeyError, TypeError):
        return []
    return [ip for ip in ips.split(",") if ip] if isinstance(ips, str) else []


def not_found(name, names):
    """The VideoError of a source discovery did not find, saying which extra IPs NDI asked."""
    found = ", ".join(f"'{n}'" for n in names) or "none found"
    path = config_path()
    if ips := extra_ips():
        asked = f"extra IPs asked, from {path}: {', '.join(repr(ip) for ip in ips)}"
    else:
        where = f"ndi.networks.ips of {path}" if path else "NDI Access Manager's Remote Sources"
        asked = f"no extra IPs: a sender on another subnet needs its IP in {where}"
    return VideoError(f"no NDI source '{name}' (sources: {found}; {asked})")


def matches(source, name):
    return name.lower() in (source.name.lower(), source.stream_name.lower())


class NdiOpener:
    """Opener (newest.py) of `ndi:NAME`; without the extra, VideoError at once."""

    def __init__(self, name, *, stall_timeout=STALL_SECONDS, find_timeout=FIND_SECONDS):
        cyndilib()
        self.name = name
        self.stall_timeout, self.find_timeout = stall_timeout, find_timeout
        self.label = f"video ndi:{name}"
        self.description = f"NDI source '{name}'"

    def __call__(self, closing):
        Finder, Receiver, VideoFrameSync, RecvBandwidth, RecvColorFormat = cyndilib()
        finder = Finder()
        finder.open()
        try:
            source = self._find(finder, closing)
            receiver = Receiver(color_format=RecvColorFormat.RGBX_RGBA, bandwidth=RecvBandwidth.highest)
            frame = VideoFrameSync()
            receiver.frame_sync.set_video_frame(frame)
            receiver.set_source(source)
        except BaseException:
            finder.close()
            raise
        return _NdiFeed(finder, receiver, frame, closing, self.stall_timeout)

    def _find(self, finder, closing):
        deadline = time.monotonic() + self.find_timeout
        while True:
            for source in finder.iter_sources():
                if matches(source, self.name):
                    return source
            left = deadline - time.monotonic()
            if left <= 0 or closing.is_set():
                raise not_found(self.name, finder.get_source_names())
            finder.wait(min(left, 0.25))  # woken when a source appears or goes


class _NdiFeed:
    """NDI's frame sync: asked often, it answers the newest frame at once; a new timestamp is a new frame. (Its
    plain receive() delivered about one frame in four here, at 30 fps over loopback.)"""

    def __init__(self, finder, receiver, frame, closing, stall_timeout):
        self.finder, self.receiver, self.frame = finder, receiver, frame
        self.closing, self.stall_timeout = closing, stall_timeout

    def close(self):
        try:
            self.receiver.disconnect()
        finally:
            self.finder.close()

    def __iter__(self):
        last = time.monotonic()
        seen = first = None
        poll = POLL_SECONDS[1]
        while True:
            self.receiver.frame_sync.capture_video()
            now = time.monotonic()
            width, height = self.frame.get_resolution()
            if min(width, height) > 0 and self.frame.get_data_size() > 0:
                stamp = self.frame.get_timestamp_posix()
                if stamp != seen:
                    seen, last = stamp, now
                    if first is None:
                        first = stamp
                        poll = self._poll()
                    rgba = self._copy(width, height)
                    yield Picture(stamp - first, rgb_of_array(rgba))
            if now - last > self.stall_timeout:
                raise VideoError(f"no frame for {self.stall_timeout:g} s")
            if self.closing.wait(poll):
                return

    def _poll(self):
        try:
            rate = float(self.frame.get_frame_rate())
        except (ZeroDivisionError, ValueError):  # a frame rate of 0/0
            return POLL_SECONDS[1]
        return min(max(1 / (4 * rate), POLL_SECONDS[0]), POLL_SECONDS[1]) if rate > 0 else POLL_SECONDS[1]

    def _copy(self, width, height):
        """The frame as height x width x 4 (a copy: the frame sync reuses its buffer; rows may be padded)."""
        data = np.array(self.frame.get_array(), np.uint8).ravel()
        stride = self.frame.get_line_stride() or width * 4
        return data[: stride * height].reshape(height, stride // 4, 4)[:, :width]
