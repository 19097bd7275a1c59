"""`vj live --headless`: the show without a window, for a rig that takes only its outputs (NDI, SRT, a virtual
camera). It answers the display's calls: frames are counted, never drawn; no keys (quit by OSC, SIGTERM, Ctrl-C or
--duration)."""

import time

from vj.live.loop import Rate


class Headless:
    """A display that shows nothing: the Show's loop runs as with a window, and the outputs get the frames."""

    blend = False  # no crossfades: nothing is drawn between engine frames
    vsync = False

    def __init__(self):
        self.flipped_at = None  # time.monotonic() of the latest new frame (the outputs' latency counts from it)
        self._rate = Rate()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def describe(self):
        return "none (--headless: frames go only to the outputs)"

    @property
    def fps(self):
        return self._rate.value

    def poll(self):
        return []

    def toggle_fullscreen(self):
        pass

    def next_present_in(self):
        return 0.0

    def present(self, frame=None, blackout=False, hud_lines=None, hud_levels=None):
        if frame is not None:
            self.flipped_at = time.monotonic()
            self._rate.tick()
