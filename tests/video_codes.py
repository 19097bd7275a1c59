"""Frames that carry their own number: an 8x8 grid of black and white blocks codes a frame index (and a check
bit pattern), so a receiver of a file, a stream or an output checks order, loss, stride and latency after lossy
compression. Shared by the video input and output tests and benchmarks."""

from fractions import Fraction

import av
import numpy as np

GRID = 8  # 8x8 blocks: 32 bits of index, then the same 32 bits inverted (a frame that decodes wrong is None)


def coded_frame(index, width=256, height=256, background=None):
    """uint8 HxWx3: the index's blocks over the whole picture (white = 1), optionally over a background colour."""
    bits = [(index >> i) & 1 for i in range(32)]
    bits += [1 - b for b in bits]
    blocks = np.array(bits, np.uint8).reshape(GRID, GRID) * 255
    picture = np.kron(blocks, np.ones((height // GRID, width // GRID), np.uint8))
    rgb = np.repeat(picture[:, :, None], 3, axis=2)
    if background is not None:
        rgb = rgb // 2 + np.asarray(background, np.uint8) // 2
    return np.ascontiguousarray(rgb)


def read_code(rgb):
    """The index coded in a frame (any size), or None when the check half does not match."""
    gray = np.asarray(rgb, np.float32).mean(axis=2)
    h, w = gray.shape
    means = gray[: h // GRID * GRID, : w // GRID * GRID].reshape(GRID, h // GRID, GRID, w // GRID).mean(axis=(1, 3))
    bits = (means.ravel() > 127).astype(int)
    if not all(bits[:32] + bits[32:] == 1):
        return None
    return int(sum(int(b) << i for i, b in enumerate(bits[:32])))


def write_coded_video(path, count, fps=30, width=256, height=256, first=0):
    """An H.264 MP4 of `count` coded frames numbered from `first` at `fps` (exact frame times)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18", "preset": "ultrafast"}
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(coded_frame(first + i, width, height), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
