"""2D motion per pytti: an incremental affine warp of the previous frame, on the device."""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vj.engine.devices import to_device

_PADDING = {"mirror": "reflection", "black": "zeros", "smear": "border", "wrap": "zeros"}


@dataclass(frozen=True)
class Motion:
    """Per-frame motion: pixels right/down, degrees counterclockwise, zoom in pixels (positive zooms in)."""

    translate_x: float = 0.0
    translate_y: float = 0.0
    rotate: float = 0.0
    zoom_x: float = 0.0
    zoom_y: float = 0.0

    @property
    def is_identity(self):
        return not (self.translate_x or self.translate_y or self.rotate or self.zoom_x or self.zoom_y)


def affine_theta(motion, width, height):
    """The (1, 2, 3) matrix for affine_grid: output coordinates -> where to sample the input."""
    sx = (width - motion.zoom_x) / width  # pytti: sampling scale (W - zoom) / W
    sy = (height - motion.zoom_y) / height
    a = math.radians(motion.rotate)
    cos, sin = math.cos(a), math.sin(a)
    # In pixel units about the center (y down): input = S R^-1 (output - T); R^-1 turns the
    # sampling clockwise on screen so the content turns counterclockwise.
    m = [[sx * cos, -sx * sin], [sy * sin, sy * cos]]
    tx, ty = motion.translate_x, motion.translate_y
    hw, hh = width / 2.0, height / 2.0
    theta = [
        [m[0][0], m[0][1] * hh / hw, -(m[0][0] * tx + m[0][1] * ty) / hw],
        [m[1][0] * hw / hh, m[1][1], -(m[1][0] * tx + m[1][1] * ty) / hh],
    ]
    return torch.tensor([theta], dtype=torch.float32, device="cpu")  # built on the host: warp() copies it over


def warp(image, motion, infill="mirror", sampling="bilinear"):
    """Warp a (1, C, H, W) image by `motion`; the identity returns the image unchanged."""
    if motion.is_identity:
        return image
    _, _, h, w = image.shape
    theta = affine_theta(motion, w, h)
    theta = to_device(theta, image.device).to(dtype=image.dtype)  # pinned, not waiting for the GPU, on CUDA
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)
    if infill == "wrap":
        grid = torch.remainder(grid + 1.0, 2.0) - 1.0
    return F.grid_sample(image, grid, mode=sampling, padding_mode=_PADDING[infill], align_corners=False)
