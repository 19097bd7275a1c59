"""CLIP guidance with pytti's semantics: the per-frame objective, and the wrapper that steers a denoiser with it.

The objective scores an image (1, 3, H, W) in [0, 1]: semantic prompts (text, or a picture's CLIP embedding) on
cutouts through every perceptor, with pytti's weights, stops and masks; direct image prompts (pixels); the init
image (semantic side; the direct side is the engine's input blend or, in the pixel engine, a pixel loss); the
stabilization `reference` (direct, semantic, Sobel-edge and depth stabilization): the warped previous frame, or in Video
Source mode the current video frame (pytti: direct and edge stabilization target it, semantic stabilization
re-embeds it; `reference_embeddings` embeds whatever reference a frame gives); total variation (smoothing). A frame's
weights arrive as numbers in a `GuidanceRequest` (the Director evaluates the expressions); pictures and masks
are loaded once by the app and handed over in `Assets`.

`clip_guided` adds the objective to a diffusion model by wrapping its prediction function, as k-diffusion's CLIP
guidance does: the sampler never knows. Each call's clean-latent estimate takes `steps` normalized gradient steps
through the VAE decoder and the perceptors (no gradient through the UNet), and the prediction is rewritten to
point at the refined estimate.
"""

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from vj.engine.guidance.losses import (
    cutout_stops,
    direction_mask,
    edge_loss,
    mask_coverage,
    pixel_loss,
    prompt_loss,
    spherical_distance,
    tv_loss,
)
from vj.engine.guidance.cutouts import check_accumulation, cut_like, make_cutouts
from vj.engine.errors import EngineError

GUIDANCE_STEP = 0.05  # latent RMS moved by one gradient step at clip_guidance_scale 1
GUIDED_PREDICTIONS = ("epsilon", "v_prediction")


@dataclass(frozen=True)
class Target:
    """A semantic prompt of one frame: `kind` 'text' (key = the text) or 'picture' (key = a picture in Assets)."""

    kind: str
    key: str
    weight: float
    stop: float = -math.inf
    mask: str | None = None  # 'dir:l' or an image mask's key in Assets; 'sem:PHRASE', 'size:near' (cutout stops)


@dataclass(frozen=True)
class PixelTarget:
    """A direct image prompt: pixel loss toward a picture of Assets."""

    key: str
    weight: float
    stop: float = -math.inf
    mask: str | None = None


@dataclass(frozen=True)
class GuidanceRequest:
    """One frame's guidance, numbers and keys only."""

    targets: tuple = ()  # Target
    pixel_targets: tuple = ()  # PixelTarget
    scale: float = 1.0  # diffusion: gradient step size factor
    steps: int = 1  # diffusion: gradient steps per denoising step
    semantic_init: float = 0.0
    direct_init: float = 0.0  # pixel engine only: the diffusion engine blends its input toward the init instead
    direct_stabilization: float = 0.0
    semantic_stabilization: float = 0.0
    edge_stabilization: float = 0.0
    depth_stabilization: float = 0.0  # needs the objective's `depth` (a depth model)
    smoothing: float = 0.0

    def active(self, init=False):
        """Whether any term can move the picture (with `init`: the direct init term counts too)."""
        weights = [t.weight for t in self.targets + self.pixel_targets]
        weights += [
            self.semantic_init,
            self.direct_stabilization,
            self.semantic_stabilization,
            self.edge_stabilization,
            self.depth_stabilization,
            self.smoothing,
        ] + ([self.direct_init] if init else [])
        return any(weights)


@dataclass(frozen=True)
class CutoutSettings:
    """pytti's cutout keys."""

    count: int = 40
    cut_pow: float = 2.0
    border: float = 0.25
    border_mode: str = "clamp"
    augment: bool = True
    accumulation: int = 1


@dataclass
class Assets:
    """Pictures (uint8 HxWx3) and masks (float HxW in 0..1) by key, loaded once by the app; direction masks
    ('dir:LETTER') are made on demand. Resized and moved to the device once per size."""

    pictures: dict = field(default_factory=dict)
    masks: dict = field(default_factory=dict)
    init: np.ndarray | None = None  # the init image, for semantic_init_weight
    _resized: dict = field(default_factory=dict, repr=False)

    def picture(self, key, height, width, device):
        """Picture `key` as (1, 3, height, width) in [0, 1] on `device`."""
        return self._cached(
            ("picture", key, height, width, device),
            lambda: _resize(
                torch.from_numpy(np.array(self.pictures[key])).permute(2, 0, 1)[None].float() / 255.0, height, width
            ).to(device),
        )

    def mask(self, key, height, width, device):
        """Mask `key` as (1, 1, height, width) in [0, 1] on `device`."""
        if key.startswith("dir:"):
            return self._cached(
                ("mask", key, height, width, device), lambda: direction_mask(key[4:], height, width, device)
            )
        return self._cached(
            ("mask", key, height, width, device),
            lambda: _resize(torch.from_numpy(np.array(self.masks[key], np.float32))[None, None], height, width).to(
                device
            ),
        )

    def _cached(self, key, make):
        if key not in self._resized:
            self._resized[key] = make()
        return self._resized[key]


def _cutout_mask(key):
    """(kind, cutoff, value) of a mask key that selects cutouts, 'sem[_CUTOFF]:PHRASE' or 'size[_CUTOFF]:near|far'
    (vj.show.guidance_inputs.mask_key); None for other keys (image and direction masks, in Assets)."""
    head, sep, value = (key or "").partition(":")
    kind, _, cutoff = head.partition("_")
    if not sep or kind not in ("sem", "size"):
        return None
    try:
        return kind, float(cutoff) if cutoff else None, value
    except ValueError:
        return None


def _resize(image, height, width):
    if image.shape[-2:] == (height, width):
        return image
    return F.interpolate(image, size=(height, width), mode="bilinear", antialias=True, align_corners=False)


class Objective:
    """The weighted loss of an image for one frame (see the module docstring)."""

    def __init__(self, perceptors, assets=None, cutouts=CutoutSettings(), depth=None):
        if not perceptors:
            raise ValueError("CLIP guidance needs at least one perceptor")
        check_accumulation(cutouts.count, cutouts.accumulation)
        self.perceptors = list(perceptors)
        self.assets = assets or Assets()
        self.cutouts = cutouts
        self._semantic = {}  # (perceptor index, kind, key) -> embedding
        self.depth = depth  # image (1, 3, H, W) in [0, 1] -> metres (1, 1, H, W), differentiable; or None
        self._depth_of = None  # (reference, its depth): depth stabilization's target of the frame

    def _embedding(self, index, perceptor, kind, key):
        cache_key = (index, kind, key)
        if cache_key not in self._semantic:
            if kind == "text":
                embedding = perceptor.encode_text([key])[0]
            else:
                embedding = perceptor.encode_picture(self.assets.init if kind == "init" else self.assets.pictures[key])
            self._semantic[cache_key] = embedding
        return self._semantic[cache_key]

    def _semantic_targets(self, request, reference):
        """(kind, key, weight, stop, mask) of every semantic term of the request with a non-zero weight (the
        stabilization term only with a reference: the first frame has none)."""
        items = [(t.kind, t.key, t.weight, t.stop, t.mask) for t in request.targets if t.weight]
        if request.semantic_init and self.assets.init is not None:
            items.append(("init", "", request.semantic_init, -math.inf, None))
        if request.semantic_stabilization and reference is not None:
            items.append(("reference", "", request.semantic_stabilization, -math.inf, None))
        return items

    def reference_embeddings(self, reference):
        """Each perceptor's embedding of the whole reference (the warped previous frame, or the video frame):
        semantic stabilization's target, embedded again for every frame."""
        with torch.no_grad():
            return [
                p.encode_image(_resize(reference, p.input_size, p.input_size).to(p.dtype))[0] for p in self.perceptors
            ]

    def semantic_loss(self, image, request, reference=None, generator=None, references=None):
        """Semantic prompts over one batch of cutouts (1/accumulation of them), averaged over perceptors; a
        prompt with an image or direction mask weighs each cutout by the mask's coverage and its gradient reaches
        only masked pixels (as the mask's value there); a semantic or `n`/`f` mask gives each cutout a stop, as
        pytti does; zero (with no graph) when there is nothing to score."""
        items = self._semantic_targets(request, reference)
        if not items:
            return image.new_zeros(())
        if references is None and reference is not None and request.semantic_stabilization:
            references = self.reference_embeddings(reference)
        per_batch = self.cutouts.count // self.cutouts.accumulation
        total = image.new_zeros(())
        for index, perceptor in enumerate(self.perceptors):
            cuts = make_cutouts(
                image,
                per_batch,
                perceptor.input_size,
                self.cutouts.cut_pow,
                self.cutouts.border,
                self.cutouts.border_mode,
                generator,
                self.cutouts.augment,
            )
            images = cuts.images.to(perceptor.dtype)
            embeds = perceptor.encode_image(images)
            masked = {}  # mask key -> (embeddings whose gradient reaches only the masked pixels, coverage per cut)
            stops = {}  # key of a mask that selects cutouts -> its stop per cutout
            for kind, key, weight, stop, mask in items:
                if kind == "reference":
                    target = references[index]
                else:
                    target = self._embedding(index, perceptor, kind, key)
                scored, weights = embeds, None
                selector = _cutout_mask(mask)
                if selector is not None:
                    if mask not in stops:
                        stops[mask] = self._cutout_stops(index, perceptor, selector, embeds, cuts)
                elif mask is not None:
                    if mask not in masked:
                        h, w = image.shape[-2:]
                        m = cut_like(self.assets.mask(mask, h, w, image.device), cuts.grid).to(images.dtype)
                        masked[mask] = (
                            perceptor.encode_image(images * m + images.detach() * (1 - m)),
                            mask_coverage(m),
                        )
                    scored, weights = masked[mask]
                total = total + prompt_loss(scored, target.to(scored.device), weight, stop, weights, stops.get(mask))
        return total / (len(self.perceptors) * self.cutouts.accumulation)

    def _cutout_stops(self, index, perceptor, selector, embeds, cuts):
        """The stop per cutout of a mask that selects cutouts (pytti's semantic and `n`/`f` masks): a phrase's
        distance to each cutout (its embedding cached as a text prompt's), or each cutout's size."""
        kind, cutoff, value = selector
        if kind == "sem":
            phrase = self._embedding(index, perceptor, "text", value).to(embeds.device)
            return cutout_stops("semantic", cutoff, distances=spherical_distance(embeds.detach(), phrase))
        return cutout_stops(value, cutoff, boxes=cuts.boxes)

    def pixel_loss(self, image, request, reference=None, init=None):
        """The terms without cutouts: direct image prompts, direct init (pixel engine), stabilization, smoothing."""
        h, w = image.shape[-2:]
        device = image.device
        total = image.new_zeros(())
        for target in request.pixel_targets:
            if target.weight:
                mask = None if target.mask is None else self.assets.mask(target.mask, h, w, device)
                total = total + pixel_loss(
                    image, self.assets.picture(target.key, h, w, device), target.weight, target.stop, mask
                )
        if request.direct_init and init is not None:
            total = total + pixel_loss(image, _resize(init, h, w), request.direct_init)
        if reference is not None:
            if request.direct_stabilization:
                total = total + pixel_loss(image, reference, request.direct_stabilization)
            if request.edge_stabilization:
                total = total + edge_loss(image, reference, request.edge_stabilization)
            if request.depth_stabilization and self.depth is not None:
                total = total + pixel_loss(
                    self.depth(image), self._depth_target(reference), request.depth_stabilization
                )
        if request.smoothing:
            total = total + tv_loss(image, request.smoothing)
        return total

    def _depth_target(self, reference):
        """The depth of the stabilization reference (metres), computed once per reference."""
        if self._depth_of is None or self._depth_of[0] is not reference:
            with torch.no_grad():
                self._depth_of = (reference, self.depth(reference))
        return self._depth_of[1]

    def backward(self, render, request, reference=None, init=None, generator=None, loss_scale=1.0):
        """Accumulate the gradient of the whole objective (times `loss_scale`, which keeps float16 gradients out of
        underflow) into whatever `render()` depends on, in `accumulation` passes: each renders again and scores
        its share of the cutouts."""
        references = None
        if reference is not None and request.semantic_stabilization:
            references = self.reference_embeddings(reference)
        for batch in range(self.cutouts.accumulation):
            image = render()
            loss = self.semantic_loss(image, request, reference, generator, references)
            if batch == 0:
                loss = loss + self.pixel_loss(image, request, reference, init)
            if loss.requires_grad:
                (loss * loss_scale).backward()


def normalized_step(x, gradient, size):
    """x moved against `gradient` by an RMS of `size` (no move where the gradient is all zero, e.g. stopped);
    the RMS is taken in float32, where float16 gradients' squares would underflow."""
    g = gradient.float()
    rms = g.pow(2).mean().sqrt()
    return torch.where(rms > 0, x - (size * g / rms.clamp_min(1e-30)).to(x.dtype), x)


LOSS_SCALE = 1024.0  # the step is normalized, so scaling the loss changes nothing but float16's underflow


def steer(x0, decode, objective, request, reference=None, generator=None):
    """`request.steps` normalized gradient steps of the objective on a clean latent `x0`, in float32, through
    `decode` (latent -> image in [0, 1]); returns x0 in its own dtype."""
    size = GUIDANCE_STEP * request.scale
    x0 = x0.detach().float()
    for _ in range(request.steps):
        x = x0.clone().requires_grad_(True)
        objective.backward(lambda: decode(x), request, reference, generator=generator, loss_scale=LOSS_SCALE)
        if x.grad is not None:
            x0 = normalized_step(x0, x.grad, size)
    return x0


def alpha_bar(scheduler, t):
    """The cumulative alpha of timestep `t` (interpolated for fractional timesteps), as a host float."""
    table = scheduler.alphas_cumprod
    t = float(t)
    lo = min(max(int(math.floor(t)), 0), len(table) - 1)
    hi = min(lo + 1, len(table) - 1)
    return min(max(float(table[lo] + (table[hi] - table[lo]) * (t - lo)), 1e-6), 1.0 - 1e-6)  # no 0-division


def clip_guided(model, scheduler, refine):
    """Wrap a prediction function `model(x, t)` (x: the scaled model input) so that its clean-latent estimate
    passes through `refine(x0) -> x0` first. Works for epsilon and v prediction."""
    kind = scheduler.config.get("prediction_type", "epsilon")
    if kind not in GUIDED_PREDICTIONS:
        raise EngineError(f"CLIP guidance supports models predicting {' or '.join(GUIDED_PREDICTIONS)}, not {kind}")

    def guided(x, t):
        out = model(x, t)
        a = alpha_bar(scheduler, t)
        sa, sb = math.sqrt(a), math.sqrt(1.0 - a)
        x0 = (x - sb * out) / sa if kind == "epsilon" else sa * x - sb * out
        with torch.inference_mode(False), torch.enable_grad():
            x0 = refine(x0.clone()).to(x.dtype)
        return ((x - sa * x0) / sb if kind == "epsilon" else (sa * x - x0) / sb).to(out.dtype)

    return guided
