"""A decoded video frame and the errors of video in and out: what sources hand the show and outputs refuse."""

from dataclasses import dataclass

import numpy as np

from vj.errors import VjError


class VideoError(VjError):
    """A video source that cannot be opened or decoded; the message names it and what would be valid."""


class OutputError(VjError):
    """A video output that cannot be made on this machine (a missing extra, another OS, a bad target)."""


@dataclass(frozen=True)
class VideoFrame:
    """One frame of a video source, already at the size the source was opened for."""

    rgb: np.ndarray  # uint8 height x width x 3
    index: int  # the source's frame number: decode order from its start (a stream counts from connecting)
    time: float  # seconds on the source's own timeline (its presentation time)
    decoded_at: float  # time.monotonic() when it was decoded


def nearest(frame, width, height):
    """A uint8 hxwx3 frame at width x height by nearest neighbour (pixel_size's blocks; a smaller frame of the live
    show's out-of-memory fallback among full-size ones), C-contiguous; the frame itself when already that size."""
    h, w = frame.shape[:2]
    if (h, w) == (height, width):
        return frame
    rows = np.arange(height) * h // height
    cols = np.arange(width) * w // width
    return np.ascontiguousarray(frame[rows[:, None], cols[None, :]])
