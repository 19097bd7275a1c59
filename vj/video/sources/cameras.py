"""Cameras through the platform's capture API in PyAV: v4l2 on Linux, dshow on Windows, avfoundation on macOS.

`camera:N` is the N-th camera as `vj devices` lists them, `camera:NAME` the first whose name contains NAME (any
case). The name is looked up again at each reopen, so a camera unplugged and plugged back (perhaps as another
/dev/video node) is found again.
"""

import re
import sys
from pathlib import Path
from typing import NamedTuple

import av

from vj.video.frames import VideoError
from vj.reconnect import STALL_SECONDS
from vj.video.sources.pictures import one_line
from vj.video.sources.streams import OPEN_SECONDS, AvFeed, open_av

CAPTURE_FORMATS = {"linux": "v4l2", "win32": "dshow", "darwin": "avfoundation"}
CAPTURE_OPTIONS = {"avfoundation": {"framerate": "30"}}  # avfoundation refuses its default rate (29.97) on most
DEV = Path("/dev")
SYSFS = Path("/sys/class/video4linux")


class Camera(NamedTuple):
    """One camera as `vj devices` lists it: `camera:<index>` opens it, `device` is what the capture API opens."""

    index: int
    name: str
    device: str


def platform_key():
    return "linux" if sys.platform.startswith("linux") else sys.platform


def capture_format():
    """The PyAV input format for cameras here; VideoError on a system without one."""
    fmt = CAPTURE_FORMATS.get(platform_key())
    if fmt is None:
        raise VideoError(f"cameras are not supported on {sys.platform} (vj knows v4l2, dshow and avfoundation)")
    return fmt


def _v4l2_cameras():
    """The /dev/video* capture nodes, named from sysfs; a camera's second node (its metadata, sysfs index > 0)
    is left out."""
    found = []
    for node in DEV.glob("video*"):
        number = re.fullmatch(r"video(\d+)", node.name)
        if not number:
            continue
        info = SYSFS / node.name
        try:
            if int((info / "index").read_text().strip() or 0) > 0:
                continue
        except (OSError, ValueError):
            pass
        try:
            name = (info / "name").read_text().strip()
        except OSError:
            name = node.name
        found.append((int(number.group(1)), name, str(node)))
    return [Camera(i, name, device) for i, (_, name, device) in enumerate(sorted(found))]


def list_cameras():
    """The cameras of this machine as Camera tuples; VideoError (one line) when they cannot be listed here."""
    fmt = capture_format()
    if fmt == "v4l2":
        return _v4l2_cameras()
    enumerate_devices = getattr(av, "enumerate_input_devices", None)
    if enumerate_devices is None:
        raise VideoError(
            f"listing cameras needs a PyAV with av.enumerate_input_devices (18.1 has it; this is {av.__version__}): "
            "pip install -U av"
        )
    try:
        devices = enumerate_devices(fmt)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"listing cameras ({fmt}) failed: {one_line(exc)}") from None
    video = [d for d in devices if not getattr(d, "media_types", None) or "video" in d.media_types]
    return [Camera(i, d.description or d.name, d.name) for i, d in enumerate(video)]


def find_camera(which):
    """The Camera `which` names (a number or part of a name); VideoError listing the cameras when none fits.
    Where the capture API cannot list its cameras (avfoundation in FFmpeg), it is given `which` as is: avfoundation
    takes an index or a name, dshow a name."""
    try:
        cameras = list_cameras()
    except VideoError:
        fmt = CAPTURE_FORMATS.get(platform_key())
        if fmt == "avfoundation" or (fmt == "dshow" and not which.strip().isdigit()):
            return Camera(int(which) if which.strip().isdigit() else -1, which, which.strip())
        raise
    if which.strip().isdigit():
        index = int(which)
        if index < len(cameras):
            return cameras[index]
    else:
        for camera in cameras:
            if which.lower() in camera.name.lower():
                return camera
    listing = ", ".join(f"{c.index} '{c.name}'" for c in cameras) or "none found"
    raise VideoError(f"no camera '{which}'; cameras: {listing}")


def device_target(camera, fmt):
    """What av.open takes for the camera: a /dev node (v4l2), "video=NAME" (dshow), the name (avfoundation)."""
    return f"video={camera.device}" if fmt == "dshow" else camera.device


class CameraOpener:
    """Opener (newest.py) of `camera:WHICH`; the camera must exist at the start (else VideoError listing them)."""

    def __init__(self, which, *, stall_timeout=STALL_SECONDS, open_timeout=OPEN_SECONDS):
        self.which = which
        self.stall_timeout, self.open_timeout = stall_timeout, open_timeout
        self.format = capture_format()
        camera = find_camera(which)
        self.label = f"video camera:{which}"
        self.description = f"camera {camera.index} '{camera.name}' ({self.format} {camera.device})"

    def __call__(self, closing):
        camera = find_camera(self.which)
        try:
            container, stream = open_av(
                device_target(camera, self.format),
                self.label,
                format=self.format,
                options=CAPTURE_OPTIONS.get(self.format),
                open_timeout=self.open_timeout,
                read_timeout=self.stall_timeout,
            )
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoError(one_line(exc)) from None
        return AvFeed(container, stream, self.stall_timeout)
