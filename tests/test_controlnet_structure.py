"""A trained ControlNet makes the engine's frames follow its control map, measured on held-out shapes.

The tiny ControlNet is trained here for a few seconds the way ControlNets are trained (diffusers' train_controlnet.py):
frozen tiny UNet, text encoder and VAE, the diffusion loss of the scheduler's prediction type at random timesteps,
with the net's residuals added to the UNet as `controlled_unet_model` adds them. A random net changes the frames but
does not make them follow the map's shape; the trained one does, and a shape at another place moves the frames'
figure with it.

The tiny VAE is random, so the training pictures are made as latents: its encoder gives every picture nearly the
same latent (a black and a white picture differ by < 0.01 per value, of ~0.07), which leaves nothing to learn. The
background is the encoder's latent of a dark picture (what the engine starts from for any picture), the figure a
latent colour the tiny decoder draws far from it; the control map is the figure's shape, white on black.

How well a frame follows a shape: the frame's colours projected on the decoder's axis from background to figure
colour, blurred, correlated with the blurred shape (the region), and the same for their gradient magnitudes (the
edges). The tiny UNet is random too and cannot remove the noise of a one-step frame (even trained, its noise estimate
is about 0.65 of the noise, and what is left is multiplied by sigma 14.6), so single frames stay noisy: the figures
are means over 2 held-out shapes x 8 noise seeds. Measured (2-core CPU, the whole file 15-23 s, 9-12 s of it training):
region 0.43 with the trained net, -0.02 without it (scale 0), -0.02 with the untrained net; edges 0.28, 0.01, -0.01.
The decoded training latent of a held-out shape itself scores region 0.95-0.97, edges 0.81-0.87; other training
seeds gave region 0.43-0.48 and edges 0.26-0.30 with the same baselines.
"""

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from scipy import ndimage

from vj.engine.diffusion.conditioning import ConditioningCache
from vj.engine.diffusion.control_maps import ControlInput
from vj.engine.diffusion.controlnet import tiny_controlnet
from vj.engine.diffusion.frames import EngineSettings, FrameEngine, FrameRequest, decode
from vj.engine.diffusion.models import load_components

SIZE = 96  # latents 12 x 12
PROMPT = "a white shape"
TRAIN_STEPS = 100
BATCH = 16
NET_SEED, DATA_SEED = 1, 0
SEEDS = range(8)  # the frames' noise seeds
BLUR = 6.0  # pixels, 3/4 of a latent pixel: the frames' noise is per latent pixel
MARGIN = 6  # pixels cut at the border, where the random decoder draws a frame line of its own


def rectangles(rng, count):
    """Training shapes: `count` masks (count, SIZE, SIZE) of one axis-aligned rectangle each, at random places/sizes."""
    masks = np.zeros((count, SIZE, SIZE), np.float32)
    for mask in masks:
        h, w = rng.integers(SIZE // 5, SIZE // 2 + 1, 2)
        y, x = rng.integers(0, SIZE - h + 1), rng.integers(0, SIZE - w + 1)
        mask[y : y + h, x : x + w] = 1.0
    return masks


def disk(cy, cx, r):
    """A held-out shape (training has rectangles only): a disk centred at (cy, cx), fractions of the size."""
    yy, xx = np.mgrid[:SIZE, :SIZE] / SIZE
    return ((yy - cy) ** 2 + (xx - cx) ** 2 < r**2).astype(np.float32)


def triangle(top, bottom, cx, half):
    """A held-out shape: a triangle with its apex at (top, cx) and its base at `bottom`, `half` wide at the base."""
    yy, xx = np.mgrid[:SIZE, :SIZE] / SIZE
    inside = (yy > top) & (yy < bottom) & (np.abs(xx - cx) < (yy - top) / (bottom - top) * half)
    return inside.astype(np.float32)


HELD_OUT = {"disk": disk(0.32, 0.68, 0.2), "triangle": triangle(0.45, 0.9, 0.3, 0.24)}  # upper right, lower left
OTHER = {"disk": "triangle", "triangle": "disk"}


def picture(mask):
    """The control picture the engine gets: the shape white on black, HxWx3 uint8."""
    return np.repeat((mask * 255).astype(np.uint8)[..., None], 3, axis=2)


@dataclass(frozen=True)
class Colours:
    """The training pictures' latent colours and how the tiny decoder draws them ((3,) in [0, 1])."""

    background: torch.Tensor  # (1, 4, h, w): the tiny encoder's latent of a dark picture
    figure: torch.Tensor  # (1, 4, 1, 1)
    drawn_background: np.ndarray
    drawn_figure: np.ndarray


@pytest.fixture(scope="module")
def c():
    return load_components("tiny", device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def colours(c):
    """The background latent and, of 64 seeded latent colours, the one the tiny decoder draws farthest from it."""
    n = SIZE // c.vae_scale
    with torch.inference_mode():
        background = c.vae.encode(torch.full((1, 3, SIZE, SIZE), -0.8)).latents * c.vae.config.scaling_factor
        candidates = torch.randn(64, 4, 1, 1, generator=torch.Generator().manual_seed(0)) * 2.5

        def drawn(latents):  # the decoded colour of a latent colour, away from the border
            image = decode(c, latents.expand(-1, 4, n, n)) / 2 + 0.5
            return image[:, :, SIZE // 4 : -SIZE // 4, SIZE // 4 : -SIZE // 4].mean((2, 3))

        figures, back = drawn(candidates), drawn(background.mean((2, 3), keepdim=True))
        best = int((figures - back).norm(dim=1).argmax())
    return Colours(background, candidates[best : best + 1], back[0].numpy(), figures[best].numpy())


def latents_of(masks, colours):
    """The training pictures' latents: the figure colour over the shape (area-averaged to the latent grid), the
    background elsewhere."""
    inside = torch.from_numpy(masks)[:, None]
    inside = torch.nn.functional.interpolate(inside, size=colours.background.shape[-2:], mode="area")
    return colours.figure * inside + colours.background * (1 - inside)


@pytest.fixture(scope="module")
def training(c, colours):
    """(net, losses): tiny_controlnet(seed=NET_SEED) trained on random rectangles as diffusers' train_controlnet.py
    trains: DDPM noising of the latents at uniform random timesteps (the engine's Euler steps see the same, scaled),
    the UNet frozen and called with the net's residuals, MSE to the noise (epsilon) or the velocity (v_prediction);
    Adam, cosine-decayed."""
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(c.scheduler.config)
    kind = scheduler.config.prediction_type
    assert kind in ("epsilon", "v_prediction")
    text = ConditioningCache(c.text_encoder, c.tokenizer, c.device).embed(PROMPT).expand(BATCH, -1, -1)
    net = tiny_controlnet(seed=NET_SEED).train().requires_grad_(True)
    optimizer = torch.optim.Adam(net.parameters(), lr=6e-3)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, TRAIN_STEPS)
    rng, generator = np.random.default_rng(DATA_SEED), torch.Generator().manual_seed(DATA_SEED)
    losses = []
    for _ in range(TRAIN_STEPS):
        masks = rectangles(rng, BATCH)
        latents = latents_of(masks, colours)
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (BATCH,), generator=generator)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        maps = torch.from_numpy(masks)[:, None].expand(-1, 3, -1, -1)  # as ControlMaps makes them: [0, 1], 3 channels
        down, mid = net(noisy, timesteps, encoder_hidden_states=text, controlnet_cond=maps, return_dict=False)
        prediction = c.unet(
            noisy,
            timesteps,
            encoder_hidden_states=text,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
            return_dict=False,
        )[0]
        target = noise if kind == "epsilon" else scheduler.get_velocity(latents, noise, timesteps)
        loss = torch.nn.functional.mse_loss(prediction, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        decay.step()
        losses.append(loss.item())
    return net.eval().requires_grad_(False), losses


def frame(c, net, scale, mask, seed):
    """A one-step txt2img frame (the engine's first frame, strength 1.0) steered by `net` at `scale` with `mask`'s
    picture as its control map, HxWx3 in [0, 1]."""
    engine = FrameEngine(c, EngineSettings(width=SIZE, height=SIZE, steps=1))
    engine.controlnets = {"shape": net}
    control = ControlInput("shape", scale, picture(mask))
    request = FrameRequest(0, ((PROMPT, 1.0),), strength=1.0, seed=seed, controls=(control,))
    return engine.render(request).astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def frames(c, training):
    """Frames per (variant, shape, noise seed): the trained net at scale 1, the same net at scale 0 (no net), and
    the net before training (tiny_controlnet(seed=NET_SEED), random) at scale 1."""
    trained = training[0]
    untrained = tiny_controlnet(seed=NET_SEED).eval().requires_grad_(False)
    variants = {"trained": (trained, 1.0), "none": (trained, 0.0), "untrained": (untrained, 1.0)}
    return {
        (variant, name, seed): frame(c, net, scale, mask, seed)
        for variant, (net, scale) in variants.items()
        for name, mask in HELD_OUT.items()
        for seed in SEEDS
    }


def figure_map(image, colours):
    """Per pixel, where `image`'s colour lies on the decoder's axis from background (0) to figure colour (1)."""
    axis = colours.drawn_figure - colours.drawn_background
    return (image - colours.drawn_background) @ axis / (axis @ axis)


def blurred(a):
    return ndimage.gaussian_filter(a, BLUR)[MARGIN:-MARGIN, MARGIN:-MARGIN]


def gradient(a):
    """The gradient magnitude of `a` blurred: where its edges are."""
    a = ndimage.gaussian_filter(a, BLUR)
    return np.hypot(ndimage.sobel(a, 0), ndimage.sobel(a, 1))[MARGIN:-MARGIN, MARGIN:-MARGIN]


def correlation(a, b):
    """Pearson correlation; NaN (failing every comparison) when either is constant, as a blank frame is."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def region(image, mask, colours):
    """How well the frame's figure covers the shape: correlation of the blurred figure map with the blurred mask."""
    return correlation(blurred(figure_map(image, colours)), blurred(mask))


def edges(image, mask, colours):
    """How well the frame's edges follow the shape's: correlation of their blurred gradient magnitudes."""
    return correlation(gradient(figure_map(image, colours)), gradient(mask))


def mean_score(frames, variant, score, colours, against=None):
    """The mean over shapes and seeds of `score` of the variant's frames against their own shape or, with `against`
    (shape -> shape), another one."""
    against = against or {name: name for name in HELD_OUT}
    scores = [score(frames[variant, name, s], HELD_OUT[against[name]], colours) for name in HELD_OUT for s in SEEDS]
    return float(np.mean(scores))


def test_training_lowers_the_diffusion_loss(training):
    losses = training[1]
    # measured: 0.97 over the first 5 steps, 0.25 over the last 20
    assert np.mean(losses[-20:]) < 0.4 * np.mean(losses[:5])


def test_a_trained_net_makes_frames_follow_a_held_out_shape(frames, colours):
    variants = ("trained", "none", "untrained")
    covered = {v: mean_score(frames, v, region, colours) for v in variants}
    outlined = {v: mean_score(frames, v, edges, colours) for v in variants}
    # measured: region 0.43 / -0.02 / -0.02, edges 0.28 / 0.01 / -0.01 (trained / none / untrained)
    assert covered["trained"] > 0.3, covered
    assert covered["trained"] > max(covered["none"], covered["untrained"]) + 0.25, covered
    assert outlined["trained"] > 0.18, outlined
    assert outlined["trained"] > max(outlined["none"], outlined["untrained"]) + 0.15, outlined
    # drawn, not the map copied: far from the white-on-black picture (measured 0.43), and the noise seed still matters
    for name, mask in HELD_OUT.items():
        image = frames["trained", name, 0]
        assert np.abs(image - mask[..., None]).mean() > 0.3
        assert np.abs(image - frames["trained", name, 1]).mean() > 0.02


def test_the_figure_moves_with_the_shape(frames, colours):
    """With the same noise, the frame made with the disk minus the one made with the triangle (at another place)
    follows the disk minus the triangle: the net follows the map, not a place it learned. The untrained net's frames
    change with the map too, but not like it; without the net they do not change."""

    def moved(variant, seed):
        change = figure_map(frames[variant, "disk", seed], colours) - figure_map(
            frames[variant, "triangle", seed], colours
        )
        return correlation(blurred(change), blurred(HELD_OUT["disk"] - HELD_OUT["triangle"]))

    trained = [moved("trained", s) for s in SEEDS]
    untrained = [moved("untrained", s) for s in SEEDS]
    # measured: trained 0.78 on average, 0.61 at least; untrained -0.14 on average
    assert np.mean(trained) > 0.6 and min(trained) > 0.4, trained
    assert np.mean(untrained) < 0.3 and np.mean(trained) > np.mean(untrained) + 0.4, untrained
    assert all(np.array_equal(frames["none", "disk", s], frames["none", "triangle", s]) for s in SEEDS)
    # and each frame covers its own shape more than the other one
    own = mean_score(frames, "trained", region, colours)
    other = mean_score(frames, "trained", region, colours, against=OTHER)
    assert own > other + 0.3, (own, other)
