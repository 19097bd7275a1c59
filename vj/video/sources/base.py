"""The one interface every video source has: a file, a network stream, a camera and NDI look the same to a show."""

from typing import Protocol, runtime_checkable

from vj.video.frames import VideoFrame


@runtime_checkable
class VideoSource(Protocol):
    """A source of video frames for a show or a render."""

    description: str  # what it is, as `vj live` says at the start ("file clip.mp4 (30 fps, 12.0 s)")

    def frame_for(self, t: float) -> VideoFrame | None:
        """The frame that output time `t` (seconds from the show's start) uses. A render's source answers the
        frame shown at t x frame_stride on the video's own timeline, the same every time; a live source the
        newest decoded frame, without waiting. None before its first frame."""

    @property
    def warning(self) -> str | None:
        """What the HUD should say about the source now (a lost stream, reconnecting), or None."""

    def stats(self) -> dict:
        """{"decoded": n, "used": n, "errors": n, "age_s": seconds since the last decoded frame or None}."""

    def close(self) -> None:
        """Stop decoding and let the file, stream or device go."""
