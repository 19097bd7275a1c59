"""Latent-blending transitions between two conditionings: a tree of txt2img trajectories from one seed.

A transition A -> B runs the trajectories of A and B from the same starting noise, keeping every step's
latents. Branches go between them: a branch at mix fraction f, injected at step i, has as parents the nearest
paths on each side injected before step i (or the endpoints). It starts from the spherical mix (slerp) of their
latents at step i, at f's place between them, and runs the remaining steps conditioned on
lerp(cond_A, cond_B, f), its latents crossfed toward its parents' before each step (`Crossfeed`). Each new
branch goes between the neighbouring pair whose images differ most, and the leaves play in fraction order at
times spaced by those differences (`timing`), so the picture changes at an even rate. Levels inject at
increasing steps: early injections are free to invent (they start from nearly pure noise), late ones stay close
to their parents. The endpoints are exactly what plain generation of A and of B gives with that seed.

The difference measure is `image_difference`: the mean absolute difference of the two images averaged down to
at most 64 pixels a side. It needs no weights (LPIPS would need a download), it ignores pixel noise that does not
read as change, and it is the same measure the smoothness figure uses, so placing branches where it is largest
directly lowers the largest frame-to-frame change.
"""

import bisect
import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vj.engine.diffusion.conditioning import slerp
from vj.engine.errors import EngineError
from vj.engine.diffusion.frames import decode, initial_noise
from vj.engine.diffusion.sampler import denoise_step, guidance_embedding, unet_model

MAX_SIDE = 64  # image_difference compares images averaged down to this size


@dataclass
class Trajectory:
    """One trajectory of the tree: its mix fraction (0 = A, 1 = B), the step it was injected at, the input
    latents of every step from there on (`latents[steps]`: the result) and the decoded image."""

    fraction: float
    start: int
    latents: list
    image: torch.Tensor


def image_difference(a, b):
    """Mean absolute difference of two (1, 3, H, W) images in [-1, 1], averaged down to <= 64 px a side."""
    h, w = a.shape[-2:]
    factor = max(1, math.ceil(max(h, w) / MAX_SIDE))
    if factor > 1:
        a, b = F.avg_pool2d(a.float(), factor, ceil_mode=True), F.avg_pool2d(b.float(), factor, ceil_mode=True)
    return float((a.float() - b.float()).abs().mean())


def slerp_latents(a, b, t):
    """Spherical interpolation of two latent tensors as whole vectors (what latent blending mixes)."""
    return slerp(a.reshape(1, -1), b.reshape(1, -1), t).reshape(a.shape)


def toward_parents(latents, target, weight):
    """Parental crossfeed: the latents entering a step moved toward the parents' latents at that step by `weight`
    (slerp; 1 gives the parents' latents)."""
    return slerp_latents(latents, target, weight) if weight > 0 else latents


def parents(paths, k, injection):
    """The parents of a new branch between paths[k] and paths[k + 1] injected at step `injection`: the nearest
    path on each side injected before it, else the endpoint (latent blending's rule)."""
    left, right = k, k + 1
    while left > 0 and paths[left].start >= injection:
        left -= 1
    while right < len(paths) - 1 and paths[right].start >= injection:
        right += 1
    return paths[left], paths[right]


def parental_latents(left, right, fraction, step):
    """The parents' latents at `step` for a branch at `fraction`: their slerp at its place between them."""
    return slerp_latents(
        left.latents[step], right.latents[step], (fraction - left.fraction) / (right.fraction - left.fraction)
    )


class Trajectories:
    """Runs trajectories on a model's components with a private copy of the scheduler, so it can work on a
    background thread while the frame engine uses the same components."""

    def __init__(self, components, width, height, guidance_scale=1.0):
        c = self.c = components
        if width % 8 or height % 8:
            raise EngineError(f"width and height must be multiples of 8, got {width}x{height}")
        self.width, self.height = width, height
        self.scheduler = copy.deepcopy(c.scheduler)
        self._timestep_cond = guidance_embedding(c.unet, guidance_scale, 1, c.device, c.dtype)

    def _timesteps(self, steps, start):
        s = self.scheduler
        s.set_timesteps(steps, device=self.c.device)
        if hasattr(s, "set_begin_index"):
            s.set_begin_index(start)
        return s.timesteps[start:]

    def run(self, fraction, start, latents, cond, steps, feed=None):
        """A Trajectory from `latents` at step `start` to the end, conditioned on `cond`. `feed` maps steps after the
        start to (target latents, weight): the latents entering such a step are crossfed toward the target first;
        each step's result is kept as it came out (before the next crossfeed), as latent blending keeps it."""
        feed = feed or {}
        with torch.inference_mode():
            kept, z = [None] * start + [latents], latents
            model = unet_model(self.c.unet, cond.to(self.c.dtype), self._timestep_cond)
            for step, t in enumerate(self._timesteps(steps, start), start):
                z = denoise_step(model, self.scheduler, toward_parents(z, *feed[step]) if step in feed else z, t)
                kept.append(z)
            return Trajectory(fraction, start, kept, decode(self.c, kept[-1]))

    def endpoint(self, cond, seed, steps, fraction=0.0):
        """Plain txt2img of `cond` from `seed`'s noise: a tree's endpoint (and a scene's keyframe)."""
        generator = torch.Generator(device=self.c.device).manual_seed(seed)
        self._timesteps(steps, 0)
        noise = initial_noise(self.c, self.width, self.height, generator) * self.scheduler.init_noise_sigma
        return self.run(fraction, 0, noise, cond, steps)


def blend_tree(
    trajectories, cond_a, cond_b, seed, plan, ends=(None, None), difference=image_difference, crossfeed=None
):
    """The tree's paths from A (fraction 0) to B (fraction 1), in fraction order. `ends` may hold A's and B's
    endpoint Paths already computed (a chain A -> B -> C reuses B's) with the same seed and steps; `crossfeed`
    (a `Crossfeed`, None: none) pulls each branch toward its parents."""
    a, b = ends
    a = trajectories.endpoint(cond_a, seed, plan.steps, 0.0) if a is None else _as_end(a, 0.0, plan)
    b = trajectories.endpoint(cond_b, seed, plan.steps, 1.0) if b is None else _as_end(b, 1.0, plan)
    paths = [a, b]
    gaps = [difference(a.image, b.image)]  # gaps[k]: difference between paths[k] and paths[k + 1]
    for injection, count in zip(plan.injections, plan.branches):
        weights = crossfeed.weights(plan.steps, injection) if crossfeed else []
        for _ in range(count):
            k = max(range(len(gaps)), key=gaps.__getitem__)
            left, right = paths[k], paths[k + 1]
            fraction = (left.fraction + right.fraction) / 2
            parent_a, parent_b = parents(paths, k, injection)
            feed = {
                step: (parental_latents(parent_a, parent_b, fraction, step), w)
                for step, w in enumerate(weights)
                if step > injection and w > 0
            }
            path = trajectories.run(
                fraction,
                injection,
                parental_latents(parent_a, parent_b, fraction, injection),
                torch.lerp(cond_a, cond_b, fraction),
                plan.steps,
                feed,
            )
            paths.insert(k + 1, path)
            gaps[k : k + 1] = [difference(left.image, path.image), difference(path.image, right.image)]
    return paths


def _as_end(path, fraction, plan):
    if len(path.latents) != plan.steps + 1 or path.start != 0:
        raise EngineError(f"an endpoint reused in a chain must be a full {plan.steps}-step trajectory")
    return Trajectory(fraction, 0, path.latents, path.image)


def timing(images, difference=image_difference):
    """When each leaf plays (0..1): by the cumulative difference between neighbours, so that playback changes
    the picture at an even rate however unevenly the leaves are spread (equal steps if they are all equal)."""
    steps = [difference(a, b) for a, b in zip(images, images[1:])]
    total = sum(steps)
    if total <= 0:
        return [k / max(1, len(images) - 1) for k in range(len(images))]
    times, run = [0.0], 0.0
    for step in steps:
        run += step
        times.append(run / total)
    return times


def play(images, progress, times=None):
    """The transition's picture at `progress` 0..1: the leaves (in fraction order, float tensors or arrays) at
    `times` (default: equal steps), with a linear blend between the two around `progress`."""
    if len(images) == 1:
        return images[0]
    if times is None:
        times = [k / (len(images) - 1) for k in range(len(images))]
    p = min(max(progress, 0.0), 1.0)
    i = max(0, min(bisect.bisect_right(times, p) - 1, len(images) - 2))
    span = times[i + 1] - times[i]
    w = 0.0 if span <= 0 else min(max((p - times[i]) / span, 0.0), 1.0)
    a, b = images[i], images[i + 1]
    return a + (b - a) * w


def smoothness(frames, difference=image_difference):
    """(largest frame-to-frame change / mean change, the changes): 1 = perfectly even."""
    changes = [difference(a, b) for a, b in zip(frames, frames[1:])]
    mean = sum(changes) / len(changes) if changes else 0.0
    return (max(changes) / mean if mean > 0 else 1.0), changes
