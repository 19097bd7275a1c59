"""Few-step denoising as small functions over tensors, driving a diffusers scheduler."""

import copy
import math

import torch


def img2img_schedule(scheduler, steps, strength, device):
    """Timesteps of diffusers' img2img for exactly `steps` steps at `strength`.

    diffusers runs int(N * strength) of N scheduled steps; N = ceil(steps / strength) makes that
    `steps`. Returns (timesteps to run, (N, begin index)): the pair names the schedule.
    """
    strength = min(max(strength, 1e-3), 1.0)
    n = max(steps, math.ceil(steps / strength - 1e-9))
    while min(int(n * strength), n) < steps:
        n += 1
    scheduler.set_timesteps(n, device=device)
    t_start = max(n - min(int(n * strength), n), 0) * scheduler.order
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(t_start)
    return scheduler.timesteps[t_start:], (n, t_start)


def noise_scales(scheduler, timestep, dtype):
    """(a, b) with scheduler.add_noise(x, noise, timestep) == a * x + b * noise, computed on the host.

    diffusers' schedulers all noise linearly. Asking a copy of the scheduler (add_noise moves its tables
    to the inputs' device) with 1-element host tensors gives the two numbers before a frame queues GPU
    work, so that noising inside the frame needs no host-device sync.
    """
    probe = copy.deepcopy(scheduler)
    one, zero = torch.ones(1, dtype=dtype, device="cpu"), torch.zeros(1, dtype=dtype, device="cpu")
    t = timestep.reshape(1).cpu()
    return probe.add_noise(one, zero, t).item(), probe.add_noise(zero, one, t).item()


def txt2img_schedule(scheduler, steps, device):
    scheduler.set_timesteps(steps, device=device)
    return scheduler.timesteps


def guidance_embedding(unet, scale, batch, device, dtype):
    """LCM-style guidance conditioning (w - 1) for UNets with time_cond_proj_dim, else None."""
    dim = unet.config.time_cond_proj_dim
    if dim is None:
        return None
    w = torch.full((batch,), (scale - 1.0) * 1000.0, device=device, dtype=torch.float32)
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=device, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))
    emb = w[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=1)
    if dim % 2:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb.to(dtype)


def unet_model(unet, conditioning, timestep_cond=None):
    """The prediction function model(x, t) of a conditioned UNet (no CFG): what samplers call and wrappers
    (CLIP guidance) wrap."""

    def model(x, t):
        return unet(x, t, encoder_hidden_states=conditioning, timestep_cond=timestep_cond, return_dict=False)[0]

    return model


def denoise_step(model, scheduler, latents, t):
    """The latents after the scheduler's step at timestep `t`, predicting with model(x, t)."""
    prediction = model(scheduler.scale_model_input(latents, t), t)
    return scheduler.step(prediction, t, latents, return_dict=False)[0]


def denoise_steps(model, scheduler, latents, timesteps):
    """Yield the latents after each of the scheduler's steps over `timesteps`, predicting with model(x, t)."""
    for t in timesteps:
        latents = denoise_step(model, scheduler, latents, t)
        yield latents


def denoise(model, scheduler, latents, timesteps):
    """Run the scheduler's steps over `timesteps`; the final latents."""
    for latents in denoise_steps(model, scheduler, latents, timesteps):
        pass
    return latents
