"""What every frame engine is to a show: one call per frame, numbers in, an RGB picture out.

The diffusion engine (`diffusion.frames.FrameEngine`), pytti's pixel models (`pixels.engine.PixelEngine`) and the
tests' fakes all satisfy `Engine`; renders, live shows, morph and benchmarks use nothing else of them.
"""

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Engine(Protocol):
    """A frame engine. `render` raises EngineError subclasses only (OutOfMemory when the device ran out)."""

    settings: object  # the frame's size and options (EngineSettings, PixelSettings); a new size is a new engine
    objective: object  # CLIP guidance (guidance.objective.Objective) or None; a show may replace it between frames

    def render(self, request) -> np.ndarray:
        """The next frame for a FrameRequest: uint8 height x width x 3."""

    def reset(self) -> None:
        """Forget the previous frame: the next one starts afresh (from the init image or noise)."""
