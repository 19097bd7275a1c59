"""The frame engine: one call per frame, streaming img2img on the previous (warped) frame, or in Video Source mode
on that frame moved toward the video's frame (`FrameRequest.video`, `video_weight`)."""

import contextlib
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from vj.engine.diffusion.conditioning import ConditioningCache, crossfade, prompt_conditioning
from vj.engine.diffusion.control_maps import ControlMaps
from vj.engine.diffusion.controlnet import Control, controlled_unet_model
from vj.engine.devices import synchronize
from vj.engine.errors import EngineError, out_of_memory
from vj.engine.motion import Motion, warp
from vj.engine.guidance.objective import GUIDED_PREDICTIONS, clip_guided, steer
from vj.engine.diffusion.image_conditioning import image_guided_conditioning
from vj.engine.diffusion.sampler import (
    denoise,
    guidance_embedding,
    img2img_schedule,
    noise_scales,
    txt2img_schedule,
)
from vj.engine.vocabulary import INFILL_MODES, SAMPLING_MODES


@dataclass(frozen=True)
class EngineSettings:
    """What stays fixed for a stream of frames."""

    width: int = 512
    height: int = 512
    steps: int = 1
    fixed_noise: bool = True
    infill_mode: str = "mirror"
    sampling_mode: str = "bilinear"
    transition_mode: str = "slerp"
    guidance_scale: float = 1.0  # only used by UNets with guidance conditioning (LCM)


@dataclass(frozen=True)
class GuideEmbedding:
    """A guide image for the conditioning: its CLIP image tower's tokens (T, D), class token first, and how they
    map onto the text tokens."""

    embedding: torch.Tensor
    method: tuple = ("linear",)  # linear, threshold, clustered (combined by their largest weight) or concept
    options: tuple = ()  # (name, value) pairs for image_guided_conditioning: mapping, threshold, bos_cap
    concept: str = ""  # the concept method's prompt


@dataclass(frozen=True)
class FrameRequest:
    """Everything one frame needs, as numbers: prompts as (text, weight) pairs, and during a scene
    transition the previous scene's prompts with `mix` going 0 -> 1 towards `prompts`."""

    index: int
    prompts: tuple
    strength: float = 0.5
    motion: object = field(default_factory=Motion)  # a Motion (2D), or in 3D mode a vj.engine.depth.camera.Motion3D
    seed: int = 0
    previous_prompts: tuple | None = None
    mix: float = 1.0
    init_weight: float = 0.0
    guide: object = field(default=None, compare=False)  # HxWx3 image (0..255) the input is pulled toward
    guide_weight: float = 0.0  # 0..1: how far (a latent-blend transition's frame)
    guidance: object = field(default=None, compare=False)  # a GuidanceRequest (CLIP guidance), or None
    image_conditioning: tuple = ()  # (guide image key, strength): mixed into the conditioning
    # Video Source mode: the video frame of this output frame (HxWx3 uint8, any size), how much of it goes into
    # the input (0..1: 1 = img2img of the video frame, 0 = the warped previous frame alone), whether it starts a
    # new shot (a cut: pixel models refit their palette), and whether stabilization targets it instead of the
    # warped previous frame (pytti: direct and edge stabilization take the video frame, semantic re-embeds it)
    video: object = field(default=None, compare=False)
    video_weight: float = 0.0
    video_cut: bool = False
    video_stabilization: bool = False
    controls: tuple = ()  # ControlInputs (vj.engine.diffusion.control_maps): the ControlNets' weights and pictures


class _NoTimer:
    @contextlib.contextmanager
    def stage(self, name):
        yield


class StageTimer:
    """Wall time per stage (synchronizing the GPU at stage edges; for benchmarks only)."""

    def __init__(self, device):
        self.device = device
        self.totals = {}

    @contextlib.contextmanager
    def stage(self, name):
        synchronize(self.device)
        start = time.perf_counter()
        yield
        synchronize(self.device)
        self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - start


def initial_noise(c, width, height, generator):
    """The txt2img starting latents for a frame of width x height, as diffusers' pipelines draw them."""
    shape = (1, c.unet.config.in_channels, height // c.vae_scale, width // c.vae_scale)
    return torch.randn(shape, generator=generator, device=c.device, dtype=c.dtype)


def decode(c, latents):
    """Latents -> image (1, 3, H, W) in [-1, 1]."""
    return c.vae.decode(latents / c.vae.config.scaling_factor, return_dict=False)[0].clamp(-1.0, 1.0)


def to_rgb(image):
    """(1, 3, H, W) in [-1, 1] on any device -> HxWx3 uint8 on the host."""
    return ((image[0] / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def image_to_tensor(rgb, device, dtype):
    """uint8 HxWx3 -> (1, 3, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).to(device).permute(2, 0, 1)[None].to(dtype)
    return x / 127.5 - 1.0


def fitted(image, height, width):
    """A (1, C, h, w) image at height x width: unchanged when it already is, else resized (antialiased bilinear,
    computed in float32: the CPU has no half-precision kernel for it) in its own dtype."""
    if image.shape[-2:] == (height, width):
        return image
    resized = torch.nn.functional.interpolate(
        image.float(), size=(height, width), mode="bilinear", align_corners=False, antialias=True
    )
    return resized.to(image.dtype)


def video_input(image, video, weight):
    """The input of a Video Source frame: the warped previous frame moved toward the video frame by `weight`
    (0..1); the video frame itself at weight 1 or when there is no previous frame."""
    if image is None or weight >= 1.0:
        return video
    return image if weight <= 0.0 else torch.lerp(image, video, weight)


class FrameEngine:
    """Turns FrameRequests into frames. Keeps the previous frame and the conditioning cache."""

    def __init__(self, components, settings, init_image=None, timer=None, objective=None, guide_images=None):
        c = self.c = components
        self.settings = settings
        if settings.width % 8 or settings.height % 8:
            raise EngineError(f"width and height must be multiples of 8, got {settings.width}x{settings.height}")
        if settings.infill_mode not in INFILL_MODES or settings.sampling_mode not in SAMPLING_MODES:
            raise EngineError(f"infill_mode must be one of {INFILL_MODES} and sampling_mode one of {SAMPLING_MODES}")
        self.cache = ConditioningCache(c.text_encoder, c.tokenizer, c.device)
        self.timer = timer or _NoTimer()
        self.objective = objective  # CLIP guidance (vj.engine.guidance.objective.Objective), or None
        self.guide_images = guide_images or {}  # key -> GuideEmbedding, for request.image_conditioning
        self._concept_rows = {}  # concept prompt -> its end (BOS and words) in the token sequence
        kind = c.scheduler.config.get("prediction_type", "epsilon")
        if objective is not None and kind not in GUIDED_PREDICTIONS:
            raise EngineError(
                f"CLIP guidance needs a model predicting {' or '.join(GUIDED_PREDICTIONS)}; '{c.name}' predicts {kind}"
            )
        self.init = None if init_image is None else image_to_tensor(init_image, c.device, c.dtype)
        self.previous = None  # last frame, (1, 3, H, W) in [-1, 1]
        self.warp = warp  # moves the previous frame by the request's motion: 2D, or a DepthWarp (3D mode)
        self._noise_scales = {}  # (N, begin index) -> (a, b) of the scheduler's add_noise
        self._timestep_cond = guidance_embedding(c.unet, settings.guidance_scale, 1, c.device, c.dtype)
        self.controlnets = {}  # preset name -> ControlNetModel, for the requests' ControlInputs
        self.depth = None  # the depth model's metres(image01), for the depth preprocessor, or None
        self.control_maps = ()  # the control maps that steered the last frame, (1, 3, H, W) in [0, 1]
        self._maps = None  # ControlMaps, made on first use

    def reset(self):
        self.previous = None

    def _generator(self, request):
        seed = request.seed if self.settings.fixed_noise else request.seed + request.index
        return torch.Generator(device=self.c.device).manual_seed(seed)

    def conditioning(self, request):
        cond = prompt_conditioning(self.cache, request.prompts)
        if request.previous_prompts is not None and request.mix < 1.0:
            previous = prompt_conditioning(self.cache, request.previous_prompts)
            cond = crossfade(previous, cond, request.mix, self.settings.transition_mode)
        for key, strength in request.image_conditioning:
            guide = self.guide_images.get(key)  # none: its picture could not be embedded (a warning said so)
            if strength > 0 and guide is not None:
                cond = self._image_guided(cond, guide, strength)
        return cond.to(self.c.dtype)

    def _image_guided(self, cond, guide, strength):
        """`cond` with a guide image's embedding mixed into its tokens by the guide's method."""
        options = dict(guide.options)
        if "concept" in guide.method:  # the concept's word tokens only: padding rows look alike in every prompt
            end = self._concept_rows.get(guide.concept)
            if end is None:
                end = self._concept_rows[guide.concept] = len(self.cache.tokenizer(guide.concept).input_ids) - 1
            options["concept_conditioning"] = self.cache.embed(guide.concept)[0, 1 : max(2, end)]
        return image_guided_conditioning(cond, guide.embedding, guide.method, strength, **options)

    def encode(self, image, generator):
        vae = self.c.vae
        if self.c.is_tiny_vae:
            return vae.encode(image).latents * vae.config.scaling_factor
        return vae.encode(image).latent_dist.sample(generator) * vae.config.scaling_factor

    def _controls(self, request, moved):
        """The Controls of the request's ControlInputs (`moved`: the previous frame moved by this frame's motion, or
        None); a net without a picture this frame, or not loaded (a reload added it), rests."""
        if not request.controls:
            self.control_maps = ()
            return []
        if self._maps is None:
            s, c = self.settings, self.c
            self._maps = ControlMaps(s.height, s.width, c.device, c.dtype)
        self._maps.depth = self.depth  # the factory may give it after the engine is made
        controls, shown = [], []
        for wanted, image in zip(request.controls, self._maps.maps(request.controls, moved)):
            net = self.controlnets.get(wanted.model)
            if image is None or net is None:
                continue
            shown.append(image)
            controls.append(Control(net, image, wanted.scale, wanted.start, wanted.end))
        self.control_maps = tuple(shown)
        return controls

    def _guided(self, request):
        g = request.guidance
        return self.objective is not None and g is not None and g.scale > 0 and g.steps > 0 and g.active()

    def _steered(self, model, request, reference):
        """`model` wrapped by CLIP guidance toward the request's objective (the sampler does not know)."""
        c = self.c
        cuts = torch.Generator(device=c.device).manual_seed(request.seed + request.index)

        def decode01(z):  # float32 out: the losses and their gradients stay out of float16's underflow
            return (decode(c, z.to(c.dtype)) / 2 + 0.5).float()

        def refine(x0):
            return steer(x0, decode01, self.objective, request.guidance, reference, cuts)

        return clip_guided(model, c.scheduler, refine)

    def render_tensor(self, request):
        """The frame as a (1, 3, H, W) tensor in [-1, 1] on the device."""
        c, s, timer = self.c, self.settings, self.timer
        generator = self._generator(request)
        guided = self._guided(request)
        reference = None  # the warped previous frame in [0, 1], for stabilization
        with torch.no_grad() if guided else torch.inference_mode():
            with timer.stage("conditioning"):
                cond = self.conditioning(request)
            source = self.previous if self.previous is not None else self.init
            moved = None  # the previous frame moved by this frame's motion
            video = None
            if request.video is not None:  # Video Source: at the engine's size (a live show may have shrunk)
                video = fitted(image_to_tensor(request.video, c.device, c.dtype), s.height, s.width)
            if source is None and video is None:
                timesteps = txt2img_schedule(c.scheduler, s.steps, c.device)
                latents = initial_noise(c, s.width, s.height, generator) * c.scheduler.init_noise_sigma
            else:
                # the schedule first, while the device is idle: what it reads back costs no stall here
                timesteps, schedule = img2img_schedule(c.scheduler, s.steps, request.strength, c.device)
                if schedule not in self._noise_scales:
                    self._noise_scales[schedule] = noise_scales(c.scheduler, timesteps[:1], c.dtype)
                keep, add = self._noise_scales[schedule]
                with timer.stage("warp"):
                    image = (
                        None if source is None else self.warp(source, request.motion, s.infill_mode, s.sampling_mode)
                    )
                    if self.previous is not None:  # the first frame has no previous frame
                        moved = image
                        if guided:
                            reference = (image / 2 + 0.5).float()
                    if video is not None:  # the first frame without an init image: img2img of the video frame
                        image = video_input(image, video, request.video_weight)
                        if guided and request.video_stabilization:
                            reference = (video / 2 + 0.5).float()
                    if self.init is not None and request.init_weight > 0:
                        image = torch.lerp(image, self.init, request.init_weight / (1.0 + request.init_weight))
                    if request.guide is not None and request.guide_weight > 0:
                        guide = image_to_tensor(request.guide, c.device, c.dtype)
                        if guide.shape != image.shape:  # made at another size (e.g. before an out-of-memory)
                            guide = torch.nn.functional.interpolate(guide, size=image.shape[-2:], mode="bilinear")
                        image = torch.lerp(image, guide, min(request.guide_weight, 1.0))
                with timer.stage("encode"):
                    latents = self.encode(image, generator)
                noise = torch.randn(latents.shape, generator=generator, device=c.device, dtype=c.dtype)
                latents = latents * keep + noise * add  # = scheduler.add_noise(latents, noise, timesteps[:1])
            with timer.stage("control maps"):
                controls = self._controls(request, moved)
            model = controlled_unet_model(c.unet, cond, self._timestep_cond, controls, timesteps)
            if guided:
                model = self._steered(model, request, reference)
            with timer.stage("unet"):
                latents = denoise(model, c.scheduler, latents, timesteps)
            with timer.stage("decode"):
                image = decode(c, latents)
        self.previous = image
        return image

    def render(self, request):
        """The frame as uint8 HxWx3 on the host."""
        with out_of_memory(
            f"out of GPU memory at {self.settings.width}x{self.settings.height}: try a smaller "
            "--width/--height, --vae taesd, or fewer steps"
            + (", cutouts or more gradient_accumulation_steps" if self.objective else "")
        ):
            image = self.render_tensor(request)
        with self.timer.stage("host copy"):
            return to_rgb(image)
