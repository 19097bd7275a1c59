"""Test helpers for a real X server: start Xvfb on a free display number, and screenshot it with `xwd`.

Needs the Debian packages `xvfb` (Xvfb) and `x11-apps` (xwd).
"""

import contextlib
import ctypes
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time

import numpy as np


def _die_with_parent():
    """In the child: get SIGTERM when the test process dies, even by a crash that skips every finalizer."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _require(tool, package):
    if shutil.which(tool) is None:
        raise RuntimeError(f"{tool} is not installed: apt-get install -y {package}")


@contextlib.contextmanager
def xvfb(width=1280, height=720, depth=24, timeout=10.0):
    """Run Xvfb for the duration of the block; yields its DISPLAY string (':N'). Xvfb picks the free number
    itself (-displayfd) and writes it only once it accepts clients, so nothing waits on a guess."""
    _require("Xvfb", "xvfb")
    read_fd, write_fd = os.pipe()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [
            "Xvfb",
            "-displayfd",
            str(write_fd),
            "-screen",
            "0",
            f"{width}x{height}x{depth}",
            "-nolisten",
            "tcp",
            "-noreset",
        ],
        pass_fds=(write_fd,),
        stdout=log,
        stderr=log,
        preexec_fn=_die_with_parent,
    )
    os.close(write_fd)
    try:
        number, deadline = b"", time.monotonic() + timeout
        while not number.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_fd], [], [], left)[0]:
                break
            chunk = os.read(read_fd, 32)
            if not chunk:  # Xvfb exited
                break
            number += chunk
        if not number.strip():
            log.seek(0)
            raise RuntimeError(f"Xvfb did not start: {log.read().decode(errors='replace').strip()}")
        yield f":{int(number)}"
    finally:
        os.close(read_fd)
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def screenshot(display):
    """The X server's root window as an (height, width, 3) uint8 RGB array, read with `xwd -root`."""
    _require("xwd", "x11-apps")
    data = subprocess.run(["xwd", "-root", "-silent", "-display", display], capture_output=True, check=True).stdout
    return parse_xwd(data)


def parse_xwd(data):
    """Decode an XWD image (ZPixmap, 24 or 32 bits per pixel, true colour) to RGB."""
    header = np.frombuffer(data[:100], dtype=">u4")
    (
        header_size,
        _version,
        pixmap_format,
        _depth,
        width,
        height,
        _xoffset,
        byte_order,
        _unit,
        _bit_order,
        _pad,
        bits_per_pixel,
        bytes_per_line,
        _visual,
        red_mask,
        green_mask,
        blue_mask,
        _bits_rgb,
        _cmap,
        ncolors,
    ) = header[:20]
    if pixmap_format != 2 or bits_per_pixel not in (24, 32):
        raise ValueError(f"unsupported XWD image: format {pixmap_format}, {bits_per_pixel} bits per pixel")
    start = int(header_size) + 12 * int(ncolors)
    rows = np.frombuffer(data, dtype=np.uint8, count=int(height) * int(bytes_per_line), offset=start)
    rows = rows.reshape(int(height), int(bytes_per_line))
    step = int(bits_per_pixel) // 8
    pixels = rows[:, : int(width) * step].reshape(int(height), int(width), step).astype(np.uint32)
    if byte_order == 0:  # LSBFirst
        value = sum(pixels[..., i] << (8 * i) for i in range(step))
    else:
        value = sum(pixels[..., i] << (8 * (step - 1 - i)) for i in range(step))

    def channel(mask):
        mask = int(mask)
        shift = (mask & -mask).bit_length() - 1
        return ((value & mask) >> shift).astype(np.uint8)

    return np.stack([channel(red_mask), channel(green_mask), channel(blue_mask)], axis=-1)
