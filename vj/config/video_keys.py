"""The words of video in and out, defined once: presets' `animation_mode` and `video_path` are checked against
them (vj check), and vj.video opens sources and outputs by them."""

# pytti's animation modes as pytti writes them, and the spellings presets may use for each
ANIMATION_MODES = ("off", "2D", "3D", "Video Source")
ANIMATION_SPELLINGS = {
    "off": "off",
    "2d": "2D",
    "3d": "3D",
    "video source": "Video Source",
    "video_source": "Video Source",
}

# `video_path` and `--video-in` take a file or a URL with one of these schemes; `--video-in` also a camera or NDI
STREAM_SCHEMES = ("udp", "srt", "rtsp", "rtmp", "http", "https")
CAMERA_PREFIX = "camera:"  # camera:N (the N-th camera) or camera:NAME (part of its name)
NDI_PREFIX = "ndi:"  # ndi:NAME, an NDI source on the network (the NDI extra)

# `--out` targets: stream URLs (MPEG-TS, H.264) and named outputs
OUTPUT_SCHEMES = ("srt", "udp")
OUTPUT_PREFIXES = ("ndi:", "spout:", "syphon:")
VIRTUAL_CAMERA = "virtualcam"


def scheme_of(text):
    """The URL scheme of `text` in lower case ("udp" for "udp://host:port"), or None for a plain path."""
    head, sep, _ = text.partition("://")
    return head.lower() if sep and head.isalpha() else None
