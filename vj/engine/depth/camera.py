"""3D motion per pytti: the previous frame's pixels moved in 3D by their depth, then projected back (a backward warp,
as pytti's `zoom_3d`), on the device. Pure functions over tensors; `DepthWarp` adds a depth model to them."""

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from vj.engine.motion import Motion, warp

_PADDING = {"mirror": "reflection", "black": "zeros", "smear": "border", "wrap": "zeros"}
MIN_METRES, MAX_METRES = 1e-3, 10.0  # the depth range pytti maps onto near_plane..far_plane (AdaBins' range)
_CLIP_NEAR, _CLIP_FAR = 0.1, 4.0  # pytti's projection planes (they cancel out of x and y; kept for the record)
_MIN_W = 1e-4  # a point moved behind the camera is held just in front of it: no division by zero, no NaN


@dataclass(frozen=True)
class Motion3D:
    """Per-frame camera motion in pytti's units: output pixels right, up and toward the viewer, and `rotation`, a raw
    quaternion [w, x, y, z] (not normalised, as pytti applies it). `depth_terms`, when the expressions use pytti's
    depth variables, gives the numbers for the frame's (r, R, mu) (see `depth_statistics`)."""

    translate_x: float = 0.0
    translate_y: float = 0.0
    translate_z: float = 0.0
    rotation: tuple = (1.0, 0.0, 0.0, 0.0)
    depth_terms: object = None  # callable (r, R, mu) -> Motion3D of numbers, or None

    @property
    def is_identity(self):
        still = not (self.translate_x or self.translate_y or self.translate_z)
        return self.depth_terms is None and still and tuple(self.rotation) == (1.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Camera:
    """The 3D keys that stay fixed: degrees of vertical field of view, the planes the depth range maps onto (in
    output pixels), whether the mean motion is taken out (only parallax stays), and the output frame's height,
    whose pixels are pytti's unit (px = 2 / height)."""

    field_of_view: float = 60.0
    near_plane: float = 1.0
    far_plane: float = 10000.0
    lock_camera: bool = True
    height: int = 512

    @property
    def px(self):
        return 2.0 / self.height


def depth_units(metres, camera):
    """Depth in metres (pytti's range 1e-3..10 m) mapped linearly onto near_plane..far_plane pixels, in the scene's
    units (pytti: np.interp, clamped at both ends)."""
    share = (metres.clamp(MIN_METRES, MAX_METRES) - MIN_METRES) / (MAX_METRES - MIN_METRES)
    return (camera.near_plane + share * (camera.far_plane - camera.near_plane)) * camera.px


def depth_statistics(depth, camera):
    """pytti's variables for the 3D motion expressions, in pixels: r (nearest), R (farthest) and mu (the mean of the
    mean and the median), of a depth map in scene units."""
    values = depth.flatten().float()
    px = camera.px
    r, big_r = values.min(), values.max()
    mu = (values.mean() + values.median()) / 2
    return float(r) / px, float(big_r) / px, float(mu) / px


def quaternion_matrix(w, x, y, z):
    """The 3x3 rotation of quaternion (w, x, y, z) as GLM's mat3_cast computes it (no normalisation: a quaternion off
    the unit sphere also scales and shears, as in pytti)."""
    return torch.tensor(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ],
        dtype=torch.float32,
    )


def flow_3d(depth, motion, camera):
    """The screen offset of each pixel, (1, H, W, 2) in grid_sample units, for depth (1, 1, H, W) in scene units.

    pytti's geometry: pixel (row, col) is the point (x, y, -D) with x over -W/H..W/H and y over -1..1 (row 0 at -1;
    x and y are not scaled by depth); the point is translated by (tx, -ty, tz)·px and then rotated; both the old and
    the moved point go through a perspective of `field_of_view`, and the offset is the difference of their
    normalised device coordinates (lock_camera subtracts its mean)."""
    _, _, h, w = depth.shape
    device = depth.device
    depth = depth.float()[0, 0]
    aspect = w / h
    y, x = torch.meshgrid(
        torch.linspace(-1, 1, h, device=device), torch.linspace(-aspect, aspect, w, device=device), indexing="ij"
    )
    focal = 1.0 / math.tan(math.radians(camera.field_of_view) / 2)
    scale = torch.tensor([focal / aspect, focal], device=device)  # the perspective's x and y terms; w = -z
    px = camera.px
    shifted = torch.stack(
        (x + motion.translate_x * px, y - motion.translate_y * px, -depth + motion.translate_z * px), dim=-1
    )
    moved = shifted @ quaternion_matrix(*motion.rotation).to(device).T
    before = torch.stack((x, y), dim=-1) / depth[..., None]
    after = moved[..., :2] / (-moved[..., 2:]).clamp_min(_MIN_W)
    offset = (after - before) * scale
    if camera.lock_camera:
        offset = offset - offset.mean(dim=(0, 1))
    return offset[None]


def warp_3d(image, depth, motion, camera, infill="mirror", sampling="bilinear"):
    """`image` (1, C, H, W) with its pixels moved by `motion` over `depth` (1, 1, H, W, scene units, see
    `depth_units`): each output pixel samples the input where the flow says it came from (pytti's approximation)."""
    offset = flow_3d(depth, motion, camera).to(image.dtype)
    identity = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], device=image.device, dtype=image.dtype)
    grid = F.affine_grid(identity, list(image.shape), align_corners=True) - offset
    if infill == "wrap":
        grid = torch.remainder(grid + 1.0, 2.0) - 1.0
    return F.grid_sample(image, grid, mode=sampling, padding_mode=_PADDING[infill], align_corners=True)


class DepthWarp:
    """The engines' warp with 3D motion: a Motion3D moves the picture by the depth `metres_of(picture)` gives (a depth
    model; the picture as the engine holds it), a 2D Motion goes to the 2D warp. The last depth map is kept for
    `statistics` and for depth stabilization."""

    def __init__(self, metres_of, camera):
        self.metres_of = metres_of
        self.camera = camera
        self.depth = None  # scene units of the last picture warped in 3D

    def __call__(self, image, motion, infill="mirror", sampling="bilinear"):
        if isinstance(motion, Motion):
            return warp(image, motion, infill, sampling)
        if motion.is_identity:
            return image
        with torch.no_grad():
            self.depth = depth_units(self.metres_of(image), self.camera)
        if motion.depth_terms is not None:
            motion = replace(motion.depth_terms(*depth_statistics(self.depth, self.camera)), depth_terms=None)
        return warp_3d(image, self.depth, motion, self.camera, infill, sampling)
