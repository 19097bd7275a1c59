"""pytti's pixel image models as a frame engine: no diffusion; the picture itself is optimized by CLIP guidance.

Each frame: the previous frame is warped by the frame's motion and written back into the image model (the first
frame starts from the init image, or the model's own start), then `steps_per_frame` Adam steps minimize the
frame's objective plus the model's own regularization. In Video Source mode what is written back is that frame
moved toward the video frame by the request's `video_weight` (1: the video frame re-encoded, as pytti does), a
cut refits a limited palette to the new shot, and stabilization targets the video frame. The same FrameRequests
drive it as the diffusion engine (prompts' weights and stops, motion, the guidance weights, the video), so renders
and live shows use it unchanged.

`pixel_size` (pytti's key): the image model holds a picture of ceil(width / pixel_size) x ceil(height /
pixel_size) pixels and every frame shows it scaled up by nearest neighbour, each pixel a pixel_size x pixel_size
block (the blocks at the right and bottom edges are cut when the size is not a multiple). As in pytti, the
objective (CLIP cutouts, direct image prompts, init, stabilization, smoothing) scores the scaled-up blocky picture
at the frame's size, so the perceptors see pixel art, and its gradient reaches the small picture through the
scaling (each pixel gets the sum over its block). Motion and the stabilization warp act on the small picture;
motion stays in frame pixels (translate and zoom are divided by pixel_size there), so a preset moves at the same
speed whatever its pixel_size.
"""

import math

from dataclasses import dataclass

import torch

from vj.engine.errors import EngineError, out_of_memory
from vj.engine.diffusion.frames import fitted, image_to_tensor, to_rgb, video_input
from vj.engine.guidance.objective import GuidanceRequest
from vj.engine.motion import Motion, warp
from vj.engine.pixels.models import LimitedPalette, UnlimitedPalette, optimize


@dataclass(frozen=True)
class PixelSettings:
    """What stays fixed for a stream of pixel-model frames (pytti's keys)."""

    model: str = "unlimited_palette"
    width: int = 512
    height: int = 512
    infill_mode: str = "mirror"
    sampling_mode: str = "bilinear"
    steps_per_frame: int = 50
    learning_rate: float | None = None
    reset_lr_each_frame: bool = True
    palette_size: int = 6
    palettes: int = 9
    gamma: float = 1.0
    hdr_weight: float = 0.01
    palette_normalization_weight: float = 0.2
    random_initial_palette: bool = False
    lock_palette: bool = False
    show_palette: bool = False
    seed: int = 0
    pixel_size: int = 1  # each optimized pixel is shown as a pixel_size x pixel_size block

    @property
    def model_size(self):
        """(width, height) of the optimized picture: the frame's size divided by pixel_size, rounded up."""
        return optimized_size(self.width, self.height, self.pixel_size)


def optimized_size(width, height, pixel_size):
    """(width, height) of a picture whose pixel_size x pixel_size blocks cover width x height."""
    return math.ceil(width / pixel_size), math.ceil(height / pixel_size)


def blocks(image, pixel_size, height, width):
    """A (1, C, h, w) picture scaled up by nearest neighbour to pixel_size x pixel_size blocks and cut to height x
    width; differentiable (each pixel's gradient is the sum over its block). pixel_size 1 returns `image`."""
    if pixel_size == 1:
        return image
    big = image.repeat_interleave(pixel_size, dim=-2).repeat_interleave(pixel_size, dim=-1)
    return big[..., :height, :width]


def scaled_motion(motion, pixel_size):
    """`motion` (frame pixels) in pixels of the optimized picture: translate and zoom divided by pixel_size (a 3D
    motion's units are the frame's already)."""
    if not isinstance(motion, Motion) or pixel_size == 1:
        return motion
    return Motion(
        translate_x=motion.translate_x / pixel_size,
        translate_y=motion.translate_y / pixel_size,
        rotate=motion.rotate,
        zoom_x=motion.zoom_x / pixel_size,
        zoom_y=motion.zoom_y / pixel_size,
    )


def make_model(settings, device, target_palette=None):
    """The image model the settings name, at the optimized size (the frame's size divided by pixel_size)."""
    s = settings
    width, height = s.model_size
    if s.model == "unlimited_palette":
        return UnlimitedPalette(width, height, device=device, seed=s.seed)
    if s.model == "limited_palette":
        return LimitedPalette(
            width,
            height,
            palette_size=s.palette_size,
            palettes=s.palettes,
            gamma=s.gamma,
            hdr_weight=s.hdr_weight,
            palette_normalization_weight=s.palette_normalization_weight,
            random_initial_palette=s.random_initial_palette,
            target_palette=target_palette,
            lock_palette=s.lock_palette,
            device=device,
            seed=s.seed,
        )
    raise EngineError(f"unknown pixel image model '{s.model}': use unlimited_palette or limited_palette")


class PixelEngine:
    """Turns FrameRequests into frames of a pixel image model; keeps the model, its optimizer and the last frame."""

    def __init__(self, settings, objective, init_image=None, device="cpu", target_palette=None):
        if int(settings.pixel_size) < 1:
            raise EngineError(f"pixel_size must be at least 1, got {settings.pixel_size}")
        if objective is None:
            raise EngineError(
                f"image_model {settings.model} is steered by CLIP guidance alone and needs a perceptor "
                "(ViTB32: false turned the default off; name one in `perceptors`)"
            )
        self.settings = settings
        self.objective = objective
        self.device = torch.device(device)
        self.model = make_model(settings, self.device, target_palette)
        self.init = None if init_image is None else image_to_tensor(init_image, self.device, torch.float32) / 2 + 0.5
        self.optimizer = None
        self.previous = None  # the last optimized picture, (1, 3, h, w) in [0, 1] (h, w: settings.model_size)
        self.warp = warp  # moves the previous picture by the request's motion: 2D, or a DepthWarp (3D mode)

    def reset(self):
        self.previous = None
        self.optimizer = None

    @property
    def learning_rate(self):
        s = self.settings
        return s.learning_rate if s.learning_rate is not None else self.model.default_learning_rate

    def _video(self, request):
        """The request's video frame as (1, 3, H, W) in [0, 1] at the frame's size, or None."""
        if request.video is None:
            return None
        video = image_to_tensor(request.video, self.device, torch.float32) / 2 + 0.5
        return fitted(video, self.settings.height, self.settings.width).clamp(0, 1)

    def _blocks(self, image):
        """An optimized picture (1, 3, h, w) shown at the frame's size, in pixel_size blocks."""
        s = self.settings
        return blocks(image, s.pixel_size, s.height, s.width)

    def render_tensor(self, request):
        """The frame as (1, 3, H, W) in [0, 1] on the device."""
        s = self.settings
        width, height = s.model_size
        guidance = request.guidance if request.guidance is not None else GuidanceRequest()
        generator = torch.Generator(device=self.device).manual_seed(request.seed + request.index)
        reference = None
        with torch.no_grad():
            start = None
            if self.previous is not None:
                motion = scaled_motion(request.motion, s.pixel_size)
                start = self.warp(self.previous, motion, s.infill_mode, s.sampling_mode)
                reference = self._blocks(start)
            elif self.init is not None:
                start = fitted(self.init, height, width)
            video = self._video(request)
            if video is not None:
                start = video_input(start, fitted(video, height, width), request.video_weight)
                if request.video_cut:
                    self.model.refit_palette(video)
                if request.video_stabilization:
                    reference = video
            if start is not None:
                self.model.encode(start)
            self.model.hold_palette(video is not None and request.video_weight >= 1.0 and not request.video_cut)
        active = guidance.active(init=True)

        def backward():
            if active:
                self.objective.backward(
                    lambda: self._blocks(self.model.decode()), guidance, reference, self.init, generator
                )

        kept = None if s.reset_lr_each_frame else self.optimizer
        self.optimizer = optimize(self.model, backward, s.steps_per_frame, self.learning_rate, kept)
        with torch.no_grad():
            self.previous = self.model.frame()
            frame = self._blocks(self.previous)
            return self.model.show_palette(frame) if s.show_palette else frame

    def render(self, request):
        """The frame as uint8 HxWx3 on the host."""
        with out_of_memory(
            f"out of GPU memory at {self.settings.width}x{self.settings.height}: try a smaller "
            "--width/--height, fewer cutouts or more gradient_accumulation_steps"
        ):
            return to_rgb(self.render_tensor(request) * 2 - 1)
