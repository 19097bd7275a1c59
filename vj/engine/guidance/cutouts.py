"""Cutouts for CLIP guidance: random square crops of an image, augmented, resampled to a perceptor's input size.

Sizes and positions follow pytti. A crop's side is `min(H, W) * clip(N(0.8, 0.3), lo, 1) ** cut_pow` pixels with
`lo = min(size, min(H, W)) / min(H, W)`: the fraction is clipped first and raised to `cut_pow` after, so a larger
`cut_pow` gives smaller crops (and crops may come out smaller than `size`, as in pytti). Crops are square in
pixels. Positions are uniform; a crop may stick out of the image by `border` times the image side on each axis
(at most its own side), and `border_mode` says what it sees there:

- `clamp` (pytti's default): the crop never sticks out. Its position is drawn over the widened range and then
  clamped into the image, as pytti does, so crops touching an edge are more frequent than the rest. Where the
  augmentations carry a crop over the edge, the edge pixels repeat (pytti's affine augmentation pads so).
- `smear`: edge pixels repeated (pytti pads with `replicate`).
- `mirror`: reflection about the outermost pixels (pytti pads with `reflect`: the edge pixel is not doubled).
- `wrap`: the image repeats periodically.
- `black`: zeros outside the image (a crop pixel whose centre lies outside is black).

Positions and sizes are continuous (pytti rounds them to whole pixels for slicing; a grid need not).

Every crop is described by a grid of `grid_sample` coordinates (align_corners=False), one per crop pixel, with the
geometric augmentations and the border mode folded in: mirror and wrap map outside points back into the image,
clamp and smear clamp them to its edge, black leaves them outside. `cut_like` samples any other image (a mask) with
that grid exactly as the crops were sampled, so the two line up pixel for pixel. `boxes` gives each crop's
position and size before augmentation, as fractions of the image (pytti's offsets and sizes: masks `n`/`f` select
crops by size).

Resampling averages areas, as pytti's average pooling does: each crop pixel is the mean of k x k bilinear samples
spread over its footprint in the source, with k = ceil(min(H, W) / (2 size)). Samples are then at most 2 source
pixels apart, each a 2-pixel-wide bilinear tap, so every source pixel under a crop contributes and large crops do
not alias. The sample points come from the grid's local steps (exact for flips, rotations and crops; the local
linear approximation for perspective), so the grid alone is enough to repeat the sampling. Sample points that
spill over the image's edge read the edge pixels, so the crop pixels right at a mirror or wrap seam, or at the
edge of black, average slightly differently from an exact area mean.

Augmentations (`augment=True`), pytti's set (kornia in pytti, written out here): horizontal flip (p 0.3), rotation
up to 30 degrees with a shift up to a tenth of the side (p 0.8), perspective moving each corner outwards by up to a
tenth of the side (p 0.4): all geometric, in the grid. Then on the pixels only: hue and saturation jitter of 1 %
(p 0.7), erasing a rectangle of 10-40 % of the crop to black (p 0.7), and Gaussian noise of a per-crop amplitude
uniform in [0, 0.1] on every crop (pytti's `noise_fac`), the result clamped to [0, 1].

All randomness comes from `generator` (None: the default generator of the image's device); pass one on the image's
device so that GPU runs copy nothing from the host.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from vj.engine.vocabulary import BORDER_MODES

P_FLIP, P_AFFINE, P_PERSPECTIVE, P_JITTER, P_ERASE = 0.3, 0.8, 0.4, 0.7, 0.7
MAX_ANGLE = math.radians(30)
MAX_SHIFT = 0.2  # in [-1, 1] crop units: a tenth of the crop side
MAX_DISTORTION = 0.2  # corner displacement, same units
HUE, SATURATION = 0.01, 0.01  # hue as a fraction of the colour circle, saturation as a factor around 1
ERASE_AREA = (0.1, 0.4)
ERASE_RATIO = (0.3, 1 / 0.3)
MAX_NOISE = 0.1
LUMA = (0.299, 0.587, 0.114)
SQUARE = ((-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0))  # a crop's corners, clockwise from top left


@dataclass(frozen=True)
class Cutouts:
    """A batch of augmented crops and the source coordinates of each of their pixels."""

    images: Tensor  # (N, C, S, S) in [0, 1]
    grid: Tensor  # (N, S, S, 2) grid_sample coordinates (x, y), align_corners=False
    boxes: Tensor | None = None  # (N, 4) x, y, width, height before augmentation, fractions of the image's sides


def make_cutouts(image, count, size, cut_pow=2.0, border=0.25, border_mode="clamp", generator=None, augment=True):
    """`count` random crops of `image` (1, C, H, W) resampled to size x size, placed and augmented as pytti does."""
    if border_mode not in BORDER_MODES:
        raise ValueError(f"border_mode must be one of {', '.join(BORDER_MODES)}, not {border_mode!r}")
    device = image.device if generator is None else generator.device

    def rand(*shape):
        return torch.rand(shape, generator=generator, device=device)

    def randn(*shape):
        return torch.randn(shape, generator=generator, device=device)

    _, _, height, width = image.shape
    matrices = _crop_matrices(rand, randn, count, size, cut_pow, border, border_mode, height, width)
    boxes = _boxes(matrices).to(image.device)
    if augment:
        matrices = matrices @ _flip_matrices(rand, count) @ _affine_matrices(rand, count)
        matrices = matrices @ _perspective_matrices(rand, count)
    grid = _fold(_grid(matrices.to(image.device), size), border_mode, height, width)
    images = _sample(image, grid)
    if augment:
        images = _recolour(images, rand, randn)
    return Cutouts(images, grid, boxes)


def cut_like(tensor, grid):
    """Cut `tensor` (1, C, H, W), e.g. a mask, with a cutout grid: (N, C, S, S), exactly as the crops were cut."""
    return _sample(tensor, grid)


def check_accumulation(cutouts, gradient_accumulation_steps):
    """Refuse a number of gradient accumulation steps that does not split the cutouts into equal batches."""
    steps = gradient_accumulation_steps
    if steps < 1 or cutouts % steps:
        raise ValueError(f"gradient_accumulation_steps ({steps}) must be at least 1 and divide cutouts ({cutouts})")


def _crop_matrices(rand, randn, count, size, cut_pow, border, border_mode, height, width):
    """(N, 3, 3) maps from crop coordinates [-1, 1]^2 to source coordinates: pytti's sizes and positions."""
    short = min(height, width)
    low = min(size, short) / short
    side = short * (randn(count) * 0.3 + 0.8).clamp(low, 1.0) ** cut_pow
    matrices = torch.zeros(count, 3, 3, device=side.device)
    for axis, extent in enumerate((width, height)):
        span = extent - side
        reach = min(border, 1.0) * extent
        if border_mode == "clamp":
            start = torch.minimum((rand(count) * (span + 2 * reach) - reach).clamp(min=0), span)
        else:
            pad = side.clamp(max=reach)
            start = rand(count) * (span + 2 * pad) - pad
        matrices[:, axis, axis] = side / extent
        matrices[:, axis, 2] = (2 * start + side) / extent - 1
    matrices[:, 2, 2] = 1
    return matrices


def _boxes(matrices):
    """(N, 4) x, y, width, height of the crops as fractions of the image's width and height (pytti's offsets and
    sizes), from their (N, 3, 3) crop maps."""
    scale = torch.stack([matrices[:, 0, 0], matrices[:, 1, 1]], -1)
    start = (matrices[:, :2, 2] + 1 - scale) / 2
    return torch.cat([start, scale], -1)


def _flip_matrices(rand, count):
    """(N, 3, 3) horizontal flips, each with probability P_FLIP."""
    sign = torch.where(rand(count) < P_FLIP, -1.0, 1.0)
    ones = torch.ones_like(sign)
    return torch.diag_embed(torch.stack([sign, ones, ones], -1))


def _affine_matrices(rand, count):
    """(N, 3, 3) rotations about the crop centre with a shift, each with probability P_AFFINE."""
    on = (rand(count) < P_AFFINE).float()
    angle = (rand(count) * 2 - 1) * MAX_ANGLE * on
    shift = (rand(count, 2) * 2 - 1) * MAX_SHIFT * on[:, None]
    cos, sin = angle.cos(), angle.sin()
    matrices = torch.eye(3, device=angle.device).repeat(count, 1, 1)
    matrices[:, 0, 0], matrices[:, 0, 1], matrices[:, 1, 0], matrices[:, 1, 1] = cos, -sin, sin, cos
    matrices[:, :2, 2] = shift
    return matrices


def _perspective_matrices(rand, count):
    """(N, 3, 3) homographies taking the crop's corners outwards by up to MAX_DISTORTION, each with P_PERSPECTIVE."""
    on = (rand(count) < P_PERSPECTIVE).float()
    square = torch.tensor(SQUARE, device=on.device)
    corners = square * (1 + rand(count, 4, 2) * MAX_DISTORTION * on[:, None, None])
    return _square_to_quad(corners)


def _square_to_quad(corners):
    """(N, 3, 3) homographies from [-1, 1]^2 to quadrilaterals (N, 4, 2) given clockwise from the top left."""
    x0, x1, x2, x3 = corners[..., 0].unbind(1)
    y0, y1, y2, y3 = corners[..., 1].unbind(1)
    sx, sy = x0 - x1 + x2 - x3, y0 - y1 + y2 - y3
    dx1, dx2, dy1, dy2 = x1 - x2, x3 - x2, y1 - y2, y3 - y2
    det = dx1 * dy2 - dx2 * dy1
    g = (sx * dy2 - dx2 * sy) / det
    h = (dx1 * sy - sx * dy1) / det
    unit = torch.stack(
        [  # Heckbert's closed form, from the unit square [0, 1]^2
            torch.stack([x1 - x0 + g * x1, x3 - x0 + h * x3, x0], -1),
            torch.stack([y1 - y0 + g * y1, y3 - y0 + h * y3, y0], -1),
            torch.stack([g, h, torch.ones_like(g)], -1),
        ],
        1,
    )
    to_unit = torch.tensor([[0.5, 0.0, 0.5], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]], device=corners.device)
    return unit @ to_unit


def _grid(matrices, size):
    """(N, S, S, 2) source coordinates of the crop pixel centres under the (N, 3, 3) maps."""
    centres = (torch.arange(size, device=matrices.device, dtype=matrices.dtype) * 2 + 1) / size - 1
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    points = torch.stack([u, v, torch.ones_like(u)], -1).reshape(-1, 3)
    mapped = points @ matrices.transpose(1, 2)
    return (mapped[..., :2] / mapped[..., 2:]).reshape(-1, size, size, 2)


def _fold(grid, border_mode, height, width):
    """Fold grid points outside the image back in as the border mode says (black leaves them outside)."""
    if border_mode == "black":
        return grid
    if border_mode in ("clamp", "smear"):
        return grid.clamp(-1, 1)
    extent = grid.new_tensor([width, height])
    pixel = (grid + 1) * extent / 2 - 0.5  # pixel-centre units: centres at 0 .. extent - 1
    if border_mode == "wrap":
        pixel = _modulo(pixel + 0.5, extent) - 0.5
    else:  # mirror about the outermost pixel centres
        period = 2 * (extent - 1)
        pixel = _modulo(pixel, period)
        pixel = torch.minimum(pixel, period - pixel)
    return (pixel + 0.5) * 2 / extent - 1


def _modulo(x, period):
    """x modulo period, in [0, period]: the same as torch.remainder, which is slower on CPU."""
    return x - period * torch.floor(x / period)


def _sample(tensor, grid):
    """Area-averaged resampling of `tensor` (1, C, H, W) at a cutout grid (N, S, S, 2): (N, C, S, S)."""
    count, size = grid.shape[:2]
    factor = max(1, math.ceil(min(tensor.shape[-2:]) / (2 * size)))
    grid = grid.to(tensor.dtype)
    points = _refine(grid, factor) if factor > 1 else grid
    side = size * factor
    out = F.grid_sample(
        tensor, points.reshape(1, count * side, side, 2), mode="bilinear", padding_mode="border", align_corners=False
    )
    out = out.view(tensor.shape[1], count, side, side).transpose(0, 1)
    if factor > 1:
        out = F.avg_pool2d(out, factor)
    inside = (grid.abs() <= 1).all(-1).unsqueeze(1)  # only black mode leaves points outside
    return out * inside


def _refine(grid, factor):
    """(N, kS, kS, 2): k x k points spread over each crop pixel's footprint, from the grid's local steps."""
    step_x = _steps(grid)
    step_y = _steps(grid.transpose(1, 2)).transpose(1, 2)
    offsets = (torch.arange(factor, device=grid.device, dtype=grid.dtype) + 0.5) / factor - 0.5
    rows = grid.unsqueeze(2) + offsets.view(-1, 1, 1) * step_y.unsqueeze(2)  # (N, S, k, S, 2)
    cols = offsets.view(-1, 1) * step_x.unsqueeze(3)  # (N, S, S, k, 2)
    count, size = grid.shape[:2]
    return (rows.unsqueeze(4) + cols.unsqueeze(2)).reshape(count, size * factor, size * factor, 2)


def _steps(grid):
    """Central differences of the grid along its x axis (one-sided at the ends), across wrap seams too."""
    step = grid[:, :, 1:] - grid[:, :, :-1]
    step = step - 2 * torch.round(step / 2)  # a wrap seam jumps by about 2; the true step is what remains
    return torch.cat([step[:, :, :1], (step[:, :, 1:] + step[:, :, :-1]) / 2, step[:, :, -1:]], 2)


def _recolour(images, rand, randn):
    """Pixel augmentations of RGB crops: hue and saturation jitter, erasing, noise; clamped to [0, 1]."""
    count, _, size, _ = images.shape
    on = (rand(count) < P_JITTER).float()
    angle = (rand(count) * 2 - 1) * HUE * 2 * math.pi * on
    saturation = 1 + (rand(count) * 2 - 1) * SATURATION * on
    matrix = _colour_matrices(angle, saturation).to(images)
    images = torch.einsum("nij,njhw->nihw", matrix, images)
    images = images * ~_erase_masks(rand, count, size).to(images.device)
    amplitude = rand(count) * MAX_NOISE
    noise = randn(*images.shape) * amplitude.view(-1, 1, 1, 1)
    return (images + noise.to(images)).clamp(0, 1)


def _colour_matrices(angle, saturation):
    """(N, 3, 3) RGB maps: a hue rotation about the grey axis, then saturation scaled about the luminance."""
    cos, sin = angle.cos().view(-1, 1, 1), angle.sin().view(-1, 1, 1)
    eye = torch.eye(3, device=angle.device)
    cross = torch.tensor([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]], device=angle.device) / math.sqrt(3)
    rotation = cos * eye + sin * cross + (1 - cos) * torch.full((3, 3), 1 / 3, device=angle.device)
    luma = torch.tensor(LUMA, device=angle.device).expand(3, 3)
    s = saturation.view(-1, 1, 1)
    return (s * eye + (1 - s) * luma) @ rotation


def _erase_masks(rand, count, size):
    """(N, 1, S, S) bool: a random rectangle of 10-40 % of the crop, on each crop with probability P_ERASE."""
    on = rand(count) < P_ERASE
    area = (ERASE_AREA[0] + rand(count) * (ERASE_AREA[1] - ERASE_AREA[0])) * size * size
    low, high = math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])
    ratio = torch.exp(low + rand(count) * (high - low))
    tall = (area * ratio).sqrt().clamp(max=size)
    wide = (area / ratio).sqrt().clamp(max=size)
    top, left = rand(count) * (size - tall), rand(count) * (size - wide)
    centres = torch.arange(size, device=on.device) + 0.5
    rows = (centres >= top[:, None]) & (centres < (top + tall)[:, None])
    cols = (centres >= left[:, None]) & (centres < (left + wide)[:, None])
    return (rows[:, :, None] & cols[:, None, :] & on[:, None, None]).unsqueeze(1)
