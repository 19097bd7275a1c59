"""The driver's in-order writing of a distributed render: segments arriving in any order, lost and re-run (the one
being written included), give every frame once, in order."""

import numpy as np

from vj.cluster.segmented import Stitcher
from vj.cluster.segments import plan_segments


def chunk(first, count):
    """Frames that carry their own number (each pixel = the frame's index) and their black flags."""
    frames = np.stack([np.full((2, 2, 3), i, np.uint8) for i in range(first, first + count)])
    return frames, np.array([i % 5 == 0 for i in range(first, first + count)])


def stitched(tmp_path, events):
    segments = plan_segments(30, 3, 4)
    out = []
    stitcher = Stitcher(segments, lambda index, rgb, black: out.append((index, int(rgb[0, 0, 0]), black)), tmp_path)
    for kind, k, first, count in events:
        if kind == "add":
            stitcher.add(segments[k], chunk(first, count))
        else:
            stitcher.drop(segments[k])
    return out, stitcher


def test_segments_in_any_order_are_written_in_order(tmp_path):
    out, stitcher = stitched(
        tmp_path,
        [("add", 2, 20, 6), ("add", 1, 10, 10), ("add", 0, 0, 4), ("add", 2, 26, 4), ("add", 0, 4, 6)],
    )
    assert out == [(i, i, i % 5 == 0) for i in range(30)] and stitcher.written == 30
    assert not list(tmp_path.iterdir())  # the spooled chunks are gone once written


def test_a_lost_segment_runs_again_and_nothing_is_written_twice(tmp_path):
    events = [
        ("add", 0, 0, 4),  # written at once: segment 1 is being written
        ("add", 1, 10, 4),  # spooled
        ("drop", 1, 0, 0),  # segment 2 lost: its spooled frames go
        ("drop", 0, 0, 0),  # segment 1 lost while being written: its 4 frames stay in the file
        ("add", 0, 0, 8),  # the re-run sends them again, and 4 new ones
        ("add", 0, 8, 2),
        ("add", 2, 20, 10),
        ("add", 1, 10, 10),  # segment 2's re-run
    ]
    out, stitcher = stitched(tmp_path, events)
    assert [frame for _, frame, _ in out] == list(range(30))
    assert [index for index, _, _ in out] == list(range(30))
