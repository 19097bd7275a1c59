"""Losses for guidance with pytti's semantics: CLIP prompts, pixel targets, edges, smoothness, direction masks.

A weighted loss is `weight * distance`, i.e. `|w| * d * sign(w)`: a positive weight pulls toward its target, a
negative one pushes away. The stop only gates the gradient, never the value: a positive prompt stops pulling once
`d < stop`, a negative one stops pushing once `d > -stop` (with the default `-inf` neither ever stops). For CLIP
prompts this holds per cutout, so close cutouts rest while far ones keep being pulled.

Masks weight cutouts by how much of each the mask covers (`mask_coverage` of the mask cut with the cutouts' grid),
and the prompt's loss is the weighted mean over cutouts: its value stays a distance, comparable with the stop and
with unmasked prompts, and cutouts outside the mask get no gradient at all. (pytti scales each cutout by
coverage / sqrt(mask mean) and takes the plain mean; the weighted mean keeps a small mask from fading out.)
pytti's semantic masks (a phrase) and `n`/`f` masks select cutouts instead, as pytti does: each gives a stop per
cutout (`cutout_stops`) that is combined with the prompt's stop (`combined_stops`); the loss stays a plain mean.

Pixel losses are mean squared errors (mask-weighted means with a mask; pytti multiplies both images by the mask
and averages over the whole frame, which lets a small mask fade out). Edges are Sobel maps of the luminance, as
pytti's edge loss: stabilising structure should leave colours free to change. Smoothness is pytti's L2 total
variation (mean squared neighbour differences): the same scale as pytti's `smoothing_weight`, and a gradient that
vanishes smoothly on flat areas instead of the constant sign an absolute difference would give.
"""

import math

import torch
import torch.nn.functional as F

LUMA = (0.299, 0.587, 0.114)
SOBEL_X = ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0))  # divided by 8, as pytti: unit slope -> 1


def spherical_distance(x, y):
    """pytti's distance 2 * arcsin(|x - y| / 2) ** 2 (half the squared angle) of normalised embeddings x (N, D) and
    y (M, D) -> (N, M), or y (D,) -> (N,)."""
    x = F.normalize(x.float(), dim=-1)
    y = F.normalize(y.float(), dim=-1)
    chord = (x.unsqueeze(-2) if y.dim() == 2 else x).sub(y).norm(dim=-1)
    return 2 * (chord / 2).clamp(max=1).arcsin().square()


def stop_gated(values, keep):
    """The same values, with gradient only where `keep` is True: how a stop rests a loss without changing it."""
    return torch.where(keep, values, values.detach())


def prompt_loss(embeds, target, weight, stop=-math.inf, cut_weights=None, mask_stops=None):
    """A prompt's loss over cutout embeddings (N, D) toward a target embedding (D,): pytti's weight and stop per
    cutout, averaged over cutouts or weighted by `cut_weights` (N,). `mask_stops` (N,) are a semantic or `n`/`f`
    mask's stops per cutout (`cutout_stops`), combined with the prompt's stop as pytti does (`combined_stops`)."""
    if mask_stops is not None:
        stop = combined_stops(mask_stops.to(embeds.device, torch.float32), weight, stop)
    losses = _weighted(spherical_distance(embeds, target), weight, stop)
    return losses.mean() if cut_weights is None else _weighted_mean(losses, cut_weights.to(losses))


def combined_stops(mask_stops, weight, stop):
    """pytti's stop per cutout under a mask: `max(mask_stop - 1, stop)` for a negative weight, else
    `max(mask_stop, stop)` (a mask stop of 1 therefore rests a cutout for either sign, 0 leaves the prompt's
    stop)."""
    return (mask_stops - (1.0 if weight < 0 else 0.0)).clamp(min=stop)


def cutout_stops(kind, cutoff, distances=None, boxes=None):
    """A mask's stops per cutout, pytti's masks that select cutouts rather than pixels:

    - `semantic`, with `distances` (N,) the spherical distances of the cutouts to the mask's phrase: without a
      cutoff the distance itself (a positive prompt pulls a cutout only while it is farther from its own text
      than from the phrase); with a cutoff c, 1 (rested) where the distance exceeds 0.7 + 0.3 c, else 0.
    - `near` / `far`, with `boxes` (N, 4) x, y, width, height as fractions of the image: 1 where the smaller of a
      cutout's width and height is below (near) or above (far) the cutoff (default 0.5), else 0, so `near` acts
      on large cutouts and `far` on small ones.
    """
    if kind == "semantic":
        return distances if cutoff is None else (distances > 0.7 + 0.3 * cutoff).float()
    if kind not in ("near", "far"):
        raise ValueError(f"unknown cutout mask {kind!r}: semantic, near or far")
    side = boxes[:, 2:].amin(dim=-1)
    threshold = 0.5 if cutoff is None else cutoff
    return (side < threshold if kind == "near" else side > threshold).float()


def pixel_loss(image, target, weight, stop=-math.inf, mask=None):
    """Weighted mean squared error toward a target image (direct prompts, init, stabilisation), stop-gated as pytti;
    `mask` (1, 1, H, W) makes it a mask-weighted mean."""
    error = (image - target).square()
    mse = error.mean() if mask is None else _weighted_mean(error, mask.to(error).expand_as(error))
    return _weighted(mse, weight, stop)


def edge_loss(image, target, weight):
    """Weighted mean squared error between the Sobel edge maps of the two images' luminance."""
    return weight * (_edges(image) - _edges(target)).square().mean()


def tv_loss(image, weight):
    """Weighted L2 total variation (pytti's smoothing loss); a negative weight rewards detail."""
    dx = image[..., :, 1:] - image[..., :, :-1]
    dy = image[..., 1:, :] - image[..., :-1, :]
    return weight * (dx.square().sum() + dy.square().sum()) / image.numel()


def direction_mask(letter, height, width, device=None):
    """(1, 1, H, W) mask of a pytti direction letter: a all, r/l right/left half, u/d upper/lower half (the middle
    column or row of an odd size belongs to the right or lower half)."""
    cols = (torch.arange(width, device=device) + 0.5 >= width / 2).expand(height, width)
    rows = (torch.arange(height, device=device)[:, None] + 0.5 >= height / 2).expand(height, width)
    halves = {"a": torch.ones_like(cols), "r": cols, "l": ~cols, "d": rows, "u": ~rows}
    if letter not in halves:
        raise ValueError(f"unknown direction mask {letter!r}: use a (all), r, l, u or d")
    return halves[letter].float().view(1, 1, height, width)


def mask_coverage(mask_cuts):
    """How much of each cutout a mask covers, (N, 1, S, S) -> (N,): the cutout weights of a masked prompt."""
    return mask_cuts.mean(dim=(1, 2, 3))


def _weighted(distance, weight, stop):
    """`weight * distance` with pytti's stop (a number, or a tensor broadcast against `distance`): gradient only
    where sign(weight) * distance >= stop."""
    keep = distance * math.copysign(1.0, weight) >= stop
    return weight * stop_gated(distance, keep)


def _weighted_mean(values, weights):
    """Mean of `values` weighted by `weights`; all-zero weights give 0 with zero gradient."""
    total = weights.sum().clamp(min=torch.finfo(values.dtype).tiny)
    return (values * weights).sum() / total


def _edges(image):
    """(1, 2, H, W) horizontal and vertical Sobel responses of the luminance; edges of the frame are not edges."""
    luma = (image * image.new_tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    sobel_x = image.new_tensor(SOBEL_X) / 8
    kernels = torch.stack([sobel_x, sobel_x.T]).unsqueeze(1)
    return F.conv2d(F.pad(luma, (1, 1, 1, 1), mode="replicate"), kernels)
