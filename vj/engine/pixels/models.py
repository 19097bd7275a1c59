"""Differentiable pixel image models, as pytti's "Unlimited Palette" and "Limited Palette".

A pixel engine without diffusion optimises an image directly with Adam against its losses (CLIP prompts,
init and stabilisation terms), `steps_per_frame` steps per frame. These models are what it optimises:

- `UnlimitedPalette` (pytti's RGBImage): the RGB pixels themselves are the parameters.
- `LimitedPalette` (pytti's PixelImage): `palettes` palettes of `palette_size` colours each. Every pixel has a
  value in [0, 1] (which colour of a palette: palette colours are kept sorted dark to light by HSP
  brightness) and `palettes` non-negative logits (which palette). The palette itself is a parameter too.

How the limited palette stays differentiable while its frames are hard-quantised (pytti's choice, kept):
decode() returns, in the forward pass, exactly the discrete picture: the palette colour at the rounded value
of the argmax palette, so the losses see what is shown and `frame()` uses at most palettes * palette_size
colours. Its gradient is a straight-through estimate, 0.5 * continuous + 0.5 * discrete: the continuous
picture interpolates linearly between the two palette levels around each value and mixes the palettes by the
softmax of the logits (so values, palette choices and colours get gradients); the discrete one adds the
gradient of the colours shown. Written as `hard.detach() + (soft - soft.detach())`: its forward value is
`hard` bit for bit. One change from pytti: the two levels interpolated are always adjacent (floor clamped
to palette_size - 2), so a value sitting exactly on a level, 0 or 1 (which encode() produces) still has a
gradient; in pytti it has none there (floor == ceil).

Also as in pytti: after every step the parameters are clamped into range (values to [0, 1], logits >= 0,
the palette to [0, 2]); the palette parameter is stored at twice the colour scale ("palette inertia" 2), so
Adam moves palette colours at half the rate of the rest. `gamma` shapes the initial grey ramp of every
palette (levels linspace(0, 1) ** gamma; pytti raises linspace(0, 2) to gamma, which clips for gamma > 1)
and the HDR loss's target. Regularisation, as pytti's image losses:
- HDR loss * hdr_weight: mean squared error between each sorted palette colour's HSP brightness
  sqrt(0.299 r^2 + 0.587 g^2 + 0.114 b^2) and linspace(0, 1, palette_size) ** gamma (each palette a full ramp).
- palette normalisation * palette_normalization_weight: over the pixels' softmax palette weights, the mean
  of the off-diagonal correlations between palettes (use them independently) plus mean(1 / (std * N)) (each
  palette's use varies over the N pixels). Population std, clamped at 1e-3 so a picture that uses a single
  palette everywhere (a flat encoded image) gives a finite loss (pytti divides by zero there); 0 with one palette.

A target palette (pytti: `set_pallet_target`) sets the palette from a picture's colours and, as in pytti,
fixes it; `lock_palette` fixes the initial palette. pytti reads the target's colours by optimising an encode
for 201 steps; here k-means (deterministic) picks palettes * palette_size colours, arranged into palettes
by brightness band (level) and hue (palette).

encode() keeps the palette: each pixel takes its nearest palette colour (value on that level, logit 2 on
that palette and 0 elsewhere: unambiguous argmax, softmax not saturated). It is cheap enough to run every
frame on the warped previous frame; `fit_palette` first gives pytti's "smart" init-image encode.

Video Source mode (pytti's `animation_mode: Video Source`): at a new shot of the video (a cut, or the video's first
frame) `refit_palette` gives the palette the video frame's colours (pytti smart-encodes there), unless the preset
fixed the palette; on every other frame re-encoded from the video (weight 1) the palette is held out of the
optimizer's steps (`hold_palette`, pytti locks it there), so a shot keeps its colours while CLIP moves the
pixels. Frames that only move toward the video (a partial weight) leave the palette free, as pytti does without
re-encoding.

pytti's learning rates (DirectImageGuide uses `image.lr` when `learning_rate` is null, its default): 0.02 for
both pixel models (DifferentiableImage's default; neither overrides it), 0.1 for VQGAN (0.15 gumbel).
"""

import torch
import torch.nn.functional as F

PALETTE_INERTIA = 2.0
ENCODE_MARGIN = 2.0
_HSP = (0.299, 0.587, 0.114)
_SIGMA_MIN = 1e-3
_KMEANS_PIXELS = 4096
_KMEANS_ITERATIONS = 20


def _generator(seed):
    """A CPU generator seeded with `seed`: the models draw their start on the host, the same on every device, and
    move it to theirs."""
    return torch.Generator().manual_seed(int(seed))


def _hsp_squared(colors):
    """HSP brightness squared of (..., 3) colours."""
    return (colors.square() * colors.new_tensor(_HSP)).sum(-1)


def _distances(a, b):
    """Euclidean distances between the rows of a and b, computed directly (no matmul rounding)."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def _resized(image, height, width):
    """A (1, 3, H, W) image at the model's size (antialiased bilinear when it differs)."""
    image = image.float()
    if image.shape[-2:] != (height, width):
        image = F.interpolate(image, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return image.clamp(0, 1)


class UnlimitedPalette(torch.nn.Module):
    """RGB pixels optimised directly (pytti's Unlimited Palette)."""

    default_learning_rate = 0.02

    def __init__(self, width, height, device=None, seed=0):
        super().__init__()
        self.width, self.height = int(width), int(height)
        pixels = torch.rand(1, 3, self.height, self.width, generator=_generator(seed), device="cpu")
        self.pixels = torch.nn.Parameter(pixels.to(device))

    def decode(self):
        """The image, (1, 3, H, W) in [0, 1], differentiable."""
        return self.pixels.clamp(0, 1)

    @torch.no_grad()
    def frame(self):
        """The image shown."""
        return self.decode().detach()

    @torch.no_grad()
    def encode(self, image):
        """Set the pixels to `image` (resized to the model's size if needed)."""
        self.pixels.copy_(_resized(image.to(self.pixels.device), self.height, self.width))

    def regularization_loss(self):
        """No image loss for plain pixels."""
        return self.pixels.new_zeros(())

    @torch.no_grad()
    def project(self):
        """Clamp the pixels into [0, 1] after a step."""
        self.pixels.clamp_(0, 1)

    def refit_palette(self, image):
        """Plain pixels have no palette (a new shot of a video needs nothing more than its encode)."""

    def hold_palette(self, held):
        """Plain pixels have no palette."""


class LimitedPalette(torch.nn.Module):
    """Pixels restricted to palettes * palette_size colours (pytti's Limited Palette)."""

    default_learning_rate = 0.02

    def __init__(
        self,
        width,
        height,
        palette_size=6,
        palettes=9,
        gamma=1.0,
        hdr_weight=0.01,
        palette_normalization_weight=0.2,
        random_initial_palette=False,
        target_palette=None,
        lock_palette=False,
        device=None,
        seed=0,
    ):
        super().__init__()
        if palette_size < 1 or palettes < 1:
            raise ValueError(f"palette_size and palettes must be at least 1, got {palette_size} and {palettes}")
        self.width, self.height = int(width), int(height)
        self.palette_size, self.palettes = int(palette_size), int(palettes)
        self.gamma = float(gamma)
        self.hdr_weight = float(hdr_weight)
        self.palette_normalization_weight = float(palette_normalization_weight)
        g = _generator(seed)
        value = torch.rand(self.height, self.width, generator=g, device="cpu")
        logits = torch.rand(self.palettes, self.height, self.width, generator=g, device="cpu")
        if random_initial_palette:
            palette = torch.rand(self.palette_size, self.palettes, 3, generator=g, device="cpu") * PALETTE_INERTIA
        else:
            ramp = torch.linspace(0, 1, self.palette_size, device="cpu").pow(self.gamma) * PALETTE_INERTIA
            palette = ramp.view(-1, 1, 1).repeat(1, self.palettes, 3)
        self.value = torch.nn.Parameter(value.to(device))
        self.logits = torch.nn.Parameter(logits.to(device))
        self.palette_param = torch.nn.Parameter(palette.to(device))
        self.register_buffer(
            "hdr_target", torch.linspace(0, 1, self.palette_size, device="cpu").pow(self.gamma).to(device)
        )
        if target_palette is not None:
            picture = torch.as_tensor(target_palette, device="cpu").to(device)
            self.fit_palette(picture.permute(2, 0, 1).unsqueeze(0).float() / 255)
        self.palette_fixed = bool(lock_palette or target_palette is not None)  # by the preset: never refit or freed
        self.palette_param.requires_grad_(not self.palette_fixed)

    def _sorted_palette(self):
        """The palette (palette_size, palettes, 3) in [0, 1], each palette sorted dark to light."""
        palette = (self.palette_param / PALETTE_INERTIA).clamp(0, 1)
        order = _hsp_squared(palette).argsort(dim=0)
        return palette.gather(0, order.unsqueeze(-1).expand(-1, -1, 3))

    def _levels(self):
        """Each pixel's value scaled to palette levels, (H, W)."""
        return self.value.clamp(0, 1) * (self.palette_size - 1)

    def _hard(self, palette):
        """The discrete picture (H, W, 3): the rounded level of the argmax palette."""
        return palette[self._levels().round().long(), self.logits.argmax(0)]

    def decode(self):
        """The discrete picture, (1, 3, H, W), with pytti's straight-through gradient."""
        palette = self._sorted_palette()
        hard = self._hard(palette)
        levels = self._levels()
        low = levels.detach().floor().clamp(0, max(self.palette_size - 2, 0))
        high = (low + 1).clamp(max=self.palette_size - 1)
        frac = (levels - low).unsqueeze(-1).unsqueeze(-1)
        ramp = palette[low.long()] * (1 - frac) + palette[high.long()] * frac  # (H, W, palettes, 3)
        weights = self.logits.softmax(0).permute(1, 2, 0).unsqueeze(-1)  # (H, W, palettes, 1)
        soft = 0.5 * (ramp * weights).sum(2) + 0.5 * hard
        out = hard.detach() + (soft - soft.detach())
        return out.permute(2, 0, 1).unsqueeze(0)

    @torch.no_grad()
    def frame(self):
        """The picture shown: at most palettes * palette_size colours."""
        return self._hard(self._sorted_palette()).permute(2, 0, 1).unsqueeze(0)

    def palette(self):
        """Every colour a frame may use, (palettes * palette_size, 3), palette by palette, dark to light."""
        return self._sorted_palette().transpose(0, 1).reshape(-1, 3)

    @torch.no_grad()
    def encode(self, image):
        """Give each pixel of `image` its nearest palette colour (the palette is kept)."""
        pixels = _resized(image.to(self.value.device), self.height, self.width)[0].reshape(3, -1).T
        nearest = _distances(pixels, self._sorted_palette().reshape(-1, 3)).argmin(1)
        level, choice = nearest // self.palettes, nearest % self.palettes
        self.value.copy_((level.float() / max(self.palette_size - 1, 1)).view(self.height, self.width))
        logits = F.one_hot(choice, self.palettes).T.float() * ENCODE_MARGIN
        self.logits.copy_(logits.view(self.palettes, self.height, self.width))

    @torch.no_grad()
    def fit_palette(self, image):
        """Set the palette to k-means colours of `image` (1, 3, H, W): brightness bands are levels, hue palettes."""
        pixels = image[0].reshape(3, -1).T.to(self.palette_param)
        if len(pixels) > _KMEANS_PIXELS:
            pixels = pixels[torch.linspace(0, len(pixels) - 1, _KMEANS_PIXELS, device=pixels.device).long()]
        k = self.palette_size * self.palettes
        if len(pixels) < k:
            pixels = pixels.repeat(-(-k // len(pixels)), 1)
        by_brightness = _hsp_squared(pixels).argsort()
        centers = pixels[by_brightness[torch.linspace(0, len(pixels) - 1, k, device=pixels.device).round().long()]]
        assign = None
        for _ in range(_KMEANS_ITERATIONS):
            new_assign = _distances(pixels, centers).argmin(1)
            if assign is not None and torch.equal(new_assign, assign):
                break
            assign = new_assign
            counts = torch.bincount(assign, minlength=k)
            sums = torch.zeros_like(centers).index_add_(0, assign, pixels)
            centers = torch.where(counts.unsqueeze(1) > 0, sums / counts.clamp(min=1).unsqueeze(1), centers)
            empty = counts == 0
            if empty.any():
                misfit = (pixels - centers[assign]).norm(dim=1)
                centers[empty] = pixels[misfit.topk(int(empty.sum())).indices]
        bands = centers[_hsp_squared(centers).argsort()].view(self.palette_size, self.palettes, 3)
        r, g, b = bands.unbind(-1)
        hue = torch.atan2(3**0.5 * (g - b), 2 * r - g - b)
        palette = bands.gather(1, hue.argsort(dim=1).unsqueeze(-1).expand(-1, -1, 3))
        self.palette_param.copy_(palette * PALETTE_INERTIA)

    @torch.no_grad()
    def refit_palette(self, image):
        """A new shot of a video (a cut, or its first frame): the palette takes `image`'s colours (1, 3, H, W) as
        with fit_palette, unless the preset fixed it (lock_palette, target_palette)."""
        if not self.palette_fixed:
            self.fit_palette(_resized(image.to(self.value.device), self.height, self.width))

    def hold_palette(self, held):
        """Keep the palette out of the optimizer's steps for this frame (`held`: a video frame re-encoded within a
        shot, as pytti locks it) or give it back to them; a palette the preset fixed stays fixed. An optimizer
        kept across frames skips a held palette (no gradient) and steps it again once it is given back."""
        self.palette_param.requires_grad_(not (self.palette_fixed or held))

    def regularization_loss(self):
        """hdr_weight * HDR loss + palette_normalization_weight * palette normalisation (pytti's image losses)."""
        loss = self.value.new_zeros(())
        if self.hdr_weight:
            palette = self._sorted_palette()
            brightness = torch.linalg.vector_norm(palette * palette.new_tensor(_HSP).sqrt(), dim=-1)
            target = self.hdr_target.unsqueeze(1).expand_as(brightness)
            loss = loss + self.hdr_weight * F.mse_loss(brightness, target)
        if self.palette_normalization_weight and self.palettes > 1:
            loss = loss + self.palette_normalization_weight * self._palette_normalization()
        return loss

    def _palette_normalization(self):
        """pytti's palette normalisation of the pixels' softmax palette weights."""
        weights = self.logits.softmax(0).reshape(self.palettes, -1).T  # (N, palettes)
        n = weights.shape[0]
        centered = weights - weights.mean(0, keepdim=True)
        sigma = centered.square().mean(0, keepdim=True).clamp(min=_SIGMA_MIN**2).sqrt()
        correlation = (centered.T @ centered) / (sigma.T * sigma * n)
        off_diagonal = correlation - torch.diag(correlation.diagonal())
        return off_diagonal.mean() + (sigma * n).reciprocal().mean()

    @torch.no_grad()
    def project(self):
        """Clamp the parameters into range after a step (pytti's update)."""
        self.palette_param.clamp_(0, PALETTE_INERTIA)
        self.value.clamp_(0, 1)
        self.logits.clamp_(min=0)

    @torch.no_grad()
    def show_palette(self, image):
        """`image` (1, 3, H, W) with the palette drawn over its bottom eighth, palette by palette."""
        out = image.clone()
        colors = self.palette().to(out)
        height = max(1, out.shape[-2] // 8)
        strip = F.interpolate(colors.T.reshape(1, 3, 1, -1), size=(height, out.shape[-1]), mode="nearest")
        out[..., -height:, :] = strip
        return out


def optimize(model, backward, steps, learning_rate=None, optimizer=None):
    """Run `steps` Adam steps, each on the gradient that `backward()` accumulates into the model's parameters
    plus that of model.regularization_loss(), projecting back into range after each; return the optimizer (keep
    it across frames for pytti's reset_lr_each_frame: false, or pass None for a fresh one)."""
    if learning_rate is None:
        learning_rate = model.default_learning_rate
    if optimizer is None:
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=learning_rate)
    for group in optimizer.param_groups:
        group["lr"] = learning_rate
    for _ in range(int(steps)):
        optimizer.zero_grad(set_to_none=True)
        backward()
        regularization = model.regularization_loss()
        if regularization.requires_grad:
            regularization.backward()
        optimizer.step()
        model.project()
    return optimizer
