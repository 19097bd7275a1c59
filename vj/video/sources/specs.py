"""What a video source is named by (pytti's `video_path`, `--video-in`): a file, a URL, `camera:N`/`camera:NAME` or
`ndi:NAME`, checked as text (`check_video_spec`, for `vj check`) and opened as a VideoSource (`open_video`).

A render opens a file (or an http(s) URL of one) as `VideoFile`: deterministic frames at t x frame_stride. A live
show opens anything as `LiveVideo`: the newest frame, decoded on its own thread; a file plays in real time at
frame_stride x speed and loops. Only this module's open_video imports PyAV, cyndilib and the sources, so checking
a preset stays light.
"""

import importlib.util
from pathlib import Path

from vj.config.video_keys import CAMERA_PREFIX, NDI_PREFIX, STREAM_SCHEMES, scheme_of
from vj.video.frames import VideoError
from vj.reconnect import STALL_SECONDS

WEB_SCHEMES = ("http", "https")  # may name a file: a render can read them
PROBED_SCHEMES = ("srt", "rtmp")  # protocols some FFmpeg builds (PyAV's wheels) leave out
KINDS = "a file path, a URL (" + ", ".join(f"{s}://" for s in STREAM_SCHEMES) + f"), {CAMERA_PREFIX}N, "
KINDS += f"{CAMERA_PREFIX}NAME or {NDI_PREFIX}NAME"


def _prefixed(text, prefix):
    return text[: len(prefix)].lower() == prefix


def check_video_spec(text, base=None):
    """None when `text` names a video source vj can open, else the problem in one line. Text only (no file or
    network is touched), except that with `base` a plain path must name an existing file (relative to base)."""
    if not isinstance(text, str) or not text.strip():
        return f"a video source must be {KINDS}; got {text!r}"
    if _prefixed(text, CAMERA_PREFIX):
        if not text[len(CAMERA_PREFIX) :].strip():
            return f"'{text}' names no camera: camera:N (a number from `vj devices`) or camera:NAME (part of its name)"
        return None
    if _prefixed(text, NDI_PREFIX):
        if not text[len(NDI_PREFIX) :].strip():
            return f"'{text}' names no NDI source: ndi:NAME (`vj devices` lists them)"
        if importlib.util.find_spec("cyndilib") is None:
            return "ndi:NAME needs the NDI extra: pip install 'vj[ndi]'"
        return None
    scheme = scheme_of(text)
    if scheme is not None:
        if scheme not in STREAM_SCHEMES:
            return f"'{text}': unknown scheme {scheme}://; a video source is {KINDS}"
        if not text.partition("://")[2].strip("/"):
            return f"'{text}' names no host"
        return None
    if base is not None and not (Path(base) / Path(text).expanduser()).is_file():
        return f"no such video file: {text}"
    return None


def open_video(
    spec,
    width,
    height,
    *,
    stride=1,
    live=False,
    loop=False,
    base=Path("."),
    speed=1.0,
    stall_timeout=STALL_SECONDS,
):
    """The VideoSource `spec` names, at (width, height). A render's (live=False): a file (relative to `base`) or
    an http(s) URL of one, read at t x stride, held at its end or looped (`loop`). A live show's (live=True): a
    file played at stride x speed and looped, a stream URL, a camera or NDI, through a decoder thread that holds
    the last frame of a lost source and reconnects. VideoError (one line) for what cannot be opened."""
    problem = check_video_spec(spec)
    if problem:
        raise VideoError(problem)
    if not stride > 0 or not speed > 0:
        raise VideoError(f"video {spec}: frame_stride and speed must be above 0 (got {stride:g} and {speed:g})")
    camera = _prefixed(spec, CAMERA_PREFIX)
    ndi = _prefixed(spec, NDI_PREFIX)
    scheme = scheme_of(spec)
    if not live:
        if camera or ndi or (scheme is not None and scheme not in WEB_SCHEMES):
            raise VideoError(
                f"'{spec}' is live input: a render reads a file (or an http(s) URL of one), the same frames every "
                "time; use it in a live show (vj live --video-in)"
            )
        from vj.video.sources.file import VideoFile

        if scheme is not None:
            return VideoFile(spec, width, height, stride=stride, loop=loop, name=spec)
        return VideoFile(_path(spec, base), width, height, stride=stride, loop=loop, name=spec)

    from vj.video.sources.newest import LiveVideo

    if camera:
        from vj.video.sources.cameras import CameraOpener

        opener = CameraOpener(spec[len(CAMERA_PREFIX) :].strip(), stall_timeout=stall_timeout)
    elif ndi:
        from vj.video.sources.ndi import NdiOpener

        opener = NdiOpener(spec[len(NDI_PREFIX) :].strip(), stall_timeout=stall_timeout)
    elif scheme is not None:
        from vj.video.sources.streams import StreamOpener, protocol_missing

        if scheme in PROBED_SCHEMES and protocol_missing(scheme):
            from vj.video.sources.ffmpeg_cli import FfmpegOpener, ffmpeg_input_protocols

            if scheme not in ffmpeg_input_protocols():
                raise VideoError(f"{protocol_missing(scheme)}; or put an ffmpeg command that has it on PATH")
            opener = FfmpegOpener(spec, width, height, stall_timeout=stall_timeout)
        else:
            opener = StreamOpener(spec, scheme, stall_timeout=stall_timeout)
    else:
        from vj.video.sources.file import FilePlayback

        opener = FilePlayback(_path(spec, base), stride=stride, speed=speed, name=spec)
        stall_timeout = max(stall_timeout, 3 * opener.frame_interval)  # a slowed-down file is not a stalled one
    return LiveVideo(opener, width, height, stall_timeout=stall_timeout)


def _path(spec, base):
    path = Path(spec).expanduser()
    return path if path.is_absolute() else Path(base) / path
