"""Depth models for pytti-style 3D animation: a picture in, its depth in metres out, on the device, differentiable.

pytti's 3D mode warps the previous frame by a depth map that AdaBins computes, in metres clipped to [1e-3, 10].
vj uses a Depth Anything model (transformers' DepthAnythingForDepthEstimation) instead, and `DepthModel.metres`
gives what AdaBins gave: (1, 1, H, W) float32 metres in [1e-3, 10] at the input's size.

Models, by name (`load_depth_model`):
- a hub id (DEFAULT_DEPTH_MODEL, depth-anything/Depth-Anything-V2-Small-hf) or a local folder saved by transformers:
  loaded with AutoModelForDepthEstimation from the Hugging Face cache with no network at all; when the weights are
  missing, one line says how to get them, within seconds (vj.engine.fetching). Only Depth Anything checkpoints
  (model_type depth_anything: V1, V2, their metric fine-tunes) are taken.
- `tiny`: a small DepthAnything with a 4-layer Dinov2 of width 32 and seeded random weights (tests, CPU try-outs).
- `arch:depth-anything-small`: Depth-Anything-V2-Small's architecture (24.8M parameters) with random weights, built
  from its config in this file: the compute of the real model, with no download (benchmarks).

Preprocessing, in torch on the device (so a loss can reach the pixels), as transformers' image processor of these
checkpoints does it (DPTImageProcessor with keep_aspect_ratio, ensure_multiple_of=14, bicubic, ImageNet mean/std):
the picture is resized with its aspect ratio kept so that the side whose scale is nearest 1 becomes `input_size`
(518 by default), both sides rounded to multiples of the patch size (14); bicubic with antialiasing (torchvision's
resize), no clamping; then normalised by ImageNet's mean and std. For vj's usual frames that is the short side
(512x512 -> 518x518, 512x768 -> 518x784, 1080x1920 -> 518x924); it is the long side when that one is nearer
input_size (256x384 -> 350x518, 300x600 -> 252x518). The model's `predicted_depth` is resized back to the input's
size bilinearly (values stay within the map's range; transformers' post-processing uses bicubic).

Relative models (Depth Anything's own; config.depth_estimation_type "relative") give relative inverse depth
(disparity, affine-invariant: its scale and offset mean nothing). It becomes metres by a fixed choice: the disparity
is normalised min-max over each picture to d in [0, 1], and metres = 1 / (0.1 + 0.9 d): the nearest point at 1 m,
the farthest at 10 m (AdaBins' cap), linear in inverse depth in between. A flat picture (disparity range under
FLAT = 1e-3 of its largest magnitude: a plane the model cannot place) is put at d = 0.5 + (disparity - middle) /
(FLAT * largest), i.e. at 1 / 0.55 = 1.82 m when exactly constant, continuous with the min-max map at the threshold.
Metric models (depth_estimation_type "metric", e.g. the Depth-Anything-V2-Metric-*-hf fine-tunes) give metres
(their head multiplies by config.max_depth): clipped to [1e-3, 10].

AdaBins' predict_pil averages the prediction with that of the horizontally flipped picture; vj does not (it would
double the cost of every 3D frame). The model is frozen (eval mode, requires_grad False): a gradient reaches the
input only. It computes in the dtype it was loaded in; the result is float32.
"""

import torch
import torch.nn.functional as F

from vj.engine.depth.camera import MAX_METRES, MIN_METRES
from vj.engine.devices import pick_device, resolve_dtype
from vj.engine.errors import ModelError
from vj.engine.fetching import Fetcher
from vj.engine.vocabulary import DEFAULT_DEPTH_MODEL

NEAREST_METRES = 1.0  # where a relative model's nearest point goes (its farthest goes to MAX_METRES)
FLAT = 1e-3  # a disparity range under this share of the largest |disparity|: a flat picture
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Depth-Anything-V2-Small-hf's config.json (less the bookkeeping): a ViT-S/14 Dinov2 whose layers 3, 6, 9 and 12 feed
# the DPT neck (V1-Small took 9 to 12; the parameters are the same).
ARCHITECTURES = {
    "depth-anything-small": dict(
        backbone_config=dict(
            model_type="dinov2",
            hidden_size=384,
            num_attention_heads=6,
            image_size=518,
            patch_size=14,
            out_indices=[3, 6, 9, 12],
            reshape_hidden_states=False,
        ),
        patch_size=14,
        reassemble_hidden_size=384,
        reassemble_factors=[4, 2, 1, 0.5],
        neck_hidden_sizes=[48, 96, 192, 384],
        fusion_hidden_size=64,
        head_hidden_size=32,
        head_in_index=-1,
        depth_estimation_type="relative",
    )
}
TINY = dict(
    backbone_config=dict(
        model_type="dinov2",
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        mlp_ratio=2,
        image_size=56,
        patch_size=14,
        out_indices=[1, 2, 3, 4],
        reshape_hidden_states=False,
    ),
    patch_size=14,
    reassemble_hidden_size=32,
    neck_hidden_sizes=[8, 16, 16, 32],
    fusion_hidden_size=16,
    head_hidden_size=8,
    depth_estimation_type="relative",
)
_HOW_TO_GET = (
    "where there is internet run `hf download {source}` (then copy ~/.cache/huggingface here), or pass a local "
    "folder saved by transformers; without weights use the depth model 'tiny' (random, for trying the app) or "
    "'arch:depth-anything-small' (benchmarks)"
)
_FORMS = f"use a hub id like {DEFAULT_DEPTH_MODEL}, a local folder saved by transformers, 'tiny' or " + ", ".join(
    f"'arch:{name}'" for name in ARCHITECTURES
)


def model_input_size(height, width, input_size, multiple=14):
    """The (height, width) transformers' DPTImageProcessor resizes a height x width picture to with
    size input_size x input_size, keep_aspect_ratio and ensure_multiple_of=multiple (its rule, to the rounding),
    except that a side it would round to 0 (an aspect ratio over about 2 * input_size / multiple) is one patch."""

    def to_multiple(value):
        rounded = round(value / multiple) * multiple
        return rounded if rounded >= multiple else multiple

    scale_height, scale_width = input_size / height, input_size / width
    if abs(1 - scale_width) < abs(1 - scale_height):  # scale as little as possible
        scale_height = scale_width
    else:
        scale_width = scale_height
    return to_multiple(scale_height * height), to_multiple(scale_width * width)


def relative_to_metres(disparity):
    """Metres for a relative model's disparity (N, 1, H, W): min-max over each picture to d in [0, 1], then
    1 / (0.1 + 0.9 d), 1 m nearest and 10 m farthest; a flat picture near 1.82 m (see the module's docstring)."""
    low = disparity.amin(dim=(-2, -1), keepdim=True)
    high = disparity.amax(dim=(-2, -1), keepdim=True)
    largest = disparity.detach().abs().amax(dim=(-2, -1), keepdim=True)
    span = torch.maximum(high - low, (FLAT * largest).clamp_min(1e-12))
    share = 0.5 + (disparity - (low + high) / 2) / span  # (disparity - low) / (high - low) when not flat
    far, near = 1 / MAX_METRES, 1 / NEAREST_METRES
    return (1 / (far + share * (near - far))).clamp(MIN_METRES, MAX_METRES)


class DepthModel:
    """A frozen depth-estimation model and its preprocessing: `metres(image)` is the depth of a picture.

    `model` is a transformers depth model (or anything called as model(pixel_values=...) that returns an object
    with `predicted_depth` (N, h, w) and has a `config` with depth_estimation_type and patch_size)."""

    def __init__(self, name, model, input_size=518):
        if not isinstance(input_size, int) or input_size < 1:
            raise ModelError(f"depth model input size {input_size!r}: use a whole number of pixels, like 518")
        self.name = name
        self.model = model
        self.input_size = input_size
        config = model.config
        self.patch_size = int(getattr(config, "patch_size", 14))
        self.metric = getattr(config, "depth_estimation_type", "relative") == "metric"
        parameter = next(model.parameters(), None)
        self.device = parameter.device if parameter is not None else torch.device("cpu")
        self.dtype = parameter.dtype if parameter is not None else torch.float32
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    def pixel_values(self, image):
        """The model's input for `image` (N, 3, H, W) in [0, 1]: resized and normalised in float32, in the
        model's dtype."""
        height, width = image.shape[-2:]
        size = model_input_size(height, width, self.input_size, self.patch_size)
        pixels = image.float()
        if size != (height, width):
            pixels = F.interpolate(pixels, size=size, mode="bicubic", align_corners=False, antialias=True)
        return ((pixels - self._mean) / self._std).to(self.dtype)

    def metres(self, image):
        """Depth of `image` (1, 3, H, W) float in [0, 1] on the model's device, any dtype: (1, 1, H, W) float32
        metres in [1e-3, 10] (pytti's range). Differentiable with respect to `image` when autograd is on."""
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"depth of an image shaped {tuple(image.shape)}: expected (1, 3, H, W)")
        height, width = image.shape[-2:]
        depth = self.model(pixel_values=self.pixel_values(image)).predicted_depth
        depth = depth.unsqueeze(1).float()
        if depth.shape[-2:] != (height, width):
            depth = F.interpolate(depth, size=(height, width), mode="bilinear", align_corners=False)
        if self.metric:
            return depth.clamp(MIN_METRES, MAX_METRES)
        return relative_to_metres(depth)

    def describe(self):
        """One line: the model, how its output becomes metres, its input size and where it runs."""
        kind = (
            "metric, clipped to 1e-3..10 m"
            if self.metric
            else "relative disparity, min-max to 1..10 m linear in 1/depth"
        )
        return f"{self.name} ({kind}; input {self.input_size}; {str(self.dtype)[6:]} on {self.device})"


def build_tiny(seed=0):
    """The tiny DepthAnything with seeded random weights. With transformers' initialisation its output is ~1e-7
    and mostly cut to 0 by the head's ReLU, so the neck and head get torch's default initialisation and the last
    convolution is scaled to give a disparity around 1 that varies with the picture (like the tiny diffusion
    model's VAE, centred on something visible)."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation

    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        model = DepthAnythingForDepthEstimation(DepthAnythingConfig(**TINY)).eval()
        for module in (*model.neck.modules(), *model.head.modules()):
            if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                module.reset_parameters()
        # calibrated on a fixed picture (a noisy ramp): the last convolution's output has mean 1 and spread 0.25
        probe = torch.rand(1, 3, 56, 84).cumsum(dim=-1) / 84
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        last, seen = model.head.conv3, {}
        hook = last.register_forward_hook(lambda module, args, out: seen.update(out=out))
        model(pixel_values=(probe - mean) / std)
        hook.remove()
        out = seen["out"] - last.bias.view(1, -1, 1, 1)
        gain = 0.25 / out.std().clamp_min(1e-12)
        last.weight.mul_(gain)
        last.bias.copy_(1.0 - out.mean() * gain)
    return model


def build_architecture(name):
    """A real Depth Anything architecture from its config above, with seeded random weights (benchmarks)."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation

    if name not in ARCHITECTURES:
        known = ", ".join(f"arch:{known}" for known in ARCHITECTURES)
        raise ModelError(f"unknown depth architecture 'arch:{name}'; known: {known}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return DepthAnythingForDepthEstimation(DepthAnythingConfig(**ARCHITECTURES[name]))


def _load_pretrained(source):
    """A Depth Anything checkpoint (hub id or folder) through the Fetcher: its config first, to refuse another kind
    of model before any weights are read."""
    from transformers import AutoConfig, AutoModelForDepthEstimation

    fetch = Fetcher(_HOW_TO_GET)
    config = fetch(source, "config", lambda **kw: AutoConfig.from_pretrained(source, **kw))
    kind = getattr(config, "model_type", None)
    if kind != "depth_anything":
        raise ModelError(
            f"'{source}' is a {kind} model; vj's 3D depth takes Depth Anything checkpoints (model_type "
            f"depth_anything), like {DEFAULT_DEPTH_MODEL}"
        )
    return fetch(
        source, "depth model", lambda **kw: AutoModelForDepthEstimation.from_pretrained(source, config=config, **kw)
    )


def load_depth_model(name=DEFAULT_DEPTH_MODEL, device="cpu", dtype=torch.float32, input_size=518):
    """The depth model `name` ('tiny', 'arch:NAME', a hub id or a local folder) frozen on `device` (a torch device
    or a --device value) in `dtype` (a torch dtype or a --dtype value); ModelError, one line, if it cannot be."""
    from pathlib import Path

    device = pick_device(device)
    if not isinstance(dtype, torch.dtype):
        dtype = resolve_dtype(dtype, device)
    if name == "tiny":
        model = build_tiny()
    elif name.startswith("arch:"):
        model = build_architecture(name[5:])
    elif "/" in name or Path(name).exists():
        model = _load_pretrained(name)
    else:
        raise ModelError(f"unknown depth model '{name}': {_FORMS}")
    try:
        model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    except torch.OutOfMemoryError:
        raise ModelError(
            f"out of GPU memory loading the depth model '{name}' in {str(dtype)[6:]}: close other programs on "
            "the GPU or use a smaller depth model"
        ) from None
    return DepthModel(name, model, input_size)
