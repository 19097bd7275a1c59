"""pytti's pixel image models as a frame engine: no diffusion; the picture itself is optimized by CLIP guidance.

Each frame: the previous frame is warped by the frame's motion and written back into the image model (the first
frame starts from the init image, or the model's own start), then `steps_per_frame` Adam steps minimize the
frame's objective plus the model's own regularization. In Video Source mode what is written back is that frame
moved toward the video frame by the request's `video_weight` (1: the video frame re-encoded, as pytti does), a
cut refits a limited palette to the new shot, and stabilization targets the video frame. The same FrameRequests
drive it as the diffusion engine (prompts' weights and stops, motion, the guidance weights, the video), so renders
and live shows use it unchanged.
"""

from dataclasses import dataclass

import torch

from vj.engine.errors import EngineError, out_of_memory
from vj.engine.diffusion.frames import fitted, image_to_tensor, to_rgb, video_input
from vj.engine.guidance.objective import GuidanceRequest
from vj.engine.motion import warp
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


def make_model(settings, device, target_palette=None):
    """The image model the settings name."""
    s = settings
    if s.model == "unlimited_palette":
        return UnlimitedPalette(s.width, s.height, device=device, seed=s.seed)
    if s.model == "limited_palette":
        return LimitedPalette(
            s.width,
            s.height,
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
        self.previous = None  # the last frame, (1, 3, H, W) in [0, 1]

    def reset(self):
        self.previous = None
        self.optimizer = None

    @property
    def learning_rate(self):
        s = self.settings
        return s.learning_rate if s.learning_rate is not None else self.model.default_learning_rate

    def _video(self, request):
        """The request's video frame as (1, 3, H, W) in [0, 1] at the model's size, or None."""
        if request.video is None:
            return None
        video = image_to_tensor(request.video, self.device, torch.float32) / 2 + 0.5
        return fitted(video, self.settings.height, self.settings.width).clamp(0, 1)

    def render_tensor(self, request):
        """The frame as (1, 3, H, W) in [0, 1] on the device."""
        s = self.settings
        guidance = request.guidance if request.guidance is not None else GuidanceRequest()
        generator = torch.Generator(device=self.device).manual_seed(request.seed + request.index)
        reference = None
        with torch.no_grad():
            start = None
            if self.previous is not None:
                start = reference = warp(self.previous, request.motion, s.infill_mode, s.sampling_mode)
            elif self.init is not None:
                start = self.init
            video = self._video(request)
            if video is not None:
                start = video_input(start, video, request.video_weight)
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
                self.objective.backward(self.model.decode, guidance, reference, self.init, generator)

        kept = None if s.reset_lr_each_frame else self.optimizer
        self.optimizer = optimize(self.model, backward, s.steps_per_frame, self.learning_rate, kept)
        with torch.no_grad():
            self.previous = self.model.frame()
            return self.model.show_palette(self.previous) if s.show_palette else self.previous

    def render(self, request):
        """The frame as uint8 HxWx3 on the host."""
        with out_of_memory(
            f"out of GPU memory at {self.settings.width}x{self.settings.height}: try a smaller "
            "--width/--height, fewer cutouts or more gradient_accumulation_steps"
        ):
            return to_rgb(self.render_tensor(request) * 2 - 1)
