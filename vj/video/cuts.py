"""Cuts in a video: whether two consecutive frames a show uses belong to different shots.

pytti detects a cut from optical flow (the video frames' forward/backward flow consistency, from RAFT-GMA); vj has
no flow model, so it compares the pictures: the mean absolute difference of small thumbnails (cell means on a
THUMBNAIL x THUMBNAIL grid, every colour channel, in 0..1) above CUT_THRESHOLD is a cut. Motion within a shot moves
little of a thumbnail's mass (a pan of a few percent of the width changes it by a few hundredths); a new shot
changes most of it. Numpy only, any frame sizes (a live source's size may change).
"""

import numpy as np

THUMBNAIL = 32  # grid of the thumbnails compared
CUT_THRESHOLD = 0.2  # mean absolute difference (0..1) above which two frames are different shots
SAMPLES = 4  # pixels sampled per cell along each side


def thumbnail(rgb, size=THUMBNAIL):
    """A uint8 HxWx3 frame as a size x size x 3 float grid of cell means in 0..1 (fewer cells for a smaller frame);
    a large frame is sampled first, about SAMPLES x SAMPLES pixels a cell (under a millisecond for 1080p)."""
    image = np.asarray(rgb)
    height, width = image.shape[:2]
    image = image[:: max(1, height // (size * SAMPLES)), :: max(1, width // (size * SAMPLES))].astype(np.float32) / 255
    for axis in (0, 1):
        n = image.shape[axis]
        edges = np.linspace(0, n, min(size, n) + 1).astype(int)
        counts = np.diff(edges).astype(np.float32)
        shape = [1, 1, 1]
        shape[axis] = len(counts)
        image = np.add.reduceat(image, edges[:-1], axis=axis) / counts.reshape(shape)
    return image


def frame_difference(a, b, size=THUMBNAIL):
    """The mean absolute difference (0..1) of two frames' thumbnails."""
    ta, tb = thumbnail(a, size), thumbnail(b, size)
    if ta.shape != tb.shape:  # frames too small for the whole grid, of other sizes: compare on the smaller grid
        size = min(ta.shape[0], ta.shape[1], tb.shape[0], tb.shape[1])
        ta, tb = thumbnail(a, size), thumbnail(b, size)
    return float(np.abs(ta - tb).mean())


def is_cut(previous, current, threshold=CUT_THRESHOLD):
    """Whether `current` starts another shot than `previous` (uint8 HxWx3 frames; no previous frame: no cut)."""
    return previous is not None and frame_difference(previous, current) > threshold
