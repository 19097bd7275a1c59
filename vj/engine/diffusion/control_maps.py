"""A frame's ControlNet inputs made into control maps on the engine's device, each map made once per source picture.

The Director says per frame and per net what to use (`ControlInput`); `ControlMaps` turns the picture (a still or a
video's frame, HxWx3 uint8, or the previous frame moved by this frame's motion) into the net's control map through
its preprocessor (vj.engine.diffusion.preprocessors), at the engine's size. A map is kept while its source picture
is the same object (a still picture: made once; a video frame: once however many nets or output frames use it).
"""

from dataclasses import dataclass, field

import numpy as np
import torch

from vj.engine.diffusion.preprocessors import canny, depth_map, inverted
from vj.engine.errors import EngineError


@dataclass(frozen=True)
class ControlInput:
    """What one frame asks of one ControlNet: the net (by its preset name), its weight, its source picture (HxWx3
    uint8; None with `previous`: the previous frame moved by this frame's motion; None otherwise: no picture yet, the
    net rests this frame), the preprocessor with its options ((name, value) pairs) and the fraction of the steps it
    acts in (`start`..`end`)."""

    model: str
    scale: float = 1.0
    image: object = field(default=None, compare=False)
    previous: bool = False
    preprocessor: str = "none"
    options: tuple = ()
    start: float = 0.0
    end: float = 1.0


def _as_tensor(image, height, width, device):
    """HxWx3 uint8 (any size) -> (1, 3, height, width) float32 in [0, 1] on `device` (antialiased bilinear resize)."""
    picture = np.require(image, requirements=("C", "W"))  # a read-only picture is copied (torch wants to write)
    x = torch.from_numpy(picture).to(device).permute(2, 0, 1)[None].float() / 255.0
    if x.shape[-2:] != (height, width):
        x = torch.nn.functional.interpolate(x, size=(height, width), mode="bilinear", antialias=True)
    return x


class ControlMaps:
    """Makes the control maps of a frame's ControlInputs at height x width on `device` in `dtype`. `depth` is the
    depth model's `metres(image01)` (None: the `depth` preprocessor is refused with EngineError)."""

    def __init__(self, height, width, device, dtype, depth=None):
        self.size = (height, width)
        self.device, self.dtype = device, dtype
        self.depth = depth
        self._kept = {}  # (id(picture), preprocessor, options) -> (picture, map): this frame's, for the next

    def _map(self, image01, preprocessor, options):
        options = dict(options)
        if preprocessor == "canny":
            made = canny(image01, options.get("low_threshold", 100.0), options.get("high_threshold", 200.0))
        elif preprocessor == "depth":
            if self.depth is None:
                raise EngineError("the depth preprocessor needs the depth model (the show loads it for such presets)")
            made = depth_map(self.depth(image01))
        elif preprocessor == "none":
            made = image01
        else:
            raise EngineError(f"unknown ControlNet preprocessor '{preprocessor}'")
        if options.get("invert"):
            made = inverted(made)
        return made.to(self.dtype)

    def maps(self, inputs, previous=None):
        """One map (1, 3, H, W) in [0, 1] per input, or None where the input has no picture this frame. `previous`:
        the previous frame moved by this frame's motion, (1, 3, H, W) in [-1, 1], or None before the first frame."""
        kept, made = self._kept, {}
        out = []
        for c in inputs:
            key = (id(c.image), c.preprocessor, c.options)
            if c.previous:
                source = None if previous is None else (previous.float() / 2 + 0.5).clamp(0, 1)
                key = ("previous", c.preprocessor, c.options)
            elif c.image is None:
                source = None
            else:
                hit = made.get(key) or kept.get(key)
                if hit is not None and hit[0] is c.image:
                    made[key] = hit
                    out.append(hit[1])
                    continue
                source = _as_tensor(c.image, *self.size, self.device)
            if source is None:
                out.append(None)
                continue
            if c.previous and key in made:  # two nets on the previous frame with the same preprocessor
                out.append(made[key][1])
                continue
            result = self._map(source, c.preprocessor, c.options)
            made[key] = (c.image, result)
            out.append(result)
        self._kept = {k: v for k, v in made.items() if k[0] != "previous"}
        return out
