"""The range each expression value is held to where it reaches the engine's tensors.

Expressions never give NaN or inf (a failing one gives 0, see vj.language.expressions), but a finite value can still be
too large for a tensor: `{cat + 1e308*tabby}` overflows the conditioning to inf and renders black, a zoom of
1e300 pixels makes the warp's grid NaN. The Director holds every value in its range once per frame; a value
outside it is clamped, logged (rate-limited) and reported to the live HUD. A constant outside its range is
refused when the preset loads. Torch-free, so `vj check` can use it.
"""

import logging
import math
import threading
import time

log = logging.getLogger(__name__)

# kind -> (low, high, what it is); README's "Expressions" section lists the same table
RANGES = {
    "weight": (-1e6, 1e6, "prompt weight"),
    "coefficient": (-100.0, 100.0, "token-edit coefficient"),
    "translate": (-1e4, 1e4, "translation (pixels per frame)"),
    "rotate": (-3600.0, 3600.0, "rotation (degrees per frame)"),
    "quaternion": (-100.0, 100.0, "rotate_3d component"),
    "zoom": (-1e4, 1e4, "zoom (pixels per frame)"),
    "guidance scale": (0.0, 1e3, "clip_guidance_scale"),
    "guidance weight": (-1e6, 1e6, "weight"),
    "video weight": (0.0, 1.0, "video_weight"),
    "control scale": (0.0, 10.0, "ControlNet scale"),
}
# preset keys whose expressions are held to a range, and their kinds
KEY_KINDS = {
    "translate_x": "translate",
    "translate_y": "translate",
    "translate_z_3d": "translate",
    "rotate_2d": "rotate",
    "zoom_x_2d": "zoom",
    "zoom_y_2d": "zoom",
    "clip_guidance_scale": "guidance scale",
    "video_weight": "video weight",
    **dict.fromkeys(
        (
            "direct_init_weight",
            "semantic_init_weight",
            "direct_stabilization_weight",
            "semantic_stabilization_weight",
            "edge_stabilization_weight",
            "depth_stabilization_weight",
            "smoothing_weight",
        ),
        "guidance weight",
    ),
}
LOG_INTERVAL = 1.0  # seconds between log lines about clamped values


def out_of_range(kind, value):
    """A one-line reason when constant `value` is outside `kind`'s range (for load-time checks), else None."""
    low, high, what = RANGES[kind]
    if low <= value <= high:
        return None
    return f"{value:g} is outside the {what} range {low:g}..{high:g}"


class ValueGuard:
    """Clamps each frame's values into RANGES. `notify(text)` (the live HUD's warnings) hears about each clamped
    value with a stable text; the log gets at most one line per LOG_INTERVAL with the values themselves."""

    def __init__(self, notify=None, clock=time.monotonic):
        self.notify = notify
        self.clamped = 0
        self._clock = clock
        self._last_log = -math.inf
        self._lock = threading.Lock()

    def __call__(self, kind, label, value):
        """`value` held in `kind`'s range; `label` names its place (`'tabby' in scene 1`, `zoom_x_2d`)."""
        low, high, what = RANGES[kind]
        if low <= value <= high:
            return value
        held = 0.0 if math.isnan(value) else min(max(value, low), high)  # 0 lies in every range
        self._report(f"{label}: {what} out of range, held to {low:g}..{high:g}", value, held)
        return held

    def _report(self, text, value, held):
        with self._lock:
            self.clamped += 1
            now = self._clock()
            due = now - self._last_log >= LOG_INTERVAL
            if due:
                self._last_log = now
        if due:
            log.warning("%s (value %r, used %r; %d values clamped so far)", text, value, held, self.clamped)
        if self.notify is not None:
            self.notify(text)


UNREPORTED = ValueGuard()  # for callers outside a show (tests, tools): clamps and logs, no HUD
