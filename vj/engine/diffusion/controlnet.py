"""ControlNet: nets that steer the UNet with a control image (edges, depth, pose ...), added to the prediction function
by wrapping it (the sampler does not know), numerically as diffusers' StableDiffusionControlNetImg2ImgPipeline does
(without classifier-free guidance, which vj's engine does not use)."""

import inspect
import json
from dataclasses import dataclass, field

import torch

from vj.engine.devices import pick_device, resolve_dtype
from vj.engine.diffusion.models import CONFIGS
from vj.engine.diffusion.sampler import unet_model
from vj.engine.errors import ModelError
from vj.engine.fetching import Fetcher
from vj.engine.diffusion.net_fit import ARCHITECTURES, TINY_CONTROLNET, fit_problem, name_problem

_HOW_TO_GET = (
    "where there is internet run `hf download {source}` (then copy ~/.cache/huggingface here), or pass a "
    "local diffusers ControlNet folder; without weights use `tiny` (random, with --model tiny) or arch:sd21 "
    "(random, with arch:sd-turbo)"
)


@dataclass(frozen=True)
class Control:
    """One ControlNet steering the frames: the net, its control map (1, 3, H, W) in [0, 1] on the device at the
    frame's size (vj.engine.diffusion.control_maps), its weight and the part of the denoising it acts in
    (`start`..`end`, fractions of the steps, as diffusers' control_guidance_start/end)."""

    net: torch.nn.Module = field(compare=False)
    image: torch.Tensor = field(compare=False)
    scale: float = 1.0
    start: float = 0.0
    end: float = 1.0


def keep(start, end, step, steps):
    """1.0 when a net acting from `start` to `end` (fractions) acts at step `step` of `steps`, else 0.0: diffusers'
    controlnet_keep."""
    return 1.0 - float(step / steps < start or (step + 1) / steps > end)


def controlled_unet_model(unet, conditioning, timestep_cond, controls, timesteps):
    """The prediction function model(x, t) of `unet` steered by `controls` over the steps `timesteps`; without
    controls, unet_model's. At step i each net adds its residuals times scale * keep(i), summed over the nets as
    diffusers' MultiControlNetModel sums them; a net with weight 0 at a step is skipped (its residuals would be
    zeros). When the weights change over the steps, the step is found from t's value (one host read per step)."""
    controls = [c for c in controls if c.scale != 0]
    if not controls:
        return unet_model(unet, conditioning, timestep_cond)
    n = len(timesteps)
    weights = [tuple(c.scale * keep(c.start, c.end, i, n) for c in controls) for i in range(n)]
    values = None if len(set(weights)) == 1 else timesteps.tolist()

    def step_of(t):
        if values is None:
            return 0
        v = float(t)
        return min(range(n), key=lambda i: abs(values[i] - v))

    def model(x, t):
        down, mid = None, None
        for control, weight in zip(controls, weights[step_of(t)]):
            if weight == 0:
                continue
            net = control.net
            cond = timestep_cond if getattr(net.time_embedding, "cond_proj", None) is not None else None
            d, m = net(
                x.to(net.dtype),
                t,
                encoder_hidden_states=conditioning.to(net.dtype),
                controlnet_cond=control.image,
                conditioning_scale=weight,
                timestep_cond=cond,
                return_dict=False,
            )
            if down is None:
                down, mid = list(d), m
            else:
                down, mid = [a + b for a, b in zip(down, d)], mid + m
        return unet(
            x,
            t,
            encoder_hidden_states=conditioning,
            timestep_cond=timestep_cond,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
            return_dict=False,
        )[0]

    return model


def _reset_zero_convolutions(net):
    """Random weights for the convolutions a new ControlNet starts at zero (its outputs would be all zeros), and
    variance-keeping ones for its control map's embedding (with default ones the map fades out over its 8 layers:
    a random net would hardly see its control map)."""
    for module in (*net.controlnet_down_blocks, net.controlnet_mid_block):
        module.reset_parameters()
    for module in net.controlnet_cond_embedding.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            torch.nn.init.zeros_(module.bias)


def tiny_controlnet(seed=0):
    """A random ControlNet for the tiny UNet of models.build_tiny (seeded, its zero convolutions random too)."""
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    net = ControlNetModel(**TINY_CONTROLNET)
    _reset_zero_convolutions(net)
    return net


def controlnet_config(arch):
    """The config of a ControlNet for the packaged UNet architecture `arch` (its encoder half, as
    ControlNetModel.from_unet builds it) with the conditioning embedding of lllyasviel's and thibaud's nets."""
    from diffusers import ControlNetModel

    path = CONFIGS / arch / "unet.json"
    unet = json.loads(path.read_text())
    accepted = inspect.signature(ControlNetModel.__init__).parameters
    config = {k: v for k, v in unet.items() if k in accepted}
    config["conditioning_embedding_out_channels"] = [16, 32, 96, 256]
    return config


def load_controlnet(name, device="auto", dtype="auto", seed=0):
    """A ControlNetModel on `device` in `dtype`: 'tiny' (random, for --model tiny), 'arch:sd21' (random, SD 2.1's
    shape: for arch:sd-turbo), both seeded by `seed` (a preset's nets differ by their place in the list), or a hub
    id / local diffusers folder (weights from the hub cache; ModelError when they are missing)."""
    from diffusers import ControlNetModel

    device = pick_device(device)
    dtype = dtype if isinstance(dtype, torch.dtype) else resolve_dtype(dtype, device)
    problem = name_problem(name)
    if problem:
        raise ModelError(problem)
    if name == "tiny":
        net = tiny_controlnet(seed)
    elif name.startswith("arch:"):
        torch.manual_seed(seed)
        net = ControlNetModel.from_config(controlnet_config(ARCHITECTURES[name[5:]]))
        _reset_zero_convolutions(net)
    else:
        net = Fetcher(_HOW_TO_GET)(name, "controlnet", lambda **kw: ControlNetModel.from_pretrained(name, **kw))
    try:
        torch.nn.Module.to(net, device=device, dtype=dtype).eval().requires_grad_(False)
    except torch.OutOfMemoryError:
        raise ModelError(
            f"out of GPU memory loading the ControlNet '{name}' in {str(dtype)[6:]}: use --dtype float16 or fewer nets"
        ) from None
    return net


def check_fits(net, unet):
    """Why `net` (a ControlNetModel, or anything with its `.config`) cannot steer `unet`, in one line naming what
    would fit; None when it fits."""
    return fit_problem(net.config, unet.config)
